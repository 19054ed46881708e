"""`inv db.migrate` / `db.downgrade` as an in-cluster Job against the fake API server: the Job is built from the
live backend Deployment, its logs are streamed, its verdict decides the exit code; outside dev both ask first,
and a downgrade takes a verified backup through the PostgreSQL pod's exec stream before its Job exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from moorage import backup as bk
from tests.fixtures.kubeapi import load_object, merge
from tests.fixtures.tools import require_tool
from tests.integration.db.conftest import fingerprint, seed
from tests.integration.db.test_backup_pod import container, postgresql_pod

REPO = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))
NS = "shop"


@pytest.fixture
def project(tmp_path, kubeapi):
    root = tmp_path / "project"
    (root / "environments").mkdir(parents=True)
    (root / "environments" / "dev.yaml").write_text("{}\n")
    (root / "environments" / "staging.yaml").write_text("{}\n")
    (root / "tasks.py").write_text((REPO / "tasks.py").read_text())
    # the database pod and the migration workload named by configuration (no Helm release here to find them in)
    environment = (f"      namespace: {NS}\n      context: {kubeapi.context}\n      timeout: 20\n"
                   "      database: {selector: 'app.kubernetes.io/instance=shop,app.kubernetes.io/component=postgresql',"
                   " container: postgresql}\n"
                   "      migrations: {workload: deployment/shop-backend}\n")
    (root / "invoke.yaml").write_text(f"moorage:\n  release: shop\n  environments:\n    dev:\n{environment}"
                                      f"    staging:\n{environment}")
    kubeapi.apply(merge(load_object("deployment"), {"metadata": {"name": "shop-backend"}}))
    return root


def run_inv(root: Path, kubeapi, *args: str) -> subprocess.CompletedProcess:
    """``inv ARGS`` without a terminal (stdin is not a TTY), pointed at the fake API server."""
    env = {**os.environ, "KUBECONFIG": str(kubeapi.kubeconfig)}
    for name in ("MOORAGE_ENV", "DATABASE_URL", "MOORAGE_PG_BIN"):
        env.pop(name, None)
    return subprocess.run([INV, *args], cwd=root, capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)


def run_migrate(root: Path, kubeapi, *args: str) -> subprocess.CompletedProcess:
    return run_inv(root, kubeapi, "db.migrate", *args)


def created_jobs(kubeapi) -> list[str]:
    return [o["metadata"]["name"] for o in list(kubeapi.objects.values()) if o.get("kind") == "Job"]


def play_job(kubeapi, *, succeed: bool, log: str, on_created=None) -> threading.Thread:
    """Act as the Job controller and kubelet once Moorage has created the Job (``on_created`` runs first)."""

    def run():
        # The stored Job, not the POST: the server logs a request before it has stored its object.
        with kubeapi.cond:
            assert kubeapi.cond.wait_for(lambda: created_jobs(kubeapi), timeout=60), "no Job was created"
        job_name = created_jobs(kubeapi)[0]
        if on_created is not None:
            on_created(job_name)
        job = kubeapi.get("Job", NS, job_name)
        pod = merge(load_object("pod"), {"metadata": {"name": f"{job_name}-x1", "namespace": NS,
                                                      "labels": {"job-name": job_name}, "ownerReferences": None},
                                         "spec": {"containers": [{"name": "migrate", "image": "x"}]},
                                         "status": {"containerStatuses": [{
                                             "name": "migrate", "ready": False, "restartCount": 0, "image": "x",
                                             "state": {"terminated": {"exitCode": 0 if succeed else 1}}}]}})
        kubeapi.set_log(NS, pod["metadata"]["name"], "migrate", log)
        kubeapi.apply(pod)
        kubeapi.wait_for_watchers("jobs", timeout=30)  # Moorage watches the Job: it will see the verdict as an event
        condition = ({"type": "Complete", "status": "True"} if succeed else
                     {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                      "message": "Job has reached the specified backoff limit"})
        kubeapi.apply(merge(job, {"status": {"conditions": [condition]}}))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_migration_job_runs_with_the_backends_image_and_streams_its_log(project, kubeapi):
    player = play_job(kubeapi, succeed=True, log="INFO Running upgrade 0001 -> 0002, item results\n")
    result = run_migrate(project, kubeapi)
    player.join(5)
    assert result.returncode == 0, result.stderr
    assert "Running upgrade 0001 -> 0002" in result.stdout
    assert "completed" in result.stdout
    job = next(o for o in kubeapi.objects.values() if o.get("kind") == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    backend = kubeapi.get("Deployment", NS, "shop-backend")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == backend["image"]
    assert container["command"] == ["alembic", "upgrade", "head"]
    assert job["spec"]["backoffLimit"] == 0


def test_failed_migration_job_exits_1_with_its_log_tail(project, kubeapi):
    player = play_job(kubeapi, succeed=False, log="ERROR relation \"items\" already exists\n")
    result = run_migrate(project, kubeapi)
    player.join(5)
    assert result.returncode == 1
    assert "BackoffLimitExceeded" in result.stderr
    assert 'relation "items" already exists' in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_backend_deployment_is_bad_input(project, kubeapi):
    kubeapi.delete("Deployment", NS, "shop-backend")
    result = run_migrate(project, kubeapi)
    assert result.returncode == 2
    assert "deployment shop/shop-backend does not exist" in result.stderr
    assert not [r for r in kubeapi.requested("/jobs") if r[0] == "POST"]


# --------------------------------------------------------------------------- guards outside dev


def postgresql_pod_of_shop() -> dict:
    pod = postgresql_pod()
    pod["metadata"].update(name="shop-postgresql-0", namespace=NS,
                           labels={"app.kubernetes.io/instance": "shop", "app.kubernetes.io/component": "postgresql"})
    return pod


@pytest.fixture
def pod_database(kubeapi, postgres_server, postgres_database):
    """The environment's PostgreSQL pod, played by the real test server through the exec stream."""
    require_tool("pg_dump", "pg_restore", "psql")
    seed(postgres_server, postgres_database.name)
    kubeapi.apply(postgresql_pod_of_shop())
    kubeapi.exec_handler = container(postgres_server, postgres_database.name)
    return postgres_server, postgres_database.name


