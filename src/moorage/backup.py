"""Backups you can trust: create, list, verify, prune and restore PostgreSQL dumps.

Files live in ``<backups_dir>/<env>/`` as ``<UTC time>-<env>[-<label>].dump``
(pg_dump's custom format) with a metadata file ``<same stem>.json`` beside
it, so names sort by time.

Creating: ``pg_dump -Fc`` runs on the target (this machine, or inside the
database pod) and its stdout is streamed in 1 MiB chunks into
``<name>.dump.partial`` while being hashed: no copy on the database side, no
second pass. The partial file is locked while it is written; only when
pg_dump exited 0 with a clean stderr and ``pg_restore --list`` reads the
archive is it fsynced and renamed. The metadata is written (atomically)
before that rename, so the rename is the commit point: a ``.dump`` exists
only when it is complete. An interrupted run leaves at most an unlocked
``.partial``, which ``backup.list`` never shows as a backup and the next
``create``/``prune`` deletes.

Restoring: see :func:`restore_backup`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .core import proc
from .core.errors import CommandFailed, OperationFailed, UserError
from .db import MAINTENANCE_DB, Target, database_exists, database_info, pg_error, quote_ident, quote_literal, sql

log = logging.getLogger("moorage.backup")

CHUNK = 1 << 20
SUFFIX = ".dump"
PARTIAL = ".partial"
STAMP = "%Y%m%dT%H%M%SZ"
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
NAME_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-")
MAX_IDENT = 63


class BackupInvalid(OperationFailed):
    """A backup file failed verification (checksum, size, archive structure). Exit 1."""


# --------------------------------------------------------------------------- names and files


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
    def created(self) -> dt.datetime | None:
        if self.meta and self.meta.get("finished_at"):
            return dt.datetime.fromisoformat(self.meta["finished_at"])
        m = NAME_RE.match(self.path.name)
        return dt.datetime.strptime(m["stamp"], STAMP).replace(tzinfo=dt.UTC) if m else None

    def row(self) -> dict[str, Any]:
        m = self.meta or {}
        return {"name": self.name, "path": str(self.path), "status": "ok" if self.valid else self.problem,
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


def partial_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{PARTIAL}")) if directory.is_dir() else []


def find_backup(directory: Path, ref: str) -> Backup:
    """``latest`` (newest valid backup), a name (with or without .dump) or a path."""
    if ref == "latest":
        for b in list_backups(directory):
            if b.valid:
                return b
        raise UserError(f"no valid backup in {directory}", "create one with: inv backup.create")
    candidates = [Path(ref)] if os.sep in ref else []
    candidates += [directory / ref, directory / f"{ref}{SUFFIX}"]
    for path in candidates:
        if path.is_file() and path.name.endswith(SUFFIX):
            return read_backup(path)
    raise UserError(f"backup '{ref}' not found in {directory}", "see the names with: inv backup.list")


def _stale(path: Path) -> bool:
    """A partial file nobody holds the lock on: its writer is gone."""
    import fcntl

    try:
        with open(path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except OSError:
        return False


def remove_stale_partials(directory: Path) -> list[Path]:
    removed = []
    for path in partial_files(directory):
        if _stale(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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


# --------------------------------------------------------------------------- archive checks


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


# --------------------------------------------------------------------------- create


@dataclass
class _Sink:
    """Hash and write each chunk exactly once, straight from pg_dump's pipe."""

    fd: int
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
    clean stderr and the archive's table of contents reads back.
    """
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(directory)
    info = database_info(target)  # also proves the database is reachable before any file exists
    database = target.database
    started = now or utcnow()
    stem = backup_stem(started, environment, label)
    final = directory / f"{stem}{SUFFIX}"
    n = 1
    while final.exists() or final.with_suffix(".json").exists():
        n += 1
        final = directory / f"{stem}.{n}{SUFFIX}"
    partial = final.with_name(final.name + PARTIAL)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    committed = False
    try:
        sink = _Sink(fd, progress)
        t0 = time.monotonic()
        with interruptible():
            done = target.run_streaming(["pg_dump", "--format=custom", "--no-password"], stdout=sink)
        if progress:
            progress(sink.size)
        if done.returncode != 0:
            raise pg_error("pg_dump", done.stderr, target, done.returncode)
        if done.stderr.strip():
            raise OperationFailed(f"pg_dump reported problems: {proc.tail_lines(done.stderr, 5)}",
                                  "the dump was not kept; fix the cause and retry")
        os.fsync(fd)
        seconds = time.monotonic() - t0
        listing = archive_listing(partial)
        header = listing_header(listing)
        finished = utcnow()
        meta = {
            "name": final.name[: -len(SUFFIX)],
            "file": final.name,
            "format": "custom",
            "sha256": sink.hash.hexdigest(),
            "size": sink.size,
            "database": database,
            "server_version": info["server_version"],
            "pg_dump_version": header.get("dumped by pg_dump version"),
            "environment": environment,
            "target": target.description,
            "release_revision": release_revision,
            "alembic_heads": info["alembic_heads"],
            "tables": listing_tables(listing),
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "seconds": round(seconds, 3),
            "moorage_version": __version__,
        }
        _write_json_atomic(final.with_suffix(".json"), meta)
        os.replace(partial, final)  # the commit point
        committed = True
        _fsync_dir(directory)
        return Backup(final, meta)
    finally:
        os.close(fd)
        if not committed:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()


def delete_backup(backup: Backup) -> None:
    backup.meta_path.unlink(missing_ok=True)
    backup.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- prune


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 7
    keep_daily: int = 7  # days back from today: newest backup of each day
    keep_weekly: int = 4  # ISO weeks back from this one: newest backup of each week

    def __post_init__(self):
        if self.keep_last < 1:
            raise UserError("--keep-last must be at least 1", "prune never deletes the newest backup")
        if self.keep_daily < 0 or self.keep_weekly < 0:
            raise UserError("--keep-daily and --keep-weekly must be 0 or more", None)


@dataclass(frozen=True)
class PruneDecision:
    name: str
    created: dt.datetime
    keep: bool
    reasons: tuple[str, ...]


def prune_plan(backups: Iterable[tuple[str, dt.datetime]], policy: RetentionPolicy,
               now: dt.datetime) -> list[PruneDecision]:
    """Which backups to keep, newest first. Pure: names and times in, decisions out.

    A backup is kept if it is among the ``keep_last`` newest, or the newest of
    a calendar day (UTC) within the last ``keep_daily`` days, or the newest of
    an ISO week within the last ``keep_weekly`` weeks. Backups from the future
    (clock skew) are kept.
    """
    items = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)
    today = now.astimezone(dt.UTC).date()
    first_day = today - dt.timedelta(days=policy.keep_daily - 1) if policy.keep_daily else None
    this_week = today - dt.timedelta(days=today.weekday())
    first_week = this_week - dt.timedelta(weeks=policy.keep_weekly - 1) if policy.keep_weekly else None
    days_seen: set[dt.date] = set()
    weeks_seen: set[dt.date] = set()
    out = []
    for i, (name, created) in enumerate(items):
        day = created.astimezone(dt.UTC).date()
        week = day - dt.timedelta(days=day.weekday())
        reasons = []
        if created > now:
            reasons.append("newer than now")
        if i < policy.keep_last:
            reasons.append(f"one of the {policy.keep_last} newest")
        if first_day and first_day <= day <= today and day not in days_seen:
            days_seen.add(day)
            reasons.append(f"newest of {day.isoformat()}")
        if first_week and first_week <= week <= this_week and week not in weeks_seen:
            weeks_seen.add(week)
            reasons.append(f"newest of week {day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}")
        out.append(PruneDecision(name, created, bool(reasons), tuple(reasons) or ("outside the retention policy",)))
    return out


def prune(directory: Path, policy: RetentionPolicy, *, now: dt.datetime | None = None,
          dry_run: bool = False) -> tuple[list[PruneDecision], list[Backup], list[Path]]:
    """Apply :func:`prune_plan` to the valid backups; invalid ones are left for a person to look at."""
    backups = list_backups(directory)
    valid = {b.name: b for b in backups if b.valid}
    decisions = prune_plan([(n, b.created) for n, b in valid.items()], policy, now or utcnow())
    skipped = [b for b in backups if not b.valid]
    partials = [p for p in partial_files(directory) if _stale(p)]
    if not dry_run:
        for d in decisions:
            if not d.keep:
                delete_backup(valid[d.name])
        for p in partials:
            p.unlink(missing_ok=True)
    return decisions, skipped, partials


# --------------------------------------------------------------------------- restore


def temp_names(database: str, when: dt.datetime) -> tuple[str, str]:
    """``<db>_restore_<ts>`` and ``<db>_pre_restore_<ts>``, kept within PostgreSQL's 63 bytes."""
    ts = stamp(when).lower()
    base = database.encode()[: MAX_IDENT - len("_pre_restore_") - len(ts)].decode(errors="ignore")
    return f"{base}_restore_{ts}", f"{base}_pre_restore_{ts}"


