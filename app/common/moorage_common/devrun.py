"""Development runner: serve the code on disk, and reload it on request without a new container.

    python -m moorage_common.devrun [--bind HOST:PORT] [--overlap] [--preload MOD,...] MODULE:FUNCTION
    python -m moorage_common.devrun reload      # ask the runner (PID 1) to reload; wait for the result

The runner imports the third-party modules named by ``--preload`` once, then
forks a child that imports ``MODULE`` from disk and calls ``FUNCTION`` (with the
listening socket when ``--bind`` is given: the socket outlives every child, so
no connection is refused during a reload). SIGHUP reloads: a new child starts
from the code now on disk; with ``--overlap`` the old one keeps serving until
the new one is ready, then is stopped gracefully and the reload counts as done
once it no longer accepts connections (it calls :func:`stopped_accepting`, or
exits); otherwise (a worker) the old one is stopped gracefully (SIGTERM: it
finishes its current job) once the new one has imported its code.
A new child that fails to import (a syntax error) is reported and the old one
keeps running; the next reload tries again. SIGTERM stops the child and exits.

``reload`` sends SIGHUP and waits until the runner reports the outcome in its
state file: exit 0 once the new code serves, 1 with the error line if not.
Only the standard library is used; nothing here runs in production images'
default command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback

STATE = os.environ.get("DEVRUN_STATE", "/tmp/devrun.json")
SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
READY_FD = "DEVRUN_READY_FD"  # in the environment: this module runs as __main__ and is imported again
RETIRE_TIMEOUT = 30.0  # longest wait for a replaced child to stop accepting (uvicorn's graceful shutdown is 10s)
_notify_fd: int | None = None  # after ready(): where stopped_accepting() tells the runner


def _ready_fd() -> int | None:
    value = os.environ.get(READY_FD)
    return int(value) if value else None


def ready() -> None:
    """Called by a child once it serves (a target with ``devrun_notifies = True`` calls it itself)."""
    global _notify_fd
    fd = _ready_fd()
    if fd is not None:
        os.environ.pop(READY_FD, None)
        _notify_fd = fd  # kept open: closed by stopped_accepting() or when the child exits
        with contextlib.suppress(OSError):
            os.write(fd, b"R")


def stopped_accepting() -> None:
    """Called by a notifying child being replaced, once it accepts no new connection (it may still finish the
    ones it has): from then on every connection reaches the new code, and the runner reports the reload done."""
    global _notify_fd
    fd, _notify_fd = _notify_fd, None
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(fd, b"S")
            os.close(fd)


def _write_state(**state) -> None:
    tmp = f"{STATE}.tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle)
    os.replace(tmp, STATE)


def read_state() -> dict:
    try:
        with open(STATE) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _error_lines(exc: BaseException) -> str:
    """Where the code broke and why, as Python prints it (``File "...", line N`` then the error)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    lines = [line.rstrip() for line in traceback.format_exception_only(type(exc), exc) if line.strip()]
    if frames and not isinstance(exc, SyntaxError):
        last = frames[-1]
        lines.insert(0, f'  File "{last.filename}", line {last.lineno}, in {last.name}')
    return "\n".join(lines)


