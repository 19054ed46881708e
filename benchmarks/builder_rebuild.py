"""Code-only rebuild of an image with BuildKit (``docker buildx``, Moorage's default) versus docker-py's legacy
builder, both in this one process against the same engine (the legacy one is the baseline).

Each builder gets its own throwaway copy of the project (app/, invoke.yaml, environments/, the image's
Dockerfile and .dockerignore), is warmed once (the dependency layers built and cached), then each run
appends one unique comment line to a source file of the image and times ``images.build_image`` alone
(the same call ``inv images.build`` makes). The builders take turns, the first alternating run by run,
so that load from anything else on the machine hits both alike. The legacy builder cannot run
``RUN --mount``: its copy of the Dockerfile has the mounts removed and reads the proxy CA bundle the
legacy way (``COPY moorage-ca.cr[t]``); the steps a code-only change re-runs are the same in both.

Needs Docker with the buildx plugin (scripts/install-buildx.sh) and the stand-in base images
(scripts/base-images.sh, then MOORAGE_PYTHON_IMAGE=local/python:3.11-slim); behind a TLS-inspecting
proxy MOORAGE_CA_BUNDLE (defaults here to the host's /etc/ssl/certs/ca-certificates.crt) for the warm-up.
Measures, asserts nothing; the images it builds are removed at the end.

    .venv/bin/python benchmarks/builder_rebuild.py [--image backend] [--runs 5]
        [--touch app/backend/moorage_backend/__init__.py]
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from moorage import engine, images  # noqa: E402
from moorage.core.config import load_project, load_yaml  # noqa: E402
from moorage.core.report import Reporter  # noqa: E402
from moorage.images.buildkit import Builder  # noqa: E402

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
MOUNT = re.compile(r"--mount=\S+\s*(\\\n\s*)?")


def legacy_dockerfile(text: str) -> str:
    """The Dockerfile without ``RUN --mount`` flags; the secret CA is read from the context instead."""
    out = []
    for block in re.split(r"(?m)^(?=RUN )", text):
        if block.startswith("RUN ") and "--mount=type=secret,id=moorage-ca" in block:
            out.append("COPY moorage-ca.cr[t] /run/legacy-ca/\n")
            block = block.replace("/run/secrets/moorage-ca", "/run/legacy-ca/moorage-ca.crt")
        out.append(MOUNT.sub("", block) if block.startswith("RUN ") else block)
    return "".join(out)


def make_copy(base: Path, dockerfile: str, legacy: bool) -> Path:
    root = base / ("legacy" if legacy else "buildkit")
    root.mkdir()
    for folder in ("app", "environments"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "invoke.yaml", root / "invoke.yaml")
    for ignore in (f"{dockerfile}.dockerignore", ".dockerignore"):
        if (ROOT / ignore).is_file():
            shutil.copy(ROOT / ignore, root / ignore)
    text = (ROOT / dockerfile).read_text()
    (root / dockerfile).write_text(legacy_dockerfile(text) if legacy else text)
    return root


class Side:
    """One builder and its project copy."""

    def __init__(self, name: str, root: Path, builder: Builder | None, image: str, env_name: str | None):
        self.name, self.root, self.builder, self.image = name, root, builder, image
        self.project = load_project((load_yaml(root / "invoke.yaml") or {}).get("moorage", {}), root)
        self.env = self.project.env(env_name)
        self.times: list[float] = []
        self.refs: set[str] = set()

    def build(self, client, ca: Path | None, reporter: Reporter) -> float:
        contexts: dict = {}
        (state,) = images.image_states(self.project, self.env, images=[self.project.image(self.image)],
                                       resolve_base=engine.resolver(client), contexts=contexts)
        missing = [ref for ref, iid in state.bases.items() if iid is None]
        if missing:
            sys.exit(f"base image {missing[0]} is not in the engine: run scripts/base-images.sh and set "
                     "MOORAGE_PYTHON_IMAGE / MOORAGE_NGINX_IMAGE")
        start = time.perf_counter()
        images.build_image(client, state, contexts[self.image], reporter=reporter, builder=self.builder, ca_bundle=ca)
        took = time.perf_counter() - start
        self.refs.add(state.ref)
        return took


def summary(times: list[float]) -> str:
    return (f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, max {max(times):.2f} s "
            f"({len(times)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="backend")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--touch", default="app/backend/moorage_backend/__init__.py",
                        help="source file (relative to the project) that each run appends a line to")
    parser.add_argument("--env", default=None)
    parser.add_argument("--verbose", action="store_true", help="show the builds' progress lines")
    args = parser.parse_args()

    project = load_project((load_yaml(ROOT / "invoke.yaml") or {}).get("moorage", {}), ROOT)
    dockerfile = project.image(args.image).dockerfile
    ca = images.ca_bundle_from_env() or (HOST_CA if HOST_CA.is_file() else None)
    client = engine.connect()
    buildkit = images.choose_builder(None, environ={})
    if buildkit.kind != "buildkit":
        sys.exit(f"BuildKit is not usable here: {buildkit.reason}")
    reporter = Reporter(stream=sys.stderr if args.verbose else io.StringIO(), tty=False)
    with tempfile.TemporaryDirectory(prefix="moorage-builder-bench-") as tmp:
        sides = [Side("buildkit", make_copy(Path(tmp), dockerfile, legacy=False), buildkit, args.image, args.env),
                 Side("legacy", make_copy(Path(tmp), dockerfile, legacy=True),
                      Builder("legacy", "benchmark baseline", None), args.image, args.env)]
        try:
            for side in sides:
                warm = side.build(client, ca, reporter)
                print(f"{side.name}: warm-up build {warm:.1f} s (dependency layers cached from here on)", flush=True)
            for run in range(args.runs):
                for side in sides if run % 2 == 0 else sides[::-1]:
                    touched = side.root / args.touch
                    touched.write_text(touched.read_text() + f"# builder_rebuild {uuid.uuid4().hex}\n")
                    side.times.append(side.build(client, ca, reporter))
                print(f"run {run + 1}: " + ", ".join(f"{s.name} {s.times[-1]:.2f} s" for s in sides), flush=True)
        finally:
            for side in sides:
                for ref in side.refs:
                    try:
                        client.api.remove_image(ref)
                    except Exception:  # noqa: BLE001 - an image still in use is left
                        pass
    bk, legacy = sides
    print(f"{args.image} code-only rebuild ({args.touch} + 1 line):")
    print(f"  BuildKit (docker buildx): {summary(bk.times)}")
    print(f"  legacy builder (docker-py): {summary(legacy.times)}")
    ratio = statistics.median(bk.times) / statistics.median(legacy.times)
    print(f"  ratio BuildKit / legacy (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
