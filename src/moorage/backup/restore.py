"""Restoring a backup: into a new database, checked there, then swapped in with one transaction.

The original database is only ever *read* (by the safety backup) until the
very last step; see :func:`restore_backup` for the design.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import proc
from ..core.errors import EXIT_BAD_INPUT, CommandFailed, Interrupted, MoorageError, OperationFailed, UserError
from ..pg import MAINTENANCE_DB, Target, database_exists, quote_ident, quote_literal, sql
from .create import create_backup, interruptible
from .store import Backup, backup_dir, stamp, utcnow
from .verify import BackupInvalid, verify_backup

log = logging.getLogger("moorage.backup")

MAX_IDENT = 63


# --------------------------------------------------------------------------- names and plan


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
        f"verify {backup.name} (sha256, size, every data block read back)",
        f"back up the current {database} (safety backup)",
        f"drop leftover {database}_restore_* databases of interrupted restores",
        f"create database {temp} and pg_restore into it" + (f" with {jobs} jobs" if jobs > 1 else ""),
        f"check {temp}: tables and Alembic revision match the backup",
        f"in one transaction: end connections, rename {database} -> {old}, {temp} -> {database}",
        (f"keep {old} (drop it when satisfied)" if keep_old else f"drop {old}"),
    ]
    return RestorePlan(backup, target.description, database, temp, old, jobs, keep_old, steps)


# --------------------------------------------------------------------------- database operations


def drop_database(target: Target, name: str) -> None:
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
        drop_database(target, name)
    return stale


def _count_tables(target: Target, database: str) -> int:
    out = sql(target, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                      "AND n.nspname NOT LIKE 'pg_toast%'", database=database, what="counting restored tables")
    return int(out.strip())


def _create_like(target: Target, database: str, temp: str) -> str:
    """CREATE DATABASE ``temp`` with the owner, encoding and locale of ``database``."""
    row = sql(target, "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
                      f"FROM pg_database WHERE datname = {quote_literal(database)}", database=MAINTENANCE_DB)
    owner, encoding, collate, ctype = row.strip().split("|")
    return (f"CREATE DATABASE {quote_ident(temp)} TEMPLATE template0 OWNER "
            f"{quote_ident(owner)} ENCODING {quote_literal(encoding)} "
            f"LC_COLLATE {quote_literal(collate)} LC_CTYPE {quote_literal(ctype)}")


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


def _swap(target: Target, database: str, temp: str, old: str, attempts: int = 5) -> None:
    """Run :func:`swap_sql`, again when a client reconnected between the terminate and the rename."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_incrementing

    def reconnected(exc: BaseException) -> bool:
        return isinstance(exc, CommandFailed) and "being accessed by other users" in exc.message

    for attempt in Retrying(retry=retry_if_exception(reconnected), stop=stop_after_attempt(attempts),
                            wait=wait_incrementing(start=0.2, increment=0.2), reraise=True):
        with attempt:
            sql(target, swap_sql(database, temp, old), database=MAINTENANCE_DB, what="swapping databases")


@dataclass
class RestoreState:
    """How far a restore got, to say what state the database is in when it stops."""

    plan: RestorePlan
    stage: str = "prepare"  # prepare -> restore -> swap -> swapped
    had_original: bool = True
    temp_left: bool = False

    def settle(self, target: Target) -> None:
        """After a stop during the swap, ask the server whether it committed (if it still answers)."""
        if self.stage != "swap":
            return
        p = self.plan
        try:
            done = database_exists(target, p.old_database if self.had_original else p.database)
        except MoorageError:
            return
        self.stage = "swapped" if done else "restore"

    def describe(self) -> str:
        p = self.plan
        left = f"; the temporary {p.temp_database} is left behind (the next restore drops it)" if self.temp_left else ""
        if self.stage in ("prepare", "restore"):
            return f"{p.database} is unchanged{left}"
        if self.stage == "swap":
            return (f"it stopped during the swap, which commits whole or not at all: {p.database} is either "
                    f"unchanged or the restored backup (then the original is {p.old_database}){left}; "
                    "see which with: psql -l")
        kept = f"; the original is {p.old_database}" if self.had_original else ""
        return f"{p.database} is the restored backup{kept}"


# --------------------------------------------------------------------------- restore


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
    verified = _verified_for(backup, environment, force_env)
    plan = plan_restore(backup, target, jobs=jobs, keep_old=keep_old, when=now)
    lacking = missing_right(target, plan.database)
    if lacking:
        raise UserError(f"cannot restore into {plan.database} on {target.description}: {lacking}",
                        "configure a superuser for restores (database.superuser in invoke.yaml) or grant that "
                        "right; nothing was changed")
    confirm(plan)
    result: dict[str, Any] = {"backup": backup.name, "database": plan.database, "verified": verified,
                              "old_database": plan.old_database if keep_old else None}
    state = RestoreState(plan)
    try:
        with interruptible():
            exists, create = _prepare(target, plan, backup_dir(backups_root, environment), environment, result,
                                      say, progress)
            result["tables"] = _restore_and_swap(target, plan, create, exists, verified, say, state)
            if exists and not keep_old:
                drop_database(target, plan.old_database)
    except KeyboardInterrupt:
        state.settle(target)
        raise Interrupted(f"restore interrupted: {state.describe()}") from None
    except MoorageError as exc:
        if exc.exit_code != EXIT_BAD_INPUT:
            raise
        state.settle(target)
        # Past the confirmation something may have changed: no longer "bad input, nothing changed".
        raise OperationFailed(f"restore of {backup.name} stopped: {exc.message}; {state.describe()}",
                              exc.hint) from None
    return result


