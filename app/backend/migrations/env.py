"""Alembic environment: the database URL comes from DATABASE_URL only.

Self-contained on purpose (no application imports), so migrations run the same
from the backend image, from a checkout, and from an old image during a rollback.
"""

from __future__ import annotations

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Migrations are written by hand; autogenerate is not used.
target_metadata = None


def database_url():
    raw = os.environ.get("DATABASE_URL")
    if not raw:
        sys.exit("alembic: DATABASE_URL is not set (for example postgresql://user:pass@host:5432/db)")
    # libpq-style URL in, psycopg 3 driver out (the only driver installed).
    return make_url(raw).set(drivername="postgresql+psycopg")


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool, connect_args={"connect_timeout": 10})
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
