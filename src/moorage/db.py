"""The database: where it is, how to talk to it, and its Alembic migrations.

A database is reached through a :class:`Target`:

- :class:`LocalTarget` for a direct connection (``--database-url`` or
  ``DATABASE_URL``; production's external PostgreSQL). The PostgreSQL client
  tools run on this machine with the connection in ``PG*`` variables of the
  child's environment: the password never appears on a command line.
- :class:`PodTarget` for the in-cluster PostgreSQL pod of an environment. The
  same tools run inside the pod through an exec stream, connecting over the
  pod's local socket as ``$POSTGRES_USER``; no credential leaves the pod.

Both offer the same three operations: :meth:`Target.run_streaming` (a
PostgreSQL client program with its stdout handed chunk by chunk to a
callback), :meth:`Target.sql` (one psql call) and
:meth:`Target.restore_archive` (``pg_restore`` of a local archive file).

Migrations: :func:`migration_status` compares the database's
``alembic_version`` with the scripts' head (the scripts are read locally with
Alembic's own API); :func:`alembic_command` runs Alembic against a direct
connection (``db.migrate --local``); :func:`migration_job` builds the
in-cluster Job manifest from the release's backend Deployment.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .core import proc
from .core.config import DEFAULT_ALEMBIC_INI  # noqa: F401 - re-exported for the db tasks
from .core.errors import CommandFailed, ToolMissing, Unreachable, UserError

log = logging.getLogger("moorage.db")

CHUNK = 1 << 20
MAINTENANCE_DB = "postgres"

# URL query parameters that libpq also reads from the environment.
_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "passfile": "PGPASSFILE",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
}


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``postgresql://`` URL. ``str()`` and ``masked`` never show the password."""

    user: str | None
    password: str | None = field(repr=False)
    host: str | None
    port: int | None
    database: str
    params: tuple[tuple[str, str], ...] = ()
    raw: str = field(default="", repr=False, compare=False)

    @property
    def masked(self) -> str:
        auth = ""
        if self.user:
            auth = quote(self.user, safe="")
            if self.password:
                auth += ":" + proc.MASK
            auth += "@"
        host = self.host or ""
        if host.startswith("/"):
            host = quote(host, safe="")
        port = f":{self.port}" if self.port else ""
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"postgresql://{auth}{host}{port}/{quote(self.database, safe='')}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.masked

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()

    def with_database(self, name: str) -> DatabaseUrl:
        return replace(self, database=name, raw="")

    def libpq_env(self, database: str | None = None) -> dict[str, str]:
        """The connection as ``PG*`` variables for a child process (password included)."""
        env = {"PGDATABASE": database or self.database, "PGAPPNAME": "moorage"}
        if self.host:
            env["PGHOST"] = self.host
        if self.port:
            env["PGPORT"] = str(self.port)
        if self.user:
            env["PGUSER"] = self.user
        if self.password:
            env["PGPASSWORD"] = self.password
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        for key, value in self.params:
            env[_QUERY_ENV[key]] = value
        return env


