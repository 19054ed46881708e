"""Wall time of a no-op `inv dev.deploy` (nothing changed), with its phases.

Target (SPEC.md): zero builds, zero loads, and the tool's own work under 1.5 s
plus cluster round trips. The cluster is the test suite's fake API server (its
round trips take about a millisecond) and the recording stand-in helm, so the
figure is close to Moorage's own cost; each stand-in helm call is a Python
process, as a real helm call is a Go process.

    .venv/bin/python benchmarks/noop_deploy.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.docker_images import base_rootfs_tar, remove_release_images  # noqa: E402
from tests.fixtures.fake_cluster import make_project  # noqa: E402
from tests.fixtures.kubeapi import FakeKubeAPI  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    import docker

    client = docker.from_env()
    base = f"moorage-bench/base:{uuid.uuid4().hex[:8]}"
    client.api.import_image_from_data(base_rootfs_tar(), repository=base.split(":")[0], tag=base.split(":")[1])
    release = f"mbn{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        kubeapi = FakeKubeAPI(Path(tmp)).start()
        project = make_project(Path(tmp), kubeapi, base, release, "bench-secret")
        try:
            first = project.deploy_json()
            print(f"first deploy: {sum(first['phases'].values()):.2f}s in phases {first['phases']}")
            walls, phases = [], []
            for _ in range(args.runs):
                start = time.perf_counter()
                summary = project.deploy_json()
                walls.append(time.perf_counter() - start)
                assert summary["status"] == "up-to-date" and not summary["built"] and not summary["delivered"]
                phases.append(summary["phases"])
            print(f"no-op dev.deploy: median {statistics.median(walls):.2f}s wall "
                  f"(min {min(walls):.2f}s, max {max(walls):.2f}s, {args.runs} runs), 0 builds, 0 loads")
            keys = sorted({k for p in phases for k in p})
            print("median per phase: " + json.dumps({k: round(statistics.median(p.get(k, 0) for p in phases), 3)
                                                      for k in keys}))
        finally:
            project.cluster.close()
            kubeapi.stop()
            remove_release_images(client, release, base)
            client.api.remove_image(base, force=True)


if __name__ == "__main__":
    main()
