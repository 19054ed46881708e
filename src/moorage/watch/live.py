"""Code into running containers: the containers that run an image, copying a change into one (the tar
stream of ``kube.sync``) and the rule's action after it, and following their logs."""

from __future__ import annotations

import contextlib
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import kube
from ..cluster import normalise_ref
from ..core.errors import OperationFailed
from ..kube.logs import open_log, read_lines
from ..kube.sync import Copied, copy_into

GONE = ("pod not found", "container not found", "without an exit status", "is not running", "not found")


@dataclass(frozen=True)
class Target:
    """One running container of an image."""

    pod: str
    uid: str
    container: str
    restarts: int


def targets(api, namespace: str, ref: str, digest: str = "") -> list[Target]:
    """The running containers in ``namespace`` whose image is ``ref`` (or, pulled from a registry, ``ref``
    pinned by ``digest``: ``repo:tag@digest`` or ``repo@digest``).

    Found by the image alone, not by labels: ``ref`` is a tag only this build has, and a chart may label its
    pods however it likes.
    """
    names = {normalise_ref(ref)}
    if digest:
        names |= {normalise_ref(f"{ref}@{digest}"), normalise_ref(f"{ref.rsplit(':', 1)[0]}@{digest}")}
    found = []
    for pod in kube.list_pods(api, namespace, ""):
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") != "Running":
            continue
        running = {c["name"]: c for c in status.get("containerStatuses") or [] if "running" in (c.get("state") or {})}
        for container in pod["spec"]["containers"]:
            if normalise_ref(container["image"]) in names and container["name"] in running:
                found.append(Target(meta["name"], meta["uid"], container["name"],
                                    int(running[container["name"]].get("restartCount") or 0)))
    return sorted(found, key=lambda t: (t.pod, t.container))


def pod_gone(exc: BaseException) -> bool:
    """Whether a failed copy or command means the pod (or container) went away meanwhile: worth retrying."""
    return isinstance(exc, OperationFailed) and any(word in exc.message for word in GONE)


@dataclass
class Outcome:
    """What one cycle did in one container."""

    target: Target
    copied: Copied
    done: list[str]  # actions completed: "reloaded", "restarted", the command
    error: str = ""  # an action's failure, in the container's words


def sync_container(api, namespace: str, target: Target, root: Path, copy: Sequence[tuple[str, str]],
                   delete: Sequence[str], actions: Sequence[str], *, timeout: float) -> Outcome:
    """Copy ``copy`` (project-relative path, container path) and delete ``delete`` in the container,
    then run the actions; an action that fails is reported in the outcome, not raised."""
    copied = copy_into(api, namespace, target.pod, target.container, [(str(root / p), d) for p, d in copy], delete,
                       timeout=timeout)
    outcome = Outcome(target, copied, [])
    for then in actions:
        if then == "reload":
            continue
        if then == "restart":
            restart_container(api, namespace, target, timeout=timeout)
            outcome.done.append("restarted")
            continue
        out = bytearray()
        result = kube.exec_stream(api, namespace, target.pod, shlex.split(then), container=target.container,
                                  stdout=out.extend, timeout=timeout)
        if not result.ok:
            outcome.error = (result.stderr.strip() or out.decode("utf-8", "replace").strip()
                             or f"{then!r} exited {result.exit_code}")
            return outcome
        outcome.done.append(then)
    return outcome


def restart_container(api, namespace: str, target: Target, *, timeout: float) -> None:
    """Stop the container's main process gracefully (SIGTERM); the kubelet starts it again in the same pod
    (the copied files stay: they are on a volume). Returns once it runs again and is ready."""
    from kubernetes.client import CoreV1Api

    try:
        kube.exec_stream(api, namespace, target.pod, ["sh", "-c", "kill -TERM 1"], container=target.container,
                         timeout=30)
    except OperationFailed:
        pass  # the connection may close as the container stops
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = kube.read_json(CoreV1Api(api).read_namespaced_pod(target.pod, namespace, _preload_content=False))
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status["name"] == target.container and int(status.get("restartCount") or 0) > target.restarts \
                    and status.get("ready"):
                return
        time.sleep(0.25)
    raise OperationFailed(f"container {target.container} of {namespace}/{target.pod} was not ready again "
                          f"within {timeout:g}s after its restart", "see its log: inv dev.logs")


class Logs:
    """Follows the logs of containers, each line written with the pod's name in front, until :meth:`stop`."""

    def __init__(self, api, namespace: str, write: Callable[[str], None]):
        self.api, self.namespace, self.write = api, namespace, write
        self.stop_event = threading.Event()
        self.open: dict[tuple[str, str], object] = {}
        self.lock = threading.Lock()

    def follow(self, target: Target, *, from_start: bool = False) -> None:
        key = (target.pod, target.container)
        with self.lock:
            if key in self.open or self.stop_event.is_set():
                return
            self.open[key] = None
        threading.Thread(target=self._run, args=(key, from_start), name=f"logs {target.pod}", daemon=True).start()

    def _run(self, key: tuple[str, str], from_start: bool) -> None:
        pod, container = key
        try:
            response = open_log(self.api, self.namespace, pod, container, follow=True,
                                tail_lines=None if from_start else 0)
            with self.lock:
                self.open[key] = response
            read_lines(response, lambda line: self.stop_event.is_set() or self.write(f"[{pod}] {line}"),
                       self.stop_event)
        except Exception:  # noqa: BLE001 - a log that ends or cannot be read ends its follower only
            pass
        finally:
            with self.lock:
                self.open.pop(key, None)

    def stop(self) -> None:
        self.stop_event.set()
        with self.lock:
            responses = [r for r in self.open.values() if r is not None]
        for response in responses:
            # Shut the connection's socket down under the reading thread: closing the response here
            # would wait for that thread's lock; a shut-down socket ends its read at once.
            connection = getattr(response, "_connection", None) or getattr(response, "connection", None)
            with contextlib.suppress(Exception):
                connection.sock.shutdown(socket.SHUT_RDWR)
