"""Is a backup what its metadata says: size and sha256, then the archive read back by ``pg_restore``."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from ..core import proc
from ..core.errors import CommandFailed, OperationFailed
from .store import Backup

CHUNK = 1 << 20


class BackupInvalid(OperationFailed):
    """A backup file failed verification (checksum, size, archive structure). Exit 1."""


def archive_listing(path: Path) -> str:
    """``pg_restore --list``: reads the archive's header and table of contents."""
    try:
        return proc.run(["pg_restore", "--list", str(path)], timeout=300, what="pg_restore --list").stdout
    except CommandFailed as exc:
        raise BackupInvalid(f"{path.name} is not a readable pg_dump archive: {proc.tail_lines(exc.stderr, 3)}",
                            "the file is damaged; use another backup") from None


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


def verify_backup(backup: Backup, *, deep: bool = False) -> dict[str, Any]:
    """Checksum and size against the metadata, then ``pg_restore --list``.

    ``deep`` also decodes every data block (``pg_restore -f /dev/null``),
    which catches damage the checksum cannot (a backup whose metadata was
    rewritten) at the cost of reading and decompressing the whole archive.
    Raises BackupInvalid with the reason.
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
    if deep:
        try:
            proc.run(["pg_restore", "-f", os.devnull, str(backup.path)], timeout=3600, what="pg_restore (decode)")
        except CommandFailed as exc:
            raise BackupInvalid(f"{backup.name}: data blocks do not decode: {proc.tail_lines(exc.stderr, 3)}",
                                "use another backup") from None
    return {"name": backup.name, "sha256": digest, "size": size, "tables": listing_tables(listing), "deep": deep}
