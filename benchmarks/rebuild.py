"""Cold build versus code-only rebuild of the backend image (SPEC.md: "a code-only change rebuilds in seconds").

1. cold: the backend image built with no layer cache;
2. code-only: one line appended to a backend source file (restored afterwards),
   then a normal build, which must reuse the dependency layers.
Also prints the image size (target: under 250 MB).

Needs the base image in the engine (scripts/base-images.sh, then
MOORAGE_PYTHON_IMAGE=local/python:3.11-slim) and, behind a TLS-inspecting proxy,
MOORAGE_CA_BUNDLE (defaults here to the host's /etc/ssl/certs/ca-certificates.crt).

Run: .venv/bin/python benchmarks/rebuild.py [--image backend] [--touch app/backend/moorage_backend/__init__.py]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from moorage import engine, images  # noqa: E402
from moorage.core.config import load_project, load_yaml  # noqa: E402
from moorage.core.report import Reporter, human_bytes  # noqa: E402

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def build_once(project, env, name: str, client, reporter, ca, *, nocache: bool, builder=None) -> tuple[float, str]:
    image = project.image(name)
    contexts: dict = {}
    (state,) = images.image_states(project, env, images=[image], resolve_base=engine.resolver(client),
                                   contexts=contexts)
    missing = [ref for ref, iid in state.bases.items() if iid is None]
    if missing:
        sys.exit(f"base image {missing[0]} is not in the engine: run scripts/base-images.sh and set "
                 "MOORAGE_PYTHON_IMAGE / MOORAGE_NGINX_IMAGE")
    start = time.perf_counter()
    images.build_image(client, state, contexts[name], reporter=reporter, builder=builder, ca_bundle=ca,
                       nocache=nocache)
    return time.perf_counter() - start, state.ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="backend")
    parser.add_argument("--touch", default="app/backend/moorage_backend/__init__.py",
                        help="source file the code-only change is made to (restored afterwards)")
    parser.add_argument("--env", default=None)
    args = parser.parse_args()

    project = load_project((load_yaml(ROOT / "invoke.yaml") or {}).get("moorage", {}), ROOT)
    env = project.env(args.env)
    if not (ROOT / project.image(args.image).dockerfile).is_file():
        sys.exit(f"{project.image(args.image).dockerfile} does not exist yet")
    ca = images.ca_bundle_from_env() or (HOST_CA if HOST_CA.is_file() else None)
    client = engine.connect()
    reporter = Reporter(stream=sys.stderr, tty=False)
    builder = images.choose_builder()  # what `inv images.build` uses (the Dockerfiles' RUN --mount need BuildKit)
    print(f"builder: {builder.describe()}", flush=True)

    cold, ref = build_once(project, env, args.image, client, reporter, ca, nocache=True, builder=builder)
    touched = ROOT / args.touch
    original = touched.read_bytes()
    stat = touched.stat()
    try:
        touched.write_bytes(original + b"\n# benchmarks/rebuild.py: code-only change\n")
        warm, warm_ref = build_once(project, env, args.image, client, reporter, ca, nocache=False, builder=builder)
    finally:
        touched.write_bytes(original)
        os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    size = client.api.inspect_image(ref)["Size"]
    if warm_ref != ref:
        client.api.remove_image(warm_ref)  # the touched variant is of no further use
    print(f"{args.image}: cold build (no cache) {cold:.1f} s -> {ref}")
    print(f"{args.image}: code-only rebuild {warm:.1f} s -> {warm_ref}")
    print(f"{args.image}: image size {human_bytes(size)} (target < 250 MB)")


if __name__ == "__main__":
    main()
