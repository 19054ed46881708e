"""A release's objects in the cluster, found from its rendered manifest, pure (no API).

A chart may label its pods however it likes (``app: backend, tier: api``,
``app.kubernetes.io/name: postgresql``...), so nothing here reads a label that
Moorage or the reference chart sets. What belongs to a release is:

* the manifest's own objects (by kind and name);
* the pods its workloads created (owner references, else the workloads' own
  selectors: :func:`~.rules.belongs`) and the ReplicaSets of its Deployments;
* the claims its StatefulSets' ``volumeClaimTemplates`` created
  (``<template>-<statefulset>-<ordinal>``) and those its pods mount.

:func:`components` and :func:`matching` name workloads the way ``dev.logs --component`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .rules import belongs, controller_of

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
COMPONENT_LABELS = ("app.kubernetes.io/component", "app", "component")

Object = Mapping[str, Any]


def _name(obj: Object) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _in(obj: Object, namespace: str) -> dict[str, Any]:
    """``obj`` with its namespace set (a rendered manifest often leaves it to the release's)."""
    meta = dict(obj.get("metadata") or {})
    meta["namespace"] = meta.get("namespace") or namespace
    return {**obj, "metadata": meta}


def workloads_in(objects: Iterable[Object], namespace: str) -> list[dict[str, Any]]:
    """The workloads (Deployments, StatefulSets, DaemonSets, Jobs) of a rendered manifest, hooks excluded."""
    return [_in(o, namespace) for o in objects if o.get("kind") in WORKLOADS
            and "helm.sh/hook" not in ((o.get("metadata") or {}).get("annotations") or {})]


def claims_in(objects: Iterable[Object]) -> list[str]:
    """The PersistentVolumeClaims a manifest renders itself (plain templates, not volumeClaimTemplates)."""
    return [_name(o) for o in objects if o.get("kind") == "PersistentVolumeClaim"]


def pods_of(workload: Object, pods: Iterable[Object], replicasets: Iterable[Object] = ()) -> list[dict[str, Any]]:
    """The pods ``workload`` created, in name order (its live object is best: a Job's selector is set there)."""
    by_name = {_name(rs): rs for rs in replicasets}
    return sorted((dict(p) for p in pods if belongs(workload, p, by_name)), key=_name)


def _template_claims(workloads: Sequence[Object]) -> list[re.Pattern[str]]:
    return [re.compile(rf"{re.escape(_name(t))}-{re.escape(_name(w))}-\d+")
            for w in workloads if w.get("kind") == "StatefulSet"
            for t in (w.get("spec") or {}).get("volumeClaimTemplates") or []]


def release_claims(objects: Iterable[Object], claims: Iterable[Object]) -> list[str]:
    """Of ``claims`` (the namespace's), the names of those the release made: rendered, or from a
    StatefulSet's volumeClaimTemplates. Sorted."""
    objects = list(objects)
    names = set(claims_in(objects))
    patterns = _template_claims([o for o in objects if o.get("kind") == "StatefulSet"])
    return sorted(_name(c) for c in claims if _name(c) in names or any(p.fullmatch(_name(c)) for p in patterns))


def members(objects: Iterable[Object], namespace: str,
            listed: Mapping[str, Sequence[Object]]) -> dict[str, list[dict[str, Any]]]:
    """Of ``listed`` (kind → the namespace's objects of that kind), those of the release whose manifest is
    ``objects``: its own objects, its workloads' ReplicaSets and pods, its claims (see the module)."""
    objects = [_in(o, namespace) for o in objects]
    rendered = {(o.get("kind"), _name(o)) for o in objects}
    live = {(k, _name(o)): o for k, items in listed.items() for o in items}
    workloads = [live.get((w["kind"], _name(w)), w) for w in workloads_in(objects, namespace)]
    deployments = {_name(w) for w in workloads if w["kind"] == "Deployment"}
    replicasets = [rs for rs in listed.get("ReplicaSet", ())
                   if (controller_of(rs) or {}).get("kind") == "Deployment"
                   and (controller_of(rs) or {}).get("name") in deployments]
    pods = {_name(p): p for w in workloads for p in pods_of(w, listed.get("Pod", ()), replicasets)}
    mounted = {(v.get("persistentVolumeClaim") or {}).get("claimName")
               for p in pods.values() for v in (p.get("spec") or {}).get("volumes") or []}
    claims = set(release_claims(objects, listed.get("PersistentVolumeClaim", ()))) | mounted
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, items in listed.items():
        if kind == "ReplicaSet":
            out[kind] = [dict(rs) for rs in replicasets]
        elif kind == "Pod":
            out[kind] = [dict(p) for p in items if _name(p) in pods]
        elif kind == "PersistentVolumeClaim":
            out[kind] = [dict(c) for c in items if _name(c) in claims]
        else:
            out[kind] = [dict(o) for o in items if (kind, _name(o)) in rendered]
    return out


def _template_labels(workload: Object) -> Mapping[str, str]:
    spec = workload.get("spec") or {}
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


def matches(workload: Object, component: str) -> bool:
    """THE rule of ``dev.logs --component NAME``: the workload is named NAME or ``*-NAME``, or its pod
    template is labelled ``app.kubernetes.io/component=NAME``, ``app=NAME`` or ``component=NAME``."""
    name, labels = _name(workload), _template_labels(workload)
    return name == component or name.endswith(f"-{component}") or \
        any(labels.get(key) == component for key in COMPONENT_LABELS)


def matching(workloads: Iterable[Object], component: str) -> list[Object]:
    """The workloads ``component`` names (:func:`matches`)."""
    return [w for w in workloads if matches(w, component)]


def components(workloads: Iterable[Object], release: str) -> list[str]:
    """A name that picks each workload (its component label, else its name without ``<release>-``), sorted."""
    names = set()
    for w in workloads:
        labels = _template_labels(w)
        label = next((labels[k] for k in COMPONENT_LABELS if labels.get(k)), None)
        name = _name(w)
        names.add(label or (name[len(release) + 1:] if name.startswith(f"{release}-") else name))
    return sorted(names)
