"""Backup files on disk: names, metadata, listing and finding, partial files, durable writes.

Files live in ``<backups_dir>/<env>/`` as ``<UTC time>-<env>[-<label>].dump``
(pg_dump's custom format) with a metadata file ``<same stem>.json`` beside
it, so names sort by time; a second backup with the same name in the same
second gets ``.2`` (``.3``...) before the suffix. A ``.partial`` file is a
backup being written (its writer holds a lock on it) or the leftover of an
interrupted one (nobody does): it is never listed as a backup.

Safety backups (labels ``pre-restore``, ``pre-downgrade``, ``pre-upgrade``)
are the ones Moorage takes by itself before it changes a database. They are
listed as such and restored only by name: ``latest`` is the newest ordinary
backup, so running ``backup.restore latest`` twice restores the same backup
twice instead of undoing the first restore with its own safety backup.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UserError

SUFFIX = ".dump"
PARTIAL = ".partial"
STAMP = "%Y%m%dT%H%M%SZ"
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
NAME_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-")
#: The labels of the backups Moorage takes by itself before it changes a database.
SAFETY_LABELS = ("pre-restore", "pre-downgrade", "pre-upgrade")


# --------------------------------------------------------------------------- names


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime(STAMP)


def backup_dir(backups_root: Path, env_name: str) -> Path:
    return Path(backups_root) / env_name


def backup_stem(when: dt.datetime, env_name: str, label: str | None = None) -> str:
    if label is not None and not LABEL_RE.match(label):
        raise UserError(f"backup name '{label}' is not allowed",
                        "use lowercase letters, digits, '.', '_' and '-'")
    return f"{stamp(when)}-{env_name}" + (f"-{label}" if label else "")


def kind_of(label: str | None) -> str:
    """``safety`` for the labels of Moorage's own before-a-change backups, else ``ordinary``."""
    return "safety" if label in SAFETY_LABELS else "ordinary"


def claim_path(directory: Path, stem: str) -> tuple[Path, int]:
    """A free ``<stem>[.<n>].dump``, its ``.partial`` created and locked: (final path, locked descriptor).

    The partial file is born locked (a locked temporary file linked to its
    name, which fails if the name exists), so two runs in the same second
    never get the same name, and no run ever sees the other's partial file
    unlocked and takes it for a leftover. A name whose ``.dump`` or metadata
    exists is skipped.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".claim{PARTIAL}", dir=directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for n in itertools.count(1):
            final = directory / (f"{stem}{SUFFIX}" if n == 1 else f"{stem}.{n}{SUFFIX}")
            partial = final.with_name(final.name + PARTIAL)
            if final.exists() or final.with_suffix(".json").exists():
                continue
            try:
                os.link(tmp, partial)
            except FileExistsError:
                continue  # another run is writing a backup of that name right now
            if final.exists():  # committed between the check and the claim
                partial.unlink(missing_ok=True)
                continue
            return final, fd
        raise AssertionError("unreachable")  # pragma: no cover - count() never ends
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.unlink(tmp)


# --------------------------------------------------------------------------- backups


@dataclass
class Backup:
    """One ``.dump`` file and what its metadata says about it."""

    path: Path
    meta: dict[str, Any] | None = None
    problem: str | None = None  # why it is not a usable backup, from the listing alone

    @property
    def name(self) -> str:
        return self.path.name[: -len(SUFFIX)]

    @property
    def meta_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def valid(self) -> bool:
        return self.problem is None

    @property
    def kind(self) -> str:
        """``safety`` (taken by Moorage before a change; restored only by name) or ``ordinary``."""
        recorded = (self.meta or {}).get("kind")
        if recorded in ("safety", "ordinary"):
            return recorded
        label = re.sub(r"\.\d+$", "", self.name).rsplit("-", 2)  # backups made before the kind was recorded
        return kind_of("-".join(label[-2:]))

    @property
    def kind_label(self) -> str:
        """What ``backup.list`` shows: ``safety (pre-restore)`` or ``ordinary``."""
        if self.kind != "safety":
            return "ordinary"
        label = (self.meta or {}).get("label")
        return f"safety ({label})" if label else "safety"

    @property
    def created(self) -> dt.datetime | None:
        if self.meta and self.meta.get("finished_at"):
            return dt.datetime.fromisoformat(self.meta["finished_at"])
        m = NAME_RE.match(self.path.name)
        return dt.datetime.strptime(m["stamp"], STAMP).replace(tzinfo=dt.UTC) if m else None

    def row(self) -> dict[str, Any]:
        m = self.meta or {}
        return {"name": self.name, "path": str(self.path), "status": "ok" if self.valid else self.problem,
                "kind": self.kind, "label": m.get("label"),
                "created": self.created.isoformat() if self.created else None, "size": m.get("size"),
                "environment": m.get("environment"), "database": m.get("database"),
                "alembic_heads": m.get("alembic_heads"), "sha256": m.get("sha256")}


def read_backup(path: Path) -> Backup:
    b = Backup(path)
    try:
        b.meta = json.loads(b.meta_path.read_text())
    except FileNotFoundError:
        b.problem = "no metadata"
        return b
    except (OSError, ValueError) as exc:
        b.problem = f"unreadable metadata: {exc}"
        return b
    if not isinstance(b.meta, dict) or not isinstance(b.meta.get("sha256"), str):
        b.problem = "metadata without a checksum"
    elif b.meta.get("size") != path.stat().st_size:
        b.problem = f"size {path.stat().st_size} differs from the recorded {b.meta.get('size')}"
    return b


def list_backups(directory: Path) -> list[Backup]:
    """Every ``.dump`` in ``directory``, newest first. Partial files are not backups."""
    if not directory.is_dir():
        return []
    found = [read_backup(p) for p in directory.glob(f"*{SUFFIX}") if p.is_file()]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda b: (b.created or epoch, b.name), reverse=True)


def find_backup(directory: Path, ref: str) -> Backup:
    """``latest`` (newest valid ordinary backup), a name (with or without .dump) or a path."""
    if ref == "latest":
        valid = [b for b in list_backups(directory) if b.valid]
        for b in valid:
            if b.kind == "ordinary":
                return b
        if valid:
            raise UserError(f"no ordinary backup in {directory}, only safety backups (newest: {valid[0].name})",
                            "safety backups are restored by name: see inv backup.list")
        raise UserError(f"no valid backup in {directory}", "create one with: inv backup.create")
    candidates = [Path(ref)] if os.sep in ref else []
    candidates += [directory / ref, directory / f"{ref}{SUFFIX}"]
    for path in candidates:
        if path.is_file() and path.name.endswith(SUFFIX):
            return read_backup(path)
    raise UserError(f"backup '{ref}' not found in {directory}", "see the names with: inv backup.list")


def delete_backup(backup: Backup) -> None:
    backup.meta_path.unlink(missing_ok=True)
    backup.path.unlink(missing_ok=True)


def summarize(backups: Sequence[Backup]) -> list[dict[str, Any]]:
    return [b.row() for b in backups]


# --------------------------------------------------------------------------- partial files


def partial_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{PARTIAL}")) if directory.is_dir() else []


def is_stale(path: Path) -> bool:
    """A partial file nobody holds the lock on: its writer is gone (partial files are born locked)."""
    try:
        with open(path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except OSError:
        return False


def stale_partials(directory: Path) -> list[Path]:
    return [p for p in partial_files(directory) if is_stale(p)]


def remove_stale_partials(directory: Path) -> list[Path]:
    removed = []
    for path in stale_partials(directory):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# --------------------------------------------------------------------------- durable writes


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
