"""Full-read verification against the table-of-contents check, at creation and in ``backup.verify``.

Starts a throwaway PostgreSQL (benchmarks/_pg.py) with a ``pgbench -i -s
SCALE`` database (scale 70 is about 1 GB of tables), or uses
``--database-url``, then times, alternating, the best of ``--rounds``:

- plain ``pg_dump -Fc -f FILE``;
- ``backup.create`` (its full read runs beside pg_dump, on the stream);
- what a second pass over the file after the dump would have cost
  (``pg_restore -f /dev/null FILE``: the full read done sequentially);
- ``backup.verify --quick`` (sha256 + ``pg_restore --list``) against
  ``backup.verify`` (sha256 + list + every data block decoded).

Wall time is the best round (the machine may be shared); CPU is the
children's user+sys time of that round.

    .venv/bin/python benchmarks/verify_cost.py [--scale 70] [--rounds 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from _pg import pgbench_database

from moorage import backup as bk
from moorage.pg import LocalTarget, parse_database_url, tool


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, children's CPU seconds) of one call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    fn()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@contextlib.contextmanager
def database(args) -> Iterator[tuple[LocalTarget, Path, str]]:
    if args.database_url:
        with tempfile.TemporaryDirectory(prefix="moorage-bench-") as work:
            target = LocalTarget(parse_database_url(args.database_url))
            yield target, Path(work), "(given database)"
        return
    with pgbench_database(args.scale) as bench:
        size = bench.server.psql(f"SELECT pg_size_pretty(pg_database_size('{bench.database}'))")
        yield bench.target, bench.work_dir, f"{size} (pgbench scale {args.scale})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, fn: Callable[[], object]) -> None:
        results.setdefault(name, []).append(timed(fn))

    with database(args) as (target, work, size):
        env = {**os.environ, **target.env()}
        plain = work / "plain.dump"
        taken = None
        for _ in range(args.rounds):
            record("pg_dump -Fc -f FILE", lambda: subprocess.run([tool("pg_dump"), "-Fc", "-f", str(plain)],
                                                                 env=env, check=True))
            if taken is not None:
                bk.delete_backup(taken)
            box = []
            record("backup.create (full read on the stream)",
                   lambda box=box: box.append(bk.create_backup(target, work / "dev", environment="dev")))
            taken = box[0]
            record("a second pass instead: pg_restore -f /dev/null FILE",
                   lambda t=taken: subprocess.run([tool("pg_restore"), "-f", os.devnull, str(t.path)], check=True))
            record("backup.verify --quick (sha256 + --list)", lambda t=taken: bk.verify_backup(t, quick=True))
            record("backup.verify (sha256 + --list + full read)", lambda t=taken: bk.verify_backup(t))
        archive = taken.meta["size"]
    print(f"database {size}, archive {archive / 2**20:.1f} MiB, best of {args.rounds} rounds")
    best = {name: min(runs) for name, runs in results.items()}
    for name, (wall, cpu) in best.items():
        print(f"  {name:<55} {wall:7.2f}s wall {cpu:7.2f}s cpu")
    dump, ours = best["pg_dump -Fc -f FILE"][0], best["backup.create (full read on the stream)"][0]
    second = best["a second pass instead: pg_restore -f /dev/null FILE"][0]
    quick, full = best["backup.verify --quick (sha256 + --list)"][0], best["backup.verify (sha256 + --list + full read)"][0]
    print(f"backup.create throughput against plain pg_dump: {dump / ours:.2f} (target >= 0.90); "
          f"with a second pass it would be {dump / (ours + second):.2f}")
    print(f"backup.verify full read costs {full - quick:.2f}s more than --quick ({full / quick:.1f}x)")


if __name__ == "__main__":
    main()
