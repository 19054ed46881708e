"""Readiness decisions on real API objects: no server, no cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from moorage.core.errors import UserError
from moorage.readiness import Resource, State, resources_in
from moorage.readiness.rules import (
    daemonset_state,
    deployment_state,
    evaluate,
    job_state,
    owns,
    pod_problem,
    pod_waiting,
    pvc_state,
    selector_matches,
    statefulset_state,
)
from moorage.readiness.watch import InformerCache
from tests.fixtures.kubeapi import load_object, load_objects, merge


def pod_in(state: str) -> dict:
    doc = next(d for d in load_objects("pod-statuses") if d["state"] == state)
    pod = load_object("pod")
    return merge(pod, {"metadata": {"name": doc["name"]}, "status": None}) | {"status": doc["status"]}


def test_deployment_whose_new_generation_is_not_observed_is_progressing():
    state, message = deployment_state(load_object("deployment"))
    assert state == State.PROGRESSING
    assert "observed" in message


def test_deployment_rollout_is_ready_only_at_the_last_status():
    deploy = load_object("deployment")
    states = [deployment_state(merge(deploy, {"status": s["status"]}))[0] for s in load_objects("deployment-rollout")]
    assert states == [State.PROGRESSING, State.PROGRESSING, State.PROGRESSING, State.READY]


def test_deployment_with_old_replicas_left_is_still_progressing():
    deploy = load_object("deployment")
    third = load_objects("deployment-rollout")[2]["status"]  # 2 updated of 2 but 3 replicas in total
    state, message = deployment_state(merge(deploy, {"status": third}))
    assert (state, message) == (State.PROGRESSING, "1 old replicas pending termination")


def test_deployment_past_its_progress_deadline_fails():
    deploy = merge(load_object("deployment"), {"status": load_object("deployment-deadline")["status"]})
    state, message = deployment_state(deploy)
    assert state == State.FAILED
    assert message.startswith("ProgressDeadlineExceeded: ReplicaSet \"backend-6d9c7b8f5d\" has timed out")


def test_statefulset_rolled_out_is_ready():
    assert statefulset_state(load_object("statefulset"))[0] == State.READY


def test_statefulset_with_revisions_differing_is_progressing():
    sts = merge(load_object("statefulset"), {"status": {"updateRevision": "shop-postgresql-77c9d5f6b8"}})
    assert statefulset_state(sts)[0] == State.PROGRESSING


def test_statefulset_with_unready_pods_is_progressing():
    sts = merge(load_object("statefulset"), {"status": {"readyReplicas": 0}})
    assert statefulset_state(sts) == (State.PROGRESSING, "0 of 1 pods ready")


def test_daemonset_with_a_pod_not_updated_is_progressing():
    assert daemonset_state(load_object("daemonset")) == (State.PROGRESSING, "2 of 3 updated pods scheduled")


def test_daemonset_with_all_pods_updated_and_available_is_ready():
    ds = merge(load_object("daemonset"), {"status": {"updatedNumberScheduled": 3, "numberAvailable": 3}})
    assert daemonset_state(ds)[0] == State.READY


def test_running_job_is_progressing_and_complete_job_is_ready():
    job = load_object("job")
    complete = next(d for d in load_objects("job-statuses") if d["state"] == "complete")
    assert job_state(job)[0] == State.PROGRESSING
    assert job_state(merge(job, {"status": complete["status"]}))[0] == State.READY


def test_job_past_its_backoff_limit_fails_with_reason_and_message():
    failed = next(d for d in load_objects("job-statuses") if d["state"] == "failed")
    state, message = job_state(merge(load_object("job"), {"status": failed["status"]}))
    assert state == State.FAILED
    assert message == "BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_pvc_bound_is_ready_and_pending_waits_until_a_pod_uses_it():
    bound, pending = load_objects("pvc")
    assert pvc_state(bound)[0] == State.READY
    assert pvc_state(pending)[0] == State.PENDING
    assert pvc_state(pending, ["backend-6d9c7b8f5d-x7k2p"])[0] == State.READY


def test_evaluate_dispatches_on_kind():
    assert evaluate("StatefulSet", load_object("statefulset"))[0] == State.READY


@pytest.mark.parametrize(("state", "reason", "container"), [
    ("crashloop", "CrashLoopBackOff", "backend"),
    ("imagepull", "ImagePullBackOff", "backend"),
    ("oomkilled", "OOMKilled", "backend"),
    ("unschedulable", "Unschedulable", ""),
    ("configerror", "CreateContainerConfigError", "backend"),
])
def test_broken_pod_is_reported_with_container_and_reason(state, reason, container):
    problem = pod_problem(pod_in(state))
    assert problem is not None
    assert (problem.reason, problem.container) == (reason, container)
    assert problem.pod.startswith("backend-6d9c7b8f5d-")


@pytest.mark.parametrize(("state", "name"), [("unbound-claims", "backend-6d9c7b8f5d-v0l7m"),
                                           ("volume-not-seen", "backend-6d9c7b8f5d-b3n8d")])
def test_a_pod_whose_volumes_are_on_their_way_waits_and_says_so(state, name):
    pod = pod_in(state)
    assert pod_problem(pod) is None
    assert pod_waiting(pod) == f"pod {name} waits for its PersistentVolumeClaims to be bound"
    assert pod_waiting(pod_in("unschedulable")) == ""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache_with(pod: dict, grace: float, clock: Clock) -> tuple[InformerCache, Resource]:
    """A cache that has listed the backend Deployment (progressing) and ``pod`` of its new ReplicaSet."""
    cache = InformerCache(grace=grace, clock=clock)
    deploy = load_object("deployment")
    cache.apply(("sync", "Deployment", "shop", [deploy]))
    cache.apply(("sync", "ReplicaSet", "shop", load_objects("replicaset")))
    cache.apply(("sync", "Pod", "shop", [pod]))
    return cache, Resource("Deployment", deploy["metadata"]["name"], "shop")


def test_an_unschedulable_pod_fails_its_workload_only_once_its_grace_is_over():
    clock = Clock()
    cache, backend = cache_with(pod_in("unschedulable"), 10.0, clock)
    held = cache.state(backend)
    assert held.state == State.PROGRESSING
    assert "Unschedulable: 0/1 nodes are available: 1 Insufficient memory" in held.message
    assert cache.recheck_in() == 10.0
    clock.now += 9.5
    assert cache.state(backend).state == State.PROGRESSING
    assert cache.recheck_in() == 0.5
    clock.now += 0.5
    failed = cache.state(backend)
    assert failed.state == State.FAILED
    assert (failed.problem.reason, failed.problem.pod) == ("Unschedulable", "backend-6d9c7b8f5d-k8j7h")
    assert cache.recheck_in() is None


def test_a_pod_scheduled_within_its_grace_is_forgotten_and_without_grace_unschedulable_fails_at_once():
    clock = Clock()
    cache, backend = cache_with(pod_in("unschedulable"), 10.0, clock)
    assert cache.state(backend).state == State.PROGRESSING
    cache.apply(("sync", "Pod", "shop", [pod_in("crashloop")]))
    assert cache.state(backend).state == State.FAILED
    assert cache.unschedulable == {} and cache.recheck_in() is None
    at_once, backend = cache_with(pod_in("unschedulable"), 0.0, clock)
    assert at_once.state(backend).state == State.FAILED


def test_crashloop_problem_names_pod_container_and_message():
    assert str(pod_problem(pod_in("crashloop"))).startswith(
        "pod backend-6d9c7b8f5d-q9w8e container backend: CrashLoopBackOff: back-off 1m20s")


def test_running_ready_pod_has_no_problem():
    assert pod_problem(load_object("pod")) is None


def test_selector_matches_labels_and_expressions():
    labels = {"app": "web", "tier": "front"}
    assert selector_matches({"matchLabels": {"app": "web"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "db"}}, labels)
    assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert not selector_matches({}, labels)


def test_deployment_owns_only_pods_of_its_newest_replicaset():
    deploy = load_object("deployment")
    replicasets = {rs["metadata"]["name"]: rs for rs in load_objects("replicaset")}
    new_pod = load_object("pod")
    old_pod = merge(new_pod, {"metadata": {"name": "backend-7f9c6d5b8c-aaaaa",
                                           "ownerReferences": [{"kind": "ReplicaSet", "name": "backend-7f9c6d5b8c"}]}})
    assert owns("Deployment", deploy, new_pod, replicasets)
    assert not owns("Deployment", deploy, old_pod, replicasets)


def test_resources_in_a_manifest_are_its_waitable_kinds_without_hooks():
    manifest = """
---
apiVersion: v1
kind: Service
metadata: {name: backend}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: shop-migrate
  annotations: {"helm.sh/hook": pre-upgrade}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: shop-postgresql, namespace: data}
"""
    assert resources_in(yaml.safe_load_all(manifest), "shop") == [
        Resource("Deployment", "backend", "shop"), Resource("StatefulSet", "shop-postgresql", "data")]


def test_resource_of_accepts_kubectl_short_names_and_rejects_unknown_kinds():
    assert Resource.of("deploy", "web", "ns") == Resource("Deployment", "web", "ns")
    assert str(Resource.of("pvc", "data", "ns")) == "persistentvolumeclaim/data"
    with pytest.raises(UserError):
        Resource.of("Ingress", "web", "ns")


def test_importing_readiness_does_not_import_the_kubernetes_client():
    code = "import sys, moorage.readiness, moorage.kube; print('kubernetes' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
