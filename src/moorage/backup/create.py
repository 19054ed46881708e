"""Taking a backup: ``pg_dump -Fc`` streamed into a locked ``.partial`` file, read back whole, then committed.

``pg_dump`` runs on the target (this machine, or inside the database pod) and
its stdout is streamed in 1 MiB chunks into ``<name>.dump.partial`` while
being hashed and fed to a ``pg_restore`` that decodes every data block as it
arrives (:class:`moorage.backup.verify.StreamCheck`): no copy on the database
side, no second pass. The partial file is born locked under a name no other
run can take; only when pg_dump exited 0 with a clean stderr and the whole
archive read back is it fsynced and renamed. The metadata is written
(atomically) before that rename, so the rename is the commit point: a
``.dump`` exists only when it is complete. An interrupted run leaves at most
an unlocked ``.partial``, which ``backup.list`` never shows as a backup and
the next ``create``/``prune`` deletes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..core import proc
from ..core.errors import OperationFailed
from ..pg import Target, database_info, pg_error
from .store import (
    PARTIAL,
    SUFFIX,
    Backup,
    backup_stem,
    claim_path,
    fsync_dir,
    kind_of,
    remove_stale_partials,
    utcnow,
    write_json_atomic,
)
from .verify import StreamCheck, archive_listing, listing_header, listing_tables


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C here, so cleanup code runs when a CI job is cancelled."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@dataclass
class Sink:
    """Hash, write and hand to the stream check each chunk exactly once, straight from pg_dump's pipe."""

    fd: int
    check: StreamCheck | None = None
    on_progress: Callable[[int], None] | None = None
    size: int = 0
    hash: Any = field(default_factory=hashlib.sha256)
    _last: float = 0.0

    def __call__(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        view = memoryview(chunk)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        if self.check is not None:
            self.check.feed(chunk)
        self.size += len(chunk)
        if self.on_progress is not None:
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._last = now
                self.on_progress(self.size)


def create_backup(target: Target, directory: Path, *, environment: str, label: str | None = None,
                  release_revision: str | None = None, progress: Callable[[int], None] | None = None,
                  now: dt.datetime | None = None) -> Backup:
    """Dump the target's database into ``directory``; return the finished, checked Backup.

    Nothing is left under a ``.dump`` name unless pg_dump exited 0 with a
    clean stderr and every data block of the archive decoded.
    """
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(directory)
    info = database_info(target)  # also proves the database is reachable before any file exists
    database = target.database
    started = now or utcnow()
    final, fd = claim_path(directory, backup_stem(started, environment, label))
    partial = final.with_name(final.name + PARTIAL)
    committed = False
    try:
        t0 = time.monotonic()
        sink, row_counts = _dump(target, fd, progress, final.name[: -len(SUFFIX)])
        seconds = time.monotonic() - t0
        listing = archive_listing(partial)
        meta = {
            "name": final.name[: -len(SUFFIX)],
            "file": final.name,
            "format": "custom",
            "kind": kind_of(label),
            "label": label,
            "sha256": sink.hash.hexdigest(),
            "size": sink.size,
            "database": database,
            "server_version": info["server_version"],
            "pg_dump_version": listing_header(listing).get("dumped by pg_dump version"),
            "environment": environment,
            "target": target.description,
            "release_revision": release_revision,
            "alembic_heads": info["alembic_heads"],
            "tables": listing_tables(listing),
            # per-table rows as pg_dump wrote them (its snapshot), for drills; from the full read at creation
            "row_counts": row_counts,
            "verified": "full read at creation",
            "started_at": started.isoformat(),
            "finished_at": utcnow().isoformat(),
            "seconds": round(seconds, 3),
            "moorage_version": __version__,
        }
        write_json_atomic(final.with_suffix(".json"), meta)
        os.replace(partial, final)  # the commit point
        committed = True
        fsync_dir(directory)
        return Backup(final, meta)
    finally:
        os.close(fd)
        if not committed:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()


def _dump(target: Target, fd: int, progress: Callable[[int], None] | None,
          name: str) -> tuple[Sink, dict[str, int]]:
    """pg_dump into ``fd`` (fsynced) and through the stream check; raises unless both succeeded."""
    check = StreamCheck()
    sink = Sink(fd, check, progress)
    try:
        with interruptible():
            done = target.run_streaming(["pg_dump", "--format=custom", "--no-password"], stdout=sink)
    except BaseException:
        check.abort()
        raise
    if progress:
        progress(sink.size)
    if done.returncode != 0:
        check.abort()
        raise pg_error("pg_dump", done.stderr, target, done.returncode)
    if done.stderr.strip():
        check.abort()
        raise OperationFailed(f"pg_dump reported problems: {proc.tail_lines(done.stderr, 5)}",
                              "the dump was not kept; fix the cause and retry")
    row_counts = check.finish(name)
    os.fsync(fd)
    return sink, row_counts
