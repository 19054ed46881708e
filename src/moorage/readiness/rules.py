"""The readiness rules: which kinds are waited for, and the state of one object, pure (no API).

Semantics are those of ``kubectl rollout status``:

* Deployment: the controller observed the latest generation
  (``observedGeneration >= generation``), all replicas updated, no old
  replicas left (``status.replicas == updatedReplicas``), all updated replicas
  available. ``Progressing`` with reason ``ProgressDeadlineExceeded`` fails.
* StatefulSet (RollingUpdate): generation observed, ``readyReplicas`` ==
  replicas, partition honoured, ``currentRevision == updateRevision``.
  OnDelete: generation observed and replicas ready.
* DaemonSet: generation observed, ``updatedNumberScheduled`` and
  ``numberAvailable`` equal ``desiredNumberScheduled``.
* Job: condition ``Complete`` is ready, ``Failed`` fails with its reason and
  message (BackoffLimitExceeded, DeadlineExceeded).
* PersistentVolumeClaim: ``Bound`` is ready, ``Lost`` fails. A ``Pending``
  claim is also satisfied as soon as a pod that mounts it exists: with a
  ``WaitForFirstConsumer`` storage class the claim binds only when that pod is
  scheduled, and that pod's readiness is what its workload waits for anyway.
  A Pending claim that no pod uses keeps waiting.

Pods of the workloads being waited for (found by their owner references, else by
the workload's own selector, never by a label Moorage expects: :func:`belongs`;
for Deployments only pods of the newest ReplicaSet, see :func:`owns`) fail the
wait at once on ImagePullBackOff, ErrImagePull, ErrImageNeverPull,
InvalidImageName, CrashLoopBackOff, CreateContainerConfigError,
CreateContainerError, Unschedulable and OOMKilled (:func:`pod_problem`). A pod
unschedulable only because its claims' volumes are on their way is waiting, not
failing: a dynamic provisioner is making them, or the scheduler has not yet seen
the volume a claim was just bound to (:func:`pod_waiting` says so); if none ever
comes, the timeout names it. The wait gives any other Unschedulable a grace
before failing on it (:data:`~.watch.UNSCHEDULABLE_GRACE`): the scheduler's view
lags the cluster's by moments (a node still not ready, a terminating pod still
holding its CPU), and it retries as soon as that changes.

:func:`resources_in` picks the resources to wait for out of a release's
objects (the rendered manifest); hooks are not waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..core.errors import UserError

WAITABLE = ("Deployment", "StatefulSet", "DaemonSet", "Job", "PersistentVolumeClaim")
ALIASES = {"deploy": "Deployment", "sts": "StatefulSet", "ds": "DaemonSet", "pvc": "PersistentVolumeClaim",
           **{k.lower(): k for k in WAITABLE}}
POD_WAITING_FAILURES = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
                        "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError")
REVISION = "deployment.kubernetes.io/revision"
# The scheduler's words while a pod's volumes are on their way: claims not bound yet (a provisioner is
# making their volumes), or bound to a volume its cache has not seen yet.
VOLUMES_ON_THEIR_WAY = ("unbound immediate PersistentVolumeClaims", "bound to non-existent pv")


class State(StrEnum):
    PENDING = "pending"
    PROGRESSING = "progressing"
    READY = "ready"
    FAILED = "failed"


class Verdict(StrEnum):
    READY = "ready"
    FAILED = "failed"
    TIMEOUT = "timeout"


@dataclass(frozen=True, order=True)
class Resource:
    kind: str
    name: str
    namespace: str

    @classmethod
    def of(cls, kind: str, name: str, namespace: str) -> Resource:
        canonical = ALIASES.get(kind.lower())
        if canonical is None:
            raise UserError(f"cannot wait for kind '{kind}'", hint=f"readiness knows {', '.join(WAITABLE)}")
        return cls(canonical, name, namespace)

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class PodProblem:
    """A pod of a watched workload that will not get better by waiting."""

    namespace: str
    pod: str
    container: str
    reason: str
    message: str

    def __str__(self) -> str:
        where = f"pod {self.pod}" + (f" container {self.container}" if self.container else "")
        return f"{where}: {self.reason}" + (f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class ResourceState:
    resource: Resource
    state: State
    message: str = ""
    problem: PodProblem | None = None

    def line(self) -> str:
        return f"{self.resource}: {self.state}" + (f" {self.message}" if self.message else "")


def resources_in(objects: Iterable[Mapping[str, Any]], namespace: str) -> list[Resource]:
    """The resources whose readiness decides a release, out of its objects (hooks excluded).

    ``namespace`` is the release's, for objects that do not name their own.
    """
    found = []
    for obj in objects:
        if not isinstance(obj, Mapping) or obj.get("kind") not in WAITABLE:
            continue
        meta = obj.get("metadata") or {}
        if "helm.sh/hook" in (meta.get("annotations") or {}):
            continue
        found.append(Resource(obj["kind"], meta["name"], meta.get("namespace") or namespace))
    return found


def int_of(value: Any) -> int:
    """An integer field of an API object, absent or null read as 0."""
    return int(value or 0)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), None)


def _observed(obj: dict[str, Any]) -> bool:
    return int_of(obj["metadata"].get("generation")) <= int_of(obj.get("status", {}).get("observedGeneration"))


def deployment_state(obj: dict[str, Any]) -> tuple[State, str]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    if not _observed(obj):
        return State.PROGRESSING, "waiting for the rollout to be observed"
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return State.FAILED, f"ProgressDeadlineExceeded: {progressing.get('message', '')}".rstrip(": ")
    want = 1 if spec.get("replicas") is None else int_of(spec["replicas"])
    updated, total, available = int_of(st.get("updatedReplicas")), int_of(st.get("replicas")), int_of(
        st.get("availableReplicas"))
    if updated < want:
        return State.PROGRESSING, f"{updated} of {want} new replicas updated"
    if total > updated:
        return State.PROGRESSING, f"{total - updated} old replicas pending termination"
    if available < updated:
        return State.PROGRESSING, f"{available} of {updated} updated replicas available"
    return State.READY, f"{available}/{want} available"


def statefulset_state(obj: dict[str, Any]) -> tuple[State, str]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    if not st.get("observedGeneration") or not _observed(obj):
        return State.PROGRESSING, "waiting for the statefulset spec update to be observed"
    want = 1 if spec.get("replicas") is None else int_of(spec["replicas"])
    ready = int_of(st.get("readyReplicas"))
    if ready < want:
        return State.PROGRESSING, f"{ready} of {want} pods ready"
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return State.READY, f"{ready}/{want} ready"
    partition = int_of((strategy.get("rollingUpdate") or {}).get("partition"))
    if partition:
        updated = int_of(st.get("updatedReplicas"))
        if updated < want - partition:
            return State.PROGRESSING, f"{updated} of {want - partition} pods updated (partition {partition})"
        return State.READY, f"partitioned roll out complete: {updated} new pods"
    if st.get("updateRevision") != st.get("currentRevision"):
        return State.PROGRESSING, (f"{int_of(st.get('updatedReplicas'))} of {want} pods at revision "
                                   f"{st.get('updateRevision')}")
    return State.READY, f"{ready}/{want} ready"


def daemonset_state(obj: dict[str, Any]) -> tuple[State, str]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    if not _observed(obj):
        return State.PROGRESSING, "waiting for the daemon set spec update to be observed"
    desired = int_of(st.get("desiredNumberScheduled"))
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
        updated = int_of(st.get("updatedNumberScheduled"))
        if updated < desired:
            return State.PROGRESSING, f"{updated} of {desired} updated pods scheduled"
    available = int_of(st.get("numberAvailable"))
    if available < desired:
        return State.PROGRESSING, f"{available} of {desired} updated pods available"
    return State.READY, f"{available}/{desired} available"


def job_state(obj: dict[str, Any]) -> tuple[State, str]:
    st = obj.get("status", {})
    for kind, state in (("Failed", State.FAILED), ("Complete", State.READY)):
        cond = _condition(obj, kind)
        if cond and cond.get("status") == "True":
            text = ": ".join(p for p in (cond.get("reason"), cond.get("message")) if p)
            return state, text or kind.lower()
    return State.PROGRESSING, (f"{int_of(st.get('active'))} active, {int_of(st.get('succeeded'))} succeeded, "
                               f"{int_of(st.get('failed'))} failed")


def pvc_state(obj: dict[str, Any], consumers: Sequence[str] = ()) -> tuple[State, str]:
    phase = obj.get("status", {}).get("phase", "Pending")
    if phase == "Bound":
        return State.READY, "bound"
    if phase == "Lost":
        return State.FAILED, "Lost: the bound volume no longer exists"
    if consumers:
        return State.READY, f"pending until first use; used by pod {consumers[0]}"
    return State.PENDING, "waiting for the claim to be bound"


def evaluate(kind: str, obj: dict[str, Any], *, consumers: Sequence[str] = ()) -> tuple[State, str]:
    """The state of one object of a waitable kind."""
    if kind == "PersistentVolumeClaim":
        return pvc_state(obj, consumers)
    return {"Deployment": deployment_state, "StatefulSet": statefulset_state, "DaemonSet": daemonset_state,
            "Job": job_state}[kind](obj)


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """The reason a pod will not become ready by waiting, or None."""
    meta, st = pod["metadata"], pod.get("status", {})
    ns, name = meta.get("namespace", ""), meta["name"]
    if meta.get("deletionTimestamp"):
        return None
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable" \
            and not pod_waiting(pod):
        return PodProblem(ns, name, "", "Unschedulable", scheduled.get("message", ""))
    for c in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in POD_WAITING_FAILURES:
            return PodProblem(ns, name, c["name"], waiting["reason"], waiting.get("message", ""))
        for state in ((c.get("state") or {}).get("terminated"), (c.get("lastState") or {}).get("terminated")):
            if state and state.get("reason") == "OOMKilled":
                return PodProblem(ns, name, c["name"], "OOMKilled",
                                  f"exit code {state.get('exitCode')}, restarts {c.get('restartCount', 0)}")
    return None


def pod_waiting(pod: dict[str, Any]) -> str:
    """What an unscheduled pod waits for that is on its way (its claims' volumes), or ""."""
    scheduled = _condition(pod, "PodScheduled")
    message = (scheduled or {}).get("message") or ""
    if scheduled and scheduled.get("status") == "False" and any(words in message for words in VOLUMES_ON_THEIR_WAY):
        return f"pod {pod['metadata']['name']} waits for its PersistentVolumeClaims to be bound"
    return ""


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels. An empty selector matches nothing."""
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def controller_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The owner reference marked ``controller`` (the object that created ``obj``), or None."""
    return next((o for o in (obj.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")), None)


def belongs(workload: Mapping[str, Any], pod: Mapping[str, Any],
            replicasets: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Whether ``pod`` was created by ``workload``, whatever labels the chart gives its pods.

    The pod's controller reference decides (pod → StatefulSet, DaemonSet or Job;
    pod → ReplicaSet → Deployment when the ReplicaSet is in ``replicasets``);
    a pod without one, or whose ReplicaSet is unknown, is matched by the
    workload's own selector (a Job without one: by its ``job-name`` label).
    """
    kind, meta = workload.get("kind"), workload.get("metadata") or {}
    pod_meta = pod.get("metadata") or {}
    if pod_meta.get("namespace") != meta.get("namespace"):
        return False
    owner = controller_of(pod)
    if owner is not None:
        if owner.get("kind") == "ReplicaSet" and replicasets is not None and owner.get("name") in replicasets:
            parent = controller_of(replicasets[owner["name"]])
            return kind == "Deployment" and parent is not None and parent.get("kind") == "Deployment" \
                and parent.get("name") == meta.get("name")
        if owner.get("kind") in ("StatefulSet", "DaemonSet", "Job") or \
                (owner.get("kind") == "ReplicaSet" and kind != "Deployment"):
            return owner.get("kind") == kind and owner.get("name") == meta.get("name")
    labels = pod_meta.get("labels") or {}
    selector = (workload.get("spec") or {}).get("selector")
    if kind == "Job" and not selector:
        return meta.get("name") in (labels.get("job-name"), labels.get("batch.kubernetes.io/job-name"))
    return selector_matches(selector, labels)


def owns(kind: str, workload: dict[str, Any], pod: dict[str, Any],
         replicasets: dict[str, dict[str, Any]] | None = None) -> bool:
    """Whether ``pod`` belongs to the current rollout of ``workload`` (:func:`belongs`, and for a Deployment
    whose ReplicaSets are known, a pod of the ReplicaSet at the Deployment's revision)."""
    if not belongs({**workload, "kind": kind}, pod, replicasets):
        return False
    if kind == "Deployment" and replicasets is not None:
        owner = next((o for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"), None)
        rs = replicasets.get(owner["name"]) if owner else None
        revision = (workload["metadata"].get("annotations") or {}).get(REVISION)
        if rs is not None and revision:
            return (rs["metadata"].get("annotations") or {}).get(REVISION) == revision
    return True
