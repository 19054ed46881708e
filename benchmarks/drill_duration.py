"""Restore drill duration: ``backup.drill`` against a plain ``pg_restore`` into a new database.

Starts a throwaway PostgreSQL (benchmarks/_pg.py) with a ``pgbench -i -s
SCALE`` database (scale 70 is about 1 GB of tables), takes a backup with
``backup.create``, then times, alternating, the best of ``--rounds``:

- plain ``createdb`` + ``pg_restore --exit-on-error`` of the archive + ``dropdb``;
- ``backup.drill``: sha256 of the archive, the same restore into a throwaway
  database, the invariants (tables, per-table row counts, migration head, one
  configured SQL check), the metadata record, the drop.

    .venv/bin/python benchmarks/drill_duration.py [--scale 70] [--rounds 1] [--jobs 1]
"""

from __future__ import annotations

import argparse
import subprocess
import time

from _pg import pgbench_database

from moorage import backup as bk
from moorage.backup.drill import DrillCheck, drill_backup

CHECK = DrillCheck("balances-are-zero", "SELECT sum(abalance) = 0 FROM pgbench_accounts")


def plain_restore(bench, archive, jobs: int) -> float:
    env = bench.env()
    t0 = time.monotonic()
    subprocess.run([bench.target.tool("createdb"), "plain_restore"], env=env, check=True)
    subprocess.run([bench.target.tool("pg_restore"), "--exit-on-error", "--dbname=plain_restore", f"--jobs={jobs}",
                    str(archive)], env=env, check=True)
    subprocess.run([bench.target.tool("dropdb"), "plain_restore"], env=env, check=True)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    with pgbench_database(args.scale) as bench:
        size = bench.server.psql(f"SELECT pg_size_pretty(pg_database_size('{bench.database}'))")
        t0 = time.monotonic()
        made = bk.create_backup(bench.target, bench.work_dir / "dev", environment="dev")
        created = time.monotonic() - t0
        plain_times, drills = [], []
        for _ in range(args.rounds):
            plain_times.append(plain_restore(bench, made.path, args.jobs))
            result = drill_backup(bench.target, made, checks=[CHECK], jobs=args.jobs)
            assert result.ok, result.failed
            drills.append(result)
        best = min(drills, key=lambda r: r.seconds)
    print(f"scale {args.scale}: database {size}, archive {made.meta['size'] / 2**20:.1f} MiB, "
          f"{sum(made.meta.get('row_counts', {}).values())} rows; backup.create {created:.1f}s")
    print(f"plain createdb + pg_restore -j{args.jobs} + dropdb: {min(plain_times):.1f}s")
    print(f"backup.drill -j{args.jobs}: {best.seconds:.1f}s (restore {best.restore_seconds:.1f}s)")
    for check in best.checks:
        print(f"  {check.name}: {check.detail}")


if __name__ == "__main__":
    main()
