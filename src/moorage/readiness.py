"""Waiting for a release to be ready: one event-driven engine on the watch API.

Input: the resources to wait for (kind, name, namespace), usually taken from
the rendered Helm manifest with :func:`resources_from_manifest`, and a
timeout. :func:`wait_for` opens one watch per kind per namespace (plus one on
the pods, and on the ReplicaSets when Deployments are involved), resumes each
watch from its last resourceVersion when the stream ends or drops, re-lists
when the server answers 410 Gone, and decides after every event, so the
verdict follows the last change by milliseconds (no polling).

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

Pods of the workloads being waited for (matched by the workload's selector;
for Deployments only pods of the newest ReplicaSet) fail the wait at once on
ImagePullBackOff, ErrImagePull, ErrImageNeverPull, InvalidImageName,
CrashLoopBackOff, CreateContainerConfigError, CreateContainerError,
Unschedulable and OOMKilled, naming the pod, the container and the message.
A workload that is already ready is not failed by a pod (an old pod going
away, a later restart): readiness is about the rollout.

On failure, :func:`explain_failure` prints the events involving the failing
objects and the last lines of the current and previous logs of their pods;
:func:`collect_diagnostics` writes a bundle for CI artifacts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .core.errors import OperationFailed, UserError
from .core.report import Reporter

log = logging.getLogger("moorage.readiness")

WATCH_SECONDS = 300  # server-side timeout of one watch request; the stream is then resumed
RECONNECT_MAX = 2.0

# kind -> (client API class, list method, apiVersion)
LISTERS: dict[str, tuple[str, str, str]] = {
    "Deployment": ("AppsV1Api", "list_namespaced_deployment", "apps/v1"),
    "ReplicaSet": ("AppsV1Api", "list_namespaced_replica_set", "apps/v1"),
    "StatefulSet": ("AppsV1Api", "list_namespaced_stateful_set", "apps/v1"),
    "DaemonSet": ("AppsV1Api", "list_namespaced_daemon_set", "apps/v1"),
    "Job": ("BatchV1Api", "list_namespaced_job", "batch/v1"),
    "PersistentVolumeClaim": ("CoreV1Api", "list_namespaced_persistent_volume_claim", "v1"),
    "Pod": ("CoreV1Api", "list_namespaced_pod", "v1"),
    "Service": ("CoreV1Api", "list_namespaced_service", "v1"),
    "Event": ("CoreV1Api", "list_namespaced_event", "v1"),
}
WAITABLE = ("Deployment", "StatefulSet", "DaemonSet", "Job", "PersistentVolumeClaim")
ALIASES = {"deploy": "Deployment", "sts": "StatefulSet", "ds": "DaemonSet", "pvc": "PersistentVolumeClaim",
           **{k.lower(): k for k in WAITABLE}}
POD_WAITING_FAILURES = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
                        "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError")
REVISION = "deployment.kubernetes.io/revision"


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


@dataclass
class Result:
    """What the wait concluded. ``failed`` / ``reason`` name the first failing (or not ready) resource."""

    verdict: Verdict
    states: dict[Resource, ResourceState]
    elapsed: float
    failed: Resource | None = None
    reason: str = ""
    problems: list[PodProblem] = field(default_factory=list)
    pods: dict[Resource, list[str]] = field(default_factory=dict)
    relists: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict == Verdict.READY

    @property
    def not_ready(self) -> list[ResourceState]:
        return [s for s in self.states.values() if s.state != State.READY]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": str(self.verdict), "elapsed": round(self.elapsed, 3), "reason": self.reason,
                "failed": str(self.failed) if self.failed else None,
                "resources": [{"kind": s.resource.kind, "name": s.resource.name, "namespace": s.resource.namespace,
                               "state": str(s.state), "message": s.message} for s in self.states.values()]}


# ---------------------------------------------------------------------------
# Pure evaluation: one object in, a state out (kubectl rollout status rules)
# ---------------------------------------------------------------------------


def _int(value: Any) -> int:
    return int(value or 0)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), None)


def _observed(obj: dict[str, Any]) -> bool:
    return _int(obj["metadata"].get("generation")) <= _int(obj.get("status", {}).get("observedGeneration"))


def deployment_state(obj: dict[str, Any]) -> tuple[State, str]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    if not _observed(obj):
        return State.PROGRESSING, "waiting for the rollout to be observed"
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return State.FAILED, f"ProgressDeadlineExceeded: {progressing.get('message', '')}".rstrip(": ")
    want = 1 if spec.get("replicas") is None else _int(spec["replicas"])
    updated, total, available = _int(st.get("updatedReplicas")), _int(st.get("replicas")), _int(
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
    want = 1 if spec.get("replicas") is None else _int(spec["replicas"])
    ready = _int(st.get("readyReplicas"))
    if ready < want:
        return State.PROGRESSING, f"{ready} of {want} pods ready"
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return State.READY, f"{ready}/{want} ready"
    partition = _int((strategy.get("rollingUpdate") or {}).get("partition"))
    if partition:
        updated = _int(st.get("updatedReplicas"))
        if updated < want - partition:
            return State.PROGRESSING, f"{updated} of {want - partition} pods updated (partition {partition})"
        return State.READY, f"partitioned roll out complete: {updated} new pods"
    if st.get("updateRevision") != st.get("currentRevision"):
        return State.PROGRESSING, (f"{_int(st.get('updatedReplicas'))} of {want} pods at revision "
                                   f"{st.get('updateRevision')}")
    return State.READY, f"{ready}/{want} ready"


def daemonset_state(obj: dict[str, Any]) -> tuple[State, str]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    if not _observed(obj):
        return State.PROGRESSING, "waiting for the daemon set spec update to be observed"
    desired = _int(st.get("desiredNumberScheduled"))
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
        updated = _int(st.get("updatedNumberScheduled"))
        if updated < desired:
            return State.PROGRESSING, f"{updated} of {desired} updated pods scheduled"
    available = _int(st.get("numberAvailable"))
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
    return State.PROGRESSING, (f"{_int(st.get('active'))} active, {_int(st.get('succeeded'))} succeeded, "
                               f"{_int(st.get('failed'))} failed")


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
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
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


def owns(kind: str, workload: dict[str, Any], pod: dict[str, Any],
         replicasets: dict[str, dict[str, Any]] | None = None) -> bool:
    """Whether ``pod`` belongs to the current rollout of ``workload``."""
    if pod["metadata"].get("namespace") != workload["metadata"].get("namespace"):
        return False
    labels = pod["metadata"].get("labels") or {}
    selector = workload.get("spec", {}).get("selector")
    if kind == "Job" and not selector:
        name = workload["metadata"]["name"]
        return name in (labels.get("job-name"), labels.get("batch.kubernetes.io/job-name"))
    if not selector_matches(selector, labels):
        return False
    if kind == "Deployment" and replicasets is not None:
        owner = next((o for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"), None)
        rs = replicasets.get(owner["name"]) if owner else None
        revision = (workload["metadata"].get("annotations") or {}).get(REVISION)
        if rs is not None and revision:
            return (rs["metadata"].get("annotations") or {}).get(REVISION) == revision
    return True


def resources_from_manifest(manifest: str, namespace: str) -> list[Resource]:
    """The waitable resources of a rendered manifest (``helm get manifest`` / ``helm template``); hooks excluded."""
    import yaml

    out: list[Resource] = []
    try:
        docs = list(yaml.safe_load_all(manifest))
    except yaml.YAMLError as exc:
        raise UserError(f"the rendered manifest is not valid YAML: {exc}") from None
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in WAITABLE:
            continue
        meta = doc.get("metadata") or {}
        if "helm.sh/hook" in (meta.get("annotations") or {}):
            continue
        out.append(Resource(doc["kind"], meta["name"], meta.get("namespace") or namespace))
    return out


# ---------------------------------------------------------------------------
# Watching
# ---------------------------------------------------------------------------


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class _WatchError(Exception):
    def __init__(self, status: dict[str, Any]):
        super().__init__(status.get("message") or str(status))
        self.status = _int(status.get("code"))


JOIN_SECONDS = 5.0


class _Watcher(threading.Thread):
    """List then watch one kind in one namespace, forever, feeding ``out``; resume, re-list, reconnect."""

    def __init__(self, api, kind: str, namespace: str, label_selector: str | None, out: queue.Queue,
                 stop: threading.Event):
        super().__init__(name=f"watch {kind} {namespace}", daemon=True)
        self.api, self.kind, self.namespace, self.selector = api, kind, namespace, label_selector
        self.out, self.stop = out, stop
        self.response = None
        self.relists = 0

    def _call(self):
        import kubernetes.client

        api_class, method, _ = LISTERS[self.kind]
        return getattr(getattr(kubernetes.client, api_class)(self.api), method)

    def run(self) -> None:
        from . import kube

        rv: str | None = None
        backoff = 0.1
        while not self.stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                    if self.stop.is_set():
                        return
                rv = self._watch(rv)
                backoff = 0.1
            except _Expired:
                self.relists += 1
                rv = None
            except Exception as exc:
                if self.stop.is_set():
                    return
                status = exc.status if isinstance(exc, _WatchError) else None
                retry = kube.is_retryable(exc) or (status is not None and (status >= 500 or status == 429))
                if not retry:
                    self.out.put(("fatal", self.kind, self.namespace, exc))
                    return
                self.out.put(("trouble", self.kind, self.namespace, exc))
                log.debug("watch %s/%s interrupted (%s); reconnecting", self.namespace, self.kind, exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX)

    def _list(self) -> str:
        from . import kube

        kwargs: dict[str, Any] = {"_preload_content": False}
        if self.selector:
            kwargs["label_selector"] = self.selector
        body = kube.read_json(kube.retrying(self._call(), self.namespace, **kwargs))
        self.out.put(("sync", self.kind, self.namespace, body.get("items") or []))
        return body["metadata"]["resourceVersion"]

    def _watch(self, rv: str) -> str:
        kwargs: dict[str, Any] = {"watch": True, "resource_version": rv, "allow_watch_bookmarks": True,
                                  "timeout_seconds": WATCH_SECONDS, "_preload_content": False,
                                  "_request_timeout": (10, WATCH_SECONDS + 30)}
        if self.selector:
            kwargs["label_selector"] = self.selector
        self.response = response = self._call()(self.namespace, **kwargs)
        try:
            if self.stop.is_set():  # closed while the request was in flight: close() saw no response
                return rv
            for line in _lines(response):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if _int(obj.get("code")) == 410:
                        raise _Expired(obj.get("message"))
                    raise _WatchError(obj)
                rv = obj.get("metadata", {}).get("resourceVersion") or rv
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.out.put(("event", self.kind, self.namespace, kind, obj))
        finally:
            self.response = None
            # Close before releasing: a watch left mid-stream must never go back to the pool, or the
            # next request on that connection would read the rest of this stream as its answer.
            with contextlib.suppress(Exception):
                response.close()
            with contextlib.suppress(Exception):
                response.release_conn()
        return rv

    def close(self) -> None:
        """Unblock a read in progress: shut the socket down (closing alone does not wake a reader)."""
        response = self.response
        if response is None:
            return
        with contextlib.suppress(Exception):
            response.shutdown()
        sock = getattr(getattr(response, "_connection", None) or getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()


def _lines(response) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------


class _Cluster:
    """What the watches have told us so far, and the states derived from it."""

    def __init__(self, resources: Sequence[Resource]):
        self.resources = list(resources)
        self.objects: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.synced: set[tuple[str, str]] = set()

    def apply(self, message: tuple) -> None:
        tag, kind, ns = message[:3]
        bucket = self.objects.setdefault((kind, ns), {})
        if tag == "sync":
            bucket.clear()
            for obj in message[3]:
                bucket[obj["metadata"]["name"]] = obj
            self.synced.add((kind, ns))
        elif tag == "event":
            event, obj = message[3], message[4]
            if event == "DELETED":
                bucket.pop(obj["metadata"]["name"], None)
            else:
                bucket[obj["metadata"]["name"]] = obj

    def pods_of(self, res: Resource, obj: dict[str, Any]) -> list[dict[str, Any]]:
        pods = self.objects.get(("Pod", res.namespace), {})
        rs = self.objects.get(("ReplicaSet", res.namespace)) if res.kind == "Deployment" else None
        return [p for _, p in sorted(pods.items()) if owns(res.kind, obj, p, rs)]

    def state(self, res: Resource) -> ResourceState:
        if (res.kind, res.namespace) not in self.synced:
            return ResourceState(res, State.PENDING, "listing")
        obj = self.objects[(res.kind, res.namespace)].get(res.name)
        if obj is None:
            return ResourceState(res, State.PENDING, "not found yet")
        consumers: list[str] = []
        if res.kind == "PersistentVolumeClaim":
            consumers = [p["metadata"]["name"] for _, p in sorted(self.objects.get(("Pod", res.namespace), {}).items())
                         if any((v.get("persistentVolumeClaim") or {}).get("claimName") == res.name
                                for v in p.get("spec", {}).get("volumes") or [])]
        state, message = evaluate(res.kind, obj, consumers=consumers)
        # Until the ReplicaSets are known, a pod of the old one cannot be told from the new one.
        if state in (State.PENDING, State.PROGRESSING) and res.kind != "PersistentVolumeClaim" and \
                (res.kind != "Deployment" or ("ReplicaSet", res.namespace) in self.synced):
            for pod in self.pods_of(res, obj):
                problem = pod_problem(pod)
                if problem:
                    return ResourceState(res, State.FAILED, str(problem), problem)
        return ResourceState(res, state, message)


def snapshot(api, resources: Iterable[Resource], *, label_selector: str | None = None) -> list[ResourceState]:
    """The current state of each resource from one list per kind (no watch): for status displays."""
    resources = list(dict.fromkeys(resources))
    cluster = _Cluster(resources)
    for kind, ns in _watch_keys(resources):
        cluster.apply(("sync", kind, ns, _list(api, kind, ns, label_selector)))
    return [cluster.state(r) for r in resources]


def _watch_keys(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    keys: dict[tuple[str, str], None] = {}
    for res in resources:
        keys[(res.kind, res.namespace)] = None
        keys[("Pod", res.namespace)] = None
        if res.kind == "Deployment":
            keys[("ReplicaSet", res.namespace)] = None
    return list(keys)


def wait_for(api, resources: Iterable[Resource], timeout: float, *,
             on_change: Callable[[ResourceState], Any] | None = None,
             label_selector: str | None = None) -> Result:
    """Wait until every resource is ready, one fails, or ``timeout`` seconds pass.

    ``on_change`` is called (in the caller's thread) with each new state of a
    resource. ``label_selector`` narrows the watches (e.g. the release's
    ``app.kubernetes.io/instance=NAME``); the resources themselves must match it.
    A watch that cannot work at all (403 Forbidden, unknown namespace...)
    raises the project's error; connection trouble is retried until the timeout.
    """
    from . import kube

    resources = list(dict.fromkeys(resources))
    start = time.monotonic()
    deadline = start + timeout
    cluster = _Cluster(resources)
    states = {r: ResourceState(r, State.PENDING, "listing") for r in resources}
    if not resources:
        return Result(Verdict.READY, states, 0.0)
    for st in states.values():
        if on_change:
            on_change(st)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    watchers = [_Watcher(api, kind, ns, label_selector, events, stop) for kind, ns in _watch_keys(resources)]
    trouble = ""
    for w in watchers:
        w.start()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                message = events.get(timeout=left)
            except queue.Empty:
                break
            batch = [message]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(events.get_nowait())
            for message in batch:
                if message[0] == "fatal":
                    exc = message[3]
                    raise kube.api_error(api, exc, f"watching {message[1]}s in namespace {message[2]}") from exc
                if message[0] == "trouble":
                    trouble = f"{message[1]} watch interrupted: {kube.connection_reason(message[3])}"
                    continue
                cluster.apply(message)
            for res in resources:
                new = cluster.state(res)
                if new != states[res]:
                    states[res] = new
                    if on_change:
                        on_change(new)
            failed = next((states[r] for r in resources if states[r].state == State.FAILED), None)
            if failed or all(states[r].state == State.READY for r in resources):
                return _result(Verdict.FAILED if failed else Verdict.READY, cluster, states, start, watchers,
                               failed)
        waiting = [states[r] for r in resources if states[r].state != State.READY]
        result = _result(Verdict.TIMEOUT, cluster, states, start, watchers, waiting[0] if waiting else None)
        result.reason = (f"timed out after {timeout:g}s waiting for " + ", ".join(s.line() for s in waiting)
                         + (f" ({trouble})" if trouble else ""))
        return result
    finally:
        stop.set()
        for w in watchers:
            w.close()
        # Join them: a daemon thread still inside the client's (compiled) model code when the
        # interpreter exits can abort the whole process (SIGABRT) instead of exiting cleanly.
        for w in watchers:
            w.join(timeout=JOIN_SECONDS)


def _result(verdict: Verdict, cluster: _Cluster, states: dict[Resource, ResourceState], start: float,
            watchers: Sequence[_Watcher], culprit: ResourceState | None) -> Result:
    pods: dict[Resource, list[str]] = {}
    for res in states:
        obj = cluster.objects.get((res.kind, res.namespace), {}).get(res.name)
        if obj is not None and res.kind != "PersistentVolumeClaim":
            pods[res] = [p["metadata"]["name"] for p in cluster.pods_of(res, obj)]
    return Result(verdict, dict(states), time.monotonic() - start,
                  failed=culprit.resource if culprit else None,
                  reason=culprit.line() if culprit and verdict != Verdict.READY else "",
                  problems=[s.problem for s in states.values() if s.problem],
                  pods=pods, relists=sum(w.relists for w in watchers))


# ---------------------------------------------------------------------------
# The live view
# ---------------------------------------------------------------------------


class LiveView:
    """A table of resources and states (rich Live on a terminal), else one plain line per change.

    Use as ``with LiveView(reporter) as view: wait_for(..., on_change=view)``.
    """

    def __init__(self, reporter: Reporter, title: str = "Waiting for the release to be ready"):
        self.reporter = reporter
        self.title = title
        self.states: dict[Resource, ResourceState] = {}
        self._live = None
        self._start = time.monotonic()

    def __enter__(self) -> LiveView:
        if self.reporter.tty:
            from rich.live import Live

            self._live = Live(self._table(), console=self.reporter.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        else:
            self.reporter.step(self.title)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc_info)
            self._live = None

    def __call__(self, state: ResourceState) -> None:
        previous = self.states.get(state.resource)
        self.states[state.resource] = state
        if self._live is not None:
            self._live.update(self._table())
        elif previous is None or (previous.state, previous.message) != (state.state, state.message):
            self.reporter.line(f"{state.line()}  [{time.monotonic() - self._start:.1f}s]")

    def _table(self):
        from rich.table import Table

        styles = {State.READY: "green", State.FAILED: "bold red", State.PROGRESSING: "yellow", State.PENDING: "dim"}
        table = Table("resource", "namespace", "state", "message", title=self.title)
        for st in self.states.values():
            table.add_row(str(st.resource), st.resource.namespace, f"[{styles[st.state]}]{st.state}[/]", st.message)
        return table


# ---------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------


def _list(api, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    import kubernetes.client

    from . import kube

    api_class, method, api_version = LISTERS[kind]
    kwargs: dict[str, Any] = {"_preload_content": False}
    if selector:
        kwargs["label_selector"] = selector
    fn = getattr(getattr(kubernetes.client, api_class)(api), method)
    items = kube.read_json(kube.retrying(fn, namespace, **kwargs)).get("items") or []
    for item in items:  # list items come without type information
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
    return items


def _event_time(ev: dict[str, Any]) -> str:
    return ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or \
        ev.get("metadata", {}).get("creationTimestamp") or ""


def _event_line(ev: dict[str, Any]) -> str:
    inv = ev.get("involvedObject") or {}
    count = f" (x{ev['count']})" if _int(ev.get("count")) > 1 else ""
    return (f"{_event_time(ev)}  {ev.get('type', '')}  {ev.get('reason', '')}  "
            f"{inv.get('kind', '').lower()}/{inv.get('name', '')}: {ev.get('message', '').strip()}{count}")


def _containers(pod: dict[str, Any]) -> list[tuple[str, bool]]:
    """(container, has a previous instance) for init and app containers."""
    statuses = {c["name"]: c for c in (pod.get("status", {}).get("initContainerStatuses") or [])
                + (pod.get("status", {}).get("containerStatuses") or [])}
    names = [c["name"] for c in (pod["spec"].get("initContainers") or []) + pod["spec"].get("containers", [])]
    out = []
    for name in names:
        st = statuses.get(name) or {}
        out.append((name, _int(st.get("restartCount")) > 0 or bool((st.get("lastState") or {}).get("terminated"))))
    return out


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def collect_diagnostics(api, namespace: str, selector: str | None, out_dir: str | Path,
                        extra: dict[str, str] | None = None) -> Path:
    """Write a diagnostics bundle to ``out_dir`` and return it.

    Layout: ``objects/<kind>-<name>.yaml`` (full objects with status, the
    describe-equivalent) for the workloads, ReplicaSets, pods, PVCs and
    Services matching ``selector``; ``events.yaml`` and ``events.txt`` (all
    events of the namespace, oldest first); ``logs/<pod>/<container>.log`` and
    ``<container>.previous.log``; one file per ``extra`` entry (e.g.
    ``helm-status.txt``); ``errors.txt`` for anything that could not be read.
    Best effort: a failing read is recorded, never raised.
    """
    import yaml

    from . import kube

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    pods: list[dict[str, Any]] = []
    for kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Pod", "PersistentVolumeClaim",
                 "Service"):
        try:
            items = _list(api, kind, namespace, selector)
        except Exception as exc:  # noqa: BLE001 - diagnostics are best effort
            errors.append(f"listing {kind}: {exc}")
            continue
        for item in items:
            name = item["metadata"]["name"]
            path = out / "objects" / f"{kind.lower()}-{_SAFE.sub('_', name)}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump(item, sort_keys=False))
        if kind == "Pod":
            pods = items
    try:
        events = sorted(_list(api, "Event", namespace), key=_event_time)
        (out / "events.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": events},
                                                        sort_keys=False))
        (out / "events.txt").write_text("".join(_event_line(ev) + "\n" for ev in events))
    except Exception as exc:  # noqa: BLE001
        errors.append(f"listing events: {exc}")
    for pod in pods:
        name = pod["metadata"]["name"]
        for container, has_previous in _containers(pod):
            for previous in (False, True) if has_previous else (False,):
                try:
                    text = kube.pod_log(api, namespace, name, container, previous=previous)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"log of {name}/{container}: {exc}")
                    continue
                if text is not None:
                    path = out / "logs" / _SAFE.sub("_", name) / f"{container}{'.previous' if previous else ''}.log"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
    for rel, content in (extra or {}).items():
        target = (out / rel).resolve()
        if out.resolve() not in target.parents:
            errors.append(f"extra file {rel!r} is outside the bundle; skipped")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    if errors:
        (out / "errors.txt").write_text("\n".join(errors) + "\n")
    return out


def explain_failure(api, result: Result, reporter: Reporter, *, tail_lines: int = 20, max_events: int = 20,
                    max_pods: int = 3) -> None:
    """On screen: why the wait failed, the events involving the culprits, the tails of their logs."""
    from . import kube

    reporter.line(f"readiness {result.verdict}: {result.reason}")
    culprits = [result.failed] if result.verdict == Verdict.FAILED and result.failed else \
        [s.resource for s in result.not_ready]
    if not culprits:
        return
    pod_names: list[tuple[str, str]] = []  # (namespace, pod)
    for problem in result.problems:
        pod_names.append((problem.namespace, problem.pod))
    for res in culprits:
        for pod in result.pods.get(res, [])[:max_pods]:
            if (res.namespace, pod) not in pod_names:
                pod_names.append((res.namespace, pod))
    names = {r.name for r in culprits} | {p for _, p in pod_names}
    for ns in sorted({r.namespace for r in culprits}):
        try:
            events = sorted(_list(api, "Event", ns), key=_event_time)
        except Exception as exc:  # noqa: BLE001 - the explanation must not hide the failure
            reporter.warn(f"cannot read the events of {ns}: {exc}")
            continue
        relevant = [ev for ev in events if (ev.get("involvedObject") or {}).get("name") in names
                    or any((ev.get("involvedObject") or {}).get("name", "").startswith(f"{n}-") for n in names)]
        if relevant:
            reporter.line(f"events ({ns}):")
            for ev in relevant[-max_events:]:
                reporter.line(f"  {_event_line(ev)}")
    pods_by_name: dict[tuple[str, str], dict[str, Any]] = {}
    for ns in sorted({ns for ns, _ in pod_names}):
        with contextlib.suppress(Exception):
            pods_by_name.update({(ns, p["metadata"]["name"]): p for p in _list(api, "Pod", ns)})
    for ns, name in pod_names[: max_pods * max(1, len(culprits))]:
        pod = pods_by_name.get((ns, name))
        if pod is None:
            continue
        wanted = {p.container for p in result.problems if p.pod == name and p.container}
        for container, has_previous in _containers(pod):
            if wanted and container not in wanted:
                continue
            for previous in (False, True) if has_previous else (False,):
                try:
                    text = kube.pod_log(api, ns, name, container, previous=previous, tail_lines=tail_lines)
                except Exception as exc:  # noqa: BLE001
                    reporter.warn(f"cannot read the log of {name}/{container}: {exc}")
                    continue
                if text:
                    label = "previous" if previous else "current"
                    reporter.line(f"logs of pod {name} container {container} ({label}, last {tail_lines} lines):")
                    for line in text.rstrip("\n").splitlines():
                        reporter.line(f"  | {line}")


def wait_with_view(api, resources: Iterable[Resource], timeout: float, reporter: Reporter, *,
                   label_selector: str | None = None, diagnostics_dir: str | Path | None = None,
                   namespace: str | None = None,
                   extra: dict[str, str] | Callable[[], dict[str, str]] | None = None) -> Result:
    """The usual sequence: live view while waiting; on failure explain on screen and write the bundle.

    Returns the result; raises :class:`OperationFailed` (exit 1) if not ready,
    with the bundle's path in the hint when one was written.
    """
    resources = list(resources)
    with LiveView(reporter) as view:
        result = wait_for(api, resources, timeout, on_change=view, label_selector=label_selector)
    if result.ok:
        reporter.ok(f"{len(resources)} resources ready in {result.elapsed:.1f}s")
        return result
    explain_failure(api, result, reporter)
    hint = "see the events and logs above"
    if diagnostics_dir is not None:
        ns = namespace or (result.failed.namespace if result.failed else resources[0].namespace)
        path = collect_diagnostics(api, ns, label_selector, diagnostics_dir, extra() if callable(extra) else extra)
        reporter.line(f"diagnostics written to {path}")
        hint = f"see the events and logs above and the diagnostics in {path}"
    error = OperationFailed(f"release not ready: {result.reason}", hint=hint)
    error.result = result  # type: ignore[attr-defined]
    raise error