def stale_temp_pattern(database: str) -> re.Pattern:
    base = database.encode()[: MAX_IDENT - len("_pre_restore_") - 16].decode(errors="ignore")
    return re.compile(rf"^{re.escape(base)}_restore_\d{{8}}t\d{{6}}z$")


@dataclass
class RestorePlan:
    backup: Backup
    target: str
    database: str
    temp_database: str
    old_database: str
    jobs: int
    keep_old: bool
    steps: list[str]


def plan_restore(backup: Backup, target: Target, *, jobs: int = 1, keep_old: bool = True,
                 when: dt.datetime | None = None) -> RestorePlan:
    when = when or utcnow()
    database = target.database
    temp, old = temp_names(database, when)
    steps = [
        f"verify {backup.name} (sha256, size, pg_restore --list)",
        f"back up the current {database} (safety backup)",
        f"drop leftover {database}_restore_* databases of interrupted restores",
        f"create database {temp} and pg_restore into it" + (f" with {jobs} jobs" if jobs > 1 else ""),
        f"check {temp}: tables and Alembic revision match the backup",
        f"in one transaction: end connections, rename {database} -> {old}, {temp} -> {database}",
        (f"keep {old} (drop it when satisfied)" if keep_old else f"drop {old}"),
    ]
    return RestorePlan(backup, target.description, database, temp, old, jobs, keep_old, steps)


