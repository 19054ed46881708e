"""`inv dev.deploy` end to end against the fake cluster: real Docker builds, real chart rendering,
the real Kubernetes client watching, port-forwarding and reading logs over HTTP.

The project is a temporary copy of the real chart with tiny images (built FROM
the test base image in a second or two), deployed to a kind-like cluster whose
``kind``/``helm`` are recording stand-ins (tests/fixtures/fake_cluster.py).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.docker_images import remove_release_images
from tests.fixtures.fake_cluster import FakeCluster, make_project
from tests.fixtures.kubeapi import load_object, unreachable_kubeconfig
from tests.fixtures.tools import require_tool

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.helm]

SECRET = "pg-secret-7f3a9c"


@pytest.fixture
def project(tmp_path, kubeapi, base_image, docker_client):
    require_tool("helm")
    release = f"mdt{uuid.uuid4().hex[:6]}"  # images are <release>/<name>: unique per test, removed after
    made = make_project(tmp_path, kubeapi, base_image, release, SECRET)
    yield made
    made.cluster.close()
    remove_release_images(docker_client, release, base_image)


def upgrades(cluster: FakeCluster) -> list[dict]:
    return cluster.helm_calls("upgrade")


def test_first_deploy_builds_loads_installs_waits_and_smoke_tests(project):
    summary = project.deploy_json()
    assert summary["status"] == "deployed" and summary["revision"] == 1
    assert sorted(summary["built"]) == ["backend", "frontend", "worker"]
    assert sorted(summary["delivered"]) == ["backend", "frontend", "worker"]
    assert {s["name"]: s["ok"] for s in summary["smoke"]} == {"backend-live": True, "frontend-page": True}
    assert set(summary["phases"]) >= {"preflight", "build", "deliver", "helm", "wait", "smoke"}
    # kind loads exactly the built tags
    (load,) = project.cluster.kind_loads()
    assert load.startswith("kind load docker-image --name moorage-fake ")
    assert sorted(load.split()[5:]) == sorted(summary["images"].values())
    # helm: upgrade --install with env values, generated images, private secrets
    (call,) = upgrades(project.cluster)
    argv = call["argv"]
    assert argv[:4] == ["upgrade", "--install", project.release, str(project.root / "chart")]
    assert "--wait=hookOnly" in argv and argv[argv.index("--kube-context") + 1] == "moorage-fake"
    env_file, images_file, secrets_file = call["values_files"]
    assert env_file["path"] == str(project.root / "environments" / "dev.yaml")
    assert f"tag: {summary['images']['backend'].split(':')[1]}" in images_file["content"]
    assert secrets_file["mode"] == "0o600" and SECRET in secrets_file["content"]
    assert not Path(secrets_file["path"]).exists(), "the private values file must be removed afterwards"
    assert all(SECRET not in arg for c in project.cluster.helm_calls() for arg in c["argv"])


def test_secrets_never_reach_the_output(project):
    result = project.inv("dev.deploy")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "smoke tests" in result.stdout and "open: " in result.stdout


def test_second_deploy_with_nothing_changed_builds_loads_and_upgrades_nothing(project):
    project.deploy_json()
    summary = project.deploy_json()
    assert summary["status"] == "up-to-date"
    assert summary["built"] == [] and summary["delivered"] == []
    assert len(upgrades(project.cluster)) == 1 and len(project.cluster.kind_loads()) == 1
    assert f"release {project.release} is up to date" in project.inv("dev.deploy").stdout


def test_one_changed_image_is_rebuilt_loaded_and_upgraded(project):
    first = project.deploy_json()
    (project.root / "worker" / "main.txt").write_text("worker v2\n")
    second = project.deploy_json()
    assert second["built"] == ["worker"] and second["delivered"] == ["worker"]
    assert second["images"]["worker"] != first["images"]["worker"]
    assert second["images"]["backend"] == first["images"]["backend"]
    assert second["revision"] == 2


def test_failed_upgrade_fails_fast_with_the_reason_and_rolls_back(project):
    project.deploy_json()
    project.cluster.controller.behaviour["backend"] = "crashloop"
    (project.root / "backend" / "main.txt").write_text("backend v2 (broken)\n")
    result = project.inv("dev.deploy")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "CrashLoopBackOff" in out
    assert "rolled back to revision 1" in out
    assert "Traceback: boom" in out, "the previous container's log tail is shown"
    (rollback,) = project.cluster.helm_calls("rollback")
    assert rollback["argv"][1:3] == [project.release, "1"]
    diagnostics = list((project.root / ".moorage" / "diagnostics").glob("dev-*"))
    assert diagnostics and (diagnostics[0] / "helm-history.txt").exists()
    assert project.cluster.release()["revisions"][-1]["description"] == "Rollback to 1"


def test_no_rollback_leaves_the_failed_revision(project):
    project.deploy_json()
    project.cluster.controller.behaviour["backend"] = "crashloop"
    (project.root / "backend" / "main.txt").write_text("backend v2 (broken)\n")
    result = project.inv("dev.deploy", "--no-rollback")
    assert result.returncode == 1
    assert "not rolling back (--no-rollback)" in result.stdout + result.stderr
    assert project.cluster.helm_calls("rollback") == []


def test_dry_run_prints_the_plan_and_changes_nothing(project, docker_client):
    result = project.inv("dev.deploy", "--dry-run")
    assert result.returncode == 0, result.stderr
    for line in ("build    backend", "deliver  backend via kind-load", "helm     install with values"):
        assert line in result.stdout
    assert upgrades(project.cluster) == [] and project.cluster.kind_loads() == []
    assert not [t for i in docker_client.api.images() for t in (i.get("RepoTags") or [])
                if t.startswith(f"{project.release}/")]


def test_status_rollback_and_undeploy(project):
    project.deploy_json()
    (project.root / "worker" / "main.txt").write_text("worker v2\n")
    project.deploy_json()
    status = json.loads(project.inv("dev.status", "--json").stdout)
    assert status["revision"] == 2 and status["state"] == "deployed"
    states = {r["resource"]: r["state"] for r in status["resources"]}
    assert states[f"deployment/{project.release}-backend"] == "ready"
    result = project.inv("dev.rollback")
    assert result.returncode == 0, result.stderr
    assert project.cluster.helm_calls("rollback")[0]["argv"][1:3] == [project.release, "1"]
    claim = f"data-{project.release}-postgresql-0"
    plan = project.inv("dev.undeploy", "--dry-run")
    assert f"keep 1 PersistentVolumeClaim(s): {claim}" in plan.stdout
    refused = project.inv("dev.undeploy", "--purge")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert project.cluster.helm_calls("uninstall") == []
    done = project.inv("dev.undeploy", "--purge", "--yes")
    assert done.returncode == 0, done.stderr
    assert project.cluster.release() is None
    assert project.cluster.kubeapi.get("PersistentVolumeClaim", "moorage-dev", claim) is None


# --- bad input: one clear line, exit 2, nothing changed ------------------------------------------


def assert_one_line_and_nothing_changed(project, result, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert upgrades(project.cluster) == [] and project.cluster.kind_loads() == []


def test_unreachable_cluster(project, tmp_path):
    dead = unreachable_kubeconfig(tmp_path, context="moorage-fake")
    result = project.inv("dev.deploy", env={"KUBECONFIG": str(dead)})
    assert_one_line_and_nothing_changed(project, result, "is unreachable")


def test_kubeconfig_that_is_not_yaml(project, tmp_path):
    broken = tmp_path / "kubeconfig-broken"
    broken.write_text(project.cluster.kubeapi.kubeconfig.read_text().replace("clusters:", "clusters: [", 1))
    result = project.inv("dev.status", env={"KUBECONFIG": str(broken)})
    assert_one_line_and_nothing_changed(project, result, f"kubeconfig {broken} line ")
    assert "is not valid YAML" in result.stderr


def test_deploy_into_a_namespace_being_deleted_waits_until_it_is_gone(project):
    kubeapi = project.cluster.kubeapi
    kubeapi.apply(load_object("namespace-terminating"))
    kubeapi.play([], when_watched="namespaces", then=lambda: kubeapi.delete("Namespace", "", "moorage-dev"))
    result = project.inv("dev.deploy", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "deployed"
    lines = result.stderr.splitlines()
    said = [i for i, line in enumerate(lines) if "moorage-dev is being deleted" in line]
    assert [lines[i] for i in said] == ["namespace moorage-dev is being deleted (since 2026-11-23T10:02:11Z): "
                                        "waiting up to 120s for it to be gone before deploying"]
    gone = [i for i, line in enumerate(lines) if line.startswith("ok: namespace moorage-dev is gone after ")]
    assert gone and gone[0] > said[0]
    assert upgrades(project.cluster), "deployed once the namespace was gone"


def test_wrong_context(project):
    config = (project.root / "invoke.yaml").read_text().replace("context: moorage-fake", "context: kind-other")
    (project.root / "invoke.yaml").write_text(config)
    result = project.inv("dev.deploy")
    assert_one_line_and_nothing_changed(project, result, "kube context 'kind-other' is not in")


def test_production_context_is_refused(project):
    config = (project.root / "invoke.yaml").read_text()
    config = config.replace("    dev:\n", "    prod:\n      production: true\n      context: moorage-fake\n    dev:\n")
    (project.root / "invoke.yaml").write_text(config)
    (project.root / "environments" / "prod.yaml").write_text("{}\n")
    result = project.inv("dev.deploy")
    assert_one_line_and_nothing_changed(project, result, "belongs to production environment 'prod'")


def test_helm_missing(project, tmp_path):
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for tool in ("kind", "docker"):
        (bare / tool).symlink_to(project.cluster.bin / tool)
    result = project.inv("dev.deploy", env={"PATH": f"{bare}{os.pathsep}{Path(sys.executable).parent}"})
    assert_one_line_and_nothing_changed(project, result, "'helm' is not installed")


def test_docker_down(project, tmp_path):
    result = project.inv("dev.deploy", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert_one_line_and_nothing_changed(project, result, "is not reachable")


def test_unknown_environment(project):
    result = project.inv("dev.deploy", "--env", "qa")
    assert_one_line_and_nothing_changed(project, result, "unknown environment 'qa' (known: dev, staging)")


def test_missing_secret(project):
    (project.root / ".env.dev").write_text("POSTGRES_PASSWORD=\n")  # overrides .env for dev
    result = project.inv("dev.deploy")
    assert_one_line_and_nothing_changed(project, result, "required secret POSTGRES_PASSWORD")


def test_values_rejected_by_the_chart_schema(project):
    (project.root / "environments" / "dev.yaml").write_text("backend:\n  replicaCount: many\n")
    result = project.inv("dev.deploy")
    assert_one_line_and_nothing_changed(project, result, "the values were rejected by the chart")


# --- deploy to a shared environment: a verified backup before pending migrations ------------------


def test_ci_deploy_backs_up_before_pending_migrations_only(project, postgres_database):
    from tests.fixtures.servers import alembic

    env = {"DATABASE_URL": postgres_database.url, "CI": "true"}
    first = json.loads(project.inv("deploy", "--env", "staging", "--json", env=env).stdout)
    assert first["status"] == "deployed" and first["backup"] is None, "a first install has nothing to back up"
    (project.root / "worker" / "main.txt").write_text("worker v2\n")
    result = project.inv("deploy", "--env", "staging", "--json", env=env)
    assert result.returncode == 0, result.stderr
    second = json.loads(result.stdout)
    backup = Path(second["backup"])
    assert backup.parent == project.root / "backups" / "staging" and backup.name.endswith(".dump")
    assert "pending migrations (0001, 0002)" in result.stderr
    assert postgres_database.url.split("@")[0].split(":")[-1] not in result.stdout + result.stderr
    alembic("upgrade", "head", database_url=postgres_database.url)
    (project.root / "worker" / "main.txt").write_text("worker v3\n")
    third = json.loads(project.inv("deploy", "--env", "staging", "--json", env=env).stdout)
    assert third["status"] == "deployed" and third["backup"] is None


def test_ctrl_c_during_the_wait_stops_cleanly_and_says_what_state_things_are_in(project, tmp_path):
    import signal
    import subprocess
    import time

    project.cluster.controller.behaviour["backend"] = "never-ready"
    child = {**os.environ, **project.cluster.env(), "TMPDIR": str(tmp_path)}
    child.pop("MOORAGE_ENV", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("inv")), "dev.deploy"], cwd=project.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child,
                            start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 120
    while "wait: readiness" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    project.cluster.kubeapi.wait_for_watchers("deployments", timeout=60)  # in the wait: its watches are open
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + out + err
    assert "interrupted during wait: revision 1 is applied but its readiness was not confirmed" in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("moorage-values-*")), "private values files must not survive an interrupt"
    assert project.cluster.release()["revisions"][-1]["status"] == "deployed", "helm was not cut half-way"


def test_doctor_checks_the_cluster_and_the_tools_it_needs(project, tmp_path):
    report = json.loads(project.inv("doctor", "--json").stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["cluster"]["ok"] and "moorage-fake" in checks["cluster"]["detail"]
    assert checks["context-safety"]["ok"] and checks["helm"]["ok"]
    dead = unreachable_kubeconfig(tmp_path, context="moorage-fake")
    result = project.inv("doctor", "--json", env={"KUBECONFIG": str(dead)})
    assert result.returncode == 1
    failed = {c["name"]: c for c in json.loads(result.stdout)["checks"] if not c["ok"]}
    assert "is unreachable" in failed["cluster"]["detail"] and failed["cluster"]["hint"]


def test_logs_show_a_components_pods(project):
    project.deploy_json()
    pod = f"{project.release}-backend-r1-0"
    project.cluster.kubeapi.set_log("moorage-dev", pod, "backend", '{"event": "request", "path": "/healthz"}\n')
    result = project.inv("dev.logs", "--component", "backend")
    assert result.returncode == 0, result.stderr
    assert f"[{pod}/backend]" in result.stdout and '"path": "/healthz"' in result.stdout


def test_logs_without_a_component_show_every_workloads_pods(project):
    project.deploy_json()
    pods = [f"{project.release}-backend-r1-0", f"{project.release}-frontend-r1-0"]
    for pod, container in zip(pods, ("backend", "frontend"), strict=True):
        project.cluster.kubeapi.set_log("moorage-dev", pod, container, f"hello from {container}\n")
    result = project.inv("dev.logs")
    assert result.returncode == 0, result.stderr
    assert f"[{pods[0]}/backend] hello from backend" in result.stdout
    assert f"[{pods[1]}/frontend] hello from frontend" in result.stdout


def test_port_forward_without_a_service_forwards_every_service_of_the_release_until_ctrl_c(project):
    import re
    import signal
    import subprocess
    import urllib.request

    project.deploy_json()
    import yaml

    manifest = [d for d in yaml.safe_load_all(project.cluster.release()["revisions"][-1]["manifest"]) if d]
    services = sorted({doc["metadata"]["name"] for doc in manifest if doc.get("kind") == "Service"
                       and doc["spec"].get("selector") and doc["spec"].get("clusterIP") != "None"})
    assert f"{project.release}-backend" in services
    proc = subprocess.Popen([str(Path(sys.executable).with_name("inv")), "dev.port-forward"], cwd=project.root, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **project.cluster.env()})
    lines = []
    while not lines or lines[-1] != "(Ctrl-C to stop)\n":
        line = proc.stdout.readline()
        assert line, f"dev.port-forward ended early: {''.join(lines)} {proc.stderr.read()}"
        lines.append(line)
    forwarded = dict(re.findall(r"forwarding (http://127\.0\.0\.1:\d+) -> svc/([^:]+):\d+", "".join(lines)))
    assert sorted(set(forwarded.values())) == services, lines
    backend = next(url for url, svc in forwarded.items() if svc == f"{project.release}-backend")
    with urllib.request.urlopen(f"{backend}/healthz", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "port-forward stopped" in out and "Traceback" not in err


def test_port_forward_with_a_port_but_no_service_is_one_line(project):
    result = project.inv("dev.port-forward", "--port", "8000")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[0] == "error: --port and --local-port pick a port of one Service " \
        "(fix: add --service NAME)"


def _migrate_to_head_during_upgrade(database_url: str) -> str:
    code = ("import sys; from tests.fixtures.servers import alembic; "
            f"alembic('upgrade', 'head', database_url={database_url!r})")
    return f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_a_failed_upgrade_whose_migration_ran_is_held_not_rolled_back(project, postgres_database):
    from tests.fixtures.servers import alembic

    alembic("upgrade", "0001", database_url=postgres_database.url)
    env = {"DATABASE_URL": postgres_database.url, "CI": "true"}
    assert json.loads(project.inv("deploy", "--env", "staging", "--json", env=env).stdout)["status"] == "deployed"
    project.cluster.controller.behaviour["backend"] = "crashloop"
    (project.root / "backend" / "main.txt").write_text("backend v2\n")
    result = project.inv("deploy", "--env", "staging", "--json",
                         env={**env, "FAKE_HELM_POST_UPGRADE": _migrate_to_head_during_upgrade(postgres_database.url)})
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "not rolling back: the upgrade's migration moved the database from 0001 to 0002" in err
    assert "0002 is not declared backward-compatible" in err
    assert "go back with the data: inv dev.rollback --env staging --revision 1 --restore " in err
    assert "pre-upgrade" in err.split("--restore ", 1)[1].split()[0]
    revisions = project.cluster.release()["revisions"]
    assert [r["revision"] for r in revisions] == [1, 2], "no rollback revision was made"


def test_a_failed_upgrade_that_migrated_nothing_still_rolls_back(project, postgres_database):
    from tests.fixtures.servers import alembic

    alembic("upgrade", "head", database_url=postgres_database.url)
    env = {"DATABASE_URL": postgres_database.url, "CI": "true"}
    assert json.loads(project.inv("deploy", "--env", "staging", "--json", env=env).stdout)["status"] == "deployed"
    project.cluster.controller.behaviour["backend"] = "crashloop"
    (project.root / "backend" / "main.txt").write_text("backend v2\n")
    result = project.inv("deploy", "--env", "staging", env=env)
    assert result.returncode == 1
    assert "not rolling back" not in result.stderr and "rolling back to revision 1" in result.stdout + result.stderr


def test_a_second_deploy_of_the_same_release_is_refused_naming_the_first(project):
    from moorage.core.lock import hold, scope_name

    project.inv("dev.deploy")  # installed: the next deploy would upgrade
    (project.root / "worker" / "main.txt").write_text("worker v2\n")
    scope = scope_name("release", "dev", "moorage-dev", project.release)
    with hold(project.root, scope, f"a deploy of {project.release} to dev"):
        result = project.inv("dev.deploy")
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert f"a deploy of {project.release} to dev (pid {os.getpid()}" in line and "is already running" in line
    assert len(project.cluster.release()["revisions"]) == 1, "nothing was upgraded"
    assert project.inv("dev.deploy").returncode == 0, "the lock is free again once its holder is done"