def _child(target: str, sock: socket.socket | None, ready_w: int, go_r: int | None) -> None:
    """In the forked child: import the target from disk, report, run it; never returns."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    code = 1
    try:
        module_name, _, function = target.partition(":")
        fn = getattr(importlib.import_module(module_name), function)
    except BaseException as exc:  # noqa: BLE001 - any failure to load is reported to the runner
        traceback.print_exc()
        with contextlib.suppress(OSError):
            os.write(ready_w, b"E" + _error_lines(exc).encode()[:4000])
        os._exit(1)
    os.write(ready_w, b"I")
    if go_r is not None:  # wait until the previous child has stopped (it may hold a port)
        os.read(go_r, 1)
        os.close(go_r)
    os.environ[READY_FD] = str(ready_w)
    try:
        if not getattr(fn, "devrun_notifies", False):
            ready()
        code = fn(sock) if sock is not None else fn()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - reported to the runner if it happened before ready()
        traceback.print_exc()
        if _ready_fd() is not None:
            with contextlib.suppress(OSError):
                os.write(ready_w, b"E" + _error_lines(exc).encode()[:4000])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code or 0)


class Runner:
    """The parent: one serving child, at most one starting, and the state file."""

    def __init__(self, target: str, sock: socket.socket | None, overlap: bool):
        self.target, self.sock, self.overlap = target, sock, overlap
        self.current: int | None = None
        self.current_fd: int | None = None  # the serving child's notification pipe ("S" or EOF: no longer accepts)
        self.pending: dict | None = None
        self.draining: set[int] = set()
        self.generation = self.attempts = 0
        self.wanted = self.stopping = False
        self.fatal: int | None = None

    def state(self, status: str, error: str = "", seconds: float = 0.0) -> None:
        _write_state(parent=os.getpid(), generation=self.generation, attempts=self.attempts, pid=self.current,
                     pending=self.pending is not None, status=status, error=error, seconds=seconds)

    def start_child(self) -> None:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe() if not self.overlap else (None, None)
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            if go_w is not None:
                os.close(go_w)
            _child(self.target, self.sock, ready_w, go_r)
        os.close(ready_w)
        if go_r is not None:
            os.close(go_r)
        self.pending = {"pid": pid, "ready": ready_r, "go": go_w, "start": time.monotonic(), "buffer": b""}
        self.state("reloading" if self.generation else "starting")

    def check_pending(self) -> None:
        p = self.pending
        if not select.select([p["ready"]], [], [], 0)[0]:
            return
        data = os.read(p["ready"], 65536)
        p["buffer"] += data
        buffer = p["buffer"]
        if buffer.startswith(b"E"):
            self.finish(ok=False, error=buffer[1:].decode("utf-8", "replace"))
            return
        if buffer.startswith(b"I") and p["go"] is not None:
            # sequential: the new code imported; stop the old child (it finishes its job), then go
            self.stop_current()
            self.wait_drained()
            os.write(p["go"], b"g")
            os.close(p["go"])
            p["go"] = None
        if b"R" in buffer:
            self.finish(ok=True)
        elif not data:
            if self.generation == 0:
                self.fatal = 1  # not a code error (that is "E"): fail like the production command would
            self.finish(ok=False, error="the new process exited before it was ready (its log says why)")

    def finish(self, *, ok: bool, error: str = "") -> None:
        p, self.pending = self.pending, None
        if p["go"] is not None:
            os.close(p["go"])
        self.attempts += 1
        if ok:
            if self.overlap:  # the new code serves once the old one no longer accepts
                self.stop_current(until_closed=True)
            self.current, self.current_fd, self.generation = p["pid"], p["ready"], self.generation + 1
            seconds = round(time.monotonic() - p["start"], 3)
            print(f"devrun: generation {self.generation} serves (pid {p['pid']}, {seconds}s)", flush=True)
        else:
            os.close(p["ready"])
            seconds = round(time.monotonic() - p["start"], 3)
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGTERM)
            still = "the previous code still serves" if self.current else "nothing serves until the next reload"
            print(f"devrun: the new code failed ({still}):\n{error}", file=sys.stderr, flush=True)
        self.state("ok" if ok else "failed", error, seconds)

    def stop_current(self, *, until_closed: bool = False) -> None:
        """SIGTERM the serving child (it drains); ``until_closed``: return once it no longer accepts."""
        pid, fd = self.current, self.current_fd
        self.current = self.current_fd = None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            self.draining.add(pid)
        if fd is None:
            return
        deadline = time.monotonic() + RETIRE_TIMEOUT
        while until_closed and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            data = os.read(fd, 64)
            if not data or b"S" in data:  # it said so, or it exited (EOF)
                break
        os.close(fd)

    def wait_drained(self) -> None:
        while self.draining:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                self.draining.clear()
                return
            self.draining.discard(pid)

    def reap(self) -> int | None:
        """Collect exited children; the exit code if the serving one died (the runner then exits too)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            self.draining.discard(pid)
            if pid == self.current and not self.stopping:
                self.current = None
                return os.waitstatus_to_exitcode(status) or 1

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        self.start_child()
        while True:
            info = signal.sigtimedwait(SIGNALS, 0.01 if self.pending else 1.0)
            if info is not None and info.si_signo == signal.SIGHUP:
                self.wanted = True
            elif info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return self.shutdown(0)
            died = self.reap()
            if self.pending:
                self.check_pending()
            if died is not None:
                print(f"devrun: the serving process exited with code {died}", file=sys.stderr, flush=True)
                return self.shutdown(died)
            if self.fatal is not None:
                return self.shutdown(self.fatal)
            if self.wanted and not self.pending:
                self.wanted = False
                self.start_child()

    def shutdown(self, code: int) -> int:
        self.stopping = True
        for pid in {self.current, (self.pending or {}).get("pid"), *self.draining} - {None}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            while True:
                os.waitpid(-1, 0)
        return code


def reload(timeout: float) -> int:
    """Ask the runner to reload and wait for the outcome (exit 0: the new code serves)."""
    before = read_state()
    if not before.get("parent"):
        print(f"devrun: no runner state in {STATE}; is the container running devrun?", file=sys.stderr)
        return 2
    # a start already under way may predate the files just copied: wait for the one after it
    wanted = before.get("attempts", 0) + (2 if before.get("pending") else 1)
    os.kill(int(before["parent"]), signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state()
        if state.get("attempts", 0) >= wanted and state.get("status") in ("ok", "failed"):
            if state["status"] == "ok":
                print(f"reloaded: generation {state['generation']} serves (pid {state['pid']}, {state['seconds']}s)")
                return 0
            print(state.get("error") or "reload failed", file=sys.stderr)
            return 1
        time.sleep(0.02)
    print(f"devrun: no outcome within {timeout:g}s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["reload"]:
        timeout = float(args[args.index("--timeout") + 1]) if "--timeout" in args else 60.0
        return reload(timeout)
    parser = argparse.ArgumentParser(prog="devrun", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", help="HOST:PORT to listen on once, for every generation")
    parser.add_argument("--overlap", action="store_true", help="keep the old child until the new one is ready")
    parser.add_argument("--preload", default="", help="comma-separated modules imported once by the runner")
    parser.add_argument("target", help="MODULE:FUNCTION")
    opts = parser.parse_args(args)
    sock = None
    if opts.bind:
        host, _, port = opts.bind.rpartition(":")
        sock = socket.create_server((host or "0.0.0.0", int(port)), backlog=256, reuse_port=False)
    for name in filter(None, (m.strip() for m in opts.preload.split(","))):
        importlib.import_module(name)
    return Runner(opts.target, sock, opts.overlap).run()


if __name__ == "__main__":
    sys.exit(main())
