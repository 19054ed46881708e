"""Median wall time of `inv --list` here versus a bare invoke project with one task.

Target (SPEC.md): ratio at most 1.3. Run: .venv/bin/python benchmarks/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(cwd: Path, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as bare:
        Path(bare, "tasks.py").write_text("from invoke import task\n\n@task\ndef hello(c):\n    'Say hello.'\n")
        median_seconds(Path(bare), 2)  # warm the filesystem cache for both
        median_seconds(ROOT, 2)
        bare_s = median_seconds(Path(bare), args.runs)
    ours_s = median_seconds(ROOT, args.runs)
    print(f"bare invoke project: {bare_s * 1000:.0f} ms (median of {args.runs})")
    print(f"moorage project:     {ours_s * 1000:.0f} ms (median of {args.runs})")
    print(f"ratio: {ours_s / bare_s:.2f} (target <= 1.30)")


if __name__ == "__main__":
    main()
