"""Backup streaming throughput: ``backup.create`` against plain ``pg_dump -Fc -f FILE``.

Starts a throwaway PostgreSQL (initdb + pg_ctl on a free loopback port),
fills it with ``pgbench -i -s SCALE`` (scale 70 is about 1 GB of tables),
then times both, alternating, and prints the ratio. Target: >= 0.90.

    .venv/bin/python benchmarks/backup_throughput.py [--scale 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moorage import backup as bk  # noqa: E402
from moorage.db import LocalTarget, parse_database_url  # noqa: E402
from tests.integration.db.conftest import PG_BIN, _start  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    os.chmod(tmp, 0o755)
    server = _start(tmp)
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", str(args.scale), "postgres"], env=server.env(), check=True,
                       capture_output=True)
        size = server.psql("SELECT pg_size_pretty(pg_database_size('postgres'))")
        target = LocalTarget(parse_database_url(server.url("postgres")))
        plain_times, ours_times = [], []
        out = tmp / "out"
        out.mkdir()
        os.chmod(out, 0o777)
        for _ in range(args.rounds):
            t0 = time.monotonic()
            subprocess.run([target.tool("pg_dump"), "-Fc", "-f", str(out / "plain.dump")], env=server.env(),
                           check=True)
            plain_times.append(time.monotonic() - t0)
            t0 = time.monotonic()
            made = bk.create_backup(target, out / "dev", environment="dev")
            ours_times.append(time.monotonic() - t0)
            dump_size = made.meta["size"]
            bk.delete_backup(made)
        plain, ours = min(plain_times), min(ours_times)
        print(f"scale {args.scale}: database {size}, archive {dump_size / 2**20:.1f} MiB")
        print(f"plain pg_dump -Fc -f: {plain:.2f}s ({dump_size / 2**20 / plain:.1f} MiB/s)")
        print(f"backup.create:        {ours:.2f}s ({dump_size / 2**20 / ours:.1f} MiB/s, incl. sha256, fsync, "
              "pg_restore --list, metadata)")
        print(f"throughput ratio: {plain / ours:.2f} (target >= 0.90)")
    finally:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(server.datadir), "-m", "immediate", "stop"],
                       user=server.run_as, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