def _drop_database(target: Target, name: str) -> None:
    try:
        sql(target, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)", database=MAINTENANCE_DB,
            what=f"dropping {name}")
    except CommandFailed as exc:
        if "syntax error" not in exc.message:
            raise
        # PostgreSQL < 13 has no FORCE.
        sql(target, f"DROP DATABASE IF EXISTS {quote_ident(name)}", database=MAINTENANCE_DB,
            what=f"dropping {name}")


def drop_stale_temp_databases(target: Target, database: str) -> list[str]:
    """Drop ``<db>_restore_<ts>`` databases that an interrupted restore left behind.

    Restores of one database must not run concurrently: the newest temp
    database of a running restore would be taken for a leftover.
    """
    pattern = stale_temp_pattern(database)
    names = sql(target, "SELECT datname FROM pg_database", database=MAINTENANCE_DB).split("\n")
    stale = [n for n in (x.strip() for x in names) if pattern.match(n)]
    for name in stale:
        _drop_database(target, name)
    return stale


def _count_tables(target: Target, database: str) -> int:
    out = sql(target, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                      "AND n.nspname NOT LIKE 'pg_toast%'", database=database, what="counting restored tables")
    return int(out.strip())


def swap_sql(database: str, temp: str, old: str) -> str:
    """One transaction: end other sessions, then both renames. It commits whole or not at all."""
    return (
        "BEGIN;\n"
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname IN ({quote_literal(database)}, {quote_literal(temp)}) AND pid <> pg_backend_pid();\n"
        f"ALTER DATABASE {quote_ident(database)} RENAME TO {quote_ident(old)};\n"
        f"ALTER DATABASE {quote_ident(temp)} RENAME TO {quote_ident(database)};\n"
        "COMMIT;"
    )


