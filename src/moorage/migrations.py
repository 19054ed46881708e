"""Alembic migrations: the scripts' revisions, how far a database is behind, running Alembic, the migration Job.

- :func:`revisions` and :func:`migration_status` read the migration scripts
  locally with Alembic's own API and compare the database's
  ``alembic_version`` with the scripts' heads.
- :func:`alembic_command` runs Alembic against a direct connection
  (``db.migrate --local``), its output streamed line by line and redacted.
- :func:`migration_job` builds the in-cluster Job manifest from the release's
  backend Deployment; ``moorage.database`` creates and watches it.

Capability floor: imports ``moorage.pg`` and ``moorage.core`` only. Alembic is
imported lazily.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import proc
from .core.errors import CommandFailed, ToolMissing, UserError
from .pg import DatabaseUrl

log = logging.getLogger("moorage.migrations")

#: The name of the migration Job's only container (its log is followed by name).
MIGRATION_CONTAINER = "migrate"


@dataclass(frozen=True)
class Migration:
    """One Alembic revision script."""

    revision: str
    down: tuple[str, ...]
    message: str
    # Declared in the revision script as ``backward_compatible = True``: the code before this
    # revision keeps working on the schema after it (an expand-only change), so a failed upgrade
    # that applied it may put the previous code back.
    backward_compatible: bool = False


@dataclass(frozen=True)
class MigrationStatus:
    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: tuple[Migration, ...]  # oldest first

    @property
    def up_to_date(self) -> bool:
        return not self.pending and set(self.current) == set(self.heads)

    def as_dict(self) -> dict[str, Any]:
        return {"current": list(self.current), "heads": list(self.heads), "up_to_date": self.up_to_date,
                "pending": [{"revision": r.revision, "message": r.message} for r in self.pending]}


def _missing_ini(ini: Path) -> UserError:
    return UserError(f"Alembic configuration {ini} does not exist",
                     "pass --alembic-ini or set db.alembic_ini in invoke.yaml")


def script_directory(ini: Path):
    """Alembic's ScriptDirectory for ``ini``, its ``script_location`` taken relative to the ini's folder."""
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
    except ImportError:
        raise ToolMissing("Alembic is not installed in this Python environment",
                          "pip install alembic (it reads the migration scripts)") from None
    if not ini.is_file():
        raise _missing_ini(ini)
    cfg = Config(str(ini))
    location = cfg.get_main_option("script_location")
    if not location:
        raise UserError(f"{ini} has no script_location", f"add script_location to [alembic] in {ini}")
    if ":" not in location and not os.path.isabs(location):
        # Alembic resolves it against the cwd; we resolve it against the ini's folder.
        cfg.set_main_option("script_location", str(ini.parent / location))
    return ScriptDirectory.from_config(cfg)


def _migration(script) -> Migration:
    return Migration(script.revision, tuple(script._normalized_down_revisions), (script.doc or "").strip(),
                     bool(getattr(script.module, "backward_compatible", False)))


def revisions(ini: Path) -> list[Migration]:
    """Every revision, newest first."""
    return [_migration(r) for r in script_directory(ini).walk_revisions()]


def migration_status(ini: Path, current: Sequence[str]) -> MigrationStatus:
    """Pending revisions between the database's ``current`` and the scripts' heads."""
    script = script_directory(ini)
    heads = tuple(script.get_heads())
    known = {r.revision for r in script.walk_revisions()}
    unknown = [c for c in current if c not in known]
    if unknown:
        raise UserError(f"the database is at revision {unknown[0]}, which the scripts next to {ini} do not have",
                        "deploy the code that matches the database, or check --alembic-ini")
    pending = [_migration(rev) for rev in script.iterate_revisions("heads", tuple(current) or "base")
               if rev.revision not in current]
    return MigrationStatus(tuple(sorted(current)), heads, tuple(reversed(pending)))


_HISTORY_LINE = re.compile(r"^\(?(?P<down><base>|[\w, ]+?)\)? -> (?P<rev>\w+)(?: \([^)]*\))*, ?(?P<msg>.*)$")


def parse_history(lines: Sequence[str]) -> list[Migration]:
    """The revisions ``alembic history`` printed (``DOWN -> REV (head), message``; merges ``(A, B) -> M``),
    newest first; other lines (logging) are ignored."""
    found = []
    for line in lines:
        match = _HISTORY_LINE.match(line.strip())
        if match:
            down = match.group("down")
            downs = () if down == "<base>" else tuple(d.strip() for d in down.split(",") if d.strip())
            found.append(Migration(match.group("rev"), downs, match.group("msg").strip()))
    return found


def status_of(history: Sequence[Migration], current: Sequence[str]) -> MigrationStatus:
    """Pending revisions from a revision list (as :func:`parse_history` returns) and the database's ``current``."""
    by_id = {m.revision: m for m in history}
    unknown = [c for c in current if c not in by_id]
    if unknown:
        raise UserError(f"the database is at revision {unknown[0]}, which the deployed image's scripts do not have",
                        "deploy the code that matches the database")
    downs = {d for m in history for d in m.down}
    heads = tuple(sorted(m.revision for m in history if m.revision not in downs))

    def ancestry(starts: Sequence[str]) -> set[str]:
        seen, stack = set(), list(starts)
        while stack:
            rev = stack.pop()
            if rev in by_id and rev not in seen:
                seen.add(rev)
                stack.extend(by_id[rev].down)
        return seen

    applied = ancestry(current)
    pending = [m for m in reversed(history) if m.revision in ancestry(heads) - applied]
    return MigrationStatus(tuple(sorted(current)), heads, tuple(pending))


