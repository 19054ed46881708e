"""Exec streams: run a command in a container over the API's exec WebSocket, no ``kubectl`` needed.

stdout goes out in binary chunks to a file or callback as it arrives, stdin
is fed from a file or iterable and then closed, stderr is captured, and the
exit status is read from the error channel's Status. Closing stdin needs the
``v5.channel.k8s.io`` protocol (Kubernetes >= 1.30): with v4 there is no way
to send EOF, so a stdin stream is refused with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ..core.errors import MoorageError, OperationFailed, UserError
from .api import is_connection_error, unreachable
from .websocket import CHUNK, V5, HandshakeFailed, channel_socket, handshake_failure, open_websocket

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
    what = f"exec {' '.join(command)!r} in {namespace}/{pod}" + (f" ({container})" if container else "")
    sock = _open_exec(api, namespace, pod, command, container, stdin is not None, what)
    if timeout is not None:
        sock.settimeout(timeout)
    feeder = None
    if stdin is not None:
        _refuse_stdin_without_v5(sock, what)
        feeder = _StdinFeeder(sock, stdin)
        feeder.start()
    try:
        output = _read_channels(sock, _sink(stdout), what, timeout)
    finally:
        with contextlib.suppress(Exception):
            sock.close()
        if feeder is not None:
            feeder.join(timeout=5)
    if feeder is not None and feeder.failure is not None:
        raise feeder.failure
    code = _exit_code(bytes(output.error), what)
    return ExecResult(code, output.stderr.decode("utf-8", "replace"), output.stdout_bytes,
                      feeder.sent if feeder is not None else 0)


def _open_exec(api, namespace: str, pod: str, command: list[str], container: str | None, with_stdin: bool,
               what: str):
    """The exec WebSocket of ``command`` in ``pod``; the project's error if the handshake fails."""
    from kubernetes.client import CoreV1Api

    kwargs: dict[str, Any] = {"command": command, "stdin": with_stdin, "stdout": True, "stderr": True,
                              "tty": False}
    if container:
        kwargs["container"] = container
    try:
        return open_websocket(channel_socket, CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace,
                              **kwargs)
    except HandshakeFailed as exc:
        raise _exec_open_error(api, exc, what) from None


def _exec_open_error(api, exc: HandshakeFailed, what: str) -> MoorageError:
    code, message = handshake_failure(exc)
    if code == 404:
        return OperationFailed(f"{what}: pod not found", hint="check `inv dev.status`; the pod may have restarted")
    if code in (401, 403):
        return UserError(f"{what}: forbidden", hint="the context's user needs pods/exec (kubectl auth can-i create pods/exec)")
    if code is None and (is_connection_error(exc.cause) or "refused" in message.lower()):
        return unreachable(api, exc.cause)
    return OperationFailed(f"{what}: {message}")


def _refuse_stdin_without_v5(sock, what: str) -> None:
    protocol = getattr(sock, "subprotocol", None) or (sock.getheaders() or {}).get("sec-websocket-protocol")
    if protocol != V5:
        sock.close()
        raise OperationFailed(f"{what}: the API server speaks {protocol or 'an old exec protocol'}, "
                              f"which cannot close stdin", hint="streaming into a pod needs Kubernetes >= 1.30")


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


class _StdinFeeder(threading.Thread):
    """Sends stdin on the STDIN channel in chunks, then the v5 signal that closes it.

    ``failure`` holds an unexpected error, re-raised after the command ends; a
    connection closed under it only means the command exited early (its status says why).
    """

    def __init__(self, sock, stdin: IO[bytes] | Iterable[bytes]):
        super().__init__(name="exec stdin", daemon=True)
        self.sock, self.stdin = sock, stdin
        self.sent = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        from websocket import ABNF, WebSocketConnectionClosedException

        try:
            for data in _chunks(self.stdin):
                self.sock.send(bytes([STDIN]) + data, opcode=ABNF.OPCODE_BINARY)
                self.sent += len(data)
            self.sock.send(bytes([CLOSE, STDIN]), opcode=ABNF.OPCODE_BINARY)
        except (OSError, WebSocketConnectionClosedException):
            pass  # the command exited early; its status says why
        except BaseException as exc:  # noqa: BLE001 - reported after the command ends
            self.failure = exc
            with contextlib.suppress(Exception):
                self.sock.close()


@dataclass
class _Output:
    stdout_bytes: int = 0
    stderr: bytearray = field(default_factory=bytearray)
    error: bytearray = field(default_factory=bytearray)


def _read_channels(sock, write: Callable[[bytes], Any], what: str, timeout: float | None) -> _Output:
    """Read the channel frames until the connection closes: stdout to ``write``, stderr and the status kept."""
    from websocket import ABNF, WebSocketConnectionClosedException, WebSocketTimeoutException

    out = _Output()
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
                out.stdout_bytes += len(payload)
                write(payload)
            elif channel == STDERR:
                out.stderr += payload
            elif channel == ERROR:
                out.error += payload
    except WebSocketTimeoutException:
        raise OperationFailed(f"{what}: no output for {timeout}s", hint="raise the timeout") from None
    return out


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
