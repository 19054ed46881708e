"""Restore drills: prove a backup restores, and that what comes back is what was backed up.

A drill restores the backup into a throwaway database ``<db>_drill_<ts>`` on
the target's server (never the live database: the name is new, and the drill
refuses to start if a database of that name exists), then checks invariants
there:

- ``restore``: pg_restore (``--exit-on-error``) read and applied every entry;
- ``tables``: at least the backup's number of tables came back;
- ``row counts``: each table holds the rows the archive recorded at creation
  (``row_counts`` in the metadata; backups made before counts were recorded
  skip this check and say so);
- ``migration head``: ``alembic_version`` is the backup's recorded revision(s);
- each configured check (``backup.drill_checks: [{name, sql}]``): one query
  run in the restored database that must return exactly one row, ``true``.

Every check runs, so one failure does not hide another. The throwaway database
is dropped on success, on failure, on Ctrl-C and on SIGTERM; only a SIGKILL
leaves it (named ``<db>_drill_<ts>``; the next drill warns about it). The
outcome and the restore's duration are written into the backup's metadata
(``last_drill``, atomically), which ``backup.list`` shows.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import __version__
from ..core import proc
from ..core.errors import CommandFailed, ConfigError, UserError
from ..pg import MAINTENANCE_DB, Target, database_exists, quote_ident, quote_literal, sql
from .contents import qualified_name
from .create import interruptible
from .store import Backup, read_backup, stamp, utcnow, write_json_atomic
from .verify import sha256_file

log = logging.getLogger("moorage.backup")

MAX_IDENT = 63
DRILL_INFIX = "_drill_"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DrillCheck:
    """A configured invariant: ``sql`` runs in the restored database and must return one row, true."""

    name: str
    sql: str


def drill_checks(raw: Any, source: str = "backup.drill_checks") -> tuple[DrillCheck, ...]:
    """The configured checks (invoke config ``backup.drill_checks``); ConfigError naming the bad entry."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise ConfigError(f"{source} must be a list of {{name, sql}} entries, got {type(raw).__name__}",
                          f"write {source}: [{{name: orders-have-customers, sql: 'SELECT ...'}}] in invoke.yaml")
    checks, seen = [], set()
    for i, item in enumerate(raw):
        where = f"{source}[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"name", "sql"}:
            raise ConfigError(f"{where} must have exactly the keys name and sql",
                              "write it as {name: ..., sql: 'SELECT ...'} in invoke.yaml")
        name, query = item["name"], item["sql"]
        if not isinstance(name, str) or not name.strip() or not isinstance(query, str) or not query.strip():
            raise ConfigError(f"{where}: name and sql must be non-empty strings", "fix the entry in invoke.yaml")
        if name in seen:
            raise ConfigError(f"{where}: the check name '{name}' is used twice", "give each check its own name")
        seen.add(name)
        checks.append(DrillCheck(name.strip(), query.strip()))
    return tuple(checks)


# --------------------------------------------------------------------------- results


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class DrillResult:
    backup: str
    database: str  # the throwaway database
    target: str
    at: str
    checks: list[CheckResult] = field(default_factory=list)
    restore_seconds: float | None = None
    seconds: float | None = None
    dropped: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def record(self) -> dict[str, Any]:
        """What goes into the backup's metadata as ``last_drill``."""
        return {"at": self.at, "ok": self.ok, "database": self.database, "target": self.target,
                "restore_seconds": self.restore_seconds, "seconds": self.seconds, "dropped": self.dropped,
                "checks": [asdict(c) for c in self.checks], "failed": [c.name for c in self.failed],
                "moorage_version": __version__}


def drill_summary(meta: Mapping[str, Any] | None) -> str:
    """The ``drill`` column of ``backup.list``: the last drill's outcome, or ``-``."""
    last = (meta or {}).get("last_drill")
    if not isinstance(last, Mapping):
        return "-"
    day = str(last.get("at") or "?")[:10]
    if last.get("ok"):
        took = last.get("restore_seconds")
        return f"ok {day}" + (f" ({took:.1f}s)" if isinstance(took, (int, float)) else "")
    return f"FAILED {day}: {', '.join(str(n) for n in last.get('failed') or []) or '?'}"


def record_drill(backup: Backup, result: DrillResult) -> None:
    """Write ``last_drill`` into the backup's metadata, re-read just before (atomic replace)."""
    current = read_backup(backup.path).meta or dict(backup.meta or {})
    current["last_drill"] = result.record()
    write_json_atomic(backup.meta_path, current)
    backup.meta = current


# --------------------------------------------------------------------------- names


def drill_database_name(database: str, when: dt.datetime) -> str:
    """``<db>_drill_<ts>``, within PostgreSQL's 63 bytes."""
    ts = stamp(when).lower()
    base = database.encode()[: MAX_IDENT - len(DRILL_INFIX) - len(ts)].decode(errors="ignore")
    return f"{base}{DRILL_INFIX}{ts}"


