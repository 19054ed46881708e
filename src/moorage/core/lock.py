"""Advisory locks: one operation at a time per environment's database, and per release.

Two ``backup.restore`` runs of one database, a restore racing a migration,
or two deploys of one release must not interleave. Each such operation holds
an exclusive ``flock`` on ``.moorage/locks/<scope>.lock`` for its duration;
the lock file also records who holds it (pid, what, since when), so the one
that finds it taken can say so. The kernel drops the lock when its holder
exits, however it exits: a killed run never leaves a stale lock behind.

These locks cover one checkout on one machine, which is where a developer's
two terminals or a CI runner's concurrent jobs meet.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .errors import OperationFailed


class Busy(OperationFailed):
    """Another run holds the lock this operation needs."""


def scope_name(*parts: str) -> str:
    """A file-safe lock scope from its parts (environment, database or release)."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", p) for p in parts if p)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another run"
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    return f"{info.get('what', 'another run')} ({who}, started at {info.get('started', '?')})"


@contextlib.contextmanager
def hold(root: Path, scope: str, what: str, *, wait: float = 0.0) -> Iterator[Path]:
    """Hold the ``scope`` lock for the block; Busy (naming the holder) if it stays taken for ``wait`` s."""
    directory = root / ".moorage" / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scope}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"{_holder(path)} is already running",
                               "wait for it to finish, then run this again") from None
                time.sleep(0.2)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
