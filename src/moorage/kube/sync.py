"""Copying files into a running container: a tar stream over the exec API (what ``kubectl cp`` does),
and deleting files there. Needs ``sh`` and ``tar`` in the container, as ``kubectl cp`` does.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import OperationFailed
from .exec import exec_stream

# -m: the extracted files get the time of the copy, so a process watching mtimes sees them change;
# --no-same-owner: owned by the container's user (non-root anyway), whoever owns them locally.
_EXTRACT = "tar -x -m --no-same-owner -f - -C /"
_REMOVE = 'rm -rf -- "$@"'
READ_ONLY_HINT = ("the destination must be writable in the container: mount a volume over it "
                  "(the chart's liveUpdate values do that in dev)")


@dataclass(frozen=True)
class Copied:
    """What one copy did in one container."""

    files: int
    removed: int
    bytes: int  # tar bytes sent
    seconds: float


def tar_of(files: Sequence[tuple[str, str]]) -> bytes:
    """A tar of ``(local path, absolute container path)`` pairs, members named from ``/``.

    Each file keeps its permission bits; a local file that vanished meanwhile is left out
    (the next change event removes it in the container).
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for local, dest in files:
            try:
                st = os.stat(local)
                with open(local, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                continue
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), stat.S_IMODE(st.st_mode), int(st.st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def copy_into(api, namespace: str, pod: str, container: str, files: Sequence[tuple[str, str]],
              removed: Sequence[str] = (), *, timeout: float = 60) -> Copied:
    """Write ``files`` (local path, absolute container path) into the container, then delete ``removed``.

    One exec for the copy (a tar stream on stdin) and one for the deletions. A
    command that fails in the container raises OperationFailed with its error
    line; a pod that is gone raises the exec's OperationFailed ("pod not found").
    """
    start = time.monotonic()
    sent = 0
    if files:
        data = tar_of(files)
        result = exec_stream(api, namespace, pod, ["sh", "-c", _EXTRACT], container=container, stdin=[data],
                             timeout=timeout)
        _check(result, f"copying {len(files)} file(s) into {namespace}/{pod} ({container})")
        sent = len(data)
    if removed:
        result = exec_stream(api, namespace, pod, ["sh", "-c", _REMOVE, "moorage-sync", *removed],
                             container=container, timeout=timeout)
        _check(result, f"deleting {len(removed)} file(s) in {namespace}/{pod} ({container})")
    return Copied(len(files), len(removed), sent, round(time.monotonic() - start, 3))


def _check(result, what: str) -> None:
    if result.ok:
        return
    error = next((line for line in result.stderr.splitlines() if line.strip()), f"exit {result.exit_code}")
    read_only = "read-only file system" in result.stderr.lower() or "permission denied" in result.stderr.lower()
    raise OperationFailed(f"{what} failed: {error.strip()}",
                          READ_ONLY_HINT if read_only else "check that the container has sh and tar")
