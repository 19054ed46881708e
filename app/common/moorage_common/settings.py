"""Configuration from environment variables only (twelve-factor)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import URL, make_url

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


def sqlalchemy_url(database_url: str) -> URL:
    """Turn a libpq-style ``postgresql://`` URL into one for the psycopg 3 driver.

    Deployments hand out plain ``postgresql://`` (or Heroku-style ``postgres://``)
    URLs; only psycopg 3 is installed, so any other driver name is replaced.
    """
    try:
        url = make_url(database_url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        raise ConfigError(f"DATABASE_URL is not a valid URL: {exc}") from None
    backend = url.drivername.split("+", 1)[0]
    if backend not in ("postgresql", "postgres"):
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got {backend}://")
    return url.set(drivername="postgresql+psycopg")


@dataclass(frozen=True)
class Settings:
    database_url: URL
    redis_url: str
    log_level: str = "INFO"
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not env.get(name)]
        if missing:
            raise ConfigError(f"required environment variable(s) not set: {', '.join(missing)}")
        level = env.get("LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        redis_url = env["REDIS_URL"]
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
        return cls(
            database_url=sqlalchemy_url(env["DATABASE_URL"]),
            redis_url=redis_url,
            log_level=level,
            secret_key=env.get("APP_SECRET_KEY") or None,
        )
