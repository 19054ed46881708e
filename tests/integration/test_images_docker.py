"""Image builds against real Docker engines: the host's, and a second one standing in for minikube's.

Builds use a tiny base image imported from a few host binaries (a shell and
libc), so no registry is needed and each build takes a second or two. The
project under test is a temporary folder with its own tasks.py and
invoke.yaml, and ``inv`` runs as a subprocess exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from tests.fixtures.buildx import require_buildx
from tests.fixtures.docker_images import remove_release_images
from tests.fixtures.tools import missing, require_tool

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


class Demo:
    """A throwaway project: two images (app, web) built FROM the test base."""

    def __init__(self, root: Path, base: str, release: str):
        self.root, self.base, self.release = root, base, release

    def write_config(self, *, env_section: str = "{}", images: str | None = None) -> None:
        images = images or (f'- name: app\n  dockerfile: Dockerfile.app\n  build_args: {{BASE: "{self.base}"}}\n'
                            f'- name: web\n  dockerfile: Dockerfile.web\n  build_args: {{BASE: "{self.base}"}}\n')
        text = f"moorage:\n  release: {self.release}\n  images:\n" + textwrap.indent(images, "    ")
        text += f"  environments:\n    dev: {env_section}\n"
        (self.root / "invoke.yaml").write_text(text)

    def inv(self, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        child_env = {**os.environ, "KUBECONFIG": str(self.root / "no-kubeconfig"), "MOORAGE_ENV": "dev"}
        child_env.pop("MOORAGE_DEBUG", None)
        child_env.update(env or {})
        result = subprocess.run([INV, *args], cwd=self.root, capture_output=True, text=True, env=child_env,
                                timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"inv {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def build_json(self, *args: str, env: dict | None = None) -> dict:
        return json.loads(self.inv("images.build", "--json", *args, env=env, check=True).stdout)


@pytest.fixture
def demo(tmp_path, base_image, docker_client):
    release = f"mt{uuid.uuid4().hex[:8]}"
    root = tmp_path / "project"
    (root / "environments").mkdir(parents=True)
    (root / "environments" / "dev.yaml").write_text("{}\n")
    (root / "tasks.py").write_text(TASKS_PY)
    (root / "app").mkdir()
    (root / "app" / "main.txt").write_text("version 1\n")
    (root / "web").mkdir()
    (root / "web" / "index.html").write_text("<p>hi</p>\n")
    (root / "scratch.tmp").write_text("ignored\n")
    (root / ".dockerignore").write_text("*.tmp\n")
    # Per-Dockerfile ignore files keep each image's context to its own sources.
    (root / "Dockerfile.app.dockerignore").write_text("*\n!app/\n")
    (root / "Dockerfile.web.dockerignore").write_text("*\n!web/\n!moorage-ca.crt\n")
    (root / "Dockerfile.app").write_text("ARG BASE\nFROM ${BASE}\nCOPY app/ /app/\nRUN cat /app/main.txt\n")
    (root / "Dockerfile.web").write_text("ARG BASE\nFROM ${BASE}\nCOPY web/ /web/\n")
    d = Demo(root, base_image, release)
    d.write_config()
    yield d
    remove_release_images(docker_client, release, base_image)


def actions(summary: dict) -> dict[str, str]:
    return {i["name"]: i["action"] for i in summary["images"]}


def test_build_creates_content_hash_tagged_images_with_labels(demo, docker_client):
    summary = demo.build_json()
    assert actions(summary) == {"app": "build", "web": "build"}
    app = next(i for i in summary["images"] if i["name"] == "app")
    repo, tag = app["ref"].split(":")
    assert repo == f"{demo.release}/app" and len(tag) == 16 and tag != "latest"
    labels = docker_client.api.inspect_image(app["ref"])["Config"]["Labels"]
    assert labels["dev.moorage.image"] == "app" and labels["dev.moorage.inputs"].startswith(tag)
    assert docker_client.api.inspect_image(demo.base)["Id"] in labels["dev.moorage.base-images"]


def test_second_build_with_no_change_builds_nothing(demo):
    demo.build_json()
    again = demo.build_json()
    assert actions(again) == {"app": "skip", "web": "skip"}
    assert {i["reason"] for i in again["images"]} == {"already built"}


def test_one_line_change_rebuilds_only_that_image(demo):
    first = demo.build_json()
    (demo.root / "app" / "main.txt").write_text("version 2\n")
    (demo.root / "scratch.tmp").write_text("ignored, changed\n")
    second = demo.build_json()
    assert actions(second) == {"app": "build", "web": "skip"}
    assert first["images"][0]["ref"] != second["images"][0]["ref"]


def test_force_rebuilds_an_unchanged_image(demo):
    demo.build_json("--only", "web")
    assert actions(demo.build_json("--only", "web", "--force")) == {"web": "build"}


def test_dry_run_prints_the_plan_and_builds_nothing(demo, docker_client):
    result = demo.inv("images.build", "--dry-run", check=True)
    assert "build app" in result.stdout and "build web" in result.stdout
    listing = json.loads(demo.inv("images.list", "--json", check=True).stdout)
    assert [r["built"] for r in listing["images"]] == [False, False]


def test_list_shows_built_images_with_size(demo):
    demo.build_json("--only", "app")
    rows = {r["name"]: r for r in json.loads(demo.inv("images.list", "--json", check=True).stdout)["images"]}
    assert rows["app"]["built"] is True and rows["app"]["size"] > 0
    assert rows["web"]["built"] is False
    table = demo.inv("images.list", check=True).stdout
    assert "IMAGE" in table and rows["app"]["tag"] in table


@pytest.mark.parametrize("builder, step, exit_status", [
    ("buildkit", "at step 3/3 (RUN echo about to fail && cat /nope)", "exit code: 1"),
    ("legacy", "at step 4/9 (RUN echo about to fail && cat /nope)", "returned a non-zero code: 1"),
])
def test_failing_run_step_is_one_clean_line_with_the_step_and_exit_1(demo, builder, step, exit_status):
    if builder == "buildkit":
        require_buildx()
    (demo.root / "Dockerfile.app").write_text(
        "ARG BASE\nFROM ${BASE}\nCOPY app/ /app/\nRUN echo about to fail && cat /nope\n")
    result = demo.inv("images.build", "--only", "app", env={"MOORAGE_BUILDER": builder})
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"build of image 'app' failed {step}" in errors[0]
    # the step's output lines, in the order the engine sent them (stdout and stderr may interleave)
    assert "about to fail" in errors[0].partition("; output: ")[2] and exit_status in errors[0]


def test_bad_image_name_in_config_is_one_line_exit_2(demo):
    demo.write_config(images="- name: Bad_Name\n  dockerfile: Dockerfile.app\n")
    result = demo.inv("images.build")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: bad image name 'Bad_Name' at moorage.images[0].name in {demo.root}/invoke.yaml "
        "(fix: use lowercase letters, digits and . _ - / (a Docker repository name))"]


def test_docker_daemon_down_is_one_line_exit_2(demo, tmp_path):
    dead = f"unix://{tmp_path}/dead.sock"
    result = demo.inv("images.build", env={"DOCKER_HOST": dead})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: Docker engine at {dead} is not reachable "
        "(fix: start the Docker daemon (dockerd), or point DOCKER_HOST at a running engine)"]


def test_legacy_builder_gets_the_ca_bundle_in_its_context_without_changing_the_tag(demo, docker_client, tmp_path):
    # The legacy builder has no build secrets: the bundle travels beside the context (BuildKit: test_buildkit.py).
    (demo.root / "Dockerfile.web").write_text("ARG BASE\nFROM ${BASE}\nCOPY moorage-ca.crt /ca.crt\n")
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n")
    summary = demo.build_json("--only", "web", env={"MOORAGE_CA_BUNDLE": str(ca), "MOORAGE_BUILDER": "legacy"})
    assert summary["images"][0]["builder"] == "legacy"
    ref = summary["images"][0]["ref"]
    out = docker_client.containers.run(ref, ["/bin/cat", "/ca.crt"], remove=True)
    assert out.decode() == ca.read_text()
    # The bundle is not an input: the same tag is computed without it.
    listing = json.loads(demo.inv("images.list", "--json", check=True).stdout)
    assert [r["ref"] for r in listing["images"] if r["name"] == "web"] == [ref]


# --- a second engine standing in for minikube's Docker daemon ---------------------

@pytest.fixture
def second_engine(docker_client, base_image):
    """A throwaway dockerd on its own socket, seeded with the test base image; stopped by its pid."""
    require_tool("dockerd", "unshare")
    if os.geteuid() != 0:
        missing("starting a second dockerd needs root")
    import docker

    top = Path(tempfile.mkdtemp(prefix="md", dir="/tmp"))  # short: unix socket paths are limited
    sock = f"unix://{top}/d.sock"
    tag = f"md{uuid.uuid4().hex[:10]}"  # a containerd namespace: letters and digits (mkdtemp names may hold '_')
    # In its own network namespace, so the docker0 bridge it creates (BuildKit's RUN steps
    # need one) is its own and the host engine's docker0 is never touched.
    daemon = subprocess.Popen(
        ["unshare", "--net", "dockerd", "--data-root", f"{top}/data", "--exec-root", f"{top}/x", "--pidfile", f"{top}/pid",
         "-H", sock, "--iptables=false", "--containerd-namespace", tag,
         "--containerd-plugins-namespace", f"{tag}p"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    listening, said = threading.Event(), threading.Event()

    def follow_log() -> None:
        """dockerd's log into dockerd.log; its ready marker (or its end) to the fixture."""
        with open(top / "dockerd.log", "wb") as log:
            for line in daemon.stdout:
                log.write(line)
                log.flush()
                if b"API listen on " in line:
                    listening.set()
                    said.set()
        said.set()

    follower = threading.Thread(target=follow_log, name="second dockerd log", daemon=True)
    follower.start()
    client = None
    try:
        said.wait(60)
        if not listening.is_set():
            pytest.fail(f"second dockerd did not start: {(top / 'dockerd.log').read_text()[-2000:]}")
        client = docker.DockerClient(base_url=sock, timeout=120)
        client.ping()
        client.api.load_image(b"".join(docker_client.api.get_image(base_image)))
        yield sock, client
    finally:
        if client is not None:
            client.close()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        follower.join(10)
        shutil.rmtree(top, ignore_errors=True)


