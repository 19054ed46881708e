"""PostgreSQL access that both the migrations and the backups use: where a database is, how to talk to it.

A database is reached through a :class:`Target`:

- :class:`LocalTarget` for a direct connection (``--database-url`` or
  ``DATABASE_URL``; production's external PostgreSQL). The PostgreSQL client
  tools run on this machine with the connection in ``PG*`` variables of the
  child's environment: the password never appears on a command line.
- :class:`PodTarget` for an in-cluster PostgreSQL pod. The same tools run
  inside the pod through an exec stream (a :class:`PodExec`), connecting over
  the pod's local socket as ``$POSTGRES_USER``; no credential leaves the pod.

Both offer the same two operations: :meth:`Target.run_streaming` (a
PostgreSQL client program with its stdout handed chunk by chunk to a
callback) and :meth:`Target.restore_archive` (``pg_restore`` of a local
archive file). :func:`sql` runs one psql call on either. Which pod, and the
Kubernetes client behind a PodExec, are chosen by ``moorage.database``.

Foundation floor: imports only ``moorage.core``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .core import proc
from .core.errors import CommandFailed, Unreachable, UserError

log = logging.getLogger("moorage.pg")

CHUNK = 1 << 20
#: the URI schemes libpq accepts (``postgresql://``, ``postgres://``), whatever chart runs the server
URL_SCHEMES = ("postgresql", "postgres")
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

    def with_param(self, key: str, value: str) -> DatabaseUrl:
        """The URL with one more query parameter (``sslmode=require``), its raw form included."""
        raw = self.raw + ("&" if "?" in self.raw else "?") + f"{key}={quote(value, safe='')}" if self.raw else ""
        return replace(self, params=(*self.params, (key, value)), raw=raw)

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
    if scheme not in URL_SCHEMES:
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
    endpoint: str  # where the server is, for error lines: "db.example.org:5432", "pod ns/name"
    database: str
    database_name: str  # the database's name as configured, without asking the server
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


# libpq's words for a server it cannot reach, and for a connection that broke while in use.
_UNREACHABLE = ("could not connect", "connection refused", "could not translate host", "timeout expired",
                "no route to host", "network is unreachable", "connection timed out")
_LOST = ("server closed the connection unexpectedly", "terminating connection due to administrator command",
         "could not receive data from server", "could not send data to server", "no connection to the server",
         "the database system is shutting down", "the database system is starting up",
         "the database system is in recovery mode", "ssl syscall error", "connection to server was lost")


def connection_reason(stderr: str) -> str:
    """The reason in a libpq connection error, in a few words ("Connection refused", "unknown host db")."""
    low = stderr.lower()
    for phrase in _LOST:
        if phrase in low:
            return phrase
    for line in (x.strip() for x in stderr.splitlines()):
        m = re.search(r'could not translate host name "([^"]*)" to address: (.*)', line)
        if m:
            return f"unknown host {m[1]} ({m[2].strip()})"
        m = re.search(r"(?:connection to server .*?|could not connect to server.*?) failed: (.*)$", line)
        if m:
            return m[1].strip()
    first = next((x.strip() for x in stderr.splitlines() if x.strip()), "no answer")
    return re.sub(r"^\w+: (error: )?", "", first)


def pg_error(what: str, stderr: str, target: Target, code: int | None = None) -> Exception:
    """Turn a PostgreSQL client failure into the right Moorage error."""
    tail = proc.tail_lines(proc.redact(stderr, target.secrets), 6)
    low = stderr.lower()
    if any(p in low for p in _LOST):
        return Unreachable(f"lost the connection to PostgreSQL at {target.endpoint} ({what}): "
                           f"{connection_reason(stderr)}", "check that PostgreSQL is running, then retry")
    if any(p in low for p in _UNREACHABLE) or ("no such file or directory" in low and "socket" in low):
        return Unreachable(f"cannot connect to PostgreSQL at {target.endpoint} (database {target.database_name}): "
                           f"{connection_reason(stderr)}",
                           "check the host, port and that PostgreSQL is running (pg_isready); nothing was changed")
    if "password authentication failed" in low or "no password supplied" in low:
        return UserError(f"database {target.description} refused the credentials: {tail}",
                         "fix the user and password in --database-url / DATABASE_URL")
    if re.search(r'database "[^"]*" does not exist', low):
        return UserError(f"{what}: {tail}", "check the database name in the URL")
    suffix = f" (exit {code})" if code is not None else ""
    return CommandFailed(f"{what} failed{suffix} on {target.description}: {tail}", stderr=tail,
                         returncode=code or 1)


def check_connection(target: Target) -> dict[str, Any]:
    """Connect once before anything else: Unreachable (host, port, reason; exit 2) or the server's facts."""
    return database_info(target)


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


# --------------------------------------------------------------------------- local


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, CHUNK)  # F_SETPIPE_SZ: fewer, larger reads
    except OSError:
        pass


def tool(name: str, bin_dir: str | None = None) -> str:
    """A PostgreSQL client program: from ``bin_dir`` or ``MOORAGE_PG_BIN`` when it has it, else from PATH."""
    bin_dir = bin_dir or os.environ.get("MOORAGE_PG_BIN")
    if bin_dir and (Path(bin_dir) / name).exists():
        return str(Path(bin_dir) / name)
    return proc.which(name)


