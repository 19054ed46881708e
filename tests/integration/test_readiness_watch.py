"""The readiness engine against a server that speaks the Kubernetes API (watch streams, 410 Gone)."""

from __future__ import annotations

import io
import re
import threading

import pytest

from moorage import kube
from moorage.core.report import Reporter
from moorage.readiness import LiveView, Resource, State, Verdict, wait_for
from moorage.readiness import wait as readiness_wait
from tests.fixtures.kubeapi import kubeapi, load_object, load_objects, merge  # noqa: F401 - kubeapi is a fixture

NS = "shop"
BACKEND = Resource("Deployment", "backend", NS)


@pytest.fixture
def api(kubeapi):  # noqa: F811 - the fixture imported above
    return kube.client(kubeapi.context, str(kubeapi.kubeconfig))


def deployed(kubeapi) -> dict:  # noqa: F811
    """Revision 2 just applied by helm: the Deployment, its ReplicaSets and one running pod of the new one."""
    deploy = kubeapi.apply(load_object("deployment"))
    kubeapi.apply_all(load_objects("replicaset"))
    kubeapi.apply(load_object("pod"))
    return deploy


def rollout(deploy: dict) -> list[dict]:
    return [merge(deploy, {"status": doc["status"]}) for doc in load_objects("deployment-rollout")]


def broken_pod(state: str) -> dict:
    doc = next(d for d in load_objects("pod-statuses") if d["state"] == state)
    pod = merge(load_object("pod"), {"metadata": {"name": doc["name"]}})
    pod["status"] = doc["status"]
    return pod