def leftover_drill_pattern(database: str) -> re.Pattern:
    base = database.encode()[: MAX_IDENT - len(DRILL_INFIX) - 16].decode(errors="ignore")
    return re.compile(rf"^{re.escape(base)}{DRILL_INFIX}\d{{8}}t\d{{6}}z$")


def leftover_drill_databases(target: Target, database: str) -> list[str]:
    """Throwaway databases of drills that were killed (SIGKILL) before they could drop them."""
    pattern = leftover_drill_pattern(database)
    names = sql(target, "SELECT datname FROM pg_database", database=MAINTENANCE_DB).split("\n")
    return [n for n in (x.strip() for x in names) if pattern.match(n)]


def _create_sql(target: Target, live: str, name: str) -> str:
    """CREATE DATABASE ``name`` with the live database's encoding and locale (owned by the drill's user)."""
    row = sql(target, "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
                      f"WHERE datname = {quote_literal(live)}", database=MAINTENANCE_DB).strip()
    statement = f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0"
    if row:
        encoding, collate, ctype = row.split("|")
        statement += (f" ENCODING {quote_literal(encoding)} LC_COLLATE {quote_literal(collate)} "
                      f"LC_CTYPE {quote_literal(ctype)}")
    return statement


def _drop(target: Target, name: str) -> bool:
    try:
        sql(target, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)", database=MAINTENANCE_DB,
            what=f"dropping {name}")
        return True
    except Exception as exc:  # noqa: BLE001 - the drill's own outcome matters more; say what is left
        log.warning("could not drop the drill database %s: %s (drop it with: DROP DATABASE %s)",
                    name, exc, quote_ident(name))
        return False


# --------------------------------------------------------------------------- the drill


def drill_backup(target: Target, backup: Backup, *, checks: Sequence[DrillCheck] = (), jobs: int = 1,
                 say: Callable[[str], None] = lambda _s: None, record: bool = True,
                 now: dt.datetime | None = None) -> DrillResult:
    """Restore ``backup`` into a throwaway database on ``target``'s server, check it, drop it.

    Returns the result (``ok`` or not) after recording it in the backup's
    metadata; raises only for bad input (a name collision, a backup without
    metadata) and for failures to reach the server.
    """
    if backup.meta is None:
        raise UserError(f"{backup.name}: {backup.problem}", "a backup without metadata cannot be drilled")
    when = now or utcnow()
    live = target.database
    name = drill_database_name(live, when)
    if name == live or database_exists(target, name):
        raise UserError(f"database {name} already exists on {target.description}: the drill never "
                        "restores over an existing database", "wait a second and drill again")
    for old in leftover_drill_databases(target, live):
        say(f"warning: {old} is left from a killed drill; drop it with: DROP DATABASE {quote_ident(old)}")
    result = DrillResult(backup.name, name, target.description, when.isoformat())
    t0 = time.monotonic()
    with interruptible():
        _checksum(backup, result)
        if result.ok:
            _restore_and_check(target, backup, name, live, checks, jobs, say, result)
    result.seconds = round(time.monotonic() - t0, 3)
    if record:
        record_drill(backup, result)
    return result


def _checksum(backup: Backup, result: DrillResult) -> None:
    """The archive's size and sha256 against its metadata (the restore then reads every block)."""
    size = backup.path.stat().st_size
    if size != backup.meta.get("size"):
        result.checks.append(CheckResult("archive", False, f"{size} bytes, the metadata says {backup.meta.get('size')}"))
        return
    digest = sha256_file(backup.path)
    ok = digest == backup.meta.get("sha256")
    result.checks.append(CheckResult("archive", ok, "sha256 and size match" if ok
                                     else f"sha256 {digest[:12]}..., the metadata says "
                                          f"{str(backup.meta.get('sha256'))[:12]}..."))


def _restore_and_check(target: Target, backup: Backup, name: str, live: str, checks: Sequence[DrillCheck],
                       jobs: int, say: Callable[[str], None], result: DrillResult) -> None:
    """Create the throwaway database, restore into it, run every check; it is dropped whatever happens.

    It did not exist a moment ago (checked), so once CREATE was sent it is
    ours to drop, even if Ctrl-C came before the answer; unless CREATE said it
    already exists (a drill started in the same second): then it is not.
    """
    ours = True
    try:
        try:
            sql(target, _create_sql(target, live, name), database=MAINTENANCE_DB, what=f"creating {name}")
        except CommandFailed as exc:
            if "already exists" in exc.message:
                ours = False
                raise UserError(f"database {name} already exists on {target.description}: the drill never "
                                "restores over an existing database", "wait a second and drill again") from None
            raise
        say(f"restoring {backup.name} into the throwaway database {name}")
        t0 = time.monotonic()
        done = target.restore_archive(backup.path, name, jobs)
        result.restore_seconds = round(time.monotonic() - t0, 3)
        ok = done.returncode == 0
        result.checks.append(CheckResult("restore", ok, f"pg_restore took {result.restore_seconds:.1f}s" if ok
                                         else f"pg_restore exit {done.returncode}: "
                                              f"{proc.tail_lines(done.stderr, 3)}"))
        if ok:
            say(f"checking {name}")
            result.checks.extend(run_checks(target, name, backup.meta or {}, checks))
    finally:
        if ours:
            say(f"dropping {name}")
            result.dropped = _drop(target, name)


