"""Namespaces: whether one is being deleted, and waiting (on the watch API) until it is gone."""

from __future__ import annotations

import json
import math
import time

from .api import is_retryable, iter_lines, read_json, retrying


def namespace_deletion(api, name: str) -> str | None:
    """The deletionTimestamp of namespace ``name`` if it is being deleted, else None.

    None as well when it does not exist, or when the credentials may not read
    namespaces (common for namespaced roles): then there is nothing to say.
    """
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        body = read_json(retrying(CoreV1Api(api).read_namespace, name, _preload_content=False))
    except ApiException as exc:
        if exc.status in (403, 404):
            return None
        raise
    return (body.get("metadata") or {}).get("deletionTimestamp") or None


def wait_namespace_deleted(api, name: str, timeout: float) -> bool:
    """Watch namespace ``name`` until it is deleted (True) or ``timeout`` seconds pass (False).

    Lists it (gone already: True), then watches it from the list's
    resourceVersion; a watch that ends or expires (410) lists again, one that
    fails with a retryable error is tried again with backoff until the deadline.
    """
    from kubernetes.client import CoreV1Api
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

    core = CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for attempt in Retrying(retry=retry_if_exception(is_retryable), stop=stop_after_delay(left),
                                wait=wait_exponential(multiplier=0.1, max=2.0), reraise=True):
            with attempt:
                if _deleted_in_one_watch(core, name, deadline):
                    return True
    return False


def _deleted_in_one_watch(core, name: str, deadline: float) -> bool:
    """List namespace ``name``, then watch it until it is deleted (True), or the watch ends (False)."""
    selector = f"metadata.name={name}"
    body = read_json(core.list_namespace(field_selector=selector, _preload_content=False))
    if not body.get("items"):
        return True
    left = max(deadline - time.monotonic(), 0.1)
    response = core.list_namespace(field_selector=selector, watch=True,
                                   resource_version=body["metadata"]["resourceVersion"],
                                   timeout_seconds=max(1, math.ceil(left)), _preload_content=False,
                                   _request_timeout=(10, left + 1))
    try:
        for line in iter_lines(response):
            kind = json.loads(line).get("type") if line.strip() else None
            if kind == "DELETED":
                return True
            if kind == "ERROR":  # 410 Gone or the like: list again
                return False
    finally:
        response.close()
        response.release_conn()
    return False
