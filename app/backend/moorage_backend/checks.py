"""Readiness checks: each returns "ok" or a short reason, never raises."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from redis import Redis
from sqlalchemy import Engine, text

# alembic.ini sits next to this package: /app in the image, app/backend in a checkout.
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def _reason(exc: Exception) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:200]


@lru_cache(maxsize=1)
def migration_heads() -> frozenset[str]:
    """Head revision(s) of the migrations shipped with this code."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_heads())


def check_database(engine: Engine) -> tuple[str, str]:
    """(database, schema): reachable, and migrated exactly to this code's head."""
    try:
        with engine.connect() as conn:
            try:
                current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
            except Exception:  # noqa: BLE001 - a missing table is the usual case on a fresh database
                return "ok", "not migrated: run `alembic upgrade head`"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return _reason(exc), "unknown: database unreachable"
    heads = migration_heads()
    if current == heads:
        return "ok", "ok"
    return "ok", f"at {','.join(sorted(current)) or 'base'}, expected {','.join(sorted(heads))}"


def check_redis(client: Redis) -> str:
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return _reason(exc)
    return "ok"
