"""Pushing the reference app's images to a real registry: `inv images.push` against a hand-made `docker push`.

The registry is the CNCF distribution registry of the tests (tests/fixtures/registry.py: TLS from a
per-run CA, htpasswd auth), on a free loopback port. Three cases, in the same process:

1. first push of the three images into an empty registry;
2. a second push with nothing changed (Moorage reads the registry and pushes nothing);
3. ``--runs`` one-line changes to the backend: each rebuilt, then pushed by Moorage (which first reads
   the registry: reachable, credentials, tag content) and, as the baseline, pushed by the engine's own
   push (what `docker push` does) of the same image to a second registry of its own, which holds
   the previous versions too; both send only the layers their registry lacks. Bytes are those the registry received.

Ratios are Moorage / baseline. Needs Docker, the registry binary (scripts/cluster/build.sh --only
registry), root (the engine trusts the test CA through /etc/docker/certs.d, removed afterwards) and
the stand-in base images (MOORAGE_PYTHON_IMAGE, MOORAGE_NGINX_IMAGE).

    .venv/bin/python benchmarks/registry_push.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.e2e.reference import copy_project  # noqa: E402
from tests.fixtures.registry import running_registry  # noqa: E402

INV = str(Path(sys.executable).with_name("inv"))
CHANGED = Path("app/backend/moorage_backend/__init__.py")
SENT = re.compile(r"(\S+): pushed (\d+) of (\d+) layers, (\d+) bytes")


def inv(root: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "MOORAGE_PYTHON_IMAGE": os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim"),
           "MOORAGE_NGINX_IMAGE": os.environ.get("MOORAGE_NGINX_IMAGE", "local/nginx:bookworm"),
           "KUBECONFIG": str(root / "no-kubeconfig")}
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.is_file():
        env.setdefault("MOORAGE_CA_BUNDLE", str(ca))
    start = time.perf_counter()
    out = subprocess.run([INV, *args], cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"inv {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return seconds, out.stdout + out.stderr


def engine_push(client, ref: str, auth: dict[str, str]) -> float:
    repository, tag = ref.rsplit(":", 1)
    start = time.perf_counter()
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in chunk:
            sys.exit(f"docker push {ref}: {chunk['error']}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import docker

    client = docker.from_env()
    with running_registry() as registry, running_registry() as other, \
            tempfile.TemporaryDirectory(prefix="moorage-bench-push-") as tmp:
        root = Path(tmp) / "project"
        copy_project(root)
        repository = f"bench-{uuid.uuid4().hex[:6]}"
        (root / "environments" / "bench.yaml").write_text("{}\n")
        config = yaml.safe_load((ROOT / "invoke.yaml").read_text())
        config["moorage"]["environments"] = {"bench": {"cluster": "remote", "registry": {
            "url": f"{registry.host}/{repository}", "username": "REGISTRY_USERNAME", "password": "REGISTRY_PASSWORD"}}}
        config["moorage"]["default_env"] = "bench"
        (root / "invoke.yaml").write_text(yaml.safe_dump(config))
        (root / ".env").write_text(f"REGISTRY_USERNAME={registry.username}\nREGISTRY_PASSWORD={registry.password}\n")
        auth = {"username": other.username, "password": other.password}
        try:
            inv(root, "images.build")
            first, out = inv(root, "images.push")
            sent = sum(int(m[3]) for m in SENT.findall(out))
            print(f"first push, 3 images, empty registry: {first:.2f}s, {sent} bytes", flush=True)
            start = time.perf_counter()
            for ref in re.findall(rf"({re.escape(registry.host)}/\S+:[0-9a-f]{{16}})", out):
                twin = ref.replace(registry.host, other.host)
                client.images.get(ref).tag(*twin.rsplit(":", 1))
                engine_push(client, twin, auth)
            print(f"  docker push of the same into the other registry: {time.perf_counter() - start:.2f}s", flush=True)
            again, out = inv(root, "images.push")
            print(f"second push, nothing changed: {again:.2f}s, {sum(int(m[3]) for m in SENT.findall(out))} bytes "
                  f"({'nothing pushed' if 'nothing to push' in out else 'PUSHED'})", flush=True)
            ours, theirs, sizes = [], [], []
            source = root / CHANGED
            original = source.read_text()
            for run in range(args.runs):
                source.write_text(original + f"\n# bench {run} {uuid.uuid4().hex}\n")
                _, out = inv(root, "images.build", "--only", "backend")
                ref = re.search(rf"({re.escape(registry.host)}/\S+/backend:[0-9a-f]+)", out).group(1)
                twin = ref.replace(registry.host, other.host)
                client.images.get(ref).tag(*twin.rsplit(":", 1))
                seconds, out = inv(root, "images.push")
                (match,) = [m for m in SENT.findall(out) if m[0] == ref]
                baseline = engine_push(client, twin, auth)
                ours.append(seconds)
                theirs.append(baseline)
                sizes.append(int(match[3]))
                print(f"  run {run + 1}: moorage {seconds:.2f}s ({match[1]} of {match[2]} layers, {match[3]} bytes)"
                      f"  docker push {baseline:.2f}s", flush=True)
            source.write_text(original)
            if ours:
                print(f"one-line backend change, {args.runs} runs: moorage median {statistics.median(ours):.2f}s "
                      f"(min {min(ours):.2f}, max {max(ours):.2f}), docker push median {statistics.median(theirs):.2f}s"
                      f" (min {min(theirs):.2f}, max {max(theirs):.2f}); ratio {statistics.median(ours) / statistics.median(theirs):.2f}; "
                      f"bytes per push median {int(statistics.median(sizes))}")
        finally:
            for image in client.api.images():
                for tag in image.get("RepoTags") or []:
                    if tag.startswith((f"{registry.host}/", f"{other.host}/")):
                        client.api.remove_image(tag, force=True)


if __name__ == "__main__":
    main()
