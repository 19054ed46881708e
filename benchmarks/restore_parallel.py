"""Restore with parallel jobs: ``backup.restore`` with ``--jobs 1`` against ``--jobs 2``.

Starts a throwaway PostgreSQL, fills it with ``pgbench -i -s SCALE``, takes one
backup, then restores it (the full safe path: verify, safety backup, restore
into a new database, check, swap, drop the old one) with 1 and 2 jobs.

    .venv/bin/python benchmarks/restore_parallel.py [--scale 10] [--jobs 2]
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
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    os.chmod(tmp, 0o755)
    server = _start(tmp)
    try:
        server.psql("CREATE DATABASE bench")
        subprocess.run(["pgbench", "-i", "-q", "-s", str(args.scale), "bench"], env=server.env(), check=True,
                       capture_output=True)
        target = LocalTarget(parse_database_url(server.url("bench")))
        taken = bk.create_backup(target, tmp / "backups" / "dev", environment="dev")
        timings = {}
        for jobs in (1, args.jobs):
            t0 = time.monotonic()
            bk.restore_backup(target, taken, environment="dev", backups_root=tmp / "backups",
                              confirm=lambda plan: None, jobs=jobs, keep_old=False)
            timings[jobs] = time.monotonic() - t0
        print(f"scale {args.scale}: archive {taken.meta['size'] / 2**20:.1f} MiB")
        for jobs, seconds in timings.items():
            print(f"backup.restore --jobs {jobs}: {seconds:.2f}s (incl. verify and safety backup)")
        print(f"speed-up with {args.jobs} jobs: {timings[1] / timings[args.jobs]:.2f}x")
    finally:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(server.datadir), "-m", "immediate", "stop"],
                       user=server.run_as, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
