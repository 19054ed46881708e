"""The environment's database: which PostgreSQL a command talks to, its migrations run in the
cluster or directly, and the backups around them.

- :func:`target_for` picks the target: a direct URL (``--database-url`` or
  ``DATABASE_URL``) or the environment's PostgreSQL pod (:func:`pod_target`,
  reached through :class:`KubePods`, the Kubernetes side of ``pg.PodExec``).
- :func:`run_migration_job` runs Alembic as an in-cluster Job built from the
  live backend Deployment (same image, config and secrets as the release),
  streams the migration pod's log while it runs, and waits for the Job with
  the readiness engine (Complete = done, Failed = failed, with its reason).
  The Job has ``backoffLimit: 0`` and a TTL, so a failed migration is not
  retried behind the user's back and old Jobs clean themselves up.
- :func:`migrate`, :func:`status`, :func:`history`, :func:`downgrade` and
  :func:`shell` are what the ``db.*`` tasks call; :func:`take_backup` and
  :func:`restore` what ``backup.create`` and ``backup.restore`` call.
- :func:`backup_if_migrating`: the deploy's verified backup before an upgrade
  that brings migrations.

Orchestration floor: it joins ``pg``, ``migrations`` and ``backup`` (which
must not import each other sideways) with the connected environment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from . import backup, kube, migrations, readiness
from .connection import Connected, connect
from .core.config import DEFAULT_ALEMBIC_INI, Environment, Project
from .core.errors import OperationFailed, Unreachable, UserError
from .core.report import Reporter
from .migrations import Migration, MigrationStatus
from .pg import LocalTarget, PodTarget, Target, database_info, database_url_from

#: The chart component label of the environment's PostgreSQL pod.
POSTGRESQL_COMPONENT = "postgresql"
LOG_POLL_SECONDS = 0.5


# --------------------------------------------------------------------------- targets


class KubePods:
    """``moorage.kube`` bound to one API client, in the ``pg.PodExec`` shape."""

    def __init__(self, api):
        self.api = api

    def find_pod(self, namespace: str, label_selector: str) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            pods = kube.list_pods(self.api, namespace, label_selector)
        except ApiException as exc:
            raise kube.api_error(self.api, exc, f"listing pods in {namespace}") from exc
        ready = [p for p in pods if kube.pod_ready(p)]
        if not ready:
            raise Unreachable(f"no ready PostgreSQL pod ({label_selector}) in namespace {namespace}",
                              "deploy the environment first (inv dev.deploy) or check inv dev.status")
        return ready[0]["metadata"]["name"]

    def exec_stream(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                    stdin: IO[bytes] | None, on_stdout: Callable[[bytes], None]) -> tuple[int, str]:
        result = kube.exec_stream(self.api, namespace, pod, list(command), container=container,
                                  stdout=on_stdout, stdin=stdin)
        return result.exit_code, result.stderr


def pod_selector(project: Project) -> str:
    """The label selector of the release's PostgreSQL pod."""
    return project.selector(POSTGRESQL_COMPONENT)


def pod_target(project: Project, env: Environment) -> PodTarget:
    """The environment's PostgreSQL pod (its kube context checked against the configuration)."""
    cluster = connect(project, env, allow_production=True, read_release=False)
    return PodTarget.discover(KubePods(cluster.api), env.namespace, pod_selector(project))


def target_for(project: Project, env: Environment, database_url: str | None) -> Target:
    """A LocalTarget when a URL is given (flag or DATABASE_URL), else the env's pod."""
    url = database_url_from(database_url)
    if url is not None:
        return LocalTarget(url)
    return pod_target(project, env)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DbSettings:
    """invoke config ``db.*``: where the Alembic configuration is, and how the in-cluster Job migrates."""

    alembic_ini: str | None = None
    backend_deployment: str | None = None  # default: <release>-backend
    job_command: tuple[str, ...] | None = None  # default: alembic

    @classmethod
    def from_config(cls, conf: Mapping[str, Any] | None) -> DbSettings:
        conf = conf or {}
        command = conf.get("job_command")
        return cls(conf.get("alembic_ini"), conf.get("backend_deployment"), tuple(command) if command else None)


def alembic_ini_path(project: Project, *choices: str | Path | None) -> Path:
    """The first given of ``choices`` (flag, then config), else the default; relative to the project."""
    path = Path(next((c for c in choices if c), DEFAULT_ALEMBIC_INI))
    return path if path.is_absolute() else project.root / path


# --------------------------------------------------------------------------- the migration Job


def run_migrations_in_cluster(project: Project, env: Environment, args: Sequence[str], settings: DbSettings,
                              reporter: Reporter, *, dry_run: bool = False) -> str | None:
    """``alembic ARGS`` as a Job from the backend Deployment; the Job's name (None on a dry run)."""
    deployment = settings.backend_deployment or f"{project.release}-backend"
    command = [*(settings.job_command or ("alembic",)), *args]
    reporter.step(f"in-cluster: a Job from deployment {env.namespace}/{deployment} (its image, env and "
                  f"secrets) runs: {' '.join(command)}")
    if dry_run:
        reporter.line("dry run: nothing was created")
        return None
    cluster = connect(project, env, allow_production=True, read_release=False)
    return run_migration_job(cluster, deployment, command, reporter)


