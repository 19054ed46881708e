"""Helpers for the db/backup tests: a minimal Moorage project, ``inv`` in it, seeded data.

The PostgreSQL server is the suite's (tests/fixtures/servers.py, loaded for every
test by the root conftest): ``pg`` is its session server, ``database`` the name
of a fresh database on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.servers import Database, PostgresServer
from tests.fixtures.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    """The session's PostgreSQL server, with the client tools these tests run next to it."""
    require_tool("pg_dump", "pg_restore", "psql")
    return postgres_server


@pytest.fixture
def database(pg: PostgresServer, postgres_database: Database) -> str:
    """The name of a fresh, empty database on ``pg``, dropped after the test."""
    return postgres_database.name


TASKS_PY = '''\
from pathlib import Path

from invoke import Collection

from moorage.tasks import backup, db

ns = Collection(db.ns, backup.ns)
ns.configure({"moorage": {"root": str(Path(__file__).resolve().parent)}})
'''

INVOKE_YAML = '''\
moorage:
  release: demo
  backups_dir: backups
  environments:
    prod:
      production: true
'''


@pytest.fixture
def project_dir(tmp_path):
    """A minimal Moorage project (dev and prod environments) with only the db and backup tasks."""
    root = tmp_path / "proj"
    (root / "environments").mkdir(parents=True)
    (root / "environments" / "dev.yaml").write_text("{}\n")
    (root / "environments" / "prod.yaml").write_text("{}\n")
    (root / "tasks.py").write_text(TASKS_PY)
    (root / "invoke.yaml").write_text(INVOKE_YAML)
    return root


def load_project(root: Path):
    import yaml

    from moorage.core.config import load_project as load

    return load(yaml.safe_load((root / "invoke.yaml").read_text())["moorage"], root)


def inv(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``inv ARGS`` in the project without a terminal; returns the completed process (text)."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MOORAGE_ENV")}
    child_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=root, env=child_env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


SEED_SQL = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers(id), total numeric(12,2),
                     placed_at timestamptz);
CREATE TABLE events (id bigserial PRIMARY KEY, payload jsonb, note text);
CREATE INDEX orders_customer ON orders(customer_id);
INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.org' FROM generate_series(1, 20000) g;
INSERT INTO orders SELECT g, 1 + g % 20000, (g % 1000) / 7.0, '2026-01-01'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 60000) g;
INSERT INTO events (payload, note) SELECT jsonb_build_object('n', g, 'tag', md5(g::text)), repeat('x', g % 50)
  FROM generate_series(1, 30000) g;
"""

TABLES = ("customers", "orders", "events")


def seed(pg: PostgresServer, database: str) -> None:
    """Fill ``database`` with the 110,000-row fixture (seeded once per session, then copied as a template)."""
    if "seed_template" not in pg.databases():
        pg.create_database("seed_build")
        pg.psql(SEED_SQL, "seed_build")
        pg.psql("ALTER DATABASE seed_build RENAME TO seed_template")
    pg.drop_database(database)
    pg.create_database(database, template="seed_template")


def fingerprint(pg: PostgresServer, database: str, tables=TABLES) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row, in primary key order, per table."""
    out = {}
    for table in tables:
        row = pg.psql(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t",
                      database)
        count, digest = row.split("|")
        out[table] = (int(count), digest)
    return out
