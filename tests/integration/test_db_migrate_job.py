"""`inv db.migrate` as an in-cluster Job against the fake API server: the Job is built from the live
backend Deployment, its logs are streamed, its verdict decides the exit code."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.kubeapi import load_object, merge

REPO = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))
NS = "shop"


@pytest.fixture
def project(tmp_path, kubeapi):
    root = tmp_path / "project"
    (root / "environments").mkdir(parents=True)
    (root / "environments" / "dev.yaml").write_text("{}\n")
    (root / "tasks.py").write_text((REPO / "tasks.py").read_text())
    (root / "invoke.yaml").write_text(
        f"moorage:\n  release: shop\n  environments:\n    dev:\n      namespace: {NS}\n"
        f"      context: {kubeapi.context}\n      timeout: 20\n")
    kubeapi.apply(merge(load_object("deployment"), {"metadata": {"name": "shop-backend"}}))
    return root


def run_migrate(root: Path, kubeapi, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(kubeapi.kubeconfig)}
    env.pop("MOORAGE_ENV", None)
    return subprocess.run([INV, "db.migrate", *args], cwd=root, capture_output=True, text=True, env=env, timeout=120)


def play_job(kubeapi, *, succeed: bool, log: str) -> threading.Thread:
    """Act as the Job controller and kubelet once Moorage has created the Job."""

    def run():
        deadline = time.monotonic() + 30
        # The stored Job, not the POST: the server logs a request before it has stored its object.
        while time.monotonic() < deadline:
            created = [o["metadata"]["name"] for o in list(kubeapi.objects.values()) if o.get("kind") == "Job"]
            if created:
                break
            time.sleep(0.05)
        job_name = created[0]
        job = kubeapi.get("Job", NS, job_name)
        pod = merge(load_object("pod"), {"metadata": {"name": f"{job_name}-x1", "namespace": NS,
                                                      "labels": {"job-name": job_name}, "ownerReferences": None},
                                         "spec": {"containers": [{"name": "migrate", "image": "x"}]},
                                         "status": {"containerStatuses": [{
                                             "name": "migrate", "ready": False, "restartCount": 0, "image": "x",
                                             "state": {"terminated": {"exitCode": 0 if succeed else 1}}}]}})
        kubeapi.set_log(NS, pod["metadata"]["name"], "migrate", log)
        kubeapi.apply(pod)
        time.sleep(0.3)
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
