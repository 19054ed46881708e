"""Port-forwards: a Service's port resolved to a ready pod and its container port, served on
``127.0.0.1:<free port>`` for the duration of a ``with``, one WebSocket per accepted connection (like kubectl).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

from ..core.errors import OperationFailed, UserError
from .api import api_error, read_json, retrying
from .pods import list_pods, pod_ready
from .websocket import CHUNK, HandshakeFailed, handshake_failure, open_websocket

log = logging.getLogger("moorage.kube")


def _read_service(api, namespace: str, service: str, missing_hint: str) -> dict[str, Any]:
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        return read_json(retrying(CoreV1Api(api).read_namespaced_service, service, namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"service {namespace}/{service} does not exist", hint=missing_hint) from None
        raise api_error(api, exc, f"reading service {namespace}/{service}") from exc
    except Exception as exc:
        raise api_error(api, exc, f"reading service {namespace}/{service}") from exc


def resolve_service_target(api, namespace: str, service: str, port: int | str) -> tuple[str, int]:
    """The (pod, container port) a Service's ``port`` (number or name) reaches on a ready pod."""
    svc = _read_service(api, namespace, service, "check the service name in the smoke checks or `kubectl get svc`")
    selector = svc.get("spec", {}).get("selector") or {}
    if not selector:
        raise UserError(f"service {namespace}/{service} has no selector to find a pod by")
    ports = svc["spec"].get("ports") or []
    match = next((p for p in ports if p.get("port") == port or (p.get("name") and p.get("name") == port)), None)
    if match is None:
        known = ", ".join(str(p.get("port")) for p in ports)
        raise UserError(f"service {namespace}/{service} has no port {port} (ports: {known})")
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    try:
        pods = list_pods(api, namespace, label_selector)
    except Exception as exc:
        raise api_error(api, exc, f"listing the pods of service {namespace}/{service}") from exc
    ready = sorted((p for p in pods if pod_ready(p)), key=lambda p: p["metadata"]["name"])
    if not ready:
        raise OperationFailed(f"no ready pod behind service {namespace}/{service} (selector {label_selector})",
                              hint="wait for the rollout or look at `inv dev.status`")
    pod = ready[0]
    target = match.get("targetPort", match["port"])
    if isinstance(target, str):
        named = [cp["containerPort"] for c in pod["spec"]["containers"] for cp in c.get("ports") or []
                 if cp.get("name") == target]
        if not named:
            raise OperationFailed(f"pod {pod['metadata']['name']} has no container port named '{target}'")
        target = named[0]
    return pod["metadata"]["name"], int(target)


def service_port(api, namespace: str, service: str) -> int:
    """The first port of a Service (what ``dev.port-forward`` uses when no port is given)."""
    svc = _read_service(api, namespace, service, "`kubectl get svc` lists them")
    ports = svc.get("spec", {}).get("ports") or []
    if not ports:
        raise UserError(f"service {namespace}/{service} exposes no port")
    return int(ports[0]["port"])


@contextlib.contextmanager
def port_forward(api, namespace: str, service: str, port: int | str, *, local_port: int = 0) -> Iterator[int]:
    """Forward ``127.0.0.1:<local port>`` to ``service:port`` (via a ready pod); yields the local port."""
    pod, target = resolve_service_target(api, namespace, service, port)
    with pod_port_forward(api, namespace, pod, target, local_port=local_port) as bound:
        yield bound


@contextlib.contextmanager
def pod_port_forward(api, namespace: str, pod: str, port: int, *, local_port: int = 0) -> Iterator[int]:
    """Forward ``127.0.0.1:<local port>`` to ``pod:port``: one WebSocket per accepted connection (like kubectl)."""
    listener = _listen(local_port)
    bound = listener.getsockname()[1]
    stop = threading.Event()
    live: set[socket.socket] = set()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            live.add(conn)
            threading.Thread(target=_serve_connection, args=(api, namespace, pod, port, conn, live),
                             name=f"port-forward {pod}:{port}", daemon=True).start()

    thread = threading.Thread(target=accept, name=f"port-forward accept :{bound}", daemon=True)
    thread.start()
    log.debug("forwarding 127.0.0.1:%s -> %s/%s:%s", bound, namespace, pod, port)
    try:
        yield bound
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for conn in list(live):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=2)


def _listen(local_port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", local_port))
    except OSError as exc:
        listener.close()
        raise UserError(f"cannot listen on 127.0.0.1:{local_port}: {exc.strerror}",
                        hint="choose another local port") from None
    listener.listen(16)
    return listener


def _serve_connection(api, namespace: str, pod: str, port: int, conn: socket.socket,
                      live: set[socket.socket]) -> None:
    """Carry one accepted local connection to ``pod:port`` over its own WebSocket, both ways, until either ends."""
    from kubernetes.client import CoreV1Api
    from kubernetes.stream.ws_client import portforward_call

    try:
        try:
            pf = open_websocket(portforward_call, CoreV1Api(api).connect_get_namespaced_pod_portforward, pod,
                                namespace, ports=str(port))
        except Exception as exc:  # noqa: BLE001 - a failed connection only ends this client's connection
            reason = handshake_failure(exc)[1] if isinstance(exc, HandshakeFailed) else exc
            log.warning("port-forward to %s/%s:%s failed: %s", namespace, pod, port, reason)
            return
        remote = pf.socket(port)
        remote.setblocking(True)
        upstream = threading.Thread(target=_pump, args=(conn, remote), daemon=True)
        upstream.start()
        _pump(remote, conn)
        upstream.join(timeout=5)
        error = pf.error(port)
        if error:
            log.warning("port-forward to %s/%s:%s: %s", namespace, pod, port, error)
        with contextlib.suppress(OSError):
            remote.close()
        pf.close()
    finally:
        live.discard(conn)
        conn.close()


def _pump(src, dst) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, then half-close ``dst``."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
