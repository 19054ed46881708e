"""One backup system, on the real local cluster: a backup the chart's CronJob takes in the cluster is listed,
fetched, verified, restored and drilled by the same `inv backup.*` tasks as a local one; the chart's drill
CronJob drills it in the cluster and `backup.list` shows that drill.

The reference app is deployed with `inv dev.deploy` (as tests/e2e/test_deploy_real_cluster.py does) into a
namespace and release of this module's own, with the backup CronJob on (its image: the local stand-in
PostgreSQL image). A CronJob is triggered as a Job, as `kubectl create job --from=cronjob/...` does. The
tests run in order on that one release.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.reference import copy_project, data_values, load_data_images
from tests.fixtures.tools import missing, require_docker

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))
SECRET = f"e2e-{uuid.uuid4().hex[:10]}"
ENV = "cronjob"
NAMESPACE = "moorage-e2e-backup"
RELEASE = "moorage"
CRONJOB = f"{RELEASE}-backup"
DRILL_CRONJOB = f"{RELEASE}-backup-drill"
CA_BUNDLE = Path(os.environ.get("MOORAGE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
BACKUP_VALUES = {"enabled": True, "schedule": "0 3 * * *", "retention": 3,
                 "image": {"repository": "local/postgres", "tag": "15", "pullPolicy": "Never"},
                 "persistence": {"size": "1Gi"},
                 "drill": {"enabled": True, "checks": [
                     {"name": "items-kept", "sql": "SELECT count(*) = 3 FROM items WHERE name LIKE 'cron %'"}]}}


class Project:
    def __init__(self, root: Path, cluster):
        self.root, self.cluster = root, cluster
        from moorage import kube

        self.api = kube.client(cluster.context, cluster.kubeconfig)

    @property
    def backups(self) -> Path:
        return self.root / "backups" / ENV

    def inv(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        child = {**os.environ, "KUBECONFIG": self.cluster.kubeconfig,
                 "CONTAINERD_ADDRESS": self.cluster.containerd_address,
                 "MOORAGE_PYTHON_IMAGE": os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim"),
                 "MOORAGE_NGINX_IMAGE": os.environ.get("MOORAGE_NGINX_IMAGE", "local/nginx:bookworm")}
        if CA_BUNDLE.is_file():
            child.setdefault("MOORAGE_CA_BUNDLE", str(CA_BUNDLE))
        for key in ("MOORAGE_ENV", "DATABASE_URL", "POSTGRES_PASSWORD"):
            child.pop(key, None)
        return subprocess.run([INV, *args], cwd=self.root, capture_output=True, text=True, env=child,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        result = self.inv(*args, **kw)
        assert result.returncode == 0, (f"inv {' '.join(args)} exited {result.returncode}:\n"
                                        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def psql(self, sql: str) -> str:
        result = self.cluster.kubectl("-n", NAMESPACE, "exec", f"{RELEASE}-postgresql-0", "-c", "postgresql", "--",
                                      "sh", "-c", f'psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{sql}"')
        return result.stdout.strip()

    def listed(self) -> list[dict]:
        return json.loads(self.ok("backup.list", "--json").stdout)["backups"]

    def reader_pods(self) -> list[dict]:
        from moorage import kube

        return kube.list_pods(self.api, NAMESPACE, "app.kubernetes.io/component=backup-reader")

    def run_cronjob(self, cronjob: str = CRONJOB) -> str:
        """A Job from ``cronjob`` (what `kubectl create job --from=cronjob/NAME` does), waited for; its name."""
        from kubernetes.client import BatchV1Api

        from moorage import kube, readiness

        batch = BatchV1Api(self.api)
        cron = kube.read_json(batch.read_namespaced_cron_job(cronjob, NAMESPACE, _preload_content=False))
        name = f"{cronjob}-manual-{uuid.uuid4().hex[:5]}"
        template = cron["spec"]["jobTemplate"]
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": NAMESPACE, "labels": template["metadata"].get("labels", {}),
                            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob,
                                                 "uid": cron["metadata"]["uid"], "controller": True}]},
               "spec": template["spec"]}
        batch.create_namespaced_job(NAMESPACE, job, _preload_content=False)
        result = readiness.wait_for(self.api, [readiness.Resource("Job", name, NAMESPACE)], 300)
        if not result.ok:
            logs = self.cluster.kubectl("-n", NAMESPACE, "logs", f"job/{name}", check=False)
            pytest.fail(f"job {name} {result.verdict}: {result.reason}\n{logs.stdout}{logs.stderr}")
        return name


@pytest.fixture(scope="module")
def project(real_cluster, tmp_path_factory):
    require_docker()
    for tool in ("helm", "ctr"):
        if shutil.which(tool) is None:
            missing(f"'{tool}' is not installed")
    import yaml

    from moorage.helm import merge

    root = tmp_path_factory.mktemp("e2e-backup") / "project"
    copy_project(root)
    values = data_values()
    values.update(backup=BACKUP_VALUES, **{"global": {"environment": ENV}})
    dev = yaml.safe_load((REPO / "environments" / "dev.yaml").read_text())
    (root / "environments" / f"{ENV}.yaml").write_text(yaml.safe_dump(merge(dev, values)))
    config = yaml.safe_load((REPO / "invoke.yaml").read_text())
    config["moorage"]["release"] = RELEASE
    config["moorage"]["environments"] = {ENV: {
        "namespace": NAMESPACE, "context": real_cluster.context, "cluster": "containerd-local", "timeout": 600,
        "required_secrets": ["POSTGRES_PASSWORD"],
    }}
    config["moorage"]["default_env"] = ENV
    config["backup"] = {"drill_checks": [
        {"name": "items-kept", "sql": "SELECT count(*) = 3 FROM items WHERE name LIKE 'cron %'"}]}
    (root / "invoke.yaml").write_text(yaml.safe_dump(config))
    (root / ".env").write_text(f"POSTGRES_PASSWORD={SECRET}\n")
    load_data_images(real_cluster)
    proj = Project(root, real_cluster)
    yield proj
    proj.inv("dev.undeploy", "--purge", "--yes", timeout=300)
    real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="module")
def taken(project) -> str:
    """The release deployed with three known items, and one CronJob run: the name of its backup."""
    project.ok("dev.deploy")
    project.psql("INSERT INTO items (name) VALUES ('cron 1'), ('cron 2'), ('cron 3')")
    project.run_cronjob()
    scheduled = [b for b in project.listed() if b["name"].endswith(f"-{ENV}-scheduled")]
    assert len(scheduled) == 1, scheduled
    return scheduled[0]["name"]


def test_the_cronjob_backup_is_listed_in_cluster_with_the_metadata_of_a_local_one(project, taken):
    (row,) = [b for b in project.listed() if b["name"] == taken]
    assert row["location"] == "in-cluster" and row["status"] == "ok" and row["kind"] == "ordinary"
    assert row["environment"] == ENV and row["database"] == "moorage" and row["alembic_heads"] == ["0002"]
    assert row["size"] > 0 and len(row["sha256"]) == 64
    assert not project.backups.exists() or not list(project.backups.glob("*.dump")), "listing fetches nothing"
    human = project.ok("backup.list").stdout
    assert taken in human and "in-cluster" in human
    assert project.reader_pods() == [], "the reader pod is deleted when the command ends"


def test_the_drill_cronjob_drills_the_backup_in_cluster_and_the_list_shows_that_drill(project, taken):
    before = project.psql("SELECT datname FROM pg_database ORDER BY 1")
    job = project.run_cronjob(DRILL_CRONJOB)
    logs = project.cluster.kubectl("-n", NAMESPACE, "logs", f"job/{job}").stdout
    assert "check items-kept: ok" in logs and "drill passed" in logs
    assert project.psql("SELECT datname FROM pg_database ORDER BY 1") == before, "the throwaway database is left"
    (row,) = [b for b in project.listed() if b["name"] == taken]
    drill = row["last_drill"]
    assert drill["ok"] is True and drill["made_by"] == "cronjob" and drill["dropped"] is True
    assert "items-kept" in [c["name"] for c in drill["checks"]]
    human = next(line for line in project.ok("backup.list").stdout.splitlines() if taken in line)
    assert f"ok {drill['at'][:10]}" in human, human
    assert SECRET not in logs


def test_verify_fetches_the_backup_and_checks_it_like_a_local_one(project, taken):
    result = project.ok("backup.verify", taken)
    assert "fetching" in result.stdout and taken in result.stdout
    meta = json.loads((project.backups / f"{taken}.json").read_text())
    assert meta["fetched_from"] == f"in-cluster {NAMESPACE}/pvc/{CRONJOB}" and meta["made_by"] == "cronjob"
    assert set(meta["row_counts"]) >= {"public.items", "public.alembic_version"}
    assert meta["row_counts"]["public.items"] == 3
    (row,) = [b for b in project.listed() if b["name"] == taken]
    assert row["location"] == "local+in-cluster"
    assert project.reader_pods() == []


def test_restore_of_the_cronjob_backup_brings_the_data_back(project, taken):
    project.psql("DELETE FROM items")
    assert project.psql("SELECT count(*) FROM items") == "0"
    project.ok("backup.restore", taken, "--yes")
    assert project.psql("SELECT string_agg(name, ',' ORDER BY name) FROM items") == "cron 1,cron 2,cron 3"


def test_a_drill_of_the_cronjob_backup_runs_through_the_pod_and_passes(project, taken):
    before = project.psql("SELECT datname FROM pg_database ORDER BY 1")
    result = project.ok("backup.drill", taken)
    assert f"drill of {taken} passed" in result.stdout and "items-kept" in result.stdout
    assert project.psql("SELECT datname FROM pg_database ORDER BY 1") == before
    (row,) = [b for b in project.listed() if b["name"] == taken]
    assert row["last_drill"]["ok"] is True and row["last_drill"]["target"].startswith(f"pod {NAMESPACE}/")


def test_fetch_of_the_newest_cronjob_backup(project, taken):
    project.psql("INSERT INTO items (name) VALUES ('cron 4')")
    project.run_cronjob()
    newest = max(b["name"] for b in project.listed() if b["location"] == "in-cluster")
    assert newest > taken
    result = project.ok("backup.fetch", "latest")
    assert newest in result.stdout
    meta = json.loads((project.backups / f"{newest}.json").read_text())
    assert meta["row_counts"]["public.items"] == 4
    assert SECRET not in result.stdout + result.stderr + json.dumps(meta)