def parse_database_url(url: str, source: str = "--database-url") -> DatabaseUrl:
    """Parse a PostgreSQL URL; a malformed one is a UserError that does not echo the password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise UserError(f"{source} is not a valid URL",
                        "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise UserError(f"{source} must be a postgresql:// URL, got scheme '{parts.scheme}'",
                        "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    database = unquote(parts.path.lstrip("/"))
    params: list[tuple[str, str]] = []
    host = unquote(parts.hostname) if parts.hostname else None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "host":
            host = value
        elif key in _QUERY_ENV:
            params.append((key, value))
        else:
            raise UserError(f"{source} has an unsupported parameter '{key}'",
                            f"use only: host, {', '.join(sorted(_QUERY_ENV))}")
    if not database:
        raise UserError(f"{source} names no database", "end the URL with /DATABASE")
    return DatabaseUrl(
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        host=host, port=port, database=database, params=tuple(params), raw=url.strip(),
    )


def database_url_from(flag: str | None, environ: Mapping[str, str] | None = None) -> DatabaseUrl | None:
    """``--database-url`` wins over ``DATABASE_URL``; None means "the environment's pod"."""
    environ = os.environ if environ is None else environ
    if flag:
        return parse_database_url(flag)
    if environ.get("DATABASE_URL"):
        return parse_database_url(environ["DATABASE_URL"], "DATABASE_URL")
    return None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------- targets


@dataclass
class Completed:
    returncode: int
    stderr: str


class Target(Protocol):
    """Where the PostgreSQL client programs run, and against which database."""

    description: str  # safe to print
    database: str
    secrets: tuple[str, ...]
    kind: str  # "local" or "pod"

    def run_streaming(self, argv: Sequence[str], *, stdin: IO[bytes] | None = None,
                      stdout: Callable[[bytes], None] | None = None, database: str | None = None) -> Completed:
        """Run a client program (pg_dump, psql...) connected to ``database``; stdout chunks go to the callback."""

    def restore_archive(self, archive: Path, database: str, jobs: int = 1) -> Completed:
        """pg_restore a local custom-format archive into ``database``."""


def sql(target: Target, query: str, *, database: str | None = None, what: str = "psql") -> str:
    """Run SQL through psql on the target; unaligned, tuples only. Raises on any error."""
    out = bytearray()
    done = target.run_streaming(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query],
                                stdout=out.extend, database=database)
    if done.returncode != 0:
        raise pg_error(what, done.stderr, target)
    return out.decode()


def pg_error(what: str, stderr: str, target: Target, code: int | None = None) -> Exception:
    """Turn a PostgreSQL client failure into the right Moorage error."""
    tail = proc.tail_lines(proc.redact(stderr, target.secrets), 6)
    low = stderr.lower()
    if ("could not connect" in low or "connection refused" in low or "could not translate host" in low
            or "timeout expired" in low or ("no such file or directory" in low and "socket" in low)):
        return Unreachable(f"database {target.description} is unreachable: {tail}",
                           "check the host, port and that PostgreSQL is running (pg_isready)")
    if "password authentication failed" in low or "no password supplied" in low:
        return UserError(f"database {target.description} refused the credentials: {tail}",
                         "fix the user and password in --database-url / DATABASE_URL")
    if re.search(r'database "[^"]*" does not exist', low):
        return UserError(f"{what}: {tail}", "check the database name in the URL")
    suffix = f" (exit {code})" if code is not None else ""
    return CommandFailed(f"{what} failed{suffix} on {target.description}: {tail}", stderr=tail,
                         returncode=code or 1)


def _pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the child if Moorage dies, so no pg tool outlives a killed run."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not on Linux
        pass


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, CHUNK)  # F_SETPIPE_SZ: fewer, larger reads
    except OSError:
        pass


class LocalTarget:
    """A direct connection: client tools on this machine, PG* variables in their environment."""

    kind = "local"

    def __init__(self, url: DatabaseUrl, *, bin_dir: str | None = None):
        self.url = url
        self.database = url.database
        self.secrets = url.secrets
        self.description = url.masked
        self.bin_dir = bin_dir or os.environ.get("MOORAGE_PG_BIN")

    def for_database(self, name: str) -> LocalTarget:
        return LocalTarget(self.url.with_database(name), bin_dir=self.bin_dir)

    def tool(self, name: str) -> str:
        if self.bin_dir and (Path(self.bin_dir) / name).exists():
            return str(Path(self.bin_dir) / name)
        return proc.which(name)

    def env(self, database: str | None = None) -> dict[str, str]:
        return {**os.environ, **self.url.libpq_env(database)}

    def run_streaming(self, argv: Sequence[str], *, stdin: IO[bytes] | None = None,
                      stdout: Callable[[bytes], None] | None = None, database: str | None = None) -> Completed:
        args = [self.tool(argv[0]), *argv[1:]]
        log.debug("run: %s (database %s)", proc.render(argv, self.secrets), database or self.database)
        with tempfile.TemporaryFile() as err:
            try:
                child = subprocess.Popen(
                    args, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=err,
                    env=self.env(database), preexec_fn=_pdeathsig,
                )
            except FileNotFoundError:
                raise ToolMissing(f"'{argv[0]}' is not installed or not on PATH",
                                  proc.INSTALL_HINTS.get(argv[0])) from None
            try:
                if stdout:
                    fd = child.stdout.fileno()
                    _grow_pipe(fd)
                    read = os.read
                    while chunk := read(fd, CHUNK):
                        stdout(chunk)
                    child.stdout.close()
                code = child.wait()
            except BaseException:
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                raise
            err.seek(0)
            return Completed(code, proc.redact(err.read().decode(errors="replace"), self.secrets))

    def restore_archive(self, archive: Path, database: str, jobs: int = 1) -> Completed:
        # The archive is a local file, so pg_restore can seek in it: -j works.
        argv = ["pg_restore", "--exit-on-error", "--no-password", f"--dbname={database}"]
        if jobs > 1:
            argv.append(f"--jobs={jobs}")
        return self.run_streaming([*argv, str(archive)], database=database)

    def shell(self, database: str | None = None) -> int:
        """psql attached to this terminal."""
        return subprocess.call([self.tool("psql")], env=self.env(database))


class PodExec(Protocol):
    """The narrow slice of ``moorage.kube`` a PodTarget needs (see :class:`KubePods`)."""

    def find_pod(self, namespace: str, label_selector: str) -> str:
        """Name of a ready pod matching the selector (Unreachable otherwise)."""

    def exec_stream(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                    stdin: IO[bytes] | None, on_stdout: Callable[[bytes], None]) -> tuple[int, str]:
        """Run ``command`` in the container, binary-safe both ways; (exit code, stderr)."""


class KubePods:
    """``moorage.kube`` bound to one API client, in the PodExec shape."""

    def __init__(self, api):
        self.api = api

    def find_pod(self, namespace: str, label_selector: str) -> str:
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        from . import kube

        try:
            response = kube.retrying(CoreV1Api(self.api).list_namespaced_pod, namespace,
                                     label_selector=label_selector, _preload_content=False)
        except ApiException as exc:
            raise kube.api_error(self.api, exc, f"listing pods in {namespace}") from exc
        pods = kube.read_json(response).get("items") or []
        ready = [p for p in pods if _pod_ready(p)]
        if not ready:
            raise Unreachable(f"no ready PostgreSQL pod ({label_selector}) in namespace {namespace}",
                              "deploy the environment first (inv dev.deploy) or check inv dev.status")
        return ready[0]["metadata"]["name"]

    def exec_stream(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                    stdin: IO[bytes] | None, on_stdout: Callable[[bytes], None]) -> tuple[int, str]:
        from . import kube

        result = kube.exec_stream(self.api, namespace, pod, list(command), container=container,
                                  stdout=on_stdout, stdin=stdin)
        return result.exit_code, result.stderr


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


# Runs inside the pod: connect over the local socket as the image's user; the
# password (if the image sets one) stays in the pod's own environment.
POD_WRAPPER = (
    'db="$1"; shift; '
    'export PGUSER="${POSTGRES_USER:-postgres}" PGDATABASE="${db:-${POSTGRES_DB:-$POSTGRES_USER}}" PGAPPNAME=moorage; '
    'if [ -n "$POSTGRES_PASSWORD" ]; then export PGPASSWORD="$POSTGRES_PASSWORD"; fi; '
    'exec "$@"'
)


def pod_selector(release: str) -> str:
    return f"app.kubernetes.io/instance={release},app.kubernetes.io/component=postgresql"


class PodTarget:
    """The environment's in-cluster PostgreSQL pod, reached through an exec stream.

    pg_dump writes straight into the exec stream: nothing is staged in the pod.
    ``restore_archive`` streams the archive into ``pg_restore``'s stdin, which
    cannot seek, so it is single-job. Parallel restore (``-j``) needs a
    seekable file on the restoring side: either copy the archive into the pod
    first (costs the pod's disk, which a database volume rarely has to spare)
    or run pg_restore here through a port-forward (needs the password here).
    Moorage prefers the safe default and warns that ``--jobs`` is ignored.
    """

    kind = "pod"

    def __init__(self, kube: PodExec, namespace: str, pod: str, *, container: str = "postgresql",
                 database: str | None = None):
        self.kube = kube
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.secrets: tuple[str, ...] = ()
        self.description = f"pod {namespace}/{pod}"
        self._database = database

    @classmethod
    def discover(cls, kube: PodExec, namespace: str, release: str, **kw: Any) -> PodTarget:
        return cls(kube, namespace, kube.find_pod(namespace, pod_selector(release)), **kw)

    @property
    def database(self) -> str:
        if self._database is None:
            self._database = sql(self, "SELECT current_database()").strip()
        return self._database

    def for_database(self, name: str) -> PodTarget:
        return PodTarget(self.kube, self.namespace, self.pod, container=self.container, database=name)

    def command(self, argv: Sequence[str], database: str | None = None) -> list[str]:
        return ["sh", "-c", POD_WRAPPER, "sh", database or self._database or "", *argv]

    def run_streaming(self, argv: Sequence[str], *, stdin: IO[bytes] | None = None,
                      stdout: Callable[[bytes], None] | None = None, database: str | None = None) -> Completed:
        log.debug("exec in %s: %s", self.description, proc.render(argv, self.secrets))
        code, stderr = self.kube.exec_stream(self.namespace, self.pod, self.container,
                                             self.command(argv, database), stdin=stdin,
                                             on_stdout=stdout or (lambda _b: None))
        return Completed(code, stderr)

    def restore_archive(self, archive: Path, database: str, jobs: int = 1) -> Completed:
        if jobs > 1:
            log.warning("--jobs ignored for an in-cluster database: the archive is streamed, not copied")
        with open(archive, "rb") as fh:
            return self.run_streaming(["pg_restore", "--exit-on-error", "--no-password", f"--dbname={database}"],
                                      stdin=fh, database=database)


def pod_target(project, env) -> PodTarget:
    """The environment's PostgreSQL pod, through ``moorage.kube`` (imported lazily)."""
    from . import kube
    from .core.config import guard_context

    context = kube.resolve_context(env.context)
    guard_context(project, env, context)
    return PodTarget.discover(KubePods(kube.client(context)), env.namespace, project.release)


def target_for(project, env, database_url: str | None) -> Target:
    """A LocalTarget when a URL is given (flag or DATABASE_URL), else the env's pod."""
    url = database_url_from(database_url)
    if url is not None:
        return LocalTarget(url)
    return pod_target(project, env)


def database_info(target: Target) -> dict[str, Any]:
    """Server version and Alembic revision(s) of the target's database, in two short queries."""
    out = sql(target, "SELECT current_setting('server_version'), "
                      "to_regclass('public.alembic_version') IS NOT NULL", what="reading the server version")
    version, has_alembic = (out.strip().split("|") + ["f"])[:2]
    heads: list[str] = []
    if has_alembic == "t":
        heads = sorted(sql(target, "SELECT version_num FROM alembic_version",
                           what="reading alembic_version").split())
    return {"server_version": version, "alembic_heads": heads}


def database_exists(target: Target, name: str) -> bool:
    out = sql(target, f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(name)}", database=MAINTENANCE_DB)
    return out.strip() == "1"


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Revision:
    revision: str
    down: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class MigrationStatus:
    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: tuple[Revision, ...]  # oldest first

    @property
    def up_to_date(self) -> bool:
        return not self.pending and set(self.current) == set(self.heads)

    def as_dict(self) -> dict[str, Any]:
        return {"current": list(self.current), "heads": list(self.heads), "up_to_date": self.up_to_date,
                "pending": [{"revision": r.revision, "message": r.message} for r in self.pending]}


def _script_directory(ini: Path):
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
    except ImportError:
        raise ToolMissing("Alembic is not installed in this Python environment",
                          "pip install alembic (it reads the migration scripts)") from None
    if not ini.is_file():
        raise UserError(f"Alembic configuration {ini} does not exist",
                        "pass --alembic-ini or set db.alembic_ini in invoke.yaml")
    cfg = Config(str(ini))
    location = cfg.get_main_option("script_location")
    if not location:
        raise UserError(f"{ini} has no script_location", f"add script_location to [alembic] in {ini}")
    if ":" not in location and not os.path.isabs(location):
        # Alembic resolves it against the cwd; we resolve it against the ini's folder.
        cfg.set_main_option("script_location", str(ini.parent / location))
    return ScriptDirectory.from_config(cfg)


def revisions(ini: Path) -> list[Revision]:
    """Every revision, newest first."""
    script = _script_directory(ini)
    return [Revision(r.revision, tuple(r._normalized_down_revisions), (r.doc or "").strip())
            for r in script.walk_revisions()]


def migration_status(ini: Path, current: Sequence[str]) -> MigrationStatus:
    """Pending revisions between the database's ``current`` and the scripts' heads."""
    script = _script_directory(ini)
    heads = tuple(script.get_heads())
    known = {r.revision for r in script.walk_revisions()}
    unknown = [c for c in current if c not in known]
    if unknown:
        raise UserError(f"the database is at revision {unknown[0]}, which the scripts next to {ini} do not have",
                        "deploy the code that matches the database, or check --alembic-ini")
    pending = []
    for rev in script.iterate_revisions("heads", tuple(current) or "base"):
        if rev.revision not in current:
            pending.append(Revision(rev.revision, tuple(rev._normalized_down_revisions), (rev.doc or "").strip()))
    return MigrationStatus(tuple(sorted(current)), heads, tuple(reversed(pending)))


def alembic_argv(ini: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "alembic", "-c", str(ini), *args]


def alembic_command(ini: Path, url: DatabaseUrl, *args: str, on_line: Callable[[str], None],
                    timeout: float | None = None) -> None:
    """Run Alembic (``upgrade head``...) against a direct connection, streaming its output.

    The URL goes to the app's env.py in ``DATABASE_URL`` (the child's
    environment only); every echoed line is redacted.
    """
    if not ini.is_file():
        raise UserError(f"Alembic configuration {ini} does not exist",
                        "pass --alembic-ini or set db.alembic_ini in invoke.yaml")
    argv = alembic_argv(ini, *args)
    log.debug("run: %s", proc.render(argv, url.secrets))
    env = {**os.environ, "DATABASE_URL": url.raw or url.masked}
    child = subprocess.Popen(argv, cwd=str(ini.parent), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=_pdeathsig)
    lines: list[str] = []
    try:
        for line in child.stdout:
            line = proc.redact(line.rstrip("\n"), url.secrets)
            lines.append(line)
            on_line(line)
        code = child.wait(timeout)
    except BaseException:
        child.kill()
        child.wait()
        raise
    if code != 0:
        raise CommandFailed(f"alembic {' '.join(args)} failed (exit {code}) on {url.masked}: "
                            f"{proc.tail_lines(chr(10).join(lines), 6)}",
                            "read the migration's error above; the database keeps the last revision that succeeded",
                            returncode=code)


MIGRATION_CONTAINER = "migrate"


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
                            "set the backend container name")
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
