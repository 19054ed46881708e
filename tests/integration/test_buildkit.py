"""BuildKit builds through ``inv images.build`` against the real engine, and the legacy builder fallback.

A throwaway project in tmp_path (its own tasks.py and invoke.yaml) builds
FROM the tiny test base image; ``inv`` runs as a subprocess exactly as a user
runs it. What an image holds is read from ``docker save``: every layer tar,
the image config and the history.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.core.config import load_project
from moorage.images import scan_context
from tests.fixtures.buildx import require_buildx
from tests.fixtures.docker_images import remove_release_images

pytestmark = pytest.mark.docker

INV = str(Path(sys.executable).with_name("inv"))
TASKS_PY = '''\
from pathlib import Path

from invoke import Collection

from moorage.tasks import images

ns = Collection()
ns.add_collection(images.ns)
ns.configure({"moorage": {"root": str(Path(__file__).resolve().parent)}})
'''
# Every step a real Dockerfile uses BuildKit for: COPY --chmod, a cache mount, the CA as a secret mount.
# The cache id is the release, so no other build on this engine shares the cache.
BUILDKIT_DOCKERFILE = """\
ARG BASE
FROM ${{BASE}}
COPY --chmod=0750 app/run.sh /app/run.sh
COPY app/data.txt /app/data.txt
RUN --mount=type=cache,id={cache},target=/cache \\
    sh -c 'if [ -f /cache/seen ]; then echo warm; else echo cold; fi > /app/cache-state; echo x > /cache/seen'
RUN --mount=type=secret,id=moorage-ca \\
    sh -c 'if read first < /run/secrets/moorage-ca; then echo "mounted $first"; else echo absent; fi > /app/ca-state'
"""
PLAIN_DOCKERFILE = "ARG BASE\nFROM ${BASE}\nCOPY app/ /app/\nRUN cat /app/data.txt\n"


class Project:
    """A throwaway project with one image, ``app``, built from the test base."""

    def __init__(self, root: Path, base: str, release: str):
        self.root, self.base, self.release = root, base, release
        (root / "environments").mkdir(parents=True)
        (root / "environments" / "dev.yaml").write_text("{}\n")
        (root / "tasks.py").write_text(TASKS_PY)
        (root / "app").mkdir()
        (root / "app" / "run.sh").write_text("#!/bin/sh\necho run\n")
        (root / "app" / "data.txt").write_text("version 1\n")
        (root / "invoke.yaml").write_text(
            f"moorage:\n  release: {release}\n  images:\n    - name: app\n      dockerfile: Dockerfile.app\n"
            f'      build_args: {{BASE: "{base}"}}\n  environments:\n    dev: {{}}\n')
        self.dockerfile(BUILDKIT_DOCKERFILE.format(cache=release))

    def dockerfile(self, text: str) -> None:
        (self.root / "Dockerfile.app").write_text(text)

    def inv(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        child_env = {**os.environ, "KUBECONFIG": str(self.root / "no-kubeconfig"), "MOORAGE_ENV": "dev"}
        for name in ("MOORAGE_DEBUG", "MOORAGE_BUILDER", "MOORAGE_CA_BUNDLE"):
            child_env.pop(name, None)
        child_env.update(env or {})
        return subprocess.run([INV, *args], cwd=self.root, capture_output=True, text=True, env=child_env,
                              timeout=300)

    def build(self, *args: str, env: dict | None = None) -> dict:
        """``inv images.build --json``: the one image's row of the summary."""
        result = self.inv("images.build", "--json", *args, env=env)
        assert result.returncode == 0, f"images.build exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        [row] = json.loads(result.stdout)["images"]
        return row


@pytest.fixture
def project(tmp_path, base_image, docker_client):
    p = Project(tmp_path / "project", base_image, f"bk{uuid.uuid4().hex[:8]}")
    yield p
    remove_release_images(docker_client, p.release, base_image)


