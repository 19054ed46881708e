"""Backup streaming throughput: ``backup.create`` against plain ``pg_dump -Fc -f FILE``.

Starts a throwaway PostgreSQL (benchmarks/_pg.py), fills a database with
``pgbench -i -s SCALE`` (scale 70 is about 1 GB of tables), then times both,
alternating, and prints the ratio. Target: >= 0.90.

    .venv/bin/python benchmarks/backup_throughput.py [--scale 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import time

from _pg import pgbench_database

from moorage import backup as bk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with pgbench_database(args.scale) as bench:
        size = bench.server.psql(f"SELECT pg_size_pretty(pg_database_size('{bench.database}'))")
        plain_times, ours_times = [], []
        out = bench.work_dir
        for _ in range(args.rounds):
            t0 = time.monotonic()
            subprocess.run([bench.target.tool("pg_dump"), "-Fc", "-f", str(out / "plain.dump")], env=bench.env(),
                           check=True)
            plain_times.append(time.monotonic() - t0)
            t0 = time.monotonic()
            made = bk.create_backup(bench.target, out / "dev", environment="dev")
            ours_times.append(time.monotonic() - t0)
            dump_size = made.meta["size"]
            bk.delete_backup(made)
        plain, ours = min(plain_times), min(ours_times)
    print(f"scale {args.scale}: database {size}, archive {dump_size / 2**20:.1f} MiB")
    print(f"plain pg_dump -Fc -f: {plain:.2f}s ({dump_size / 2**20 / plain:.1f} MiB/s)")
    print(f"backup.create:        {ours:.2f}s ({dump_size / 2**20 / ours:.1f} MiB/s, incl. sha256, fsync, "
          "every data block read back by pg_restore on the stream, pg_restore --list, metadata)")
    print(f"throughput ratio: {plain / ours:.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()
