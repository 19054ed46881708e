"""Waiting: follow resources through their watches and decide after every event.

:func:`wait_for` opens one watch per kind per namespace (plus one on the pods,
and on the ReplicaSets when Deployments are involved) and decides after every
event, so the verdict follows the last change by milliseconds (no polling); it
also looks again when the grace of an unschedulable pod ends (the one verdict
that comes from time, not from an event).
A workload that is already ready is not failed by a pod (an old pod going
away, a later restart): readiness is about the rollout. :func:`snapshot` is
the same decision from one list per kind, for status displays.

While the API server cannot be reached, the watches keep reconnecting and
``on_outage`` hears of it: at once, about every :data:`OUTAGE_TICK` seconds
while it lasts, and when every watch has an answer again.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import kube
from .rules import PodProblem, Resource, ResourceState, State, Verdict
from .watch import JOIN_SECONDS, UNSCHEDULABLE_GRACE, InformerCache, Watcher, list_objects, watch_keys

OUTAGE_TICK = 1.0  # seconds between two reports of an outage in progress


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


@dataclass(frozen=True)
class ApiOutage:
    """The watches cannot reach the API server (``server``) since ``seconds``; ``over``: they all can again."""

    server: str
    reason: str
    seconds: float
    over: bool = False


def snapshot(api, resources: Iterable[Resource], *, label_selector: str | None = None) -> list[ResourceState]:
    """The current state of each resource from one list per kind (no watch): for status displays."""
    resources = list(dict.fromkeys(resources))
    cache = InformerCache()
    for kind, ns in watch_keys(resources):
        cache.apply(("sync", kind, ns, list_objects(api, kind, ns, label_selector)))
    return [cache.state(r) for r in resources]


def wait_for(api, resources: Iterable[Resource], timeout: float, *,
             on_change: Callable[[ResourceState], Any] | None = None,
             label_selector: str | None = None,
             on_outage: Callable[[ApiOutage], Any] | None = None) -> Result:
    """Wait until every resource is ready, one fails, or ``timeout`` seconds pass.

    ``on_change`` is called (in the caller's thread) with each new state of a
    resource. ``label_selector`` narrows the watches; the resources and their
    pods must all match it (a release's are found without one: a chart labels
    its pods as it likes, and :func:`~.rules.owns` follows owner references).
    A watch that cannot work at all (403 Forbidden, unknown namespace...)
    raises the project's error; connection trouble is retried until the timeout,
    and reported to ``on_outage`` (in the caller's thread) while it lasts.
    """
    resources = list(dict.fromkeys(resources))
    start = time.monotonic()
    states = {r: ResourceState(r, State.PENDING, "listing") for r in resources}
    if not resources:
        return Result(Verdict.READY, states, 0.0)
    for st in states.values():
        if on_change:
            on_change(st)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    watchers = [Watcher(api, kind, ns, label_selector, events, stop) for kind, ns in watch_keys(resources)]
    for w in watchers:
        w.start()
    try:
        return _Wait(api, resources, states, on_change, on_outage).run(events, watchers, start, timeout)
    finally:
        stop.set()
        for w in watchers:
            w.close()
        # Join them: a daemon thread still inside the client's (compiled) model code when the
        # interpreter exits can abort the whole process (SIGABRT) instead of exiting cleanly.
        for w in watchers:
            w.join(timeout=JOIN_SECONDS)


class _Wait:
    """One wait in progress: the cache the watchers' messages feed, and the last state of each resource."""

    def __init__(self, api, resources: list[Resource], states: dict[Resource, ResourceState],
                 on_change: Callable[[ResourceState], Any] | None,
                 on_outage: Callable[[ApiOutage], Any] | None = None):
        self.api, self.resources, self.states, self.on_change = api, resources, states, on_change
        self.on_outage = on_outage
        self.cache = InformerCache(grace=UNSCHEDULABLE_GRACE)
        self.trouble = ""
        self.cut_off: set[tuple[str, str]] = set()  # the watches that cannot reach the API server
        self.outage_since: float | None = None
        self.outage_reason = ""

    def run(self, events: queue.Queue, watchers: Sequence[Watcher], start: float, timeout: float) -> Result:
        deadline = start + timeout
        while (left := deadline - time.monotonic()) > 0:
            ticking = self.outage_since is not None
            recheck = self.cache.recheck_in()
            try:
                batch = [events.get(timeout=min(left, OUTAGE_TICK if ticking else left, recheck or left))]
            except queue.Empty:
                if ticking:
                    self._outage()
                if not ticking and recheck is None:
                    break
                batch = []
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(events.get_nowait())
            self._apply(batch)
            failed = next((self.states[r] for r in self.resources if self.states[r].state == State.FAILED), None)
            if failed or all(self.states[r].state == State.READY for r in self.resources):
                return self._result(Verdict.FAILED if failed else Verdict.READY, start, watchers, failed)
        waiting = [self.states[r] for r in self.resources if self.states[r].state != State.READY]
        result = self._result(Verdict.TIMEOUT, start, watchers, waiting[0] if waiting else None)
        if self.outage_since is not None:
            self.trouble = (f"API server unreachable for {time.monotonic() - self.outage_since:.0f}s: "
                            f"{self.outage_reason}")
        result.reason = (f"timed out after {timeout:g}s waiting for " + ", ".join(s.line() for s in waiting)
                         + (f" ({self.trouble})" if self.trouble else ""))
        return result

    def _outage(self, over: bool = False) -> None:
        if self.on_outage is not None and self.outage_since is not None:
            self.on_outage(ApiOutage(kube.server_url(self.api), self.outage_reason,
                                     time.monotonic() - self.outage_since, over))

    def _connection(self, key: tuple[str, str], exc: BaseException | None) -> None:
        """A watch lost (``exc``) or regained (None) the API server: an outage starts or ends."""
        if exc is not None:
            self.cut_off.add(key)
            self.outage_reason = kube.connection_reason(exc)
            if self.outage_since is None:
                self.outage_since = time.monotonic()
                self._outage()
        elif key in self.cut_off:
            self.cut_off.discard(key)
            if not self.cut_off and self.outage_since is not None:
                self._outage(over=True)
                self.outage_since = None

    def _apply(self, batch: list[tuple]) -> None:
        """Apply the watchers' messages to the cache, then report the resources whose state changed."""
        for message in batch:
            if message[0] == "fatal":
                exc = message[3]
                raise kube.api_error(self.api, exc, f"watching {message[1]}s in namespace {message[2]}") from exc
            if message[0] == "trouble":
                self.trouble = f"{message[1]} watch interrupted: {kube.connection_reason(message[3])}"
                if kube.is_connection_error(message[3]):
                    self._connection(message[1:3], message[3])
                continue
            if message[0] == "resumed":
                self._connection(message[1:3], None)
                continue
            self.cache.apply(message)
        for res in self.resources:
            new = self.cache.state(res)
            if new != self.states[res]:
                self.states[res] = new
                if self.on_change:
                    self.on_change(new)

    def _result(self, verdict: Verdict, start: float, watchers: Sequence[Watcher],
                culprit: ResourceState | None) -> Result:
        states, cache = self.states, self.cache
        pods: dict[Resource, list[str]] = {}
        for res in states:
            obj = cache.objects.get((res.kind, res.namespace), {}).get(res.name)
            if obj is not None and res.kind != "PersistentVolumeClaim":
                pods[res] = [p["metadata"]["name"] for p in cache.pods_of(res, obj)]
        return Result(verdict, dict(states), time.monotonic() - start,
                      failed=culprit.resource if culprit else None,
                      reason=culprit.line() if culprit and verdict != Verdict.READY else "",
                      problems=[s.problem for s in states.values() if s.problem],
                      pods=pods, relists=sum(w.relists for w in watchers))
