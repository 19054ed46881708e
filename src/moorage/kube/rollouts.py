"""Rollouts: stopping the pods of a Deployment's earlier revisions.

When an upgrade failed after its migration moved the schema forward, the
pods of the previous revision that a stalled rolling update left running
serve against a schema their code does not know. ``stop_previous`` scales
the Deployment's older ReplicaSets to zero: the Deployment controller only
ever scales old ReplicaSets down during a rollout, so they stay stopped until
the next upgrade or rollback replaces the Deployment's template.
"""

from __future__ import annotations

from typing import Any

from .api import api_error, read_json, retrying

REVISION = "deployment.kubernetes.io/revision"


def _revision(rs: dict[str, Any]) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def previous_replicasets(deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Deployment's ReplicaSets other than its newest revision that still run pods."""
    uid = deployment["metadata"]["uid"]
    owned = [rs for rs in replicasets
             if any(ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or [])]
    if not owned:
        return []
    newest = max(_revision(rs) for rs in owned)
    return [rs for rs in owned if _revision(rs) < newest and (rs.get("spec") or {}).get("replicas", 0)]


def stop_previous(api, namespace: str, deployment: str) -> list[str]:
    """Scale the older ReplicaSets of ``deployment`` to zero; the names of those stopped."""
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    apps = AppsV1Api(api)
    try:
        current = read_json(retrying(apps.read_namespaced_deployment, deployment, namespace,
                                     _preload_content=False))
        listed = read_json(retrying(apps.list_namespaced_replica_set, namespace, _preload_content=False))
        stopped = []
        for rs in previous_replicasets(current, listed.get("items") or []):
            name = rs["metadata"]["name"]
            retrying(apps.patch_namespaced_replica_set_scale, name, namespace, {"spec": {"replicas": 0}},
                     _preload_content=False)
            stopped.append(name)
        return stopped
    except ApiException as exc:
        raise api_error(api, exc, f"stopping the previous pods of deployment/{deployment}") from exc
