"""The Kubernetes foundation: a client per kube context, port-forwards and exec streams.

Everything above this module (readiness, smoke tests, backups, db) talks to the
cluster through the official Python client obtained from :func:`client`, and
through the two stream helpers here, which use the client's WebSocket
transport (``kubernetes.stream``) so no ``kubectl`` is needed:

* :func:`port_forward` resolves a Service to a ready pod and its target port
  and serves it on ``127.0.0.1:<free port>`` for the duration of a ``with``.
* :func:`exec_stream` runs a command in a container, streams stdout in binary
  chunks to a file or callback, optionally feeds stdin from a file, captures
  stderr and returns the exit status read from the error channel.

The client's ``WSClient`` decodes output as UTF-8 unless ``binary=True``
(only in recent clients), older clients offer only the v4 exec protocol, and
clients before 37 turn a failed handshake into an ``AttributeError`` (their
``ApiClient`` decodes the body of the ``ApiException(0)`` the WebSocket layer
raises, which has none). So :func:`exec_stream` and :func:`pod_port_forward`
open the WebSocket themselves through the client's own adapter for its
generated methods (URL, query and auth come from the client), offering v5
then v4, and read the channel frames from the socket. A failed handshake keeps
its HTTP status. Closing stdin needs the ``v5.channel.k8s.io`` protocol
(Kubernetes >= 1.30): with v4 there is no way to send EOF, so a stdin stream
is refused with a clear message.

The ``kubernetes`` package is imported inside functions: importing this module
costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from .core.errors import MoorageError, OperationFailed, Unreachable, UserError

log = logging.getLogger("moorage.kube")

DEFAULT_KUBECONFIG = "~/.kube/config"
PING_TIMEOUT = 5.0
CHUNK = 256 * 1024
GET_CONTEXTS = "`kubectl config get-contexts`"

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Client factory
# ---------------------------------------------------------------------------


def kubeconfig_path(kubeconfig: str | os.PathLike[str] | None = None) -> str:
    """The kubeconfig to read: the argument, else ``$KUBECONFIG`` (a path list), else ``~/.kube/config``."""
    if kubeconfig:
        return os.fspath(kubeconfig)
    return os.environ.get("KUBECONFIG") or os.path.expanduser(DEFAULT_KUBECONFIG)


def _contexts(path: str) -> tuple[list[str], str | None]:
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import list_kube_config_contexts

    files = [os.path.expanduser(p) for p in path.split(os.pathsep) if p]
    if not any(os.path.exists(f) for f in files):
        raise UserError(f"no kubeconfig found at {path}",
                        hint=f"set KUBECONFIG or create it (minikube start / kind create cluster); {GET_CONTEXTS}")
    try:
        contexts, current = list_kube_config_contexts(path)
    except ConfigException as exc:
        raise UserError(f"kubeconfig {path} is unusable: {exc}", hint=f"check it with {GET_CONTEXTS}") from None
    return [c["name"] for c in contexts or []], (current or {}).get("name")


def current_context(kubeconfig: str | os.PathLike[str] | None = None) -> str | None:
    """The kubeconfig's current context name (None if it has none)."""
    return _contexts(kubeconfig_path(kubeconfig))[1]


def resolve_context(context: str | None, kubeconfig: str | os.PathLike[str] | None = None) -> str:
    """The context that will be used: ``context`` if it exists, else the current one. UserError otherwise."""
    path = kubeconfig_path(kubeconfig)
    names, current = _contexts(path)
    name = context or current
    if not name:
        raise UserError(f"kubeconfig {path} has no current context",
                        hint=f"set the environment's context or run `kubectl config use-context NAME` ({GET_CONTEXTS})")
    if name not in names:
        known = ", ".join(names) or "none"
        raise UserError(f"kube context '{name}' is not in {path} (known: {known})",
                        hint=f"create the cluster for '{name}' or set the environment's context to one listed by "
                             f"{GET_CONTEXTS}")
    return name


