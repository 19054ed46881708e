"""Container logs: read one (:func:`pod_log`), follow one line by line (:func:`follow_log`, THE log
follower), and show those of given pods (:func:`stream_pod_logs`) or of every pod of a selector
(:func:`stream_logs`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.errors import OperationFailed
from .api import api_error, iter_lines, retrying, status_message
from .pods import list_pods


def pod_log(api, namespace: str, pod: str, container: str, *, previous: bool = False,
            tail_lines: int | None = None) -> str | None:
    """A container's log (its previous instance with ``previous``); None if there is none."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    kwargs: dict[str, Any] = {"container": container, "previous": previous, "_preload_content": False}
    if tail_lines is not None:
        kwargs["tail_lines"] = tail_lines
    try:
        response = retrying(CoreV1Api(api).read_namespaced_pod_log, pod, namespace, **kwargs)
    except ApiException as exc:
        if exc.status in (400, 404):  # no previous instance, container not started, pod gone
            return None
        raise api_error(api, exc, f"reading the log of {namespace}/{pod}/{container}") from exc
    try:
        return response.data.decode("utf-8", "replace")
    finally:
        response.release_conn()


def job_log_tail(api, namespace: str, job: str, lines: int = 5) -> str:
    """The last ``lines`` log lines of a Job's newest pod that logged anything, joined by " | "; "" if none."""
    pods = sorted(list_pods(api, namespace, f"job-name={job}"),
                  key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "", reverse=True)
    for pod in pods:
        containers = pod.get("spec", {}).get("containers") or [{}]
        text = pod_log(api, namespace, pod["metadata"]["name"], containers[0].get("name", ""), tail_lines=lines)
        if text and text.strip():
            return " | ".join(text.strip().splitlines()[-lines:])
    return ""


def open_log(api, namespace: str, pod: str, container: str, *, follow: bool = True, previous: bool = False,
             tail_lines: int | None = None):
    """The log of a container as an open stream (``_preload_content=False``); client errors are raised as is."""
    from kubernetes.client import CoreV1Api

    kwargs: dict[str, Any] = {"container": container, "previous": previous, "follow": follow,
                              "_preload_content": False}
    if tail_lines is not None:
        kwargs["tail_lines"] = tail_lines
    return CoreV1Api(api).read_namespaced_pod_log(pod, namespace, **kwargs)


def read_lines(response, on_line: Callable[[str], Any], stop: threading.Event | None = None) -> None:
    """Call ``on_line`` with each line of a log stream, decoded whole (never a broken multibyte character),
    then release the stream. ``stop``, once set, ends the reading after the line in hand."""
    try:
        for line in iter_lines(response):
            on_line(line.decode("utf-8", "replace"))
            if stop is not None and stop.is_set():
                return
    finally:
        response.release_conn()


def follow_log(api, namespace: str, pod: str, container: str, *, on_line: Callable[[str], Any],
               stop: threading.Event | None = None) -> None:
    """Follow a container's log until it ends (or ``stop`` is set): ``on_line`` gets each complete line.

    Client errors (pod gone, connection lost) are raised as the client raises them.
    """
    read_lines(open_log(api, namespace, pod, container, follow=True), on_line, stop)


def stream_logs(api, namespace: str, selector: str, *, tail: int | None = 100, follow: bool = False,
                previous: bool = False, write: Callable[[str], Any] = print) -> int:
    """Write the logs of every container of the pods matching ``selector`` (:func:`stream_pod_logs`)."""
    try:
        pods = list_pods(api, namespace, selector)
    except Exception as exc:
        raise api_error(api, exc, f"listing the pods of {selector} in {namespace}") from exc
    if not pods:
        raise OperationFailed(f"no pod matches {selector} in namespace {namespace}",
                              hint="check the component name or `inv dev.status`")
    return stream_pod_logs(api, namespace, pods, tail=tail, follow=follow, previous=previous, write=write)


def stream_pod_logs(api, namespace: str, pods: Sequence[Mapping[str, Any]], *, tail: int | None = 100,
                    follow: bool = False, previous: bool = False, write: Callable[[str], Any] = print) -> int:
    """Write the logs of every container of ``pods``, one ``[pod/container] line`` each.

    With ``follow`` the streams stay open (one thread per container) until the
    pods end or Ctrl-C. Returns the number of containers read.
    """
    lock = threading.Lock()
    targets = [(p["metadata"]["name"], c["name"]) for p in pods for c in p["spec"].get("containers", [])]

    def one(pod: str, container: str) -> None:
        def on_line(line: str) -> None:
            with lock:
                write(f"[{pod}/{container}] {line}")

        try:
            response = open_log(api, namespace, pod, container, follow=follow, previous=previous, tail_lines=tail)
        except Exception as exc:  # noqa: BLE001 - one container's missing log must not hide the others
            with lock:
                write(f"[{pod}/{container}] (no log: {status_message(exc) if hasattr(exc, 'status') else exc})")
            return
        read_lines(response, on_line)

    if not follow:
        for pod, container in targets:
            one(pod, container)
        return len(targets)
    threads = [threading.Thread(target=one, args=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # short joins keep Ctrl-C responsive
    return len(targets)
