"""`inv dev.watch` on the real cluster, driven by editing files in a copy of the repository.

One watch runs for the module (its own namespace and release), as a developer would keep it running;
each test saves files and waits for the cycle's line in the watch's output (never a sleep), then
checks the cluster. The last tests stop watches with Ctrl-C (SIGINT), at rest and during a helm upgrade.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.reference import copy_project, data_values, load_data_images
from tests.fixtures.tools import missing, require_docker

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))
NAMESPACE = "moorage-e2e-watch"
RELEASE = "moorage"
CA_BUNDLE = Path(os.environ.get("MOORAGE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
MAIN = Path("app/backend/moorage_backend/main.py")
HEALTHZ = 'return {"status": "ok"}'


class Watch:
    """``inv dev.watch`` as a child process; its output lines are kept and can be waited for."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.lines: list[str] = []
        self.done = False  # the output ended
        self.changed = threading.Condition()
        self.proc = subprocess.Popen([INV, "dev.watch"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.done = True
            self.changed.notify_all()

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 120) -> re.Match:
        """The first line from index ``after`` on that matches ``pattern``; fails with the output's tail."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines[after:]:
                    if m := regex.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.done:
                    tail = "\n".join(self.lines[-60:])
                    pytest.fail(f"no line matching {pattern!r} (exit {self.proc.poll()}):\n{tail}")
                self.changed.wait(timeout=min(left, 1))

    @property
    def mark(self) -> int:
        with self.changed:
            return len(self.lines)

    def text(self, after: int = 0) -> str:
        with self.changed:
            return "\n".join(self.lines[after:])

    def interrupt(self, timeout: float = 300) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)


class Project:
    def __init__(self, root: Path, cluster):
        self.root, self.cluster = root, cluster
        self.env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "CONTAINERD_ADDRESS": cluster.containerd_address,
                    "MOORAGE_PYTHON_IMAGE": os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim"),
                    "MOORAGE_NGINX_IMAGE": os.environ.get("MOORAGE_NGINX_IMAGE", "local/nginx:bookworm")}
        if CA_BUNDLE.is_file():
            self.env.setdefault("MOORAGE_CA_BUNDLE", str(CA_BUNDLE))
        for key in ("MOORAGE_ENV", "DATABASE_URL", "POSTGRES_PASSWORD"):
            self.env.pop(key, None)

    def edit(self, path: Path | str, old: str, new: str) -> None:
        file = self.root / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.cluster.kubectl("-n", NAMESPACE, *args, "-o", "json").stdout)

    def pods(self, component: str) -> list[dict]:
        items = self.kubectl_json("get", "pods", "-l", f"app.kubernetes.io/component={component}")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"]

    def images(self) -> dict[str, str]:
        deployments = self.kubectl_json("get", "deployments")["items"]
        return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments}

    def in_container(self, pod: str, command: str) -> subprocess.CompletedProcess:
        return self.cluster.kubectl("-n", NAMESPACE, "exec", pod, "-c", "backend", "--", "sh", "-c", command,
                                    check=False)

    def helm_status(self) -> str:
        out = subprocess.run(["helm", "status", RELEASE, "-n", NAMESPACE, "--kube-context", self.cluster.context,
                              "-o", "json"], capture_output=True, text=True, env=self.env, timeout=60)
        return json.loads(out.stdout)["info"]["status"] if out.returncode == 0 else f"absent: {out.stderr}"


def _get(url: str) -> tuple[int, str]:
    import httpx

    try:
        response = httpx.get(url, timeout=10)
    except httpx.HTTPError as exc:
        return 0, str(exc)
    return response.status_code, response.text


def _closed(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def project(real_cluster, tmp_path_factory):
    require_docker()
    for tool in ("helm", "ctr"):
        if shutil.which(tool) is None:
            missing(f"'{tool}' is not installed")
    import yaml

    from moorage.helm import merge

    root = tmp_path_factory.mktemp("watch") / "project"
    copy_project(root)
    dev = yaml.safe_load((REPO / "environments" / "dev.yaml").read_text())
    data = data_values()
    (root / "environments" / "watch.yaml").write_text(yaml.safe_dump(merge(dev, data)))
    config = yaml.safe_load((REPO / "invoke.yaml").read_text())
    config["moorage"]["environments"] = {"watch": {
        "namespace": NAMESPACE, "context": real_cluster.context, "cluster": "containerd-local", "timeout": 600,
        "required_secrets": ["POSTGRES_PASSWORD"], "smoke": config["moorage"]["environments"]["dev"]["smoke"]}}
    config["moorage"]["default_env"] = "watch"
    (root / "invoke.yaml").write_text(yaml.safe_dump(config))
    (root / ".env").write_text(f"POSTGRES_PASSWORD=w-{uuid.uuid4().hex[:10]}\n")
    load_data_images(real_cluster)
    proj = Project(root, real_cluster)
    yield proj
    subprocess.run([INV, "dev.undeploy", "--purge", "--yes"], cwd=root, env=proj.env, capture_output=True,
                   timeout=300, stdin=subprocess.DEVNULL)
    real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="module")
def watch(project):
    running = Watch(project.root, project.env)
    running.wait_for(r"^watching \d+ folders for changes", timeout=1200)
    yield running
    if running.proc.poll() is None:
        running.interrupt()


def _backend_url(watch: Watch) -> str:
    return watch.wait_for(r"^forward: (http://127\.0\.0\.1:\d+)/ -> svc/\S+-backend:8000").group(1)


def test_a_changed_backend_file_is_served_by_the_running_pod_with_no_build_and_no_new_pod(project, watch):
    (before,) = project.pods("backend")
    images = project.images()
    token = uuid.uuid4().hex[:8]
    mark = watch.mark
    project.edit(MAIN, HEALTHZ, f'return {{"status": "ok", "watch": "{token}"}}')
    line = watch.wait_for(r"^cycle \d+: main\.py changed -> (.*); ready ([\d.]+)s after the save", after=mark).group(1)
    assert "backend: synced 1 file" in line and "to 1 pod" in line and "rebuilt" not in line, line
    status, body = _get(f"{_backend_url(watch)}/healthz")
    assert status == 200 and json.loads(body).get("watch") == token, body
    (after,) = project.pods("backend")
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "the pod was replaced"
    assert after["status"]["containerStatuses"][0]["restartCount"] == before["status"]["containerStatuses"][0]["restartCount"]
    assert project.images() == images, "an image changed"


def test_a_file_deleted_locally_is_deleted_in_the_container(project, watch):
    name = f"scratch_{uuid.uuid4().hex[:6]}.py"
    local = project.root / "app" / "backend" / "moorage_backend" / name
    mark = watch.mark
    local.write_text("SCRATCH = True\n")
    watch.wait_for(rf"^cycle \d+: {name} changed -> backend: synced 1 file", after=mark)
    (pod,) = project.pods("backend")
    assert project.in_container(pod["metadata"]["name"], f"test -f /app/moorage_backend/{name}").returncode == 0
    mark = watch.mark
    local.unlink()
    watch.wait_for(rf"^cycle \d+: {name} changed -> backend: synced 1 file", after=mark)
    gone = project.in_container(pod["metadata"]["name"], f"test -e /app/moorage_backend/{name}")
    assert gone.returncode == 1, gone.stdout + gone.stderr


def test_a_syntax_error_shows_the_container_error_line_and_the_next_good_save_recovers(project, watch):
    url = _backend_url(watch)
    main = project.root / MAIN
    good = main.read_text()
    mark = watch.mark
    main.write_text(good + "\ndef broken(:\n")
    watch.wait_for(r"^cycle \d+: main\.py changed -> .*NOT ready", after=mark)
    watch.wait_for(r'File "/app/moorage_backend/main\.py", line \d+', after=mark)
    watch.wait_for(r"SyntaxError", after=mark)
    assert _get(f"{url}/healthz")[0] == 200, "the previous code keeps serving meanwhile"
    token = uuid.uuid4().hex[:8]
    mark = watch.mark
    main.write_text(re.sub(r'"watch": "\w+"', f'"watch": "{token}"', good))
    watch.wait_for(r"^cycle \d+: main\.py changed -> backend: synced 1 file.*; ready [\d.]+s after the save", after=mark)
    assert watch.proc.poll() is None, "the watch kept running"
    status, body = _get(f"{url}/healthz")
    assert status == 200 and json.loads(body).get("watch") == token, body


def test_a_changed_dependency_file_rebuilds_and_redeploys_that_image_only(project, watch):
    before = project.images()
    (backend,) = project.pods("backend")
    mark = watch.mark
    requirements = project.root / "app" / "worker" / "requirements.txt"
    requirements.write_text(requirements.read_text() + f"# e2e {uuid.uuid4().hex[:6]}\n")
    line = watch.wait_for(r"^cycle \d+: requirements\.txt changed -> (.*)", after=mark, timeout=1200).group(1)
    assert re.search(r"rebuilt worker \(sent [\d.]+ \w+\), upgraded to revision \d+", line), line
    after = project.images()
    worker = f"{RELEASE}-worker"
    assert after[worker] != before[worker], "the worker runs its new image"
    assert {k: v for k, v in after.items() if k != worker} == {k: v for k, v in before.items() if k != worker}
    (still,) = project.pods("backend")
    assert still["metadata"]["uid"] == backend["metadata"]["uid"], "the backend pod was left alone"


def test_ctrl_c_stops_cleanly_and_says_the_cluster_runs_code_no_image_holds(project, watch):
    ports = [int(m) for m in re.findall(r"^forward: http://127\.0\.0\.1:(\d+)/", watch.text(), re.M)]
    assert ports and not any(_closed(p) for p in ports), "the forwards were open"
    assert watch.interrupt() == 0, watch.text()[-3000:]
    farewell = watch.lines[-1]
    assert farewell.startswith("stopped after") and "code that no image holds: backend" in farewell, farewell
    assert "inv dev.deploy" in farewell
    assert all(_closed(p) for p in ports), "a port-forward outlived the watch"
    assert project.helm_status() == "deployed"


def test_ctrl_c_during_a_helm_upgrade_leaves_no_half_applied_release(project):
    project.edit("environments/watch.yaml", "logLevel: DEBUG", "logLevel: INFO")  # the first deploy upgrades
    second = Watch(project.root, project.env)
    second.wait_for(r"^==> helm: upgrade", timeout=900)
    code = second.interrupt()
    text = second.text()
    assert code == 130 and re.search(r"^error: interrupted", text, re.M), text[-3000:]
    assert project.helm_status() == "deployed"
    assert not re.search(r"^forward: ", text, re.M) or all(
        _closed(int(p)) for p in re.findall(r"^forward: http://127\.0\.0\.1:(\d+)/", text, re.M))