def test_minikube_docker_runtime_builds_into_minikubes_engine_not_the_host(demo, second_engine, docker_client, tmp_path):
    sock, second = second_engine
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_log = tmp_path / "minikube-argv"
    (bin_dir / "minikube").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "$@" >> {argv_log}
        if [ "$3" = docker-env ]; then
          echo 'export DOCKER_HOST="{sock}"'
          echo 'export MINIKUBE_ACTIVE_DOCKERD="minikube"'
          echo '# eval $(minikube -p minikube docker-env)'
          exit 0
        fi
        echo "unexpected minikube call: $@" >&2
        exit 3
    """))
    (bin_dir / "minikube").chmod(0o755)
    demo.write_config(env_section="{cluster: minikube}")
    path_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    require_buildx()
    summary = demo.build_json(env=path_env)
    assert summary["engine"] == sock and summary["cluster"] == "minikube"
    assert actions(summary) == {"app": "build", "web": "build"}
    assert {i["builder"] for i in summary["images"]} == {"buildkit"}  # BuildKit of minikube's engine, not the host's
    import docker.errors

    for item in summary["images"]:
        assert second.api.inspect_image(item["ref"])["Id"] == item["image_id"]
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.api.inspect_image(item["ref"])

    assert actions(demo.build_json(env=path_env)) == {"app": "skip", "web": "skip"}
    load = demo.inv("images.load", "--dry-run", env=path_env, check=True)
    assert "nothing to load" in load.stdout
    assert argv_log.read_text().splitlines()[0] == "-p minikube docker-env --shell bash"