def run_migration_job(cluster: Connected, deployment_name: str, command: Sequence[str], reporter: Reporter,
                      *, timeout: int | None = None) -> str:
    """Create the migration Job, stream its logs, wait for it; returns the Job's name."""
    api, project, env = cluster.api, cluster.project, cluster.env
    deployment = _read_deployment(api, env, deployment_name)
    name = migrations.migration_job_name(project.release, datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
    job = migrations.migration_job(deployment, list(command), name=name)
    job["metadata"]["namespace"] = env.namespace
    _create_job(api, env.namespace, job)
    reporter.step(f"job {name}: {' '.join(command)}")
    done = threading.Event()
    lines: list[str] = []
    follower = threading.Thread(target=_follow_job_log, args=(api, env.namespace, name, done, lines, reporter.line),
                                name="migration logs", daemon=True)
    follower.start()
    try:
        result = readiness.wait_for(api, [readiness.Resource("Job", name, env.namespace)],
                                    timeout or env.timeout)
    finally:
        done.set()
        follower.join(timeout=10)
    if not result.ok:
        tail = " | ".join(lines[-5:]) or "no log lines"
        raise OperationFailed(f"migration job {name} {result.verdict}: {result.reason}; last log lines: {tail}",
                              f"see the full log with: inv dev.logs --env {env.name} --component migration")
    reporter.ok(f"migration job {name} completed")
    return name


def _read_deployment(api, env: Environment, name: str) -> dict[str, Any]:
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.read_json(kube.retrying(AppsV1Api(api).read_namespaced_deployment, name, env.namespace,
                                            _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"deployment {env.namespace}/{name} does not exist, so there is no image "
                            "and config to migrate with",
                            f"deploy first (inv dev.deploy --env {env.name}) or use --local with a DATABASE_URL") from None
        raise kube.api_error(api, exc, f"reading deployment {name}") from None


def _create_job(api, namespace: str, job: dict[str, Any]) -> None:
    from kubernetes.client import BatchV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        kube.retrying(BatchV1Api(api).create_namespaced_job, namespace, job, _preload_content=False)
    except ApiException as exc:
        raise kube.api_error(api, exc, f"creating job {job['metadata']['name']}") from None


def _follow_job_log(api, namespace: str, job: str, done: threading.Event, lines: list[str],
                    write: Callable[[str], None]) -> None:
    """Wait for the Job's pod to start, then stream its log until it ends."""
    pod = _started_pod(api, namespace, job, done)
    if pod is None:
        return

    def on_line(line: str) -> None:
        lines.append(line)
        write(f"[{job}] {line}")

    try:
        kube.follow_log(api, namespace, pod, migrations.MIGRATION_CONTAINER, on_line=on_line)
    except Exception as exc:  # noqa: BLE001 - the log is a convenience; the Job's verdict decides
        write(f"[{job}] (log stream ended: {kube.connection_reason(exc)})")


def _started_pod(api, namespace: str, job: str, done: threading.Event) -> str | None:
    """The Job's pod once a container runs (or ran); None if the Job finished without one."""
    while True:  # only until the pod has started; one last look after the Job has finished
        finished = done.is_set()
        started = [p for p in kube.list_pods(api, namespace, f"job-name={job}") if _started(p)]
        if started:
            return started[0]["metadata"]["name"]
        if finished:
            return None
        done.wait(LOG_POLL_SECONDS)


def _started(pod: dict) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {}) for s in statuses)


# --------------------------------------------------------------------------- db.* operations


def migrate(project: Project, env: Environment, revision: str, reporter: Reporter, *, local: bool = False,
            database_url: str | None = None, alembic_ini: Path | None = None,
            settings: DbSettings = DbSettings(), dry_run: bool = False) -> None:
    """Upgrade to ``revision``: an in-cluster Job, or Alembic here with ``local`` or a URL."""
    if not (local or database_url):
        run_migrations_in_cluster(project, env, ["upgrade", revision], settings, reporter, dry_run=dry_run)
        return
    url = database_url_from(database_url)
    if url is None:
        raise UserError("db.migrate --local needs a database URL", "pass --database-url or set DATABASE_URL")
    ini = alembic_ini_path(project, alembic_ini, settings.alembic_ini)
    reporter.step(f"alembic upgrade {revision} on {url.masked}")
    if dry_run:
        pending = migrations.migration_status(ini, database_info(LocalTarget(url))["alembic_heads"]).pending
        for rev in pending:
            reporter.line(f"  would apply {rev.revision}  {rev.message}")
        reporter.line(f"dry run: {len(pending)} revision(s) pending; nothing was changed")
        return
    migrations.alembic_command(ini, url, "upgrade", revision, on_line=reporter.line)
    reporter.ok(f"database at {revision} ({env.name})")