def run_checks(target: Target, database: str, meta: Mapping[str, Any],
               checks: Sequence[DrillCheck]) -> list[CheckResult]:
    """Every invariant on the restored ``database``, each reported on its own."""
    found = [_tables(target, database, meta), *_row_counts(target, database, meta), _head(target, database, meta)]
    found += [_configured(target, database, check) for check in checks]
    return [c for c in found if c is not None]


def _query(target: Target, database: str, query: str) -> tuple[str | None, str | None]:
    """(output, None) or (None, the error's last line)."""
    try:
        return sql(target, query, database=database, what="the check").strip(), None
    except CommandFailed as exc:
        return None, proc.tail_lines(exc.stderr or exc.message, 1)


def _tables(target: Target, database: str, meta: Mapping[str, Any]) -> CheckResult | None:
    wanted = meta.get("tables")
    if not isinstance(wanted, int):
        return None
    out, error = _query(target, database, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                        "c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', "
                        "'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")
    if error:
        return CheckResult("tables", False, error)
    got = int(out)
    return CheckResult("tables", got >= wanted, f"{got} restored, the backup has {wanted}")


def _row_counts(target: Target, database: str, meta: Mapping[str, Any]) -> list[CheckResult]:
    """One failure per table whose rows differ from the recorded count; one success line otherwise."""
    recorded = meta.get("row_counts")
    if not isinstance(recorded, Mapping):
        return [CheckResult("row counts", True, "skipped: this backup has no recorded row counts")]
    try:
        tables = {qualified_name(t): int(n) for t, n in recorded.items()}
    except (TypeError, ValueError) as exc:
        return [CheckResult("row counts", False, f"the metadata's row_counts are malformed: {exc}")]
    if not tables:
        return [CheckResult("row counts", True, "the backup holds no table data")]
    literals = ", ".join(f"({quote_literal(t)})" for t in tables)
    out, error = _query(target, database, f"SELECT v.t FROM (VALUES {literals}) v(t) WHERE to_regclass(v.t) IS NULL")
    if error:
        return [CheckResult("row counts", False, error)]
    missing = set(filter(None, out.split("\n")))
    present = [t for t in tables if t not in missing]
    counts: dict[str, int] = {}
    if present:
        union = " UNION ALL ".join(f"SELECT {quote_literal(t)}, count(*) FROM ONLY {t}" for t in present)
        out, error = _query(target, database, union)
        if error:
            return [CheckResult("row counts", False, error)]
        counts = {t: int(n) for t, n in (line.rsplit("|", 1) for line in out.split("\n") if line)}
    failures = [CheckResult(f"row count {t}", False, "table missing after the restore") for t in sorted(missing)]
    failures += [CheckResult(f"row count {t}", False, f"{counts[t]} rows restored, the backup recorded {n}")
                 for t, n in tables.items() if t in counts and counts[t] != n]
    return failures or [CheckResult("row counts", True, f"{len(tables)} tables match the recorded counts")]


def _head(target: Target, database: str, meta: Mapping[str, Any]) -> CheckResult | None:
    if "alembic_heads" not in meta:
        return None
    wanted = sorted(meta.get("alembic_heads") or [])
    out, error = _query(target, database, "SELECT to_regclass('public.alembic_version') IS NOT NULL")
    if error:
        return CheckResult("migration head", False, error)
    got: list[str] = []
    if out == "t":
        out, error = _query(target, database, "SELECT version_num FROM alembic_version")
        if error:
            return CheckResult("migration head", False, error)
        got = sorted(out.split())
    shown = ", ".join(got) or "none"
    if got == wanted:
        return CheckResult("migration head", True, f"alembic_version {shown}" if got else "no alembic_version")
    return CheckResult("migration head", False, f"restored at {shown}, the backup at {', '.join(wanted) or 'none'}")


def _configured(target: Target, database: str, check: DrillCheck) -> CheckResult:
    out, error = _query(target, database, check.sql)
    if error:
        return CheckResult(check.name, False, f"failed: {error}")
    lines = out.split("\n") if out else []
    if lines == ["t"]:
        return CheckResult(check.name, True, "true")
    got = "no row" if not lines else f"{len(lines)} rows" if len(lines) > 1 else repr(lines[0])
    return CheckResult(check.name, False, f"returned {got}, not one row with true")