@pytest.mark.postgres
@pytest.mark.parametrize("task", [("db.migrate",), ("db.downgrade", "--revision", "-1")])
def test_in_cluster_migrate_and_downgrade_outside_dev_refuse_without_yes_and_change_nothing(project, kubeapi,
                                                                                           pod_database, task):
    pg, database = pod_database
    before = fingerprint(pg, database)

    result = run_inv(project, kubeapi, *task, "--env", "staging")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing without confirmation" in result.stderr and "'staging'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not [r for r in kubeapi.requested("/jobs") if r[0] == "POST"]
    assert not (project / "backups").exists()
    assert fingerprint(pg, database) == before


@pytest.mark.postgres
def test_in_cluster_downgrade_with_yes_takes_a_verified_backup_through_the_pod_before_its_job(project, kubeapi,
                                                                                             pod_database):
    pg, database = pod_database
    directory = project / "backups" / "staging"
    seen: dict[str, list] = {}

    def backups_when_the_job_appears(job_name: str) -> None:
        seen["backups"] = bk.list_backups(directory)

    player = play_job(kubeapi, succeed=True, log="INFO Running downgrade 0002 -> 0001\n",
                      on_created=backups_when_the_job_appears)
    result = run_inv(project, kubeapi, "db.downgrade", "--revision", "0001", "--env", "staging", "--yes")
    player.join(10)

    assert result.returncode == 0, result.stdout + result.stderr
    (taken,) = seen["backups"]  # it existed before the downgrade Job did
    assert taken.name.endswith("-staging-pre-downgrade") and taken.kind == "safety"
    assert taken.meta["target"] == f"pod {NS}/shop-postgresql-0" and taken.meta["row_counts"]
    assert bk.verify_backup(taken)["tables"] == 3
    assert any("pg_dump" in " ".join(c) for c in kubeapi.exec_handler.calls)
    out = result.stdout
    assert f"backup {taken.name} verified" in out and out.index(taken.name) < out.index("Running downgrade")
    job = next(o for o in kubeapi.objects.values() if o.get("kind") == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["alembic", "downgrade", "0001"]
    assert f"restore with: inv backup.restore {taken.name}" in out


# --------------------------------------------------------------------------- status read in the deployed image

ALEMBIC_HISTORY = """INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
0001 -> 0002 (head), item results
<base> -> 0001, create items
"""


@pytest.mark.postgres
def test_status_reads_the_scripts_in_the_image_when_they_are_not_in_this_checkout(project, kubeapi, postgres_server,
                                                                                  postgres_database):
    """No alembic.ini here (a team that keeps its backend elsewhere): `alembic history` runs in a Job from the
    backend's image, and the pending revisions come from its output and the database's alembic_version."""
    assert not (project / "app" / "backend" / "alembic.ini").exists()
    postgres_server.psql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
                         "INSERT INTO alembic_version VALUES ('0001');", postgres_database.name)
    player = play_job(kubeapi, succeed=True, log=ALEMBIC_HISTORY)
    result = run_inv(project, kubeapi, "db.status", "--json", "--database-url",
                     postgres_server.url_for(postgres_database.name))
    player.join(5)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["current"] == ["0001"] and status["heads"] == ["0002"] and status["up_to_date"] is False
    assert [p["revision"] for p in status["pending"]] == ["0002"]
    job = next(o for o in kubeapi.objects.values() if o.get("kind") == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["alembic", "history"]
    assert postgres_server.password not in result.stdout + result.stderr
