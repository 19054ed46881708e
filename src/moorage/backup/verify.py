"""Is a backup what its metadata says: size and sha256, then every data block of the archive read back.

``pg_restore --list`` reads only an archive's header and table of contents:
a dump cut short after them still lists, and a checksum recomputed over the
cut file (metadata rewritten, or a copy tool that "repaired" it) still
matches. So verification reads the whole archive with ``pg_restore``:

- at creation, :class:`StreamCheck` reads the dump *as it is written*
  (``pg_restore --data-only --file=-`` fed the same chunks that are hashed
  and written to disk, in parallel with pg_dump), decoding every data block
  and counting each table's rows on the way (``row_counts`` in the
  metadata); a full second pass over the file would cost about a tenth more
  than the dump itself;
- ``backup.verify`` reads the file (``pg_restore -f /dev/null``); ``quick``
  keeps the old table-of-contents check (``pg_restore --list``) for when
  the cost matters more than the certainty.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..core import proc
from ..core.errors import CommandFailed, OperationFailed
from ..pg import tool
from .contents import CopyCounter
from .store import Backup

CHUNK = 1 << 20


class BackupInvalid(OperationFailed):
    """A backup file failed verification (checksum, size, archive structure, data blocks). Exit 1."""


def archive_listing(path: Path) -> str:
    """``pg_restore --list``: reads the archive's header and table of contents."""
    try:
        return proc.run([tool("pg_restore"), "--list", str(path)], timeout=300, what="pg_restore --list").stdout
    except CommandFailed as exc:
        raise BackupInvalid(f"{path.name} is not a readable pg_dump archive: {proc.tail_lines(exc.stderr, 3)}",
                            "the file is damaged; use another backup") from None


def read_archive(path: Path, *, timeout: float = 3600) -> None:
    """Read and decode every block of the archive (``pg_restore -f /dev/null``); BackupInvalid if one fails."""
    try:
        proc.run([tool("pg_restore"), "-f", os.devnull, str(path)], timeout=timeout, what="pg_restore (full read)")
    except CommandFailed as exc:
        raise BackupInvalid(f"{path.name}: the archive does not read back whole: {proc.tail_lines(exc.stderr, 2)}",
                            "the file is damaged or cut short; use another backup") from None


def listing_header(listing: str) -> dict[str, str]:
    """The ``; Key: value`` lines at the top of a pg_restore listing."""
    out = {}
    for line in listing.splitlines():
        m = re.match(r";\s+([A-Za-z][\w ]*?):\s+(.*)$", line)
        if m:
            out.setdefault(m[1].strip().lower(), m[2].strip())
    return out


def listing_tables(listing: str) -> int:
    return sum(1 for line in listing.splitlines() if re.match(r"^\d+; \d+ \d+ TABLE (?!DATA )", line))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def verify_backup(backup: Backup, *, quick: bool = False) -> dict[str, Any]:
    """Size and checksum against the metadata, then the archive read back; BackupInvalid with the reason.

    Every data block is decoded (``pg_restore -f /dev/null``), which catches
    what the checksum cannot: an archive cut short whose metadata was
    rewritten to match. ``quick`` reads only the table of contents.
    """
    if backup.meta is None:
        raise BackupInvalid(f"{backup.name}: {backup.problem}",
                            "a backup without metadata was interrupted or copied incompletely; use another one")
    size = backup.path.stat().st_size
    if size != backup.meta.get("size"):
        raise BackupInvalid(f"{backup.name} is {size} bytes but {backup.meta.get('size')} were written (truncated?)",
                            "use another backup")
    digest = sha256_file(backup.path)
    if digest != backup.meta.get("sha256"):
        raise BackupInvalid(f"{backup.name}: checksum mismatch (sha256 {digest[:12]}..., "
                            f"recorded {str(backup.meta.get('sha256'))[:12]}...): the file was changed or damaged",
                            "use another backup")
    listing = archive_listing(backup.path)
    if not quick:
        read_archive(backup.path)
    return {"name": backup.name, "sha256": digest, "size": size, "tables": listing_tables(listing),
            "full_read": not quick}


class StreamCheck:
    """``pg_restore --data-only --file=-`` fed an archive chunk by chunk as it is written.

    It decodes every data block while pg_dump is still dumping (on another
    core) and its SQL output is counted, not stored: :meth:`finish` gives each
    table's rows, or BackupInvalid if the archive does not read back whole.
    A reader thread drains pg_restore's output so that feeding its input
    never waits on it; the child is started (and waited for) by the caller's
    thread.
    """

    def __init__(self) -> None:
        self._err = tempfile.TemporaryFile()
        self.child = proc.start([tool("pg_restore"), "--data-only", "--file=-"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=self._err)
        _grow_pipe(self.child.stdin.fileno())
        self.counter = CopyCounter()
        self._failure: BaseException | None = None
        self._closed = False
        self._reader = threading.Thread(target=self._drain, name="backup stream check", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        fd = self.child.stdout.fileno()
        _grow_pipe(fd)
        try:
            while chunk := os.read(fd, CHUNK):
                self.counter(chunk)
        except BaseException as exc:  # noqa: BLE001 - re-raised by finish(), in the caller's thread
            self._failure = exc

    def feed(self, chunk: bytes) -> None:
        if self._closed:
            return
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self.child.stdin.fileno(), view):]
        except BrokenPipeError:  # pg_restore gave up early; finish() reports why
            self._closed = True

    def finish(self, name: str, timeout: float = 600) -> dict[str, int]:
        """Each table's rows, once pg_restore has read the whole archive; BackupInvalid if it could not."""
        self._close_input()
        code = self.child.wait(timeout)
        self._reader.join(timeout)
        self._err.seek(0)
        stderr = self._err.read().decode(errors="replace")
        self._err.close()
        if code != 0:
            raise BackupInvalid(f"{name}: the dump does not read back whole: {proc.tail_lines(stderr, 2)}",
                                "the dump was not kept; check pg_dump's output and the disk, then retry")
        if self._failure is not None:
            raise self._failure
        try:
            return self.counter.finish()
        except OperationFailed as exc:
            raise BackupInvalid(f"{name}: {exc.message}", "the dump was not kept; retry") from None

    def abort(self) -> None:
        self._close_input()
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        self._reader.join(5)
        self._err.close()

    def _close_input(self) -> None:
        if not self.child.stdin.closed:
            try:
                self.child.stdin.close()
            except BrokenPipeError:
                pass
        self._closed = True


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, CHUNK)  # F_SETPIPE_SZ: fewer, larger reads and writes
    except OSError:
        pass
