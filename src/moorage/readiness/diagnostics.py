"""Why a wait failed: :func:`explain_failure` prints the events involving the failing objects and the
last lines of the current and previous logs of their pods; :func:`collect_diagnostics` writes a bundle
(objects, events, logs) for CI artifacts. Both are best effort: a read that fails is reported, never raised.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import kube
from ..core.report import Reporter
from .rules import Resource, Verdict, int_of
from .wait import Result
from .watch import list_objects
from .workloads import members

BUNDLE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Pod", "PersistentVolumeClaim",
                "Service")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _event_time(ev: dict[str, Any]) -> str:
    return ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or \
        ev.get("metadata", {}).get("creationTimestamp") or ""


def _event_line(ev: dict[str, Any]) -> str:
    inv = ev.get("involvedObject") or {}
    count = f" (x{ev['count']})" if int_of(ev.get("count")) > 1 else ""
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
        out.append((name, int_of(st.get("restartCount")) > 0 or bool((st.get("lastState") or {}).get("terminated"))))
    return out


def _instances(has_previous: bool) -> tuple[bool, ...]:
    """The ``previous`` flags of the logs to read: the current instance, and the previous one if it exists."""
    return (False, True) if has_previous else (False,)


# ---------------------------------------------------------------------------
# The bundle
# ---------------------------------------------------------------------------


def collect_diagnostics(api, namespace: str, selector: str | None, out_dir: str | Path,
                        extra: dict[str, str] | None = None, *,
                        manifest: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write a diagnostics bundle to ``out_dir`` and return it.

    Layout: ``objects/<kind>-<name>.yaml`` (full objects with status, the
    describe-equivalent) for the workloads, ReplicaSets, pods, PVCs and
    Services of the release whose rendered ``manifest`` is given (found as
    :func:`.workloads.members` says, whatever the chart's labels), else those
    matching ``selector``; ``events.yaml`` and ``events.txt`` (all
    events of the namespace, oldest first); ``logs/<pod>/<container>.log`` and
    ``<container>.previous.log``; one file per ``extra`` entry (e.g.
    ``helm-status.txt``); ``errors.txt`` for anything that could not be read.
    Best effort: a failing read is recorded, never raised.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    pods = _write_objects(api, namespace, selector, manifest, out, errors)
    _write_events(api, namespace, out, errors)
    _write_logs(api, namespace, pods, out, errors)
    _write_extra(extra or {}, out, errors)
    if errors:
        (out / "errors.txt").write_text("\n".join(errors) + "\n")
    return out


def _write_objects(api, namespace: str, selector: str | None, manifest: Sequence[Mapping[str, Any]] | None,
                   out: Path, errors: list[str]) -> list[dict[str, Any]]:
    """``objects/<kind>-<name>.yaml`` for every object of the bundle's kinds; returns the pods."""
    import yaml

    listed: dict[str, list[dict[str, Any]]] = {}
    for kind in BUNDLE_KINDS:
        try:
            listed[kind] = list_objects(api, kind, namespace, None if manifest is not None else selector)
        except Exception as exc:  # noqa: BLE001 - diagnostics are best effort
            errors.append(f"listing {kind}: {exc}")
    if manifest is not None:
        listed = members(manifest, namespace, listed)
    pods: list[dict[str, Any]] = []
    for kind, items in listed.items():
        for item in items:
            name = item["metadata"]["name"]
            path = out / "objects" / f"{kind.lower()}-{_SAFE.sub('_', name)}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump(item, sort_keys=False))
        if kind == "Pod":
            pods = items
    return pods


def _write_events(api, namespace: str, out: Path, errors: list[str]) -> None:
    import yaml

    try:
        events = sorted(list_objects(api, "Event", namespace), key=_event_time)
        (out / "events.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": events},
                                                        sort_keys=False))
        (out / "events.txt").write_text("".join(_event_line(ev) + "\n" for ev in events))
    except Exception as exc:  # noqa: BLE001
        errors.append(f"listing events: {exc}")


