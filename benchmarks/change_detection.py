"""Median time to compute the reference images' content-hash tags from a warm digest cache.

Target (SPEC.md): under 100 ms for the three reference images. What is timed is
the change detection itself: walking each context with .dockerignore applied,
taking digests from .moorage/cache/, and resolving base image IDs in the engine
(skipped with a note when no engine is reachable). docker-py's one-time import
and connection are reported separately.

Run: .venv/bin/python benchmarks/change_detection.py [--runs N] [--env dev]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from moorage import engine, images  # noqa: E402
from moorage.core.config import load_project, load_yaml  # noqa: E402
from moorage.core.errors import MoorageError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--env", default=None)
    args = parser.parse_args()

    raw = (load_yaml(ROOT / "invoke.yaml") or {}).get("moorage", {})
    project = load_project(raw, ROOT)
    env = project.env(args.env)
    present = [i for i in project.images if (ROOT / i.dockerfile).is_file()]
    absent = [i.dockerfile for i in project.images if i not in present]
    if absent:
        print(f"note: {', '.join(absent)} not found; measuring the {len(present)} image(s) that exist")
    if not present:
        print("no reference Dockerfiles yet: nothing to measure")
        return

    resolve = lambda ref: None  # noqa: E731
    start = time.perf_counter()
    try:
        client = engine.connect()
        resolve = engine.resolver(client)
        print(f"docker-py import + connect (once per run of a task): {(time.perf_counter() - start) * 1000:.0f} ms")
    except MoorageError as exc:
        print(f"note: {exc.message}; base image IDs are not resolved")

    cache_path = ROOT / images.CACHE_FILE
    images.image_states(project, env, images=present, resolve_base=resolve)  # warm the cache
    samples, reads, tags = [], 0, {}
    for _ in range(args.runs):
        t0 = time.perf_counter()
        cache = images.DigestCache(cache_path)
        states = images.image_states(project, env, images=present, resolve_base=resolve, cache=cache)
        cache.save()
        samples.append((time.perf_counter() - t0) * 1000)
        reads += cache.reads
        tags = {s.name: s.tag for s in states}
    files = sum(len(images.scan_context(i, ROOT).entries) for i in present)
    print(f"images: {', '.join(f'{n}={t}' for n, t in tags.items())}")
    print(f"context entries walked: {files}; files re-read from warm cache: {reads}")
    print(f"change detection, warm cache: median {statistics.median(samples):.1f} ms, "
          f"min {min(samples):.1f} ms, max {max(samples):.1f} ms over {args.runs} runs (target < 100 ms)")


if __name__ == "__main__":
    main()
