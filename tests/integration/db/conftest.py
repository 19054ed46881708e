"""A throwaway PostgreSQL server for the db/backup tests, on a free loopback port.

Started once per session with initdb + pg_ctl in a temporary directory (as
the ``postgres`` user when the tests run as root, since PostgreSQL refuses to
run as root), password authentication over TCP, stopped with ``pg_ctl stop``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.tools import PG_BIN, missing, require_tool

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    password: str
    datadir: Path
    run_as: str | None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def env(self, database: str = "postgres") -> dict[str, str]:
        return {**os.environ, "PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password, "PGDATABASE": database}

    def psql(self, query: str, database: str = "postgres", check: bool = True) -> str:
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query],
                             env=self.env(database), capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"psql failed: {out.stderr}")
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def databases(self) -> set[str]:
        return set(self.psql("SELECT datname FROM pg_database").split())

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), *args], check=True,
                       user=self.run_as, capture_output=True, timeout=60)


def _start(tmp: Path) -> PgServer:
    require_tool("initdb", "pg_ctl", "pg_dump", "pg_restore", "psql")
    run_as = None
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing("running as root and there is no 'postgres' user to run the server as")
        run_as = "postgres"
        shutil.chown(tmp, "postgres")
    password = "pw-" + secrets.token_hex(8)
    pwfile = tmp / "pw"
    pwfile.write_text(password + "\n")
    if run_as:
        shutil.chown(pwfile, "postgres")
    datadir = tmp / "data"
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "moorage", "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-sync"],
                   check=True, user=run_as, capture_output=True, timeout=120)
    port = free_port()
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-o", opts, "-l", str(tmp / "log"), "-w", "start"],
                   check=True, user=run_as, capture_output=True, timeout=60)
    return PgServer("127.0.0.1", port, "moorage", password, datadir, run_as)


@pytest.fixture(scope="session")
def pg():
    tmp = Path(tempfile.mkdtemp(prefix="moorage-pg-"))
    os.chmod(tmp, 0o755)
    server = _start(tmp)
    try:
        yield server
    finally:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(server.datadir), "-m", "immediate", "stop"],
                       user=server.run_as, capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def database(pg, request):
    """A fresh, empty database named after the test."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:30]
    pg.create_database(name)
    yield name
    pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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

    from moorage.config import load_project as load

    return load(yaml.safe_load((root / "invoke.yaml").read_text())["moorage"], root)


def inv(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``inv ARGS`` in the project without a terminal; returns the completed process (text)."""
    import sys

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


def seed(pg: PgServer, database: str) -> None:
    """Fill ``database`` with the 110,000-row fixture (seeded once per session, then copied as a template)."""
    if "seed_template" not in pg.databases():
        pg.psql("CREATE DATABASE seed_build")
        pg.psql(SEED_SQL, "seed_build")
        pg.psql("ALTER DATABASE seed_build RENAME TO seed_template")
    pg.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    pg.psql(f'CREATE DATABASE "{database}" TEMPLATE seed_template')


def fingerprint(pg: PgServer, database: str, tables=TABLES) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row, in primary key order, per table."""
    out = {}
    for table in tables:
        row = pg.psql(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t",
                      database)
        count, digest = row.split("|")
        out[table] = (int(count), digest)
    return out
