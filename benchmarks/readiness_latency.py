"""Readiness latency: time from the last resource turning ready to the verdict.

The watch-based engine (moorage.readiness.wait_for) against a 2 s polling loop
(GET + the same rollout rules), both on the fake API server of the tests, with
the final status written at a random moment. Prints the median of several
runs. Target (SPEC): noticed within 0.5 s.

    .venv/bin/python benchmarks/readiness_latency.py [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from moorage import kube  # noqa: E402
from moorage.readiness import Resource, State, Verdict, wait_for  # noqa: E402
from moorage.readiness.rules import deployment_state  # noqa: E402
from tests.fixtures.kubeapi import FakeKubeAPI, load_object, load_objects, merge  # noqa: E402

NS = "shop"
BACKEND = Resource("Deployment", "backend", NS)


def scenario(tmp: Path):
    server = FakeKubeAPI(tmp).start()
    deploy = server.apply(load_object("deployment"))
    server.apply_all(load_objects("replicaset"))
    server.apply(load_object("pod"))
    statuses = [merge(deploy, {"status": d["status"]}) for d in load_objects("deployment-rollout")]
    server.apply_all(statuses[:-1])
    api = kube.client(server.context, str(server.kubeconfig))
    return server, api, statuses[-1]


def finish_later(server: FakeKubeAPI, final: dict, delay: float, marks: dict) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        marks["ready_at"] = time.perf_counter()
        server.apply(final)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def watch_run(tmp: Path) -> float:
    server, api, final = scenario(tmp)
    try:
        marks: dict[str, float] = {}

        def after_watch() -> None:
            server.wait_for_watchers("deployments")
            finish_later(server, final, random.uniform(0.05, 0.5), marks).join()

        threading.Thread(target=after_watch, daemon=True).start()
        result = wait_for(api, [BACKEND], timeout=30)
        done = time.perf_counter()
        assert result.verdict == Verdict.READY, result.reason
        return done - marks["ready_at"]
    finally:
        server.stop()


def poll_run(tmp: Path, interval: float = 2.0) -> float:
    from kubernetes.client import AppsV1Api

    server, api, final = scenario(tmp)
    try:
        marks: dict[str, float] = {}
        finish_later(server, final, random.uniform(0.05, interval), marks)
        apps = AppsV1Api(api)
        while True:
            obj = kube.read_json(apps.read_namespaced_deployment("backend", NS, _preload_content=False))
            if deployment_state(obj)[0] == State.READY:
                return time.perf_counter() - marks["ready_at"]
            time.sleep(interval)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    watch, poll = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, run, out in (("w", watch_run, watch), ("p", poll_run, poll)):
                work = Path(tmp) / f"{name}{i}"
                work.mkdir()
                out.append(run(work))
    ms = [x * 1000 for x in watch]
    pms = [x * 1000 for x in poll]
    print(f"runs: {args.runs}")
    print(f"watch engine : median {statistics.median(ms):8.1f} ms  (min {min(ms):.1f}, max {max(ms):.1f})")
    print(f"2 s polling  : median {statistics.median(pms):8.1f} ms  (min {min(pms):.1f}, max {max(pms):.1f})")
    print(f"target       : < 500 ms -> {'met' if statistics.median(ms) < 500 else 'MISSED'}")


if __name__ == "__main__":
    main()
