"""Server-side apply of arbitrary objects (built-in kinds and custom resources) into a namespace."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .api import api_error, retrying


def apply(api, objects: Iterable[dict[str, Any]], namespace: str, *, manager: str) -> list[str]:
    """Apply each object (namespaced ones into ``namespace``, creating it if missing); their ``Kind/name``."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    from ..core.errors import UserError

    applied: list[str] = []
    doing = f"namespace {namespace}"
    try:
        dynamic = DynamicClient(api)
        ensure_namespace(dynamic, namespace, manager)
        for obj in objects:
            doing = f"{obj['kind']}/{obj['metadata']['name']}"
            try:
                resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            except ResourceNotFoundError:
                raise UserError(f"the cluster does not know {obj['kind']} ({obj['apiVersion']}) of {doing}",
                                "install the CRD that defines it first, or fix apiVersion/kind") from None
            body = {**obj, "metadata": {**obj["metadata"]}}
            target = namespace if resource.namespaced else None
            if target:
                body["metadata"]["namespace"] = target
            retrying(dynamic.server_side_apply, resource, body=body, name=body["metadata"]["name"],
                     namespace=target, field_manager=manager, force_conflicts=True)
            applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
    except ApiException as exc:
        raise api_error(api, exc, f"applying {doing} in {namespace}") from exc
    return applied


def ensure_namespace(dynamic, namespace: str, manager: str) -> None:
    namespaces = dynamic.resources.get(api_version="v1", kind="Namespace")
    retrying(dynamic.server_side_apply, namespaces, body={"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": namespace}},
             name=namespace, field_manager=manager)