def test_deployment_rolling_out_through_status_updates_is_ready(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    seen: list[State] = []
    kubeapi.play(rollout(deploy), when_watched="deployments")
    result = wait_for(api, [BACKEND], timeout=10, on_change=lambda s: seen.append(s.state))
    assert result.verdict == Verdict.READY
    assert seen[-1] == State.READY
    assert State.PROGRESSING in seen


def test_crashlooping_pod_fails_the_wait_naming_pod_container_and_reason(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    kubeapi.play([rollout(deploy)[0], broken_pod("crashloop")], when_watched="pods")
    result = wait_for(api, [BACKEND], timeout=10)
    assert result.verdict == Verdict.FAILED
    assert result.failed == BACKEND
    assert "pod backend-6d9c7b8f5d-q9w8e container backend: CrashLoopBackOff" in result.reason
    assert [(p.pod, p.reason) for p in result.problems] == [("backend-6d9c7b8f5d-q9w8e", "CrashLoopBackOff")]


def test_image_pull_backoff_fails_the_wait(kubeapi, api):  # noqa: F811
    deployed(kubeapi)
    kubeapi.apply(broken_pod("imagepull"))
    result = wait_for(api, [BACKEND], timeout=10)
    assert result.verdict == Verdict.FAILED
    assert "ImagePullBackOff: Back-off pulling image \"moorage/backend:5c1e9a0d2b7f\"" in result.reason


def test_crashloop_of_a_pod_from_the_old_replicaset_does_not_fail_the_rollout(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    old = broken_pod("crashloop")
    old["metadata"].update(name="backend-7f9c6d5b8c-old01",
                           ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "backend-7f9c6d5b8c",
                                             "controller": True, "uid": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}])
    old["metadata"]["labels"]["pod-template-hash"] = "7f9c6d5b8c"
    kubeapi.apply(old)
    kubeapi.play(rollout(deploy), when_watched="deployments")
    assert wait_for(api, [BACKEND], timeout=10).verdict == Verdict.READY


def unscheduled(kubeapi) -> dict:  # noqa: F811
    """Revision 2 applied, its one pod Unschedulable (a full node)."""
    deploy = kubeapi.apply(load_object("deployment"))
    kubeapi.apply_all(load_objects("replicaset"))
    kubeapi.apply(broken_pod("unschedulable"))
    return deploy


def test_a_pod_unschedulable_for_a_moment_does_not_fail_the_rollout(kubeapi, api):  # noqa: F811
    deploy = unscheduled(kubeapi)
    placed = merge(load_object("pod"), {"metadata": {"name": "backend-6d9c7b8f5d-k8j7h"}})
    seen: list[str] = []
    kubeapi.play([placed, *rollout(deploy)], when_watched="pods", delay=0.3)
    result = wait_for(api, [BACKEND], timeout=10, on_change=lambda s: seen.append(s.message))
    assert result.verdict == Verdict.READY
    assert any("Unschedulable: 0/1 nodes are available: 1 Insufficient memory" in m
               and "waiting 10s for the scheduler to place it" in m for m in seen)


def test_a_pod_that_stays_unschedulable_fails_the_wait_when_its_grace_ends(kubeapi, api, monkeypatch):  # noqa: F811
    unscheduled(kubeapi)
    monkeypatch.setattr(readiness_wait, "UNSCHEDULABLE_GRACE", 0.5)
    result = wait_for(api, [BACKEND], timeout=10)
    assert result.verdict == Verdict.FAILED
    assert 0.5 <= result.elapsed < 5
    assert result.reason.startswith("deployment/backend: failed pod backend-6d9c7b8f5d-k8j7h: Unschedulable: 0/1 nodes")
    assert [(p.pod, p.reason) for p in result.problems] == [("backend-6d9c7b8f5d-k8j7h", "Unschedulable")]


def test_job_past_its_backoff_limit_fails_the_wait(kubeapi, api):  # noqa: F811
    job = kubeapi.apply(load_object("job"))
    failed = next(d for d in load_objects("job-statuses") if d["state"] == "failed")
    kubeapi.play([merge(job, {"status": failed["status"]})], when_watched="jobs")
    result = wait_for(api, [Resource("Job", "shop-migrate", NS)], timeout=10)
    assert result.verdict == Verdict.FAILED
    assert result.reason == "job/shop-migrate: failed BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_progress_deadline_exceeded_fails_the_wait(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    kubeapi.play([merge(deploy, {"status": load_object("deployment-deadline")["status"]})], when_watched="deployments")
    result = wait_for(api, [BACKEND], timeout=10)
    assert result.verdict == Verdict.FAILED
    assert "ProgressDeadlineExceeded" in result.reason


def test_watch_expired_with_410_is_relisted_and_still_reaches_ready(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    kubeapi.play(rollout(deploy), when_watched="deployments", then=kubeapi.expire_watches, delay=0.2)
    result = wait_for(api, [BACKEND], timeout=10)
    assert result.verdict == Verdict.READY
    assert result.relists >= 1
    lists = [q for m, p, q in kubeapi.requested("/deployments") if "watch" not in q]
    assert len(lists) >= 2


def test_dropped_watch_is_resumed_from_its_resource_version_without_relisting(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    kubeapi.play(rollout(deploy), when_watched="deployments", then=kubeapi.drop_watches, delay=0.2)
    result = wait_for(api, [BACKEND], timeout=10)
    assert result.verdict == Verdict.READY
    watches = [q for m, p, q in kubeapi.requested("/deployments") if "watch" in q]
    lists = [q for m, p, q in kubeapi.requested("/deployments") if "watch" not in q]
    assert len(lists) == 1
    assert len(watches) >= 2
    assert watches[1]["resourceVersion"][0] >= watches[0]["resourceVersion"][0]


def test_timeout_names_what_was_not_ready(kubeapi, api):  # noqa: F811
    deployed(kubeapi)
    kubeapi.apply(load_object("statefulset"))
    result = wait_for(api, [BACKEND, Resource("StatefulSet", "shop-postgresql", NS)], timeout=0.5)
    assert result.verdict == Verdict.TIMEOUT
    assert result.failed == BACKEND
    assert result.reason.startswith("timed out after 0.5s waiting for deployment/backend: progressing")
    assert "statefulset" not in result.reason


def test_missing_resource_times_out_as_not_found(kubeapi, api):  # noqa: F811
    result = wait_for(api, [Resource("Deployment", "ghost", NS)], timeout=0.3)
    assert result.verdict == Verdict.TIMEOUT
    assert "deployment/ghost: pending not found yet" in result.reason


def test_statefulset_job_and_pvcs_of_a_release_are_ready_together(kubeapi, api):  # noqa: F811
    kubeapi.apply(load_object("statefulset"))
    bound, pending = load_objects("pvc")
    kubeapi.apply_all([bound, pending])
    job = kubeapi.apply(load_object("job"))
    consumer = merge(load_object("pod"), {"spec": {"volumes": [
        {"name": "uploads", "persistentVolumeClaim": {"claimName": "shop-uploads"}}]}})
    complete = next(d for d in load_objects("job-statuses") if d["state"] == "complete")
    kubeapi.play([consumer, merge(job, {"status": complete["status"]})], when_watched="jobs")
    resources = [Resource("StatefulSet", "shop-postgresql", NS), Resource("Job", "shop-migrate", NS),
                 Resource("PersistentVolumeClaim", "data-shop-postgresql-0", NS),
                 Resource("PersistentVolumeClaim", "shop-uploads", NS)]
    result = wait_for(api, resources, timeout=10)
    assert result.verdict == Verdict.READY
    assert "used by pod backend-6d9c7b8f5d-x7k2p" in result.states[resources[3]].message


def test_live_view_prints_one_plain_line_per_state_change_without_a_terminal(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    out = io.StringIO()
    kubeapi.play(rollout(deploy), when_watched="deployments")
    with LiveView(Reporter(stream=out, tty=False)) as view:
        wait_for(api, [BACKEND], timeout=10, on_change=view)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("==> ")
    assert any(line.startswith("deployment/backend: progressing") for line in lines)
    assert lines[-1].startswith("deployment/backend: ready 2/2 available")
    assert len(lines) == len(set(lines))


def test_live_view_draws_a_table_on_a_terminal(kubeapi, api):  # noqa: F811
    deploy = deployed(kubeapi)
    out = io.StringIO()
    kubeapi.play(rollout(deploy), when_watched="deployments")
    with LiveView(Reporter(stream=out, tty=True)) as view:
        wait_for(api, [BACKEND], timeout=10, on_change=view)
    text = out.getvalue()
    assert "deployment/backend" in text
    assert "ready" in text


class Screen(io.StringIO):
    """A reporter's stream a test can wait on: :meth:`wait_for` returns once a text has been printed."""

    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.cond = threading.Condition()
        self.tty = tty

    def isatty(self) -> bool:  # a terminal: rich redraws the live table in place
        return self.tty

    def write(self, text: str) -> int:
        with self.cond:
            n = super().write(text)
            self.cond.notify_all()
        return n

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: text in self.getvalue(), timeout):
                raise AssertionError(f"{text!r} was never printed:\n{self.getvalue()}")


def outage_during_the_wait(kubeapi, deploy: dict, screen: Screen, still: str) -> threading.Thread:  # noqa: F811
    """Once the Deployment is watched the API server dies; it comes back after the view said ``still``,
    and the rollout goes on once the view said it is back."""
    failures: list[BaseException] = []

    def script() -> None:
        try:
            kubeapi.wait_for_watchers("deployments")
            kubeapi.go_down()
            screen.wait_for(still)
            kubeapi.come_back()
            screen.wait_for("reachable again")
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failures.append(exc)
        finally:  # the wait ends either way
            if kubeapi.down:
                kubeapi.come_back()
            kubeapi.play(rollout(deploy))

    thread = threading.Thread(target=script, name="outage script", daemon=True)
    thread.failures = failures  # type: ignore[attr-defined]
    thread.start()
    return thread


@pytest.fixture
def quick_outage_reports(monkeypatch):
    monkeypatch.setattr(readiness_wait, "OUTAGE_TICK", 0.1)
    monkeypatch.setattr(LiveView, "OUTAGE_EVERY", 0.5)


def test_live_view_says_the_api_server_is_unreachable_how_long_and_when_it_is_back(
        kubeapi, api, quick_outage_reports):  # noqa: F811
    deploy = deployed(kubeapi)
    screen = Screen()
    script = outage_during_the_wait(kubeapi, deploy, screen, still="still unreachable after")
    with LiveView(Reporter(stream=screen, tty=False)) as view:
        result = wait_for(api, [BACKEND], timeout=60, on_change=view, on_outage=view.outage)
    script.join(10)
    assert not script.failures, script.failures
    assert result.verdict == Verdict.READY, result.reason
    lines = screen.getvalue().splitlines()
    server = re.escape(kubeapi.url)
    down = [i for i, line in enumerate(lines)
            if re.match(rf"API server {server} is unreachable \(connection (lost|refused)\); "
                        r"the watches resume when it is back  \[", line)]
    still = [i for i, line in enumerate(lines)
             if re.match(rf"API server {server} still unreachable after \d+s \(connection refused\)  \[", line)]
    back = [i for i, line in enumerate(lines)
            if re.match(rf"API server {server} is reachable again after \d+s; the watches resumed  \[", line)]
    assert len(down) == 1 and len(back) == 1 and still, lines
    assert down[0] < still[0] and still[-1] < back[0], lines
    assert lines[-1].startswith("deployment/backend: ready 2/2 available"), lines


def test_live_view_on_a_terminal_shows_how_long_the_api_server_has_been_unreachable(
        kubeapi, api, quick_outage_reports):  # noqa: F811
    deploy = deployed(kubeapi)
    screen = Screen(tty=True)
    script = outage_during_the_wait(kubeapi, deploy, screen, still="unreachable for 1s")
    with LiveView(Reporter(stream=screen, tty=True)) as view:
        result = wait_for(api, [BACKEND], timeout=60, on_change=view, on_outage=view.outage)
    script.join(10)
    assert not script.failures, script.failures
    assert result.verdict == Verdict.READY, result.reason
    text = screen.getvalue()
    assert f"API server {kubeapi.url} is unreachable" in text
    assert "the watches resume when it is back" in text
    assert re.search(r"is reachable again after \d+s; the watches resumed", text)


def test_wait_that_times_out_during_an_outage_says_the_api_server_is_unreachable(kubeapi, api):  # noqa: F811
    deployed(kubeapi)
    kubeapi.play([], when_watched="deployments", then=kubeapi.go_down)
    result = wait_for(api, [BACKEND], timeout=3)
    assert result.verdict == Verdict.TIMEOUT
    assert re.search(r"\(API server unreachable for \d+s: connection (refused|lost)\)$", result.reason), result.reason