def client(context: str | None, kubeconfig: str | os.PathLike[str] | None = None, *,
           check: bool = True, timeout: float = PING_TIMEOUT):
    """An ``ApiClient`` for ``context`` (None: the current context) of the kubeconfig.

    With ``check`` (the default) the API server is asked for ``/version`` with
    a short timeout, so an unreachable cluster fails here with
    :class:`Unreachable` (exit 2) rather than in the middle of a phase. The
    context name used is set on the client as ``moorage_context``.
    """
    from kubernetes.client import ApiClient, Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import load_kube_config

    path = kubeconfig_path(kubeconfig)
    name = resolve_context(context, path)
    cfg = Configuration()
    try:
        load_kube_config(config_file=path, context=name, client_configuration=cfg, persist_config=False)
    except ConfigException as exc:
        raise UserError(f"kube context '{name}' in {path} is unusable: {exc}",
                        hint=f"check it with {GET_CONTEXTS}") from None
    api = ApiClient(configuration=cfg)
    api.moorage_context = name  # type: ignore[attr-defined]
    _send_booleans_lowercase(api)
    if check:
        ping(api, timeout=timeout)
    return api


def _send_booleans_lowercase(api) -> None:
    """Send query booleans as the API documents them (``previous=true``), like clients >= 37.

    Older clients send Python's ``True``. The API server reads both the same,
    but a request should not change shape with the client version.
    """
    to_tuples = api.parameters_to_tuples  # clients >= 37 lowercase them already: then this changes nothing

    def parameters_to_tuples(params, collection_formats):
        items = params.items() if isinstance(params, dict) else params
        return to_tuples([(k, str(v).lower() if isinstance(v, bool) else v) for k, v in items], collection_formats)

    api.parameters_to_tuples = parameters_to_tuples


def server_url(api) -> str:
    return api.configuration.host


def context_of(api) -> str:
    return getattr(api, "moorage_context", "") or "?"


def ping(api, timeout: float = PING_TIMEOUT) -> str:
    """The server's version (``v1.33.1``); :class:`Unreachable` if nothing answers in time."""
    from kubernetes.client import VersionApi
    from kubernetes.client.exceptions import ApiException

    try:
        response = VersionApi(api).get_code(_request_timeout=(timeout, timeout), _preload_content=False)
        return str(read_json(response).get("gitVersion", "unknown"))
    except ApiException as exc:
        if exc.status in (401, 403):
            raise UserError(f"cluster at {server_url(api)} refused the credentials of context "
                            f"'{context_of(api)}' ({exc.status} {exc.reason})",
                            hint="log in again or refresh the kubeconfig") from None
        return "unknown"  # it answered: reachable, even if /version is filtered
    except Exception as exc:
        if is_connection_error(exc):
            raise unreachable(api, exc) from None
        raise


def unreachable(api, exc: BaseException) -> Unreachable:
    return Unreachable(f"cluster at {server_url(api)} is unreachable: {connection_reason(exc)}",
                       hint=f"start the cluster (minikube start / kind / k3d) or check that context "
                            f"'{context_of(api)}' is the right one ({GET_CONTEXTS})")


def connection_reason(exc: BaseException) -> str:
    """A short human reason for a connection failure, digging through urllib3's wrapping."""
    text = str(getattr(exc, "reason", None) or exc)
    lowered = text.lower()
    for needle, reason in (("refused", "connection refused"), ("timed out", "connection timed out"),
                           ("name or service not known", "unknown host"), ("nodename nor servname", "unknown host"),
                           ("certificate", "TLS certificate rejected"), ("ssl", "TLS error"),
                           ("reset by peer", "connection reset")):
        if needle in lowered:
            return reason
    return text.splitlines()[0] if text else type(exc).__name__


def is_connection_error(exc: BaseException) -> bool:
    import urllib3.exceptions

    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, socket.timeout))


