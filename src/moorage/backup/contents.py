"""What an archive holds, read from every one of its data blocks: the row count of each table.

``pg_restore --data-only --file=-`` writes the archive's data as
SQL: one ``COPY <table> (...) FROM stdin;`` block per table, one line per
row (newlines inside values are escaped as ``\\n`` in COPY's text format),
ended by a line ``\\.``. Counting the lines of each block gives the exact
number of rows pg_dump wrote, in the dump's own snapshot: a count taken with
``SELECT count(*)`` beside the dump would see a different moment of a busy
database. Reading the blocks also decodes every one of them, so a damaged
archive fails here (:class:`ArchiveUnreadable`).

The counts are recorded in a backup's metadata (``row_counts``) when it is
created and compared with the restored tables by a drill. Table names are
kept as pg_dump writes them (``public.orders``, ``"Odd"."Name"``): ready to
use in SQL, and checked by :func:`qualified_name` before they are.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..core import proc
from ..core.errors import OperationFailed
from ..pg import tool

CHUNK = 1 << 20
TERMINATOR = b"\\."
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)'
QUALIFIED_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})?$")
# "COPY <table> <column list> FROM stdin;": the list is empty (two spaces) for a table without columns
COPY_RE = re.compile(rf"^COPY ({_IDENT}(?:\.{_IDENT})?) (?:\(.*\))? FROM stdin;$")


class ArchiveUnreadable(OperationFailed):
    """pg_restore could not read every data block of the archive. Exit 1."""


def qualified_name(name: str) -> str:
    """``name`` if it is a (schema-qualified) SQL identifier as pg_dump writes them; ValueError otherwise."""
    if not isinstance(name, str) or not QUALIFIED_RE.match(name):
        raise ValueError(f"not a table name: {name!r}")
    return name


class CopyCounter:
    """Fed pg_restore's SQL output chunk by chunk; ``counts`` maps each COPY block's table to its rows.

    Outside a block lines are split one by one (only DDL and SET lines: small);
    inside one, rows are counted with ``bytes.count`` over whole chunks.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._table: str | None = None
        self._rest = b""

    def __call__(self, chunk: bytes) -> None:
        buf = self._rest + chunk if self._rest else chunk
        pos = 0
        while pos < len(buf):
            if self._table is None:
                end = buf.find(b"\n", pos)
                if end < 0:
                    break
                self._header(buf[pos:end])
                pos = end + 1
                continue
            pos = self._rows(buf, pos)
            if self._table is not None:  # the block goes on in the next chunk
                break
        self._rest = buf[pos:]

    def _header(self, line: bytes) -> None:
        if line.startswith(b"COPY "):
            m = COPY_RE.match(line.decode("utf-8", "replace"))
            if m:
                self._table = m[1]
                self.counts[self._table] = self.counts.get(self._table, 0)

    def _rows(self, buf: bytes, pos: int) -> int:
        """Count whole rows from ``pos`` (a line start); the position to go on from."""
        if buf.startswith(TERMINATOR + b"\n", pos):
            self._table = None
            return pos + 3
        end = buf.find(b"\n" + TERMINATOR + b"\n", pos)
        if end >= 0:
            self.counts[self._table] += buf.count(b"\n", pos, end + 1)
            self._table = None
            return end + 4
        last = buf.rfind(b"\n", pos)
        if last < 0:
            return pos  # not even one whole line yet
        self.counts[self._table] += buf.count(b"\n", pos, last + 1)
        return last + 1

    def finish(self) -> dict[str, int]:
        if self._table is not None:
            raise ArchiveUnreadable(f"the data of {self._table} ends without its terminator",
                                    "the archive is damaged; use another backup")
        return dict(sorted(self.counts.items()))


def count_lines(chunks: Iterable[bytes]) -> dict[str, int]:
    """The row counts of pg_restore SQL output given as chunks (see :class:`CopyCounter`)."""
    counter = CopyCounter()
    for chunk in chunks:
        counter(chunk)
    return counter.finish()


def _grow_pipe(fd: int) -> None:
    """Fewer, larger reads (F_SETPIPE_SZ): the default 64 KiB pipe costs a read per 64 KiB."""
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, CHUNK)
    except OSError:
        pass


def archive_row_counts(archive: Path, *, on_chunk: Callable[[int], None] | None = None) -> dict[str, int]:
    """Decode every data block of ``archive`` and count each table's rows; ArchiveUnreadable if it cannot.

    pg_restore runs here on the local file and its SQL goes through a pipe
    straight into the counter: nothing is written to disk.
    """
    with tempfile.TemporaryFile() as err:
        child = proc.start([tool("pg_restore"), "--data-only", "--file=-", str(archive)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        counter = CopyCounter()
        done = 0
        try:
            fd = child.stdout.fileno()
            _grow_pipe(fd)
            while chunk := os.read(fd, CHUNK):
                counter(chunk)
                done += len(chunk)
                if on_chunk is not None:
                    on_chunk(done)
            child.stdout.close()
            code = child.wait()
        except BaseException:
            child.kill()
            child.wait()
            raise
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if code != 0:
        raise ArchiveUnreadable(f"{archive.name}: data blocks do not decode: {proc.tail_lines(stderr, 3)}",
                                "the archive is damaged; use another backup")
    return counter.finish()
