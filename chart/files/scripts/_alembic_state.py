"""Shared by wait_for_schema.py and migrate.py: where the database and this image stand.

Runs inside the backend image (its working directory holds alembic.ini).
Needs only alembic and psycopg, which the backend image ships.
"""

import os
import sys
import time

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory


def log(message):
    print(message, flush=True)


def image_revisions():
    """(heads, every known revision) of the migrations shipped in this image."""
    script = ScriptDirectory.from_config(Config(os.environ.get("ALEMBIC_CONFIG", "alembic.ini")))
    return set(script.get_heads()), {rev.revision for rev in script.walk_revisions()}


def database_revisions(timeout):
    """The revisions stamped in the database, waiting for it to accept connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=5) as conn:
                try:
                    rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
                except psycopg.errors.UndefinedTable:
                    return set()
                return {row[0] for row in rows}
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                log(f"database still unreachable after {timeout:.0f}s: {exc}")
                sys.exit(1)
            log(f"waiting for the database: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
            time.sleep(2)