def is_retryable(exc: BaseException) -> bool:
    """Worth another try: connection failures, 5xx, 409 conflicts, 429. Never bad input."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status is not None and (exc.status >= 500 or exc.status in (409, 429))
    return is_connection_error(exc)


def retrying(fn: Callable[..., T], *args: Any, attempts: int = 5, max_wait: float = 2.0, **kwargs: Any) -> T:
    """Call ``fn`` and retry only retryable failures, with exponential backoff."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    for attempt in Retrying(retry=retry_if_exception(is_retryable), stop=stop_after_attempt(attempts),
                            wait=wait_exponential(multiplier=0.1, max=max_wait), reraise=True):
        with attempt:
            return fn(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises


def api_error(api, exc: BaseException, doing: str) -> MoorageError:
    """Turn a client exception into the project's error, for ``raise api_error(...) from exc``."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, MoorageError):
        return exc
    if isinstance(exc, ApiException):
        message = _status_message(exc)
        if exc.status in (401, 403):
            return UserError(f"{doing}: {message}",
                             hint=f"check the permissions of context '{context_of(api)}' (kubectl auth can-i)")
        return OperationFailed(f"{doing}: {message}")
    if is_connection_error(exc):
        return unreachable(api, exc)
    return OperationFailed(f"{doing}: {exc}")


def _status_message(exc) -> str:
    try:
        body = json.loads(exc.body or "")
        return body.get("message") or f"{exc.status} {exc.reason}"
    except (ValueError, AttributeError):
        return f"{exc.status} {exc.reason}".strip()


def read_json(response) -> Any:
    """Decode a ``_preload_content=False`` response."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


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


def stream_logs(api, namespace: str, selector: str, *, tail: int | None = 100, follow: bool = False,
                previous: bool = False, write: Callable[[str], Any] = print) -> int:
    """Write the logs of every container of the pods matching ``selector``, one ``[pod/container] line`` each.

    With ``follow`` the streams stay open (one thread per container) until the
    pods end or Ctrl-C. Returns the number of containers read.
    """
    from kubernetes.client import CoreV1Api

    try:
        pods = read_json(retrying(CoreV1Api(api).list_namespaced_pod, namespace, label_selector=selector,
                                  _preload_content=False)).get("items") or []
    except Exception as exc:
        raise api_error(api, exc, f"listing the pods of {selector} in {namespace}") from exc
    if not pods:
        raise OperationFailed(f"no pod matches {selector} in namespace {namespace}",
                              hint="check the component name or `inv dev.status`")
    lock = threading.Lock()
    targets = [(p["metadata"]["name"], c["name"]) for p in pods for c in p["spec"].get("containers", [])]

    def one(pod: str, container: str) -> None:
        kwargs: dict[str, Any] = {"container": container, "previous": previous, "follow": follow,
                                  "_preload_content": False}
        if tail is not None:
            kwargs["tail_lines"] = tail
        try:
            response = CoreV1Api(api).read_namespaced_pod_log(pod, namespace, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one container's missing log must not hide the others
            with lock:
                write(f"[{pod}/{container}] (no log: {_status_message(exc) if hasattr(exc, 'status') else exc})")
            return
        buffer = b""
        try:
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                with lock:
                    for line in lines:
                        write(f"[{pod}/{container}] {line.decode('utf-8', 'replace')}")
            if buffer:
                with lock:
                    write(f"[{pod}/{container}] {buffer.decode('utf-8', 'replace')}")
        finally:
            response.release_conn()

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


# ---------------------------------------------------------------------------
# Port-forward
# ---------------------------------------------------------------------------


def _pod_ready(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp") or pod.get("status", {}).get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def resolve_service_target(api, namespace: str, service: str, port: int | str) -> tuple[str, int]:
    """The (pod, container port) a Service's ``port`` (number or name) reaches on a ready pod."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    core = CoreV1Api(api)
    try:
        svc = read_json(retrying(core.read_namespaced_service, service, namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"service {namespace}/{service} does not exist",
                            hint="check the service name in the smoke checks or `kubectl get svc`") from None
        raise api_error(api, exc, f"reading service {namespace}/{service}") from exc
    except Exception as exc:
        raise api_error(api, exc, f"reading service {namespace}/{service}") from exc
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
        pods = read_json(retrying(core.list_namespaced_pod, namespace, label_selector=label_selector,
                                  _preload_content=False))["items"]
    except Exception as exc:
        raise api_error(api, exc, f"listing the pods of service {namespace}/{service}") from exc
    ready = sorted((p for p in pods if _pod_ready(p)), key=lambda p: p["metadata"]["name"])
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
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        svc = read_json(retrying(CoreV1Api(api).read_namespaced_service, service, namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"service {namespace}/{service} does not exist", hint="`kubectl get svc` lists them") from None
        raise api_error(api, exc, f"reading service {namespace}/{service}") from exc
    except Exception as exc:
        raise api_error(api, exc, f"reading service {namespace}/{service}") from exc
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
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", local_port))
    except OSError as exc:
        listener.close()
        raise UserError(f"cannot listen on 127.0.0.1:{local_port}: {exc.strerror}",
                        hint="choose another local port") from None
    listener.listen(16)
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
            threading.Thread(target=_serve_forward, args=(api, namespace, pod, port, conn, live),
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


def _serve_forward(api, namespace: str, pod: str, port: int, conn: socket.socket, live: set[socket.socket]) -> None:
    from kubernetes.client import CoreV1Api
    from kubernetes.stream.ws_client import portforward_call

    try:
        try:
            pf = _open_websocket(portforward_call, CoreV1Api(api).connect_get_namespaced_pod_portforward, pod,
                                 namespace, ports=str(port))
        except Exception as exc:  # noqa: BLE001 - a failed connection only ends this client's connection
            reason = _handshake_failure(exc)[1] if isinstance(exc, _HandshakeFailed) else exc
            log.warning("port-forward to %s/%s:%s failed: %s", namespace, pod, port, reason)
            return
        remote = pf.socket(port)
        remote.setblocking(True)

        def pump(src, dst) -> None:
            try:
                while data := src.recv(CHUNK):
                    dst.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        upstream = threading.Thread(target=pump, args=(conn, remote), daemon=True)
        upstream.start()
        pump(remote, conn)
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


# ---------------------------------------------------------------------------
# Opening WebSockets
# ---------------------------------------------------------------------------

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"


class _HandshakeFailed(Exception):
    """The WebSocket could not be opened; ``cause`` is what the transport raised.

    Not an ``ApiException``, so the client's ``ApiClient`` lets it through
    untouched (clients < 37 try to decode the body of an ``ApiException`` and
    fail with ``AttributeError`` when it has none).
    """

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def _open_websocket(transport: Callable[..., Any], api_method: Callable[..., Any], *args: Any, **kwargs: Any):
    """Call a generated ``connect_*`` method with ``transport`` (the client's ``*_call``) in place of HTTP.

    This is what ``kubernetes.stream.stream``/``portforward`` do (the client
    builds URL, query and auth headers), except that a failed handshake is
    raised as :class:`_HandshakeFailed` carrying the original error.
    """
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream.stream import _websocket_request  # same signature in clients 30-37

    def request(configuration, method: str, url: str, **options: Any):
        try:
            return transport(configuration, method, url, **options)
        except ApiException as exc:  # the client's own *_call wraps every failure in ApiException(0)
            raise _HandshakeFailed(exc.__context__ or exc) from None
        except Exception as exc:
            raise _HandshakeFailed(exc) from None

    return _websocket_request(request, {"_preload_content": False}, api_method, *args, **kwargs)


def _channel_socket(configuration, _method: str, url: str, **options: Any):
    """The raw exec WebSocket, offering v5 (which can close stdin) then v4, whatever the client offers."""
    from kubernetes.stream.ws_client import create_websocket, get_websocket_url

    headers = dict(options.get("headers") or {})
    headers["sec-websocket-protocol"] = f"{V5},{V4}"
    return create_websocket(configuration, get_websocket_url(url, options.get("query_params")), headers)


def _handshake_failure(exc: _HandshakeFailed) -> tuple[int | None, str]:
    """(HTTP status, message) of a failed handshake; the message from the API's Status body when there is one."""
    cause = exc.cause
    code = getattr(cause, "status_code", None)
    if code is None:  # an old websocket-client: only the text says it
        match = re.search(r"Handshake status (\d+)", str(cause))
        code = int(match.group(1)) if match else None
    body = getattr(cause, "resp_body", None)
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = json.loads(body).get("message")
        if message:
            return code, str(message)
    text = str(cause).split(" -+-+- ")[0]
    return code, (text.splitlines()[0] if text else type(cause).__name__)


# ---------------------------------------------------------------------------
# Exec streams
# ---------------------------------------------------------------------------

STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255


@dataclass
class ExecResult:
    exit_code: int
    stderr: str
    stdout_bytes: int
    stdin_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _sink(stdout: IO[bytes] | Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    if stdout is None:
        return lambda _data: None
    if callable(stdout):
        return stdout
    return stdout.write


def _chunks(stdin: IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    if hasattr(stdin, "read"):
        while data := stdin.read(CHUNK):  # type: ignore[union-attr]
            yield data
    else:
        for data in stdin:  # type: ignore[union-attr]
            for i in range(0, len(data), CHUNK):
                yield data[i:i + CHUNK]


def exec_stream(api, namespace: str, pod: str, command: list[str], *, container: str | None = None,
                stdout: IO[bytes] | Callable[[bytes], Any] | None = None,
                stdin: IO[bytes] | Iterable[bytes] | None = None,
                timeout: float | None = None) -> ExecResult:
    """Run ``command`` in ``pod``: stdout bytes go to ``stdout`` (a binary file or a callback) as they arrive.

    ``stdin`` (a binary file or an iterable of bytes) is sent in chunks and then
    closed. stderr is returned whole (decoded). The exit code comes from the
    error channel's Status; a command that cannot start at all (container not
    found, no such executable) raises :class:`OperationFailed`. A non-zero exit
    is returned, not raised: the caller knows what it means.
    """
    from kubernetes.client import CoreV1Api
    from websocket import ABNF, WebSocketConnectionClosedException, WebSocketTimeoutException

    what = f"exec {' '.join(command)!r} in {namespace}/{pod}" + (f" ({container})" if container else "")
    kwargs: dict[str, Any] = {"command": command, "stdin": stdin is not None, "stdout": True, "stderr": True,
                              "tty": False}
    if container:
        kwargs["container"] = container
    try:
        sock = _open_websocket(_channel_socket, CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace,
                               **kwargs)
    except _HandshakeFailed as exc:
        raise _exec_open_error(api, exc, what) from None
    if timeout is not None:
        sock.settimeout(timeout)
    protocol = getattr(sock, "subprotocol", None) or (sock.getheaders() or {}).get("sec-websocket-protocol")
    write = _sink(stdout)
    stderr = bytearray()
    error = bytearray()
    counts = {"out": 0, "in": 0}
    writer_error: list[BaseException] = []

    if stdin is not None and protocol != V5:
        sock.close()
        raise OperationFailed(f"{what}: the API server speaks {protocol or 'an old exec protocol'}, "
                              f"which cannot close stdin", hint="streaming into a pod needs Kubernetes >= 1.30")

    def feed() -> None:
        try:
            for data in _chunks(stdin):  # type: ignore[arg-type]
                sock.send(bytes([STDIN]) + data, opcode=ABNF.OPCODE_BINARY)
                counts["in"] += len(data)
            sock.send(bytes([CLOSE, STDIN]), opcode=ABNF.OPCODE_BINARY)
        except (OSError, WebSocketConnectionClosedException) as exc:
            writer_error.append(exc)  # the command exited early; its status says why
        except BaseException as exc:  # noqa: BLE001 - reported after the command ends
            writer_error.append(exc)
            with contextlib.suppress(Exception):
                sock.close()

    feeder = None
    if stdin is not None:
        feeder = threading.Thread(target=feed, name="exec stdin", daemon=True)
        feeder.start()
    try:
        while True:
            try:
                opcode, frame = sock.recv_data_frame(True)
            except WebSocketConnectionClosedException:
                break
            if opcode == ABNF.OPCODE_CLOSE:
                break
            if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
                continue
            data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
            channel, payload = data[0], data[1:]
            if channel == STDOUT:
                counts["out"] += len(payload)
                write(payload)
            elif channel == STDERR:
                stderr += payload
            elif channel == ERROR:
                error += payload
    except WebSocketTimeoutException:
        raise OperationFailed(f"{what}: no output for {timeout}s", hint="raise the timeout") from None
    finally:
        with contextlib.suppress(Exception):
            sock.close()
        if feeder is not None:
            feeder.join(timeout=5)
    if writer_error and not isinstance(writer_error[0], (OSError, WebSocketConnectionClosedException)):
        raise writer_error[0]
    code = _exit_code(bytes(error), what)
    return ExecResult(code, stderr.decode("utf-8", "replace"), counts["out"], counts["in"])


def _exec_open_error(api, exc: _HandshakeFailed, what: str) -> MoorageError:
    code, message = _handshake_failure(exc)
    if code == 404:
        return OperationFailed(f"{what}: pod not found", hint="check `inv dev.status`; the pod may have restarted")
    if code in (401, 403):
        return UserError(f"{what}: forbidden", hint="the context's user needs pods/exec (kubectl auth can-i create pods/exec)")
    if code is None and (is_connection_error(exc.cause) or "refused" in message.lower()):
        return unreachable(api, exc.cause)
    return OperationFailed(f"{what}: {message}")


def _exit_code(error: bytes, what: str) -> int:
    if not error:
        raise OperationFailed(f"{what}: the connection closed without an exit status")
    try:
        status = json.loads(error)
    except ValueError:
        raise OperationFailed(f"{what}: {error.decode('utf-8', 'replace')}") from None
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    raise OperationFailed(f"{what}: {status.get('message') or status}")


def exec_run(api, namespace: str, pod: str, command: list[str], *, container: str | None = None,
             stdin: bytes | None = None, timeout: float | None = None) -> tuple[int, bytes, str]:
    """Run a short command and collect its output: (exit code, stdout bytes, stderr)."""
    out = bytearray()
    result = exec_stream(api, namespace, pod, command, container=container, stdout=out.extend,
                         stdin=[stdin] if stdin is not None else None, timeout=timeout)
    return result.exit_code, bytes(out), result.stderr
