"""Watching the cluster: one :class:`Watcher` thread per kind and namespace, and the
:class:`InformerCache` of what the watches have told so far.

A watcher lists, then watches from the list's resourceVersion, resumes each
watch from its last resourceVersion when the stream ends or drops, re-lists
when the server answers 410 Gone, and reconnects with backoff on connection
trouble; it posts what it sees on a queue as messages:
``("sync", kind, namespace, items)``, ``("event", kind, namespace, type, obj)``,
``("trouble", kind, namespace, exc)`` (retrying), ``("resumed", kind, namespace)``
(the API server answered again after trouble) and
``("fatal", kind, namespace, exc)`` (gave up). The cache applies them and
derives the state of each waited resource with the rules.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import kube
from .rules import PodProblem, Resource, ResourceState, State, evaluate, int_of, owns, pod_problem, pod_waiting

log = logging.getLogger("moorage.readiness")

WATCH_SECONDS = 300  # server-side timeout of one watch request; the stream is then resumed
RECONNECT_MAX = 2.0
JOIN_SECONDS = 5.0
# How long a pod may stay Unschedulable before the wait fails on it. The scheduler retries as soon as
# the cluster changes (a node turns ready, a terminating pod frees its CPU), so what outlasts this is
# not a lag of its view; the first deploy on a full node fails in seconds, not at the timeout.
UNSCHEDULABLE_GRACE = 10.0

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


def _lister(api, kind: str):
    import kubernetes.client

    api_class, method, _ = LISTERS[kind]
    return getattr(getattr(kubernetes.client, api_class)(api), method)


def list_objects(api, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    """The objects of ``kind`` in ``namespace`` (matching ``selector``), with their apiVersion and kind set."""
    kwargs: dict[str, Any] = {"_preload_content": False}
    if selector:
        kwargs["label_selector"] = selector
    items = kube.read_json(kube.retrying(_lister(api, kind), namespace, **kwargs)).get("items") or []
    for item in items:  # list items come without type information
        item.setdefault("apiVersion", LISTERS[kind][2])
        item.setdefault("kind", kind)
    return items


def watch_keys(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """The (kind, namespace) pairs to watch for ``resources``: their own, their pods, a Deployment's ReplicaSets."""
    keys: dict[tuple[str, str], None] = {}
    for res in resources:
        keys[(res.kind, res.namespace)] = None
        keys[("Pod", res.namespace)] = None
        if res.kind == "Deployment":
            keys[("ReplicaSet", res.namespace)] = None
    return list(keys)


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class _WatchError(Exception):
    def __init__(self, status: dict[str, Any]):
        super().__init__(status.get("message") or str(status))
        self.status = int_of(status.get("code"))


class Watcher(threading.Thread):
    """List then watch one kind in one namespace, forever, feeding ``out``; resume, re-list, reconnect."""

    def __init__(self, api, kind: str, namespace: str, label_selector: str | None, out: queue.Queue,
                 stop: threading.Event):
        super().__init__(name=f"watch {kind} {namespace}", daemon=True)
        self.api, self.kind, self.namespace, self.selector = api, kind, namespace, label_selector
        self.out, self.stop = out, stop
        self.response = None
        self.relists = 0
        self.troubled = False  # the last request failed: the next one that gets an answer says "resumed"

    def _call(self):
        return _lister(self.api, self.kind)

    def run(self) -> None:
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
                self.troubled = True
                self.out.put(("trouble", self.kind, self.namespace, exc))
                log.debug("watch %s/%s interrupted (%s); reconnecting", self.namespace, self.kind, exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX)

    def _list(self) -> str:
        kwargs: dict[str, Any] = {"_preload_content": False}
        if self.selector:
            kwargs["label_selector"] = self.selector
        body = kube.read_json(kube.retrying(self._call(), self.namespace, **kwargs))
        self._answered()
        self.out.put(("sync", self.kind, self.namespace, body.get("items") or []))
        return body["metadata"]["resourceVersion"]

    def _watch(self, rv: str) -> str:
        kwargs: dict[str, Any] = {"watch": True, "resource_version": rv, "allow_watch_bookmarks": True,
                                  "timeout_seconds": WATCH_SECONDS, "_preload_content": False,
                                  "_request_timeout": (10, WATCH_SECONDS + 30)}
        if self.selector:
            kwargs["label_selector"] = self.selector
        self.response = response = self._call()(self.namespace, **kwargs)
        self._answered()
        try:
            if self.stop.is_set():  # closed while the request was in flight: close() saw no response
                return rv
            for line in kube.iter_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if int_of(obj.get("code")) == 410:
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

    def _answered(self) -> None:
        if self.troubled:
            self.troubled = False
            self.out.put(("resumed", self.kind, self.namespace))

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


class InformerCache:
    """What the watches have told so far (the objects by kind and namespace), and the states derived from it.

    A pod Unschedulable for less than ``grace`` seconds (by ``clock``, since the
    cache first saw it so) keeps its workload progressing; :meth:`recheck_in`
    says when the first of those graces ends, for the wait to look again.
    """

    def __init__(self, grace: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.objects: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.synced: set[tuple[str, str]] = set()
        self.grace, self.clock = grace, clock
        self.unschedulable: dict[str, float] = {}  # pod uid (else name) -> when first seen unschedulable

    def recheck_in(self) -> float | None:
        """Seconds until the grace of a pod still unschedulable ends, or None."""
        now = self.clock()
        ends = [since + self.grace - now for since in self.unschedulable.values() if since + self.grace > now]
        return min(ends) if ends else None

    def _held(self, pod: dict[str, Any], problem: PodProblem | None) -> bool:
        """Whether ``problem`` of ``pod`` is an Unschedulable still within its grace."""
        key = pod["metadata"].get("uid") or pod["metadata"]["name"]
        if problem is None or problem.reason != "Unschedulable":
            self.unschedulable.pop(key, None)
            return False
        return self.clock() - self.unschedulable.setdefault(key, self.clock()) < self.grace

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
            pods, held = self.pods_of(res, obj), []
            for pod in pods:
                problem = pod_problem(pod)
                if self._held(pod, problem):
                    held.append(f"{problem} (waiting {self.grace:g}s for the scheduler to place it)")
                elif problem:
                    return ResourceState(res, State.FAILED, str(problem), problem)
            message = "; ".join(filter(None, [message, *map(pod_waiting, pods), *held]))
        return ResourceState(res, state, message)
