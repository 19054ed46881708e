"""An environment's database and migration settings: where its PostgreSQL is, and how its schema moves.

``moorage.environments.<env>.database``::

    kind: pod            # the default: a PostgreSQL pod of the release, reached through the exec API
    selector: app=postgres,tier=database   # default: found in the release (below)
    container: postgres                    # default: the one found with it; with a selector, the pod's default
    env: {user: POSTGRES_USER, database: POSTGRES_DB, password: POSTGRES_PASSWORD}  # names in the container
    superuser: {user: postgres, password_env: POSTGRES_POSTGRES_PASSWORD}  # optional, for restores

    kind: external       # a PostgreSQL outside the cluster (a managed service)
    url_env: APP_DATABASE_URL   # the process environment, then .env.<env>, then .env
    sslmode: require            # added to the URL unless it names one

    kind: none           # no database: db.* and backup.* refuse, deploys take no backup

``moorage.environments.<env>.migrations``::

    kind: alembic        # the default: Alembic scripts at alembic_ini, run in a Job from `workload`
    alembic_ini: backend/alembic.ini       # default: invoke config db.alembic_ini, else the project's one
                                           # alembic.ini; where it is not here, db.status/history run
                                           # `alembic history` in a Job
    workload: deployment/app-backend       # default: the release's workload running the image whose
                                           # build context holds alembic_ini (moorage.targets)

    kind: command        # any tool (golang-migrate, Django, Prisma, a psql script), run as a Job
    workload: deployment/api               # whose image, env, volumes and service account the Job takes
    command: [python3, /app/migrate.py, up]
    status_command: [python3, /app/migrate.py, status]   # optional: what db.status runs there

    kind: none           # the schema comes from elsewhere (init scripts, the app at start)

Without a ``selector``, the pod is found in the release's own manifest (``helm get manifest``): the
StatefulSet, Deployment or DaemonSet whose pod template has a container listening on 5432 or running a
``postgres`` image; its selector's labels and that container are used. Nothing is assumed about the
chart's names or labels; a release with none, or with several, is one line asking for ``selector``.

Names of variables inside a container are interpolated into a shell line there, so they must be
plain identifiers; that is checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .reader import Reader

DATABASE_KINDS = ("pod", "external", "none")
MIGRATION_KINDS = ("alembic", "command", "none")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
WORKLOAD_KINDS = ("deployment", "statefulset", "daemonset")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SELECTOR_RE = re.compile(r"^[A-Za-z0-9_./-]+(!?=|==)[A-Za-z0-9_.-]*(,[A-Za-z0-9_./-]+(!?=|==)[A-Za-z0-9_.-]*)*$")


@dataclass(frozen=True)
class Database:
    """Where an environment's PostgreSQL is (see the module docstring)."""

    kind: str = "pod"
    selector: str | None = None  # None: the release's PostgreSQL workload, found in its manifest
    container: str | None = None  # None: the container found with it (with a selector: the pod's default)
    user_env: str = "POSTGRES_USER"
    database_env: str = "POSTGRES_DB"
    password_env: str = "POSTGRES_PASSWORD"
    superuser: str | None = None
    superuser_password_env: str | None = None
    url_env: str | None = None
    sslmode: str | None = None

    @property
    def exists(self) -> bool:
        return self.kind != "none"


@dataclass(frozen=True)
class Migrations:
    """How an environment's schema moves forward (see the module docstring)."""

    kind: str = "alembic"
    alembic_ini: str | None = None
    workload: str | None = None  # "kind/name" whose image and pod template a migration Job copies; None: found
    command: tuple[str, ...] = ()
    status_command: tuple[str, ...] = ()  # kind command: what db.status runs in a Job (optional)

    def workload_ref(self) -> tuple[str, str] | None:
        """(kind, name) of the configured workload whose pod template a migration Job copies, or None."""
        if self.workload is None:
            return None
        kind, _, name = self.workload.partition("/")
        return kind, name


def database(raw: Any, where: str, source: str) -> Database:
    r = Reader(raw or {}, where, source)
    kind = r.choice("kind", DATABASE_KINDS, "pod")
    allowed = {"pod": {"kind", "selector", "container", "env", "superuser"},
               "external": {"kind", "url_env", "sslmode"}, "none": {"kind"}}[kind]
    r.unknown(allowed)
    if kind == "external":
        url_env = _env_name(r, "url_env", None, required=True)
        return Database(kind, url_env=url_env, sslmode=r.choice("sslmode", SSL_MODES, None))
    if kind == "none":
        return Database(kind)
    selector = r.str("selector")
    if selector is not None and not _SELECTOR_RE.match(selector.replace(" ", "")):
        raise r._bad("selector", "a label selector such as app=postgres,tier=database", selector)
    env = Reader(r.raw.get("env") or {}, f"{where}.env", source)
    env.unknown({"user", "database", "password"})
    superuser = None
    super_password = None
    if r.raw.get("superuser") is not None:
        s = Reader(r.raw["superuser"], f"{where}.superuser", source)
        s.unknown({"user", "password_env"})
        superuser = s.str("user", required=True)
        super_password = _env_name(s, "password_env", None)
    return Database(
        kind, selector=selector.replace(" ", "") if selector else None,
        container=r.str("container"),
        user_env=_env_name(env, "user", "POSTGRES_USER"),
        database_env=_env_name(env, "database", "POSTGRES_DB"),
        password_env=_env_name(env, "password", "POSTGRES_PASSWORD"),
        superuser=superuser, superuser_password_env=super_password,
    )


def migrations(raw: Any, where: str, source: str, default_ini: str | None = None) -> Migrations:
    r = Reader(raw or {}, where, source)
    kind = r.choice("kind", MIGRATION_KINDS, "alembic")
    allowed = {"alembic": {"kind", "alembic_ini", "workload"}, "command": {"kind", "workload", "command", "status_command"},
               "none": {"kind"}}[kind]
    r.unknown(allowed)
    if kind == "none":
        return Migrations(kind)
    workload = r.str("workload")
    if workload is not None:
        ref_kind, _, name = workload.partition("/")
        if ref_kind.lower() not in WORKLOAD_KINDS or not name:
            raise r._bad("workload", f"KIND/NAME with KIND one of {', '.join(WORKLOAD_KINDS)}", workload)
        workload = f"{ref_kind.lower()}/{name}"
    if kind == "command":
        command = r.str_list("command")
        if not command:
            raise r._bad("command", "a non-empty list: the program and its arguments", r.raw.get("command"))
        if workload is None:
            raise ConfigError(f"{where}.workload is missing in {source}",
                              f"name the workload whose image runs the command, e.g. {where}.workload: deployment/api")
        return Migrations(kind, workload=workload, command=command, status_command=r.str_list("status_command"))
    return Migrations(kind, alembic_ini=r.str("alembic_ini", default_ini), workload=workload)


def _env_name(r: Reader, key: str, default: str | None, *, required: bool = False) -> str | None:
    value = r.str(key, default, required=required)
    if value is not None and not _ENV_NAME_RE.match(value):
        raise r._bad(key, "an environment variable name (letters, digits, '_')", value)
    return value