def restore_backup(target: Target, backup: Backup, *, environment: str, backups_root: Path,
                   confirm: Callable[[RestorePlan], None], force_env: bool = False, jobs: int = 1,
                   keep_old: bool = True, say: Callable[[str], None] = lambda _s: None,
                   progress: Callable[[int], None] | None = None,
                   now: dt.datetime | None = None) -> dict[str, Any]:
    """Replace the target's database with ``backup``, leaving it untouched if anything fails.

    The design: the original database is only ever *read* (by the safety
    backup) until the very last step. The archive is restored into a new
    database ``<db>_restore_<ts>`` and checked there. Then one transaction on
    the maintenance database ends the other sessions and renames
    ``<db>`` -> ``<db>_pre_restore_<ts>`` and ``<db>_restore_<ts>`` -> ``<db>``;
    PostgreSQL commits both renames or neither, so there is no moment without
    a ``<db>``. A failure, Ctrl-C or SIGTERM before that commit drops the temp
    database; a SIGKILL or a server crash leaves it, and the next restore
    drops it first. The original is kept as ``<db>_pre_restore_<ts>`` by
    default: switching back is one rename and instant, while the safety
    backup (also taken) needs a full restore. It costs the disk of a second
    copy, so ``keep_old=False`` drops it after the swap.

    Limits: database-level settings (``ALTER DATABASE ... SET``, database
    GRANTs) belong to the old database object and are not carried over; the
    new database copies its owner, encoding and locale.
    """
    try:
        verified = verify_backup(backup)
    except BackupInvalid as exc:
        raise UserError(f"refusing to restore: {exc.message}", exc.hint) from None
    backup_env = (backup.meta or {}).get("environment")
    if backup_env != environment and not force_env:
        raise UserError(f"backup {backup.name} was taken from environment '{backup_env}', not '{environment}'",
                        "pass --force-env to restore it here anyway")
    plan = plan_restore(backup, target, jobs=jobs, keep_old=keep_old, when=now)
    confirm(plan)
    database = plan.database
    result: dict[str, Any] = {"backup": backup.name, "database": database, "verified": verified,
                              "old_database": plan.old_database if keep_old else None}
    with interruptible():
        stale = drop_stale_temp_databases(target, database)
        if stale:
            say(f"dropped {len(stale)} leftover database(s) of interrupted restores: {', '.join(stale)}")
        exists = database_exists(target, database)
        if exists:
            say(f"safety backup of {database}")
            safety = create_backup(target, backup_dir(backups_root, environment), environment=environment,
                                   label="pre-restore", progress=progress)
            result["safety_backup"] = safety.name
            say(f"safety backup {safety.name} ({safety.meta['size']} bytes)")
            row = sql(target, "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
                              f"FROM pg_database WHERE datname = {quote_literal(database)}", database=MAINTENANCE_DB)
            owner, encoding, collate, ctype = row.strip().split("|")
            create = (f"CREATE DATABASE {quote_ident(plan.temp_database)} TEMPLATE template0 OWNER "
                      f"{quote_ident(owner)} ENCODING {quote_literal(encoding)} "
                      f"LC_COLLATE {quote_literal(collate)} LC_CTYPE {quote_literal(ctype)}")
        else:
            create = f"CREATE DATABASE {quote_ident(plan.temp_database)} TEMPLATE template0"
        swapped = False
        try:
            sql(target, create, database=MAINTENANCE_DB, what=f"creating {plan.temp_database}")
            say(f"restoring {backup.name} into {plan.temp_database}" + (f" ({jobs} jobs)" if jobs > 1 else ""))
            done = target.restore_archive(backup.path, plan.temp_database, jobs)
            if done.returncode != 0:
                raise OperationFailed(f"pg_restore into {plan.temp_database} failed (exit {done.returncode}): "
                                      f"{proc.tail_lines(done.stderr, 5)}",
                                      f"{database} was not changed")
            tables = _count_tables(target, plan.temp_database)
            if tables < verified["tables"]:
                raise OperationFailed(f"{plan.temp_database} has {tables} tables, the backup {verified['tables']}",
                                      f"{database} was not changed")
            heads = (backup.meta or {}).get("alembic_heads") or []
            if heads:
                got = sorted(sql(target, "SELECT version_num FROM alembic_version",
                                 database=plan.temp_database).split())
                if got != sorted(heads):
                    raise OperationFailed(f"{plan.temp_database} is at Alembic {got}, the backup at {heads}",
                                          f"{database} was not changed")
            say(f"swapping {plan.temp_database} in as {database}")
            if exists:
                _swap(target, database, plan.temp_database, plan.old_database)
            else:
                sql(target, f"ALTER DATABASE {quote_ident(plan.temp_database)} RENAME TO {quote_ident(database)}",
                    database=MAINTENANCE_DB, what="renaming the restored database")
            swapped = True
        finally:
            if not swapped:
                try:
                    _drop_database(target, plan.temp_database)
                except Exception as exc:  # noqa: BLE001 - the original error matters more
                    log.warning("could not drop %s (the next restore drops it): %s", plan.temp_database, exc)
        if exists and not keep_old:
            _drop_database(target, plan.old_database)
    result["tables"] = tables
    return result


def _swap(target: Target, database: str, temp: str, old: str, attempts: int = 5) -> None:
    """Run :func:`swap_sql`, retrying when a client reconnected between terminate and rename."""
    for attempt in range(1, attempts + 1):
        try:
            sql(target, swap_sql(database, temp, old), database=MAINTENANCE_DB, what="swapping databases")
            return
        except CommandFailed as exc:
            if "being accessed by other users" not in exc.message or attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def summarize(backups: Sequence[Backup]) -> list[dict[str, Any]]:
    return [b.row() for b in backups]
