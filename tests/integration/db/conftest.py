"""Helpers for the db/backup tests: a minimal Moorage project, ``inv`` in it, seeded data.

The PostgreSQL server is the suite's (tests/fixtures/servers.py, loaded for every
test by the root conftest): ``pg`` is its session server, ``database`` the name
of a fresh database on it.
"""

from __future__ import annotations

import os
import shutil
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


# --------------------------------------------------------------------------- runs stopped at a known point


GATE_SH = '''#!/bin/bash
# {name} as Moorage runs it, stopped where the test wants: say "reached" on one FIFO, wait for a line on the other.
real={real}
gate() {{ exec 3<>"{release}"; echo reached > "{reached}"; read -r _ <&3; exec 3<&-; }}
{body}
'''

# Where each wrapper stops: pg_dump after its first 64 KiB (GNU head -c reads no more than it writes, so the
# rest of the stream is intact); pg_restore when it starts restoring into a database (not --list, not a check).
GATE_BODIES = {
    "pg_dump": '"$real" "$@" | { head -c 65536; gate; cat; }',
    "pg_restore": 'case " $* " in *" --dbname="*) gate ;; esac\nexec "$real" "$@"',
}


class Gate:
    """A PostgreSQL client tool that stops at a known point until the test lets it go.

    ``env()`` puts the wrapper first on PATH for an ``inv`` child. The test
    waits for :meth:`reached` (a FIFO: no sleeping, no polling) and lets the
    tool go on with :meth:`release`.
    """

    def __init__(self, tmp_path: Path, tool: str):
        self.dir = tmp_path / f"gate-{tool}"
        self.dir.mkdir()
        self.reached_fifo, self.release_fifo = self.dir / "reached", self.dir / "release"
        os.mkfifo(self.reached_fifo)
        os.mkfifo(self.release_fifo)
        bin_dir = self.dir / "bin"
        bin_dir.mkdir()
        (bin_dir / tool).write_text(GATE_SH.format(name=tool, real=real_tool(tool), release=self.release_fifo,
                                                   reached=self.reached_fifo, body=GATE_BODIES[tool]))
        (bin_dir / tool).chmod(0o755)
        self.bin_dir = bin_dir

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MOORAGE_ENV", "MOORAGE_PG_BIN")}
        env["PATH"] = f"{self.bin_dir}:{env['PATH']}"
        env.update(extra)
        return env

    def reached(self, child: subprocess.Popen, timeout: float = 60) -> None:
        """Return once the wrapper has reached its stop; fail if ``child`` ends first or time runs out."""
        import select

        fd = os.open(self.reached_fifo, os.O_RDONLY | os.O_NONBLOCK)
        pidfd = os.pidfd_open(child.pid)
        try:
            ready, _, _ = select.select([fd, pidfd], [], [], timeout)
            if fd in ready and os.read(fd, 64).startswith(b"reached"):
                return
            if pidfd in ready:
                out, err = child.communicate(timeout=10)
                raise AssertionError(f"the run ended (exit {child.returncode}) before the gate: {err or out}")
            raise AssertionError(f"the gate was not reached within {timeout}s")
        finally:
            os.close(fd)
            os.close(pidfd)

    def release(self) -> None:
        fd = os.open(self.release_fifo, os.O_WRONLY | os.O_NONBLOCK)  # the wrapper holds the read end open
        try:
            os.write(fd, b"go\n")
        finally:
            os.close(fd)


def real_tool(name: str) -> str:
    """The PostgreSQL client program the tests' runs use (the server's bin folder, else PATH)."""
    from tests.fixtures.tools import PG_BIN

    found = PG_BIN / name
    return str(found) if found.exists() else shutil.which(name)


def spawn_inv(root: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """``inv ARGS`` in the project, in its own process group (to signal it as a terminal would), without a TTY."""
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop_group(child: subprocess.Popen) -> None:
    """Kill what is left of a spawned run and its children (a test that failed half-way, or a wrapper's subshell
    still waiting at its gate after the run itself was killed: the group outlives its leader)."""
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(10)
