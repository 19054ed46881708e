"""What the PostgreSQL benchmarks share: a throwaway server with a ``pgbench -i`` database.

The server is the test suite's (tests/fixtures/servers.py): a fresh cluster on a
free loopback port, run as an unprivileged user when we are root, stopped by pid
and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from moorage.pg import LocalTarget, parse_database_url  # noqa: E402
from tests.fixtures.servers import PostgresServer, running_postgres  # noqa: E402


@dataclass(frozen=True)
class Bench:
    """The server, the filled database's name and a Moorage target for it, and a scratch directory."""

    server: PostgresServer
    database: str
    target: LocalTarget
    work_dir: Path

    def env(self) -> dict[str, str]:
        """Environment for libpq tools (pg_dump, pgbench) pointed at the database."""
        return {**os.environ, **self.server.env(self.database)}


@contextlib.contextmanager
def pgbench_database(scale: int, database: str = "bench") -> Iterator[Bench]:
    """A new server with ``database`` filled by ``pgbench -i -s SCALE`` (scale 70 is about 1 GB of tables)."""
    with running_postgres() as server, tempfile.TemporaryDirectory(prefix="moorage-bench-") as work_dir:
        server.create_database(database)
        bench = Bench(server, database, LocalTarget(parse_database_url(server.url_for(database))), Path(work_dir))
        subprocess.run(
            [server.tool("pgbench"), "-i", "-q", "-s", str(scale), database],
            env=bench.env(),
            check=True,
            capture_output=True,
        )
        yield bench