def _write_logs(api, namespace: str, pods: list[dict[str, Any]], out: Path, errors: list[str]) -> None:
    for pod in pods:
        name = pod["metadata"]["name"]
        for container, has_previous in _containers(pod):
            for previous in _instances(has_previous):
                try:
                    text = kube.pod_log(api, namespace, name, container, previous=previous)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"log of {name}/{container}: {exc}")
                    continue
                if text is not None:
                    path = out / "logs" / _SAFE.sub("_", name) / f"{container}{'.previous' if previous else ''}.log"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)


def _write_extra(extra: dict[str, str], out: Path, errors: list[str]) -> None:
    for rel, content in extra.items():
        target = (out / rel).resolve()
        if out.resolve() not in target.parents:
            errors.append(f"extra file {rel!r} is outside the bundle; skipped")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


# ---------------------------------------------------------------------------
# On screen
# ---------------------------------------------------------------------------


def explain_failure(api, result: Result, reporter: Reporter, *, tail_lines: int = 20, max_events: int = 20,
                    max_pods: int = 3) -> None:
    """On screen: why the wait failed, the events involving the culprits, the tails of their logs."""
    reporter.line(f"readiness {result.verdict}: {result.reason}")
    culprits = [result.failed] if result.verdict == Verdict.FAILED and result.failed else \
        [s.resource for s in result.not_ready]
    if not culprits:
        return
    pod_names: list[tuple[str, str]] = [(p.namespace, p.pod) for p in result.problems]  # (namespace, pod)
    for res in culprits:
        for pod in result.pods.get(res, [])[:max_pods]:
            if (res.namespace, pod) not in pod_names:
                pod_names.append((res.namespace, pod))
    _show_events(api, culprits, {r.name for r in culprits} | {p for _, p in pod_names}, reporter, max_events)
    pods_by_name: dict[tuple[str, str], dict[str, Any]] = {}
    for ns in sorted({ns for ns, _ in pod_names}):
        with contextlib.suppress(Exception):
            pods_by_name.update({(ns, p["metadata"]["name"]): p for p in list_objects(api, "Pod", ns)})
    for ns, name in pod_names[: max_pods * max(1, len(culprits))]:
        pod = pods_by_name.get((ns, name))
        if pod is not None:
            wanted = {p.container for p in result.problems if p.pod == name and p.container}
            _show_logs(api, ns, pod, wanted, reporter, tail_lines)


def _show_events(api, culprits: list[Resource], names: set[str], reporter: Reporter, max_events: int) -> None:
    """The last events of the culprits' namespaces that involve one of ``names`` (or an object named after one)."""
    for ns in sorted({r.namespace for r in culprits}):
        try:
            events = sorted(list_objects(api, "Event", ns), key=_event_time)
        except Exception as exc:  # noqa: BLE001 - the explanation must not hide the failure
            reporter.warn(f"cannot read the events of {ns}: {exc}")
            continue
        relevant = [ev for ev in events if (ev.get("involvedObject") or {}).get("name") in names
                    or any((ev.get("involvedObject") or {}).get("name", "").startswith(f"{n}-") for n in names)]
        if relevant:
            reporter.line(f"events ({ns}):")
            for ev in relevant[-max_events:]:
                reporter.line(f"  {_event_line(ev)}")


def _show_logs(api, namespace: str, pod: dict[str, Any], wanted: set[str], reporter: Reporter,
               tail_lines: int) -> None:
    """The log tails of a pod's containers (only ``wanted`` ones if any), current and previous instance."""
    name = pod["metadata"]["name"]
    for container, has_previous in _containers(pod):
        if wanted and container not in wanted:
            continue
        for previous in _instances(has_previous):
            try:
                text = kube.pod_log(api, namespace, name, container, previous=previous, tail_lines=tail_lines)
            except Exception as exc:  # noqa: BLE001
                reporter.warn(f"cannot read the log of {name}/{container}: {exc}")
                continue
            if text:
                label = "previous" if previous else "current"
                reporter.line(f"logs of pod {name} container {container} ({label}, last {tail_lines} lines):")
                for line in text.rstrip("\n").splitlines():
                    reporter.line(f"  | {line}")