def status(project: Project, env: Environment, database_url: str | None,
           alembic_ini: Path | None = None, settings: DbSettings = DbSettings()) -> tuple[Target, MigrationStatus]:
    """The target and how far its database is behind the scripts."""
    target = target_for(project, env, database_url)
    current = database_info(target)["alembic_heads"]
    return target, migrations.migration_status(alembic_ini_path(project, alembic_ini, settings.alembic_ini), current)


def history(project: Project, database_url: str | None, alembic_ini: Path | None = None,
            settings: DbSettings = DbSettings()) -> tuple[list[Migration], list[str]]:
    """Every migration, newest first, and the revisions a directly reached database is at."""
    revs = migrations.revisions(alembic_ini_path(project, alembic_ini, settings.alembic_ini))
    url = database_url_from(database_url)
    current = database_info(LocalTarget(url))["alembic_heads"] if url is not None else []
    return revs, current


def downgrade(project: Project, env: Environment, revision: str, reporter: Reporter, *,
              confirm: Callable[[str], None], database_url: str | None = None, alembic_ini: Path | None = None,
              settings: DbSettings = DbSettings(), dry_run: bool = False) -> None:
    """Back up (verified), then downgrade to ``revision``; an in-cluster Job without a URL."""
    if not revision:
        raise UserError("--revision is required", "pass --revision REV (an id, 'base' or -1)")
    url = database_url_from(database_url)
    if url is None:
        run_migrations_in_cluster(project, env, ["downgrade", revision], settings, reporter, dry_run=dry_run)
        return
    ini = alembic_ini_path(project, alembic_ini, settings.alembic_ini)
    reporter.step(f"plan: verified backup of {url.masked}, then alembic downgrade {revision}")
    if dry_run:
        reporter.line("dry run: nothing was changed")
        return
    if env.production or env.name != "dev":
        confirm(f"downgrade the database of '{env.name}' to {revision}?")
    with reporter.progress("backup before downgrade", unit="bytes") as bar:
        taken = backup.create_backup(LocalTarget(url), backup.backup_dir(project.backups_dir, env.name),
                                     environment=env.name, label="pre-downgrade", progress=bar.update)
    backup.verify_backup(taken)
    reporter.ok(f"backup {taken.name} verified")
    migrations.alembic_command(ini, url, "downgrade", revision, on_line=reporter.line)
    reporter.ok(f"database downgraded to {revision}; restore with: inv backup.restore {taken.name}")


def shell(env: Environment, database_url: str | None) -> int:
    """psql on a directly reached database, attached to this terminal; its exit code."""
    url = database_url_from(database_url)
    if url is None:
        raise UserError(f"an interactive shell in the {env.name} PostgreSQL pod needs a terminal exec",
                        f"run: kubectl -n {env.namespace} exec -it <postgresql pod> -c postgresql -- psql "
                        "-U \"$POSTGRES_USER\", or pass --database-url")
    return LocalTarget(url).shell()


# --------------------------------------------------------------------------- backups of the environment


def take_backup(project: Project, env: Environment, database_url: str | None, reporter: Reporter, *,
                label: str | None = None, release_revision: str | None = None,
                dry_run: bool = False) -> backup.Backup | None:
    """A checked backup of the environment's database in its backups folder (None on a dry run)."""
    target = target_for(project, env, database_url)
    directory = backup.backup_dir(project.backups_dir, env.name)
    reporter.step(f"backing up {target.description} ({env.name})")
    if dry_run:
        reporter.line(f"dry run: would write pg_dump -Fc of that database to {directory}/ "
                      "(as .partial, renamed when checked)")
        return None
    with reporter.progress("pg_dump", unit="bytes") as bar:
        return backup.create_backup(target, directory, environment=env.name, label=label,
                                    release_revision=release_revision, progress=bar.update)


def restore(project: Project, env: Environment, name: str, database_url: str | None, *,
            confirm: Callable[[backup.RestorePlan], None], force_env: bool = False, jobs: int = 1,
            keep_old: bool = True, say: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """Restore the environment's backup ``name`` (or ``latest``) into its database."""
    if jobs < 1:
        raise UserError("--jobs must be 1 or more", None)
    found = backup.find_backup(backup.backup_dir(project.backups_dir, env.name), name)
    target = target_for(project, env, database_url)
    return backup.restore_backup(target, found, environment=env.name, backups_root=project.backups_dir,
                                 confirm=confirm, force_env=force_env, jobs=jobs, keep_old=keep_old, say=say)


def backup_if_migrating(project: Project, env: Environment, alembic_ini: str | Path | None,
                        reporter: Reporter) -> str | None:
    """A verified backup when the new code has migrations the database has not applied; its path, or None."""
    target = target_for(project, env, None)
    current = database_info(target)["alembic_heads"]
    pending = migrations.migration_status(alembic_ini_path(project, alembic_ini), current).pending
    if not pending:
        reporter.line("no pending migrations: no backup needed")
        return None
    names = ", ".join(r.revision for r in pending)
    reporter.line(f"pending migrations ({names}): taking a verified backup first")
    taken = backup.create_backup(target, backup.backup_dir(project.backups_dir, env.name), environment=env.name,
                                 label="pre-upgrade")
    backup.verify_backup(taken)
    reporter.ok(f"backup {taken.path.name} verified")
    return str(taken.path)
