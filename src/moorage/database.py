"""The environment's database (its ``database:`` setting: a pod, external, or none): which PostgreSQL a
command talks to, its migrations (its ``migrations:`` setting), and the backups around them.

- :func:`target_for` picks the target: a URL (``--database-url``, ``DATABASE_URL``, an external
  database's ``url_env``) or the PostgreSQL pod (:func:`pod_target`, through :class:`KubePods`).
- :func:`run_migrations_in_cluster` runs Alembic or a migration command as a Job built from the
  live migration workload (``moorage.migration_job``).
- :func:`migrate`, :func:`status`, :func:`history`, :func:`downgrade`, :func:`shell`: the ``db.*``
  tasks; :func:`take_backup`, :func:`restore`: ``backup.create``/``restore``;
  :func:`backup_if_migrating`: the deploy's verified backup before an upgrade that may migrate.

Every one of them reaches the database first (one line with host, port and
reason if it cannot, exit 2, nothing changed). Those that change it hold a
lock per environment and database (:func:`database_lock`), so a second
``backup.create``/``backup.restore``/``db.migrate``/``db.downgrade`` of the
same database says who is running instead of interleaving; outside dev they
are confirmed first (``--yes`` without a terminal), and a downgrade takes a
verified safety backup first, on either path.

Orchestration floor: it joins ``pg``, ``migrations`` and ``backup`` (which
must not import each other sideways) with the connected environment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import backup, migrations
from .backup.drill import DrillCheck, DrillResult, drill_backup
from .backup.remote import BackupVolume, merged
from .connection import connect
from .core import lock
from .core.config import Environment, Project
from .core.errors import MoorageError, OperationFailed, UserError
from .core.report import Reporter
from .db_settings import (  # noqa: F401 - the settings' API, re-exported
    ALEMBIC_TIMEOUT,
    DbSettings,
    alembic_ini_path,
    env_alembic_ini,
    readable_alembic_ini,
    require_alembic,
    workload_of,
)
from .migration_job import run_migration_job
from .migrations import Migration, MigrationStatus
from .pg import (
    DatabaseUrl,
    LocalTarget,
    Target,
    check_connection,
    database_url_from,
)
from .targets import (  # noqa: F401
    KubePods,
    database_pod,
    external_url,
    migration_workload,
    pod_target,
    release_database,
    require_database,
    target_for,
)

# --------------------------------------------------------------------------- the migration Job


def run_migrations_in_cluster(project: Project, env: Environment, command: Sequence[str], settings: DbSettings,
                              reporter: Reporter, *, dry_run: bool = False, collect: list[str] | None = None,
                              alembic_ini: Path | None = None) -> str | None:
    """``command`` as a Job from the migration workload (its image, env and secrets); the Job's name.

    Without a configured workload, the release's that runs the image holding the Alembic scripts
    (``alembic_ini``, the flag; else the environment's) is found in its manifest.
    """
    workload, ini = migration_source(project, env, settings, alembic_ini)
    if dry_run:
        what = (f"{workload[0]} {env.namespace}/{workload[1]}" if workload else
                "the release's workload that runs the image holding the Alembic scripts")
        reporter.step(f"in-cluster: a Job from {what} (its image, env and secrets) would run: {' '.join(command)}")
        reporter.line("dry run: nothing was created")
        return None
    cluster = connect(project, env, allow_production=True, read_release=False)
    kind, name = workload or migration_workload(project, env, ini, cluster)
    reporter.step(f"in-cluster: a Job from {kind} {env.namespace}/{name} (its image, env and "
                  f"secrets) runs: {' '.join(command)}")
    return run_migration_job(cluster.api, env.namespace, project.release, env.name, (kind, name), command, reporter,
                             timeout=env.timeout, collect=collect)


def migration_source(project: Project, env: Environment, settings: DbSettings,
                     alembic_ini: Path | None = None) -> tuple[tuple[str, str] | None, Path | None]:
    """The configured migration workload, else (None, the alembic.ini its image holds) for the release's
    workload to be found from; the one line when the project has neither."""
    workload = workload_of(env, settings)
    if workload is not None:
        return workload, None
    ini = env_alembic_ini(project, env, alembic_ini, settings)
    if not ini.is_file() and not (alembic_ini or env.migrations.alembic_ini or settings.alembic_ini):
        raise UserError(f"the project holds no alembic.ini and moorage.environments.{env.name}.migrations names no "
                        "workload, so there is no telling what to migrate with",
                        "set migrations.alembic_ini and .workload, or kind: command (with workload and command), "
                        "or kind: none")
    return None, ini


def _alembic_job(settings: DbSettings, *args: str) -> list[str]:
    return [*(settings.job_command or ("alembic",)), *args]


# --------------------------------------------------------------------------- guards


def needs_confirmation(env: Environment) -> bool:
    """Outside dev (and in any production environment) a change to the database is confirmed first."""
    return env.production or env.name != "dev"


def _confirm(env: Environment, confirm: Callable[[str], None] | None, question: str) -> None:
    if not needs_confirmation(env):
        return
    if confirm is None:
        raise UserError(f"refusing without confirmation: {question}", "re-run with --yes")
    confirm(question)


def lock_key(env: Environment, target: Target | None) -> str:
    """Which database a lock covers: a URL's server and database, or the environment's in-cluster one."""
    if isinstance(target, LocalTarget):
        return f"{target.endpoint}/{target.database_name}"
    return f"in-cluster/{env.namespace}"


@contextlib.contextmanager
def database_lock(project: Project, env: Environment, target: Target | None, what: str) -> Iterator[None]:
    """One change at a time per environment and database; Busy (naming the holder and its start) otherwise."""
    where = (f"database {target.database_name} at {target.endpoint}" if isinstance(target, LocalTarget)
             else f"the in-cluster database of {env.namespace}")
    with lock.hold(project.root, lock.scope_name("db", env.name, lock_key(env, target)),
                   f"{what} of {where} ({env.name})"):
        yield


def _log_dir(project: Project) -> Path:
    return project.root / ".moorage" / "logs"


def _safety_backup(project: Project, env: Environment, target: Target, label: str,
                   reporter: Reporter) -> backup.Backup:
    """A backup taken before a change (read back whole at creation; its file checked again on disk)."""
    with reporter.progress(f"backup before {label.removeprefix('pre-')}", unit="bytes") as bar:
        taken = backup.create_backup(target, backup.backup_dir(project.backups_dir, env.name), environment=env.name,
                                     label=label, progress=bar.update)
    backup.verify_backup(taken, quick=True)  # the full read ran on the stream; this checks the file's sha256
    reporter.ok(f"backup {taken.name} verified (every data block read back)")
    return taken


# --------------------------------------------------------------------------- db.* operations


def direct_url(project: Project, env: Environment, database_url: str | None) -> DatabaseUrl | None:
    """The URL Alembic runs here against: the flag, DATABASE_URL, or the external database's; None for a pod."""
    url = database_url_from(database_url)
    if url is None and env.database.kind == "external":
        url = external_url(project, env)
    return url


def migrate(project: Project, env: Environment, revision: str, reporter: Reporter, *, local: bool = False,
            database_url: str | None = None, alembic_ini: Path | None = None, settings: DbSettings = DbSettings(),
            dry_run: bool = False, confirm: Callable[[str], None] | None = None) -> None:
    """Upgrade to ``revision``, the way the environment's ``migrations`` say.

    Alembic: here against a URL (``--local``/``--database-url``, DATABASE_URL, an external database), else
    in a Job. A command: in a Job from its workload (all pending steps; ``--revision`` is Alembic's). None:
    nothing to do.
    """
    require_database(env)
    kind = env.migrations.kind
    if kind == "none":
        reporter.ok(f"'{env.name}' declares no migrations (migrations.kind: none): nothing to run")
        return
    question = f"migrate the database of '{env.name}' to {revision}?"
    url = direct_url(project, env, database_url) if kind == "alembic" else None
    if kind == "command" and (local or database_url or revision != "head"):
        raise UserError(f"the migrations of '{env.name}' are a command run in the cluster: "
                        "--local, --database-url and --revision do not apply",
                        f"run inv db.migrate --env {env.name} (the command applies what is pending)")
    if url is None:
        if local:
            raise UserError("db.migrate --local needs a database URL", "pass --database-url or set DATABASE_URL")
        command = list(env.migrations.command) if kind == "command" else _alembic_job(settings, "upgrade", revision)
        migration_source(project, env, settings, alembic_ini)  # bad input is one line before the question
        if not dry_run:
            _confirm(env, confirm, question)
        with contextlib.nullcontext() if dry_run else database_lock(project, env, None, "db.migrate"):
            run_migrations_in_cluster(project, env, command, settings, reporter, dry_run=dry_run,
                                      alembic_ini=alembic_ini)
        return
    target = LocalTarget(url)
    ini = env_alembic_ini(project, env, alembic_ini, settings)
    reporter.step(f"alembic upgrade {revision} on {url.masked}")
    current = check_connection(target)["alembic_heads"]
    if dry_run:
        pending = migrations.migration_status(ini, current).pending
        for rev in pending:
            reporter.line(f"  would apply {rev.revision}  {rev.message}")
        reporter.line(f"dry run: {len(pending)} revision(s) pending; nothing was changed")
        return
    _confirm(env, confirm, question)
    with database_lock(project, env, target, "db.migrate"):
        migrations.alembic_command(ini, url, "upgrade", revision, on_line=reporter.line,
                                   timeout=settings.alembic_timeout, log_dir=_log_dir(project))
    reporter.ok(f"database at {revision} ({env.name})")


def status(project: Project, env: Environment, database_url: str | None, alembic_ini: Path | None = None,
           settings: DbSettings = DbSettings(), reporter: Reporter | None = None) -> tuple[Target, MigrationStatus]:
    """The target and how far its database is behind the scripts (read here, or in the image when the
    scripts are not in this checkout)."""
    require_alembic(env, "db.status")
    target = target_for(project, env, database_url)
    current = check_connection(target)["alembic_heads"]
    ini = env_alembic_ini(project, env, alembic_ini, settings)
    if ini.is_file():
        return target, migrations.migration_status(ini, current)
    return target, migrations.status_of(history_in_image(project, env, settings, reporter or Reporter(), ini),
                                        current)


def history(project: Project, env: Environment, database_url: str | None, alembic_ini: Path | None = None,
            settings: DbSettings = DbSettings(), reporter: Reporter | None = None) -> tuple[list[Migration], list[str]]:
    """Every migration, newest first, and the revisions a directly reached database is at."""
    require_alembic(env, "db.history")
    url = database_url_from(database_url)
    current = check_connection(LocalTarget(url))["alembic_heads"] if url is not None else []
    ini = env_alembic_ini(project, env, alembic_ini, settings)
    if ini.is_file():
        return migrations.revisions(ini), current
    return history_in_image(project, env, settings, reporter or Reporter(), ini), current


def history_in_image(project: Project, env: Environment, settings: DbSettings, reporter: Reporter,
                     ini: Path | None = None) -> list[Migration]:
    """``alembic history`` run in a Job from the migration workload: the scripts the deployed image holds."""
    lines: list[str] = []
    reporter.line("the Alembic scripts are not in this checkout: reading them in the deployed image")
    run_migrations_in_cluster(project, env, _alembic_job(settings, "history"), settings, reporter, collect=lines,
                              alembic_ini=ini)
    found = migrations.parse_history(lines)
    if not found:
        raise OperationFailed("alembic history in the deployed image printed no revision",
                              "check migrations.alembic_ini and migrations.workload in invoke.yaml")
    return found


def tool_status(project: Project, env: Environment, settings: DbSettings, reporter: Reporter) -> list[str]:
    """The output of the migration tool's own status command (``migrations.status_command``), run in a Job."""
    require_database(env)
    command = env.migrations.status_command
    if env.migrations.kind != "command" or not command:
        require_alembic(env, "db.status")
    lines: list[str] = []
    run_migrations_in_cluster(project, env, list(command), settings, reporter, collect=lines)
    return lines


def downgrade(project: Project, env: Environment, revision: str, reporter: Reporter, *,
              confirm: Callable[[str], None] | None, database_url: str | None = None,
              alembic_ini: Path | None = None, settings: DbSettings = DbSettings(), dry_run: bool = False) -> None:
    """Back up (verified), then downgrade to ``revision``: Alembic here with a URL (or an external
    database), else in a Job, after a backup streamed out of the PostgreSQL pod through the exec API."""
    if not revision:
        raise UserError("--revision is required", "pass --revision REV (an id, 'base' or -1)")
    require_database(env)
    require_alembic(env, "db.downgrade")
    url = direct_url(project, env, database_url)
    where = url.masked if url is not None else f"the {env.name} PostgreSQL pod (through the exec stream)"
    reporter.step(f"plan: verified backup of {where}, then alembic downgrade {revision}"
                  + ("" if url is not None else " in a Job from the migration workload"))
    if dry_run:
        reporter.line("dry run: nothing was changed")
        return
    target = LocalTarget(url) if url is not None else pod_target(project, env)
    check_connection(target)
    _confirm(env, confirm, f"downgrade the database of '{env.name}' to {revision}?")
    with database_lock(project, env, target, "db.downgrade"):
        taken = _safety_backup(project, env, target, "pre-downgrade", reporter)
        if url is not None:
            migrations.alembic_command(env_alembic_ini(project, env, alembic_ini, settings), url,
                                       "downgrade", revision, on_line=reporter.line, timeout=settings.alembic_timeout,
                                       log_dir=_log_dir(project))
        else:
            run_migrations_in_cluster(project, env, _alembic_job(settings, "downgrade", revision), settings, reporter,
                                      alembic_ini=alembic_ini)
    reporter.ok(f"database downgraded to {revision}; restore with: inv backup.restore {taken.name}")


def shell(env: Environment, database_url: str | None) -> int:
    """psql on a directly reached database, attached to this terminal; its exit code."""
    url = database_url_from(database_url)
    if url is None:
        raise UserError(f"an interactive shell in the {env.name} PostgreSQL pod needs a terminal exec",
                        f"run: kubectl -n {env.namespace} exec -it <database pod> -- psql "
                        "-U \"$POSTGRES_USER\", or pass --database-url")
    target = LocalTarget(url)
    check_connection(target)
    return target.shell()


# --------------------------------------------------------------------------- backups of the environment


def take_backup(project: Project, env: Environment, database_url: str | None, reporter: Reporter, *,
                label: str | None = None, release_revision: str | None = None,
                dry_run: bool = False) -> backup.Backup | None:
    """A checked backup of the environment's database in its backups folder (None on a dry run)."""
    if label is not None and backup.kind_of(label) == "safety":
        raise UserError(f"'{label}' is the label of the safety backups Moorage takes before a change",
                        "choose another --name")
    target = target_for(project, env, database_url)
    directory = backup.backup_dir(project.backups_dir, env.name)
    reporter.step(f"backing up {target.description} ({env.name})")
    if dry_run:
        reporter.line(f"dry run: would write pg_dump -Fc of that database to {directory}/ "
                      "(as .partial, renamed when every data block has read back)")
        return None
    check_connection(target)
    with database_lock(project, env, target, "backup.create"), reporter.progress("pg_dump", unit="bytes") as bar:
        return backup.create_backup(target, directory, environment=env.name, label=label,
                                    release_revision=release_revision, progress=bar.update)


def restore(project: Project, env: Environment, name: str, database_url: str | None, *,
            confirm: Callable[[backup.RestorePlan], None], force_env: bool = False, jobs: int = 1,
            keep_old: bool = True, say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """Restore the environment's backup ``name`` (or ``latest``: the newest ordinary one) into its database."""
    if jobs < 1:
        raise UserError("--jobs must be 1 or more", None)
    found = resolve_backup(project, env, name, say=say)  # a local one, or fetched from the backup CronJob's volume
    target = target_for(project, env, database_url)
    check_connection(target)
    with database_lock(project, env, target, "backup.restore"):
        return backup.restore_backup(target, found, environment=env.name, backups_root=project.backups_dir,
                                     confirm=confirm, force_env=force_env, jobs=jobs, keep_old=keep_old, say=say)


def backup_if_migrating(project: Project, env: Environment, alembic_ini: str | Path | None,
                        reporter: Reporter) -> str | None:
    """A verified backup before an upgrade that may migrate; its path, or None.

    None without a database or migrations; with Alembic, only when the scripts hold revisions the
    database has not applied; with a command (whose pending steps Moorage cannot see), always.
    """
    if not env.database.exists or env.migrations.kind == "none":
        reporter.line("no database migrations declared: no backup needed")
        return None
    target = target_for(project, env, None)
    current = check_connection(target)["alembic_heads"]
    ini, unreadable = readable_alembic_ini(project, env, alembic_ini)
    if env.migrations.kind == "alembic" and ini is None:
        reporter.line(f"the Alembic scripts cannot be read here ({unreadable}), so what is pending cannot be "
                      "seen: taking a verified backup first")
    elif env.migrations.kind == "alembic":
        pending = migrations.migration_status(ini, current).pending
        if not pending:
            reporter.line("no pending migrations: no backup needed")
            return None
        reporter.line(f"pending migrations ({', '.join(r.revision for r in pending)}): taking a verified backup first")
    else:
        reporter.line("the migration command may change the schema (Moorage cannot see what it has pending): "
                      "taking a verified backup first")
    with database_lock(project, env, target, "the pre-upgrade backup of a deploy"):
        taken = _safety_backup(project, env, target, "pre-upgrade", reporter)
    return str(taken.path)


# --------------------------------------------------------------------------- in-cluster backups and drills


def backup_volume(project: Project, env: Environment) -> BackupVolume | None:
    """The volume of the environment's backup CronJob when its values enable one; None (no cluster call) if not."""
    from .core.config import load_values

    if not (load_values(env).get("backup") or {}).get("enabled"):
        return None
    cluster = connect(project, env, allow_production=True, read_release=False)
    return BackupVolume(cluster.api, env.namespace, f"{project.release}-backup")


def all_backups(project: Project, env: Environment, *, local_only: bool = False,
                warn: Callable[[str], None] = lambda _s: None) -> tuple[list[tuple[backup.Backup, str]], list[str]]:
    """Local and in-cluster backups, each once, with its location; the volume's unfinished files."""
    local = backup.list_backups(backup.backup_dir(project.backups_dir, env.name))
    remote, partials = [], []
    if not local_only:
        try:
            volume = backup_volume(project, env)
            if volume is not None:
                with volume.reader() as reader:
                    remote, partials = reader.list()
        except MoorageError as exc:
            warn(f"in-cluster backups not listed: {exc.line()}")
    return merged(local, remote), partials


def resolve_backup(project: Project, env: Environment, ref: str, *, say: Callable[[str], None] = lambda _s: None,
                   progress: Callable[[int], None] | None = None, remote_only: bool = False) -> backup.Backup:
    """A local backup to work on: ``ref`` on disk, else fetched from the CronJob's volume.

    ``latest`` is the newer of the newest local and the newest in-cluster
    ordinary backup (a cluster that cannot be asked leaves the local one, with a warning).
    """
    directory = backup.backup_dir(project.backups_dir, env.name)
    local, missing = None, None
    if not remote_only:
        try:
            local = backup.find_backup(directory, ref)
        except UserError as exc:
            missing = exc
        if local is not None and ref != "latest":
            return local
    try:
        volume = backup_volume(project, env)
    except MoorageError as exc:
        if local is None:
            raise
        say(f"warning: in-cluster backups not consulted: {exc.line()}")
        return local
    if volume is None:
        if remote_only:
            raise UserError(f"environment '{env.name}' has no backup CronJob",
                            f"set backup.enabled: true in {env.values_file.name} and deploy")
        if local is None:
            raise missing
        return local
    with volume.reader() as reader:
        remote = reader.find(ref)
        if remote is None or (local is not None and _not_older(local, remote)):
            if local is None:
                raise UserError(f"backup '{ref}' is neither in {directory} nor in {reader.volume}",
                                "see the names with: inv backup.list")
            return local
        say(f"fetching {remote.name} from {reader.volume}")
        return reader.fetch(remote, directory, progress)


def _not_older(a: backup.Backup, b: backup.Backup) -> bool:
    return a.created is not None and (b.created is None or a.created >= b.created)


def drill(project: Project, env: Environment, ref: str, database_url: str | None, *,
          checks: Sequence[DrillCheck] = (), jobs: int = 1, say: Callable[[str], None] = lambda _s: None) -> DrillResult:
    """Restore drill of the environment's backup ``ref`` in a throwaway database beside its database."""
    if jobs < 1:
        raise UserError("--jobs must be 1 or more", None)
    found = resolve_backup(project, env, ref, say=say)
    target = target_for(project, env, database_url)
    say(f"drill of {found.name} on {target.description}")
    return drill_backup(target, found, checks=checks, jobs=jobs, say=say)
