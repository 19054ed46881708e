"""A port-forward to a Service that survives its pods: the target pod is resolved again for each
accepted connection, so a restarted or replaced pod is followed without restarting the forward."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

from .portforward import _listen, _serve_connection, resolve_service_target

log = logging.getLogger("moorage.kube")


@contextlib.contextmanager
def service_forward(api, namespace: str, service: str, port: int | str, *, local_port: int = 0) -> Iterator[int]:
    """Serve ``127.0.0.1:<local port>`` for ``service:port`` until the ``with`` ends; yields the local port.

    Each connection goes to a ready pod behind the Service at the time it is
    accepted; a connection accepted while none is ready is closed at once.
    """
    listener = _listen(local_port)
    bound = listener.getsockname()[1]
    stop = threading.Event()
    live: set[socket.socket] = set()
    serving: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        if stop.is_set():  # accepted as the forward closed: nothing to serve it with
            live.discard(conn)
            conn.close()
            return
        try:
            pod, target = resolve_service_target(api, namespace, service, port)
        except Exception as exc:  # noqa: BLE001 - no ready pod now: this connection ends, the forward stays
            log.warning("port-forward to svc/%s:%s: %s", service, port, getattr(exc, "message", exc))
            live.discard(conn)
            conn.close()
            return
        _serve_connection(api, namespace, pod, target, conn, live)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            live.add(conn)
            worker = threading.Thread(target=serve, args=(conn,), name=f"forward svc/{service}:{port}", daemon=True)
            serving.append(worker)
            worker.start()

    thread = threading.Thread(target=accept, name=f"forward accept :{bound}", daemon=True)
    thread.start()
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
        # the connections' threads end with their sockets; wait for them, so that none is still opening a
        # stream to the API while the process exits (the client's temporary CA file is gone by then)
        deadline = time.monotonic() + 5
        for worker in serving:
            worker.join(timeout=max(deadline - time.monotonic(), 0))