@pytest.fixture
def ca_bundle(tmp_path) -> tuple[Path, bytes]:
    """A PEM-looking bundle with a marker no image could hold by chance."""
    marker = f"moorage-test-ca-{uuid.uuid4().hex}".encode()
    path = tmp_path / "proxy-ca.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + marker + b"\n-----END CERTIFICATE-----\n")
    return path, marker


def saved_files(client, ref: str) -> Iterator[tuple[str, str, bytes]]:
    """(where, path, content) of every regular file of ``docker save ref``: its own and each layer's."""
    saved = tarfile.open(fileobj=io.BytesIO(b"".join(client.api.get_image(ref))))
    for member in saved.getmembers():
        if not member.isfile():
            continue
        data = saved.extractfile(member).read()
        yield "image", member.name, data
        if member.name.endswith("layer.tar"):
            with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                for inner in layer.getmembers():
                    if inner.isfile():
                        yield member.name, inner.name, layer.extractfile(inner).read()


def file_in_image(client, ref: str, path: str) -> bytes:
    """The content of ``path`` (no leading /) in the topmost layer that has it."""
    found = [content for where, name, content in saved_files(client, ref) if where != "image" and name == path]
    assert found, f"{path} is in no layer of {ref}"
    return found[-1]


@pytest.fixture(autouse=True)
def _buildx():
    require_buildx()


def test_secret_mount_reads_the_ca_bundle_which_no_layer_config_or_history_holds(project, docker_client, ca_bundle):
    path, marker = ca_bundle
    row = project.build(env={"MOORAGE_CA_BUNDLE": str(path)})
    assert row["builder"] == "buildkit"
    assert file_in_image(docker_client, row["ref"], "app/ca-state") == b"mounted -----BEGIN CERTIFICATE-----\n"
    holding = [(where, name) for where, name, content in saved_files(docker_client, row["ref"]) if marker in content]
    assert holding == []
    assert marker.decode() not in json.dumps(docker_client.api.history(row["ref"]))
    assert marker.decode() not in json.dumps(docker_client.api.inspect_image(row["ref"]))


def test_ca_bundle_is_never_sent_in_the_build_context(project, docker_client, ca_bundle):
    path, marker = ca_bundle
    (project.root / "moorage-ca.crt").write_bytes(path.read_bytes())  # the other way to give one: the context root
    project.dockerfile(BUILDKIT_DOCKERFILE.format(cache=project.release) + "COPY . /ctx/\n")
    row = project.build()
    # used, as the secret
    assert file_in_image(docker_client, row["ref"], "app/ca-state") == b"mounted -----BEGIN CERTIFICATE-----\n"
    names = {name for where, name, _ in saved_files(docker_client, row["ref"]) if where != "image"}
    assert "ctx/app/data.txt" in names and not any("moorage-ca" in n for n in names)


def test_dockerfile_copying_the_ca_from_the_context_is_warned_and_gets_none(project, docker_client, ca_bundle):
    path, marker = ca_bundle
    project.dockerfile(PLAIN_DOCKERFILE + "COPY app/data.txt moorage-ca.cr[t] /old/\n")  # the legacy convention
    result = project.inv("images.build", env={"MOORAGE_CA_BUNDLE": str(path)})
    assert result.returncode == 0, result.stderr
    assert "warning: Dockerfile.app reads moorage-ca.crt from the build context, where BuildKit never puts the CA " \
           "bundle: mount it as a build secret instead" in result.stdout
    ref = json.loads(project.inv("images.list", "--json").stdout)["images"][0]["ref"]
    assert not any(marker in content for _, _, content in saved_files(docker_client, ref))


