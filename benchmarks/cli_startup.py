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


def once(cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as bare:
        Path(bare, "tasks.py").write_text("from invoke import task\n\n@task\ndef hello(c):\n    'Say hello.'\n")
        once(Path(bare)), once(ROOT)  # warm the filesystem cache for both
        # Interleaved, so that load from anything else on the machine hits both alike.
        pairs = [(once(Path(bare)), once(ROOT)) for _ in range(args.runs)]
    bare_s = statistics.median(p[0] for p in pairs)
    ours_s = statistics.median(p[1] for p in pairs)
    print(f"bare invoke project: {bare_s * 1000:.0f} ms (median of {args.runs})")
    print(f"moorage project:     {ours_s * 1000:.0f} ms (median of {args.runs})")
    print(f"ratio: {ours_s / bare_s:.2f} (target <= 1.30)")


if __name__ == "__main__":
    main()
