"""Where an environment's migrations come from: invoke's ``db.*`` settings (:class:`DbSettings`), the
Alembic configuration file (the flag, ``migrations.alembic_ini``, ``db.alembic_ini``, else the project's
one ``alembic.ini``) and the configured migration workload (else ``moorage.targets`` finds it in the
release). Read by ``moorage.database`` and by the deploy's schema checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import files
from .core.config import ALEMBIC_INI, Environment, Project
from .core.errors import UserError

#: Seconds a direct Alembic run may take (invoke config ``db.alembic_timeout``).
ALEMBIC_TIMEOUT = 3600


@dataclass(frozen=True)
class DbSettings:
    """invoke config ``db.*``: where the Alembic configuration is, and how the in-cluster Job migrates."""

    alembic_ini: str | None = None
    backend_deployment: str | None = None  # a Deployment's name; default: found (moorage.targets)
    job_command: tuple[str, ...] | None = None  # default: alembic
    alembic_timeout: float = ALEMBIC_TIMEOUT

    @classmethod
    def from_config(cls, conf: Mapping[str, Any] | None) -> DbSettings:
        conf = conf or {}
        command = conf.get("job_command")
        timeout = conf.get("alembic_timeout")
        return cls(conf.get("alembic_ini"), conf.get("backend_deployment"), tuple(command) if command else None,
                   float(timeout) if timeout else ALEMBIC_TIMEOUT)


def alembic_ini_path(project: Project, *choices: str | Path | None) -> Path:
    """The first given of ``choices`` (flag, then config), else the project's one ``alembic.ini``
    (none: ``alembic.ini`` at the root, where ``alembic init`` puts it); relative to the project."""
    chosen = next((c for c in choices if c), None)
    if chosen is None:
        found = files.named(project.root, ALEMBIC_INI)
        if len(found) > 1:
            raise UserError(f"the project holds several {ALEMBIC_INI} files ({', '.join(found)}), and the "
                            "configuration does not say which one is the app's",
                            "name it in moorage.environments.<env>.migrations.alembic_ini (or invoke config "
                            "db.alembic_ini), or pass --alembic-ini")
        chosen = found[0] if found else ALEMBIC_INI
    path = Path(chosen)
    return path if path.is_absolute() else project.root / path


def env_alembic_ini(project: Project, env: Environment, flag: str | Path | None = None,
                    settings: DbSettings = DbSettings()) -> Path:
    """The environment's alembic.ini: ``--alembic-ini``, then its ``migrations.alembic_ini``, then invoke
    config ``db.alembic_ini``, then the default."""
    return alembic_ini_path(project, flag, env.migrations.alembic_ini, settings.alembic_ini)


def readable_alembic_ini(project: Project, env: Environment, flag: str | Path | None = None,
                         settings: DbSettings = DbSettings()) -> tuple[Path | None, str]:
    """The environment's alembic.ini when it is in this checkout, else None and why (several to choose
    from, or not here): for the deploy's reads, which go on without the scripts rather than fail."""
    try:
        ini = env_alembic_ini(project, env, flag, settings)
    except UserError as exc:
        return None, exc.message
    if ini.is_file():
        return ini, ""
    shown = ini.relative_to(project.root) if ini.is_relative_to(project.root) else ini
    return None, f"{shown} is not in this checkout"


def workload_of(env: Environment, settings: DbSettings) -> tuple[str, str] | None:
    """(kind, name) of the configured workload a migration Job copies: ``migrations.workload``, then invoke
    config ``db.backend_deployment``; None: the release's, found when the Job is made."""
    if env.migrations.workload is None and settings.backend_deployment:
        return "deployment", settings.backend_deployment
    return env.migrations.workload_ref()


def require_alembic(env: Environment, task: str) -> None:
    """UserError unless the environment's migrations are Alembic's (status, history, downgrade read them)."""
    kind = env.migrations.kind
    if kind != "alembic":
        what = ("a command Moorage runs but cannot read" if kind == "command" else "none (kind: none)")
        raise UserError(f"{task} reads Alembic revisions, and the migrations of '{env.name}' are {what}",
                        f"set moorage.environments.{env.name}.migrations.status_command to the tool's own status "
                        "command (db.status runs it in a Job), or ask the tool directly")
