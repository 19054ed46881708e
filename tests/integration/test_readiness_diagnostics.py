"""What a failed wait shows on screen and writes for CI, against the fake API server."""

from __future__ import annotations

import io

import pytest
import yaml

from moorage import kube
from moorage.core.errors import OperationFailed
from moorage.core.report import Reporter
from moorage.readiness import Resource, collect_diagnostics, explain_failure, wait_for, wait_with_view
from tests.fixtures.kubeapi import kubeapi, load_object, load_objects, merge  # noqa: F401 - kubeapi is a fixture

NS = "shop"
CRASHING = "backend-6d9c7b8f5d-q9w8e"
SELECTOR = "app.kubernetes.io/instance=shop"


@pytest.fixture
def failing(kubeapi):  # noqa: F811 - the fixture imported above
    """A release whose new backend pod crash-loops, with its events and logs."""
    kubeapi.apply(load_object("deployment"))
    kubeapi.apply_all(load_objects("replicaset"))
    kubeapi.apply(load_object("pod"))
    doc = next(d for d in load_objects("pod-statuses") if d["state"] == "crashloop")
    pod = merge(load_object("pod"), {"metadata": {"name": CRASHING}})
    pod["status"] = doc["status"]
    kubeapi.apply(pod)
    kubeapi.apply_all(load_objects("events"))
    kubeapi.set_log(NS, CRASHING, "backend", "".join(f"boot line {i}\n" for i in range(50)))
    kubeapi.set_log(NS, CRASHING, "backend", "sqlalchemy.exc.OperationalError: could not connect\n", previous=True)
    kubeapi.set_log(NS, "backend-6d9c7b8f5d-x7k2p", "backend", "INFO: Application startup complete.\n")
    return kubeapi


@pytest.fixture
def api(kubeapi):  # noqa: F811
    return kube.client(kubeapi.context, str(kubeapi.kubeconfig))


def test_bundle_holds_objects_events_logs_and_extra_files(failing, api, tmp_path):
    out = collect_diagnostics(api, NS, SELECTOR, tmp_path / "diag", {"helm-status.txt": "STATUS: failed\n"})
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"objects/deployment-backend.yaml", f"objects/pod-{CRASHING}.yaml", "objects/replicaset-backend-6d9c7b8f5d.yaml",
            "events.yaml", "events.txt", f"logs/{CRASHING}/backend.log", f"logs/{CRASHING}/backend.previous.log",
            "logs/backend-6d9c7b8f5d-x7k2p/backend.log", "helm-status.txt"} <= files
    assert "errors.txt" not in files
    deployment = yaml.safe_load((out / "objects/deployment-backend.yaml").read_text())
    assert (deployment["kind"], deployment["status"]["replicas"]) == ("Deployment", 2)
    assert "OperationalError" in (out / f"logs/{CRASHING}/backend.previous.log").read_text()
    assert "BackOff" in (out / "events.txt").read_text()


def test_bundle_fetches_previous_logs_only_for_restarted_containers(failing, api, tmp_path):
    collect_diagnostics(api, NS, SELECTOR, tmp_path / "diag")
    previous = [p for _m, p, q in failing.requested("/log") if q.get("previous") == ["true"]]
    assert previous == [f"/api/v1/namespaces/{NS}/pods/{CRASHING}/log"]


def test_extra_file_outside_the_bundle_is_refused(failing, api, tmp_path):
    out = collect_diagnostics(api, NS, SELECTOR, tmp_path / "diag", {"../escape.txt": "x"})
    assert not (tmp_path / "escape.txt").exists()
    assert "outside the bundle" in (out / "errors.txt").read_text()


def test_explanation_shows_events_of_the_failing_pod_and_log_tails(failing, api):
    result = wait_for(api, [Resource("Deployment", "backend", NS)], timeout=10)
    out = io.StringIO()
    explain_failure(api, result, Reporter(stream=out, tty=False), tail_lines=5)
    text = out.getvalue()
    assert "readiness failed: deployment/backend: failed pod backend-6d9c7b8f5d-q9w8e container backend" in text
    assert "BackOff  pod/backend-6d9c7b8f5d-q9w8e: Back-off restarting failed container" in text
    assert "unrelated" not in text
    assert "| boot line 49" in text and "| boot line 44" not in text
    assert "(previous, last 5 lines)" in text and "| sqlalchemy.exc.OperationalError" in text
    tails = [q for _m, _p, q in failing.requested("/log")]
    assert all(q.get("tailLines") == ["5"] for q in tails)


def test_wait_with_view_raises_operation_failed_and_writes_the_bundle(failing, api, tmp_path):
    out = io.StringIO()
    with pytest.raises(OperationFailed) as info:
        wait_with_view(api, [Resource("Deployment", "backend", NS)], 10, Reporter(stream=out, tty=False),
                       label_selector=SELECTOR, diagnostics_dir=tmp_path / "diag",
                       extra={"helm-history.txt": "REVISION 2 failed\n"})
    assert info.value.exit_code == 1
    assert str(tmp_path / "diag") in info.value.hint
    assert (tmp_path / "diag" / "helm-history.txt").exists()
    assert "CrashLoopBackOff" in info.value.message