def test_cache_mount_is_kept_between_builds_and_is_in_no_layer(project, docker_client):
    first = project.build()
    assert file_in_image(docker_client, first["ref"], "app/cache-state") == b"cold\n"
    (project.root / "app" / "data.txt").write_text("version 2\n")  # re-runs the cache step
    second = project.build()
    assert second["ref"] != first["ref"] and second["action"] == "build"
    assert file_in_image(docker_client, second["ref"], "app/cache-state") == b"warm\n"
    names = {name for where, name, _ in saved_files(docker_client, second["ref"]) if where != "image"}
    assert not any(n.startswith("cache/") for n in names)


def test_copy_chmod_sets_the_mode_of_the_copied_file(project, docker_client):
    assert (project.root / "app" / "run.sh").stat().st_mode & 0o7777 == 0o644
    ref = project.build()["ref"]
    saved = tarfile.open(fileobj=io.BytesIO(b"".join(docker_client.api.get_image(ref))))
    modes = []
    for member in saved.getmembers():
        if member.name.endswith("layer.tar"):
            with tarfile.open(fileobj=saved.extractfile(member)) as layer:
                modes += [m.mode & 0o7777 for m in layer.getmembers() if m.name == "app/run.sh"]
    assert modes == [0o750]


def test_image_holds_exactly_the_context_the_tag_was_computed_from(project, docker_client):
    # A .dockerignore that BuildKit would apply to a local context; the per-Dockerfile one wins,
    # and the tar Moorage sends (and hashed) is what reaches the COPY.
    (project.root / ".dockerignore").write_text("app/\n")
    (project.root / "Dockerfile.app.dockerignore").write_text("*.log\n")
    (project.root / "debug.log").write_text("noise\n")
    project.dockerfile(PLAIN_DOCKERFILE + "COPY . /ctx/\n")
    row = project.build()
    copied = {name[len("ctx/"):] for where, name, _ in saved_files(docker_client, row["ref"])
              if where != "image" and name.startswith("ctx/")}
    ctx = scan_context(load_project({"release": "x", "images": [
        {"name": "app", "dockerfile": "Dockerfile.app", "context": "."}]}, project.root).images[0], project.root)
    assert copied == {e.arcname for e in ctx.entries if e.kind == "file"}
    assert "app/data.txt" in copied and "debug.log" not in copied


def test_build_failure_names_the_step_keeps_the_log_and_exits_1(project):
    project.dockerfile(PLAIN_DOCKERFILE + "RUN --mount=type=cache,target=/c echo about to fail && cat /nope\n")
    result = project.inv("images.build")
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "build of image 'app' failed at step 4/4 (RUN --mount=type=cache,target=/c echo about to fail" in error
    assert "; output: about to fail | cat: /nope: No such file or directory" in error
    log = (project.root / ".moorage" / "logs" / "build-app.log").read_text()
    assert log.startswith("$ docker buildx build ")
    assert any(re.fullmatch(r"#\d+ about to fail", line) for line in log.splitlines())


def test_forced_legacy_builder_builds_the_same_tag(project, docker_client):
    project.dockerfile(PLAIN_DOCKERFILE)
    buildkit = project.build()
    legacy = project.build("--force", env={"MOORAGE_BUILDER": "legacy"})
    assert (buildkit["builder"], legacy["builder"]) == ("buildkit", "legacy")
    assert legacy["ref"] == buildkit["ref"] and legacy["image_id"] != buildkit["image_id"]
    assert docker_client.api.inspect_image(legacy["ref"])["Id"] == legacy["image_id"]


def test_legacy_builder_refuses_a_buildkit_dockerfile_in_one_line_and_builds_nothing(project, docker_client):
    result = project.inv("images.build", env={"MOORAGE_BUILDER": "legacy"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Dockerfile.app of image 'app' uses COPY --chmod, RUN --mount, which needs BuildKit, but the builder "
        "is the legacy one (MOORAGE_BUILDER=legacy) (fix: unset MOORAGE_BUILDER (or set it to buildkit))"]
    listing = json.loads(project.inv("images.list", "--json").stdout)
    assert [r["built"] for r in listing["images"]] == [False]