def alembic_argv(ini: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "alembic", "-c", str(ini), *args]


def alembic_command(ini: Path, url: DatabaseUrl, *args: str, on_line: Callable[[str], None],
                    timeout: float | None = None, log_dir: Path | None = None) -> None:
    """Run Alembic (``upgrade head``...) against a direct connection, streaming its output.

    The URL goes to the app's env.py in ``DATABASE_URL`` (the child's
    environment only); every echoed line is redacted. A traceback (a
    migration that raised) is not echoed line by line: the error names its
    last lines and the whole output is written to a log file in ``log_dir``.
    After ``timeout`` seconds the child is stopped and its database session
    ended (a killed client's session would otherwise run on, holding its
    locks, until its statement ends): PostgreSQL rolls back the migration
    that was running (transactional DDL) and CommandFailed says so.
    """
    if not ini.is_file():
        raise _missing_ini(ini)
    argv = alembic_argv(ini, *args)
    session = f"moorage-alembic-{os.getpid()}-{threading.get_ident()}"
    child = proc.start(argv, env={"DATABASE_URL": url.raw or url.masked, "PGAPPNAME": session}, secrets=url.secrets,
                       cwd=str(ini.parent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        child.kill()
        _end_session(url, session)

    timer = threading.Timer(timeout, expire) if timeout else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    lines: list[str] = []
    try:
        _echo(child, url, lines, on_line)
        code = child.wait()
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    what = f"alembic {' '.join(args)}"
    if expired.is_set():
        saved = _save_log(log_dir, argv, url, lines)
        raise CommandFailed(f"{what} did not finish within {timeout:g}s on {url.masked} and was stopped; "
                            "PostgreSQL rolled back the migration that was running"
                            + (f" (output: {saved})" if saved else ""),
                            "find what it waits for (a lock held by the app?) or raise db.alembic_timeout",
                            returncode=-1)
    if code != 0:
        saved = _save_log(log_dir, argv, url, lines)
        raise CommandFailed(f"{what} failed (exit {code}) on {url.masked}: {_error_line(lines)}"
                            + (f" (full output: {saved})" if saved else ""),
                            "PostgreSQL rolled back the failing migration's transaction; inv db.status shows where "
                            "the database is", returncode=code)


def _error_line(lines: Sequence[str]) -> str:
    """The exception a failed Alembic run ended with (its traceback's last ``SomeError: ...`` line)."""
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*", line):
            return line if len(line) <= 400 else line[:400] + "..."
    return proc.tail_lines("\n".join(lines), 2)


def _end_session(url: DatabaseUrl, session: str) -> None:
    """End the killed Alembic's server session (best effort: the error about the timeout matters more)."""
    from .core.errors import MoorageError
    from .pg import LocalTarget, quote_literal, sql

    where = f"FROM pg_stat_activity WHERE application_name = {quote_literal(session)}"
    try:
        try:  # PostgreSQL 14+: wait (up to 5 s) until the session has really ended
            sql(LocalTarget(url), f"SELECT count(pg_terminate_backend(pid, 5000)) {where}", what="ending a session")
        except CommandFailed:
            sql(LocalTarget(url), f"SELECT count(pg_terminate_backend(pid)) {where}", what="ending a session")
    except MoorageError as exc:
        log.warning("could not end the Alembic session %s: %s", session, exc)


def _echo(child, url: DatabaseUrl, lines: list[str], on_line: Callable[[str], None]) -> None:
    """Pass Alembic's lines on as they come, up to a traceback (kept for the log file, not shown)."""
    in_traceback = False
    for raw in child.stdout:
        line = proc.redact(raw.rstrip("\n"), url.secrets)
        lines.append(line)
        in_traceback = in_traceback or line.startswith("Traceback (most recent call last)")
        if not in_traceback:
            on_line(line)


def _save_log(log_dir: Path | None, argv: Sequence[str], url: DatabaseUrl, lines: list[str]) -> Path | None:
    """The whole (redacted) Alembic output in a private file; None if there is nowhere to write it."""
    if log_dir is None:
        return proc.save_output("alembic", proc.render(argv, url.secrets), "\n".join(lines), "")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"alembic-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"$ {proc.render(argv, url.secrets)}\n" + "\n".join(lines) + "\n")
        return path
    except OSError:  # a log that cannot be written must not hide the error itself
        return None


def migration_job(deployment: Mapping[str, Any], command: Sequence[str], *, name: str,
                  container: str | None = None, active_deadline: int = 900,
                  ttl_after_finished: int = 3600) -> dict[str, Any]:
    """The Job that runs ``command`` (``alembic upgrade head``) with the backend's image, config and secrets.

    Built from the live backend Deployment (a real API object) so the Job gets
    exactly the image, env, envFrom, volumes, service account and security
    context the release runs with, without Moorage knowing the chart's
    layout. No retries (``backoffLimit: 0``): a failed migration is reported
    with its logs, not repeated.
    """
    meta = deployment.get("metadata", {})
    spec = deployment["spec"]["template"]["spec"]
    containers = spec.get("containers") or []
    chosen = next((c for c in containers if c.get("name") == container), None) if container else None
    if chosen is None:
        if container or not containers:
            raise UserError(f"deployment {meta.get('name')} has no container {container or ''}".rstrip(),
                            "name the workload's container that runs the migrations")
        chosen = containers[0]
    job_container = {k: v for k, v in chosen.items()
                     if k in ("image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
                              "resources", "workingDir")}
    job_container.update({"name": MIGRATION_CONTAINER, "command": list(command)})
    pod_spec = {k: v for k, v in spec.items()
                if k in ("serviceAccountName", "securityContext", "imagePullSecrets", "volumes", "nodeSelector",
                         "tolerations", "affinity")}
    pod_spec.update({"restartPolicy": "Never", "containers": [job_container]})
    labels = {k: v for k, v in (meta.get("labels") or {}).items()
              if k in ("app.kubernetes.io/instance", "app.kubernetes.io/name", "app.kubernetes.io/part-of",
                       "app.kubernetes.io/managed-by")}
    labels["app.kubernetes.io/component"] = "migration"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": meta.get("namespace"), "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": active_deadline,
            "ttlSecondsAfterFinished": ttl_after_finished,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def migration_job_name(release: str, stamp: str) -> str:
    """``<release>-migrate-<stamp>``, cut to a valid 63-character name."""
    stamp = re.sub(r"[^a-z0-9]", "", stamp.lower())
    return f"{release[: 63 - len(stamp) - 9]}-migrate-{stamp}"
