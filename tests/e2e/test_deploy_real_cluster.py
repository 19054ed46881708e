"""The whole workflow on a real Kubernetes cluster: `inv dev.deploy` of the reference app, a no-op
re-deploy, `db.migrate` as a Job, `backup.create` / `backup.restore` through the exec stream,
`chart.test`, a broken upgrade that fails fast and rolls back, and `dev.undeploy`.

The cluster is the local upstream one (tests/fixtures/cluster.py); images reach its containerd with
``ctr import`` (cluster kind ``containerd-local``), PostgreSQL and Redis run from the local stand-in
images (scripts/data-images.sh). The tests run in order on one release, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from tests.e2e.reference import REPO, copy_project, data_values, load_data_images
from tests.fixtures.tools import missing, require_docker

pytestmark = pytest.mark.cluster

INV = str(Path(sys.executable).with_name("inv"))
SECRET = f"e2e-{uuid.uuid4().hex[:10]}"
NAMESPACE = "moorage-e2e"
CA_BUNDLE = Path(os.environ.get("MOORAGE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))


class E2E:
    def __init__(self, root: Path, cluster):
        self.root, self.cluster = root, cluster

    def inv(self, *args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([INV, *args], cwd=self.root, capture_output=True, text=True, env=self.env(env),
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def env(self, env: dict | None = None) -> dict[str, str]:
        """The environment of an ``inv`` run: this cluster, the stand-in base images."""
        child = {**os.environ, "KUBECONFIG": self.cluster.kubeconfig,
                 "CONTAINERD_ADDRESS": self.cluster.containerd_address,
                 "MOORAGE_PYTHON_IMAGE": os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim"),
                 "MOORAGE_NGINX_IMAGE": os.environ.get("MOORAGE_NGINX_IMAGE", "local/nginx:bookworm"),
                 **(env or {})}
        if CA_BUNDLE.is_file():  # pip inside the builds, behind the machine's TLS-inspecting proxy
            child.setdefault("MOORAGE_CA_BUNDLE", str(CA_BUNDLE))
        for key in ("MOORAGE_ENV", "DATABASE_URL", "POSTGRES_PASSWORD"):
            child.pop(key, None)
        child.update(env or {})
        return child

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        result = self.inv(*args, **kw)
        assert result.returncode == 0, f"inv {' '.join(args)} exited {result.returncode}:\n" \
                                       f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result

    def psql(self, sql: str) -> str:
        pod = f"{self.release}-postgresql-0"
        result = self.cluster.kubectl("-n", NAMESPACE, "exec", pod, "-c", "postgresql", "--", "sh", "-c",
                                      f'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{sql}"')
        return result.stdout.strip()

    release = "moorage"


@pytest.fixture(scope="module")
def e2e(real_cluster, tmp_path_factory):
    require_docker()
    for tool in ("helm", "ctr"):
        if shutil.which(tool) is None:
            missing(f"'{tool}' is not installed")
    root = tmp_path_factory.mktemp("e2e") / "project"
    copy_project(root)
    data = data_values()
    import yaml

    dev = yaml.safe_load((REPO / "environments" / "dev.yaml").read_text())
    from moorage.helm import merge

    # The pipeline under test deploys built images; live update (dev.watch's) has its own e2e module.
    data.update({component: {**data.get(component, {}), "liveUpdate": {"enabled": False}}
                 for component in ("backend", "worker")})
    (root / "environments" / "e2e.yaml").write_text(yaml.safe_dump(merge(dev, data)))
    config = yaml.safe_load((REPO / "invoke.yaml").read_text())
    config["moorage"]["environments"] = {"e2e": {
        "namespace": NAMESPACE, "context": real_cluster.context, "cluster": "containerd-local", "timeout": 600,
        "required_secrets": ["POSTGRES_PASSWORD"],
        "smoke": config["moorage"]["environments"]["dev"]["smoke"],
    }}
    config["moorage"]["default_env"] = "e2e"
    (root / "invoke.yaml").write_text(yaml.safe_dump(config))
    (root / ".env").write_text(f"POSTGRES_PASSWORD={SECRET}\n")
    load_data_images(real_cluster)
    project = E2E(root, real_cluster)
    yield project
    project.inv("dev.undeploy", "--purge", "--yes", timeout=300)
    real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_first_deploy_installs_migrates_and_passes_smoke_tests(e2e):
    result = e2e.ok("dev.deploy", "--json")
    summary = json.loads(result.stdout)
    assert summary["status"] == "deployed" and summary["revision"] == 1
    # delivered only where the node lacked them (a reused cluster may have them from an earlier run)
    assert set(summary["delivered"]) <= {"backend", "frontend", "worker"}
    on_node = subprocess.run(["ctr", "--address", e2e.cluster.containerd_address, "-n", "k8s.io", "images", "ls",
                              "-q"], capture_output=True, text=True, check=True).stdout.split()
    for ref in summary["images"].values():
        assert any(name.endswith(ref) for name in on_node), f"{ref} is not on the node"
    assert summary["smoke"] and all(s["ok"] for s in summary["smoke"]), summary["smoke"]
    assert SECRET not in result.stdout + result.stderr
    # the migration Job ran against the in-chart PostgreSQL without a hook deadlock
    assert e2e.psql("SELECT version_num FROM alembic_version") == "0002"


def test_second_deploy_with_nothing_changed_does_nothing(e2e):
    summary = json.loads(e2e.ok("dev.deploy", "--json").stdout)
    assert summary["status"] == "up-to-date"
    assert summary["built"] == [] and summary["delivered"] == [] and summary["revision"] == 1


def test_db_migrate_runs_as_a_job_and_status_is_up_to_date(e2e):
    result = e2e.ok("db.migrate", "--yes")
    assert "completed" in result.stdout
    # no workload configured: the release's one running the image whose context holds alembic.ini
    assert f"a Job from deployment {NAMESPACE}/moorage-backend (its image" in result.stdout
    status = json.loads(e2e.ok("db.status", "--json").stdout)
    assert status["up_to_date"] and status["current"] == ["0002"]


def test_an_item_created_through_the_frontend_is_processed_by_the_worker(e2e):
    import httpx

    from moorage import kube

    api = kube.client(e2e.cluster.context, e2e.cluster.kubeconfig)
    with kube.port_forward(api, NAMESPACE, f"{e2e.release}-frontend", 8080) as port:
        created = httpx.post(f"http://127.0.0.1:{port}/api/items", json={"name": "kept by the backup"}, timeout=20)
        assert created.status_code == 201, created.text
        item = created.json()
        assert worker_logged(api, e2e.release, "item processed", item["id"], timeout=60), \
            "no worker logged that it processed the item within 60s"
        seen = httpx.get(f"http://127.0.0.1:{port}/api/items/{item['id']}", timeout=20).json()
    assert seen["status"] == "processed" and seen["result"], seen


def test_port_forward_puts_every_service_of_the_release_on_loopback_until_ctrl_c(e2e):
    import re
    import signal
    import urllib.request

    proc = subprocess.Popen([INV, "dev.port-forward"], cwd=e2e.root, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e2e.env())
    try:
        lines: list[str] = []
        while not lines or lines[-1] != "(Ctrl-C to stop)\n":
            line = proc.stdout.readline()
            assert line, f"dev.port-forward ended early: {''.join(lines)} {proc.stderr.read()}"
            lines.append(line)
        forwarded = {svc: url for url, svc in
                     re.findall(r"forwarding (http://127\.0\.0\.1:\d+) -> svc/([^:]+):\d+", "".join(lines))}
        assert {f"{e2e.release}-{name}" for name in ("backend", "frontend", "postgresql", "redis")} <= set(forwarded)
        with urllib.request.urlopen(f"{forwarded[e2e.release + '-frontend']}/api/items", timeout=20) as answer:
            assert answer.status == 200 and isinstance(json.loads(answer.read()), list)
        with urllib.request.urlopen(f"{forwarded[e2e.release + '-backend']}/healthz", timeout=20) as answer:
            assert answer.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "port-forward stopped" in out and "Traceback" not in err, err


def test_logs_without_a_component_show_the_pods_of_every_workload(e2e):
    import re

    result = e2e.ok("dev.logs", "--tail", "5")
    pods = {line[1:].split("/", 1)[0] for line in result.stdout.splitlines() if line.startswith("[")}
    # a Deployment's pod is <name>-<replicaset hash>-<suffix>, a StatefulSet's <name>-<ordinal>
    workloads = {re.sub(r"-[a-z0-9]+-[a-z0-9]{5}$|-\d+$", "", pod) for pod in pods}
    assert {f"{e2e.release}-{w}" for w in ("backend", "worker", "frontend", "postgresql", "redis")} <= workloads, \
        result.stdout[-2000:]


def worker_logged(api, release: str, msg: str, item_id: int, timeout: float) -> bool:
    """Whether a worker pod logs ``msg`` for the item within ``timeout`` seconds: its logs are followed
    from their start, so a line written before the call counts too."""
    from moorage import kube

    seen = threading.Event()

    def on_line(line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if isinstance(record, dict) and record.get("msg") == msg and record.get("item_id") == item_id:
            seen.set()

    def follow(pod: str) -> None:
        try:
            kube.follow_log(api, NAMESPACE, pod, "worker", on_line=on_line, stop=seen)
        except Exception:  # noqa: BLE001, S110 - a pod that went away: the others may still say it
            pass

    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=worker"
    for pod in kube.list_pods(api, NAMESPACE, selector):
        threading.Thread(target=follow, args=(pod["metadata"]["name"],), daemon=True).start()
    return seen.wait(timeout)


def test_backup_and_restore_through_the_exec_stream(e2e):
    before = e2e.psql("SELECT count(*) FROM items")
    assert int(before) >= 1
    e2e.ok("backup.create")
    e2e.ok("backup.verify", "latest")
    e2e.psql("DELETE FROM items")
    assert e2e.psql("SELECT count(*) FROM items") == "0"
    e2e.ok("backup.restore", "latest", "--yes")
    assert e2e.psql("SELECT count(*) FROM items") == before
    assert e2e.psql("SELECT count(*) FROM items WHERE name = 'kept by the backup' AND status = 'processed'") == "1"


def test_chart_tests_pass(e2e):
    e2e.ok("chart.test")


def test_broken_upgrade_fails_fast_with_the_reason_and_rolls_back(e2e):
    main = e2e.root / "app" / "backend" / "moorage_backend" / "main.py"
    good = main.read_text()
    main.write_text(good + "\nraise SystemExit('broken on purpose by the e2e test')\n")
    try:
        result = e2e.inv("dev.deploy")
    finally:
        main.write_text(good)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-4000:]
    assert "deployment/moorage-backend: failed pod" in out and "container backend: CrashLoopBackOff" in out
    assert "broken on purpose by the e2e test" in out, "the crashed container's log tail is shown"
    assert "rolled back to revision" in out
    status = json.loads(e2e.ok("dev.status", "--json").stdout)
    assert status["state"] == "deployed"
    assert all(r["state"] == "ready" for r in status["resources"]), status["resources"]


MIGRATION_0003 = '''"""a column the previous code does not know

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("priority", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("items", "priority")
'''


def test_broken_upgrade_whose_migration_ran_holds_and_stops_the_previous_code(e2e):
    versions = e2e.root / "app" / "backend" / "migrations" / "versions"
    (versions / "0003_priority.py").write_text(MIGRATION_0003)
    main = e2e.root / "app" / "backend" / "moorage_backend" / "main.py"
    good = main.read_text()
    main.write_text(good + "\nraise SystemExit('broken after migrating, on purpose')\n")
    try:
        result = e2e.inv("dev.deploy")
    finally:
        main.write_text(good)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-4000:]
    assert "not rolling back: the upgrade's migration moved the database from 0002 to 0003" in out, out[-4000:]
    assert "two ways out:" in out and "inv db.downgrade --env e2e --revision 0002 --yes" in out
    assert e2e.psql("SELECT version_num FROM alembic_version") == "0003"
    sets = json.loads(e2e.cluster.kubectl("-n", NAMESPACE, "get", "replicasets", "-l",
                                          "app.kubernetes.io/component=backend", "-o", "json").stdout)["items"]
    newest = max(sets, key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    running_old = [rs["metadata"]["name"] for rs in sets if rs is not newest and rs["spec"].get("replicas")]
    assert running_old == [], "no pod of the previous code serves on the new schema"
    history = json.loads(e2e.ok("dev.status", "--json").stdout)["history"]
    assert "rollback" not in history[-1]["description"].lower()


def test_undeploy_keeps_data_volumes(e2e):
    result = e2e.ok("dev.undeploy", "--yes")
    assert "kept" in result.stdout
    claims = e2e.cluster.kubectl("-n", NAMESPACE, "get", "pvc", "-o", "name").stdout
    assert f"persistentvolumeclaim/data-{e2e.release}-postgresql-0" in claims
    status = json.loads(e2e.ok("dev.status", "--json").stdout)
    assert status["installed"] is False

