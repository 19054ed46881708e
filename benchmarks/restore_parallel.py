"""Restore with parallel jobs: ``backup.restore`` with ``--jobs 1`` against ``--jobs 2``.

Starts a throwaway PostgreSQL (benchmarks/_pg.py), fills a database with
``pgbench -i -s SCALE``, takes one backup, then restores it (the full safe path:
verify, safety backup, restore into a new database, check, swap, drop the old
one) with 1 and 2 jobs.

    .venv/bin/python benchmarks/restore_parallel.py [--scale 10] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time

from _pg import pgbench_database

from moorage import backup as bk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with pgbench_database(args.scale) as bench:
        backups = bench.work_dir / "backups"
        taken = bk.create_backup(bench.target, backups / "dev", environment="dev")
        timings = {}
        for jobs in (1, args.jobs):
            t0 = time.monotonic()
            bk.restore_backup(bench.target, taken, environment="dev", backups_root=backups,
                              confirm=lambda plan: None, jobs=jobs, keep_old=False)
            timings[jobs] = time.monotonic() - t0
    print(f"scale {args.scale}: archive {taken.meta['size'] / 2**20:.1f} MiB")
    for jobs, seconds in timings.items():
        print(f"backup.restore --jobs {jobs}: {seconds:.2f}s (incl. verify and safety backup)")
    print(f"speed-up with {args.jobs} jobs: {timings[1] / timings[args.jobs]:.2f}x")


if __name__ == "__main__":
    main()