def missing_right(target: Target, database: str) -> str | None:
    """Why the target's user cannot run a restore (build a new database and swap it in), or None.

    It needs CREATEDB (or superuser) to create the copy, and to own the database (or be a member of
    its owner's role) to give the copy that owner and rename both.
    """
    row = sql(target, "SELECT r.rolsuper, r.rolcreatedb, coalesce(pg_has_role(current_user, d.datdba, 'MEMBER'), "
                      f"true), current_user FROM pg_roles r LEFT JOIN pg_database d ON d.datname = "
                      f"{quote_literal(database)} WHERE r.rolname = current_user",
              database=MAINTENANCE_DB, what="reading the restoring user's rights").strip()
    superuser, createdb, owner, user = (row.split("|") + ["", "", "", ""])[:4]
    if superuser == "t":
        return None
    if createdb != "t":
        return f"user {user} lacks CREATEDB, needed to create the database the backup is restored into"
    if owner != "t":
        return f"user {user} does not own {database} (nor belong to its owner's role), needed to swap it"
    return None


def _verified_for(backup: Backup, environment: str, force_env: bool) -> dict[str, Any]:
    """The verified backup's facts; bad input if it is damaged or from another environment."""
    try:
        verified = verify_backup(backup)
    except BackupInvalid as exc:
        raise UserError(f"refusing to restore: {exc.message}", exc.hint) from None
    backup_env = (backup.meta or {}).get("environment")
    if backup_env != environment and not force_env:
        raise UserError(f"backup {backup.name} was taken from environment '{backup_env}', not '{environment}'",
                        "pass --force-env to restore it here anyway")
    return verified


def _prepare(target: Target, plan: RestorePlan, directory: Path, environment: str, result: dict[str, Any],
             say: Callable[[str], None], progress: Callable[[int], None] | None) -> tuple[bool, str]:
    """Drop leftovers, take the safety backup; whether the database exists, and how to create the temp one."""
    database = plan.database
    stale = drop_stale_temp_databases(target, database)
    if stale:
        say(f"dropped {len(stale)} leftover database(s) of interrupted restores: {', '.join(stale)}")
    if not database_exists(target, database):
        return False, f"CREATE DATABASE {quote_ident(plan.temp_database)} TEMPLATE template0"
    say(f"safety backup of {database}")
    safety = create_backup(target, directory, environment=environment, label="pre-restore", progress=progress)
    result["safety_backup"] = safety.name
    say(f"safety backup {safety.name} ({safety.meta['size']} bytes)")
    return True, _create_like(target, database, plan.temp_database)


def _restore_and_swap(target: Target, plan: RestorePlan, create: str, exists: bool, verified: dict[str, Any],
                      say: Callable[[str], None], state: RestoreState) -> int:
    """Restore into the temp database, check it, swap it in; the temp database goes on any failure."""
    database, temp = plan.database, plan.temp_database
    state.stage, state.had_original = "restore", exists
    try:
        state.temp_left = True
        sql(target, create, database=MAINTENANCE_DB, what=f"creating {temp}")
        say(f"restoring {plan.backup.name} into {temp}" + (f" ({plan.jobs} jobs)" if plan.jobs > 1 else ""))
        done = target.restore_archive(plan.backup.path, temp, plan.jobs)
        if done.returncode != 0:
            raise OperationFailed(f"pg_restore into {temp} failed (exit {done.returncode}): "
                                  f"{proc.tail_lines(done.stderr, 5)}",
                                  f"{database} was not changed")
        tables = _check_restored(target, plan, verified)
        say(f"swapping {temp} in as {database}")
        state.stage = "swap"
        if exists:
            _swap(target, database, temp, plan.old_database)
        else:
            sql(target, f"ALTER DATABASE {quote_ident(temp)} RENAME TO {quote_ident(database)}",
                database=MAINTENANCE_DB, what="renaming the restored database")
        state.stage, state.temp_left = "swapped", False
        return tables
    finally:
        if state.temp_left:  # after a swap that did commit, no database has that name any more
            try:
                drop_database(target, temp)
                state.temp_left = False
            except BaseException as exc:  # noqa: BLE001 - the original error matters more
                log.warning("could not drop %s (the next restore drops it): %s", temp, exc)


def _check_restored(target: Target, plan: RestorePlan, verified: dict[str, Any]) -> int:
    """The temp database holds the backup's tables and Alembic revision; its table count."""
    database, temp = plan.database, plan.temp_database
    tables = _count_tables(target, temp)
    if tables < verified["tables"]:
        raise OperationFailed(f"{temp} has {tables} tables, the backup {verified['tables']}",
                              f"{database} was not changed")
    heads = (plan.backup.meta or {}).get("alembic_heads") or []
    if heads:
        got = sorted(sql(target, "SELECT version_num FROM alembic_version", database=temp).split())
        if got != sorted(heads):
            raise OperationFailed(f"{temp} is at Alembic {got}, the backup at {heads}",
                                  f"{database} was not changed")
    return tables
