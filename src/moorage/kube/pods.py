"""Pods: THE rule for a ready pod, and listing the pods of a label selector."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .api import read_json, retrying


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Running, not being deleted, and its ``Ready`` condition is true: the pod can take traffic."""
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def list_pods(api, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """The pods matching ``label_selector`` (retried on retryable failures; client errors are raised as is)."""
    from kubernetes.client import CoreV1Api

    response = retrying(CoreV1Api(api).list_namespaced_pod, namespace, label_selector=label_selector,
                        _preload_content=False)
    return read_json(response).get("items") or []