class LocalTarget:
    """A direct connection: client tools on this machine, PG* variables in their environment.

    Children start through ``core.proc.start`` (not ``proc.run``, which
    collects a finished child's output as text: a dump is binary and streamed
    in chunks as it comes, and ``shell`` is attached to the terminal).
    """

    kind = "local"

    def __init__(self, url: DatabaseUrl, *, bin_dir: str | None = None):
        self.url = url
        self.database = url.database
        self.secrets = url.secrets
        self.description = url.masked
        self.bin_dir = bin_dir or os.environ.get("MOORAGE_PG_BIN")

    @property
    def database_name(self) -> str:
        return self.url.database

    @property
    def endpoint(self) -> str:
        host = self.url.host or "the local socket"
        if host.startswith("/"):
            host = f"socket {host}"
        return f"{host}:{self.url.port or 5432}"

    def for_database(self, name: str) -> LocalTarget:
        return LocalTarget(self.url.with_database(name), bin_dir=self.bin_dir)

    def tool(self, name: str) -> str:
        return tool(name, self.bin_dir)

    def env(self, database: str | None = None) -> dict[str, str]:
        return self.url.libpq_env(database)

    def run_streaming(self, argv: Sequence[str], *, stdin: IO[bytes] | None = None,
                      stdout: Callable[[bytes], None] | None = None, database: str | None = None) -> Completed:
        args = [self.tool(argv[0]), *argv[1:]]
        log.debug("run: %s (database %s)", proc.render(argv, self.secrets), database or self.database)
        with tempfile.TemporaryFile() as err:
            child = proc.start(args, env=self.env(database), secrets=self.secrets,
                               stdin=stdin if stdin is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=err)
            try:
                if stdout:
                    _pump(child, stdout)
                code = child.wait()
            except BaseException:
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
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
        """psql attached to this terminal; Ctrl-C belongs to psql (it cancels a query) while it runs."""
        import signal

        child = proc.start([self.tool("psql")], env=self.env(database), secrets=self.secrets)
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: nothing to hand over
            return child.wait()
        try:
            return child.wait()
        finally:
            signal.signal(signal.SIGINT, previous)


def _pump(child: subprocess.Popen, stdout: Callable[[bytes], None]) -> None:
    """Hand the child's stdout to ``stdout`` in large chunks until it closes."""
    fd = child.stdout.fileno()
    _grow_pipe(fd)
    read = os.read
    while chunk := read(fd, CHUNK):
        stdout(chunk)
    child.stdout.close()


# --------------------------------------------------------------------------- pod


class PodExec(Protocol):
    """The narrow slice of the Kubernetes client a PodTarget needs (``moorage.database.KubePods``)."""

    def find_pod(self, namespace: str, label_selector: str) -> str:
        """Name of a ready pod matching the selector (Unreachable otherwise)."""

    def exec_stream(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                    stdin: IO[bytes] | None, on_stdout: Callable[[bytes], None]) -> tuple[int, str]:
        """Run ``command`` in the container, binary-safe both ways; (exit code, stderr)."""


@dataclass(frozen=True)
class PodLogin:
    """How a PodTarget logs in inside its container: the names of the variables that hold the user, the
    database and the password there (the values never leave the pod), and optionally a superuser (a literal
    name, its password in a variable) used instead, for the rights a restore needs."""

    user_env: str = "POSTGRES_USER"
    database_env: str = "POSTGRES_DB"
    password_env: str = "POSTGRES_PASSWORD"
    superuser: str | None = None
    superuser_password_env: str | None = None

    def wrapper(self) -> str:
        """The shell line run in the pod: ``sh -c WRAPPER sh DATABASE PROGRAM ARGS...``.

        Variable names are identifiers (checked by the configuration), the superuser's name is quoted.
        """
        default_db = f'${{{self.database_env}:-${{{self.user_env}:-postgres}}}}'
        if self.superuser:
            user = "'" + self.superuser.replace("'", "'\\''") + "'"
            password = self.superuser_password_env
        else:
            user, password = f'"${{{self.user_env}:-postgres}}"', self.password_env
        login = (f'db="$1"; shift; export PGUSER={user} PGDATABASE="${{db:-{default_db}}}" PGAPPNAME=moorage; ')
        if password:
            login += f'if [ -n "${{{password}:-}}" ]; then export PGPASSWORD="${{{password}}}"; fi; '
        return login + 'exec "$@"'


class PodTarget:
    """A PostgreSQL pod, reached through an exec stream.

    pg_dump writes straight into the exec stream: nothing is staged in the pod.
    ``restore_archive`` streams the archive into ``pg_restore``'s stdin, which
    cannot seek, so it is single-job. Parallel restore (``-j``) needs a
    seekable file on the restoring side: either copy the archive into the pod
    first (costs the pod's disk, which a database volume rarely has to spare)
    or run pg_restore here through a port-forward (needs the password here).
    Moorage prefers the safe default and warns that ``--jobs`` is ignored.
    """

    kind = "pod"

    def __init__(self, kube: PodExec, namespace: str, pod: str, *, container: str | None = None,
                 database: str | None = None, login: PodLogin = PodLogin()):
        self.kube = kube
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.login = login
        self.secrets: tuple[str, ...] = ()
        self.description = f"pod {namespace}/{pod}"
        self.endpoint = f"pod {namespace}/{pod}"
        self._database = database

    @property
    def database_name(self) -> str:
        return self._database or "(the pod's default)"

    @classmethod
    def discover(cls, kube: PodExec, namespace: str, label_selector: str, **kw: Any) -> PodTarget:
        """The ready pod that ``label_selector`` picks in ``namespace``."""
        return cls(kube, namespace, kube.find_pod(namespace, label_selector), **kw)

    @property
    def database(self) -> str:
        if self._database is None:
            self._database = sql(self, "SELECT current_database()").strip()
        return self._database

    def for_database(self, name: str) -> PodTarget:
        return PodTarget(self.kube, self.namespace, self.pod, container=self.container, database=name,
                         login=self.login)

    def command(self, argv: Sequence[str], database: str | None = None) -> list[str]:
        return ["sh", "-c", self.login.wrapper(), "sh", database or self._database or "", *argv]

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
