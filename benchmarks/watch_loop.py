"""Save-to-serving of a one-line backend change: through `inv dev.watch` (sync), through its rebuild path,
and through a plain `inv dev.deploy`, in the same run on the real local cluster, with bytes shipped per cycle.

Targets (SPEC.md): dev.watch median under 1 s; rebuild path under 6 s. "Serving" is observed from
outside: the change puts a new token in /healthz, and the backend Service's cluster IP (reachable from
this host, the node, through kube-proxy; a port-forward adds about a second per new connection here)
is polled every 20 ms from just before the save until the token comes back. The watch's own figure
(its "ready ... after the save", from the file's mtime to the end of the cycle) is shown beside it. The rebuild path is the same change in a project whose
backend has no sync rules (so the .py change rebuilds the image and upgrades the release).

Needs the local cluster (scripts/cluster/local-cluster.sh up), Docker, helm and the stand-in images
(MOORAGE_PYTHON_IMAGE, MOORAGE_NGINX_IMAGE, scripts/data-images.sh). Uses its own namespace, removed
at the end (--keep leaves it).

    .venv/bin/python benchmarks/watch_loop.py [--runs 5] [--rebuild-runs 3] [--deploy-runs 3] [--registry]

--registry delivers through a registry instead of `ctr import`: the test registry (tests/fixtures/registry.py,
TLS and auth, trusted by the node's containerd for the run) with `push: true`, so the engine pushes only
the layers it lacks and the node pulls them, where an import must first read the whole image out of the
engine (`docker save`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from moorage import kube  # noqa: E402
from moorage.helm import merge  # noqa: E402
from tests.e2e.reference import DATA_IMAGES, copy_project, data_values  # noqa: E402

INV = str(Path(sys.executable).with_name("inv"))
NAMESPACE = "moorage-bench-watch"
MAIN = Path("app/backend/moorage_backend/main.py")
HEALTHZ = re.compile(r'return \{"status": "ok"(, "bench": "\w+")?\}')
SIZE = re.compile(r"\(([\d.]+ (?:B|KiB|MiB|GiB))\)|sent ([\d.]+ (?:B|KiB|MiB|GiB))")


def cluster_env() -> dict[str, str]:
    out = subprocess.run(["bash", str(ROOT / "scripts/cluster/local-cluster.sh"), "env"], capture_output=True,
                         text=True, check=True).stdout
    found = dict(line[len("export "):].split("=", 1) for line in out.splitlines() if line.startswith("export "))
    env = {k: v.split("#")[0].strip() for k, v in found.items()}
    child = {**os.environ, **env, "MOORAGE_PYTHON_IMAGE": os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim"),
             "MOORAGE_NGINX_IMAGE": os.environ.get("MOORAGE_NGINX_IMAGE", "local/nginx:bookworm")}
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.is_file():
        child.setdefault("MOORAGE_CA_BUNDLE", str(ca))
    return child


def make_project(root: Path, context: str) -> None:
    copy_project(root)
    dev = yaml.safe_load((ROOT / "environments/dev.yaml").read_text())
    (root / "environments/bench.yaml").write_text(yaml.safe_dump(merge(dev, data_values())))
    config = yaml.safe_load((ROOT / "invoke.yaml").read_text())
    config["moorage"]["environments"] = {"bench": {"namespace": NAMESPACE, "context": context,
                                                   "cluster": "containerd-local", "timeout": 600,
                                                   "required_secrets": ["POSTGRES_PASSWORD"],
                                                   "smoke": config["moorage"]["environments"]["dev"]["smoke"]}}
    config["moorage"]["default_env"] = "bench"
    (root / "invoke.yaml").write_text(yaml.safe_dump(config))
    (root / ".env").write_text(f"POSTGRES_PASSWORD=b-{uuid.uuid4().hex[:10]}\n")


def use_registry(root: Path, stack: contextlib.ExitStack, cluster_dir: Path) -> None:
    from tests.fixtures.registry import running_registry

    registry = stack.enter_context(running_registry())
    registry.trust_cluster(cluster_dir)
    config = yaml.safe_load((root / "invoke.yaml").read_text())
    config["moorage"]["environments"]["bench"]["registry"] = {
        "url": f"{registry.host}/bench", "username": "REGISTRY_USERNAME", "password": "REGISTRY_PASSWORD", "push": True}
    (root / "invoke.yaml").write_text(yaml.safe_dump(config))
    with open(root / ".env", "a") as dotenv:
        dotenv.write(f"REGISTRY_USERNAME={registry.username}\nREGISTRY_PASSWORD={registry.password}\n")
    print(f"delivery through the registry at {registry.host} (push: true)", flush=True)


def without_backend_sync(root: Path) -> None:
    config = yaml.safe_load((root / "invoke.yaml").read_text())
    for image in config["moorage"]["images"]:
        if image["name"] == "backend":
            image.pop("sync", None)
    (root / "invoke.yaml").write_text(yaml.safe_dump(config))


class Watch:
    def __init__(self, root: Path, env: dict[str, str]):
        self.lines: list[str] = []
        self.own: list[float] = []  # the watch's own save-to-ready figures
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([INV, "dev.watch"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, pattern: str, after: int = 0, timeout: float = 900) -> str:
        regex, deadline = re.compile(pattern), time.monotonic() + timeout
        with self.cond:
            while time.monotonic() < deadline and self.proc.poll() is None:
                for line in self.lines[after:]:
                    if regex.search(line):
                        return line
                self.cond.wait(1)
        sys.exit(f"watch: no line matching {pattern!r}:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=300)


def serve_time(root: Path, url: str, save) -> float:
    """Seconds from the save to the first /healthz answer carrying the new token."""
    token = uuid.uuid4().hex[:8]
    import httpx

    main = root / MAIN
    text = HEALTHZ.sub(f'return {{"status": "ok", "bench": "{token}"}}', main.read_text(), count=1)
    start = time.time()
    save(main, text)
    with httpx.Client(timeout=5) as http:
        while time.time() - start < 900:
            try:
                if http.get(url).json().get("bench") == token:
                    return time.time() - start
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.02)
    sys.exit("the change never served")


def cycles(watch: Watch, root: Path, url: str, runs: int, timeout: float) -> list[tuple[float, str]]:
    out = []
    for _ in range(runs):
        mark = len(watch.lines)
        seconds = serve_time(root, url, lambda path, text: path.write_text(text))
        line = watch.wait_for(r"^cycle \d+: ", after=mark, timeout=timeout)
        sizes = SIZE.search(line)
        own = re.search(r"ready ([\d.]+)s after the save", line)
        watch.own.append(float(own.group(1)) if own else float("nan"))
        out.append((seconds, next(g for g in sizes.groups() if g) if sizes else "?"))
        print(f"  {seconds:.2f}s  {line}", flush=True)
    return out


def deploys(root: Path, env: dict[str, str], url: str, runs: int) -> list[tuple[float, str]]:
    out = []
    for _ in range(runs):
        result: dict = {}

        def save(path: Path, text: str, result: dict = result) -> None:
            path.write_text(text)
            done = subprocess.run([INV, "dev.deploy", "--json"], cwd=root, env=env, capture_output=True, text=True,
                                  timeout=900)
            result.update(json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-2000:]})

        seconds = serve_time(root, url, save)
        shipped = sum((result.get("shipped") or {}).values())
        out.append((seconds, f"{shipped / 1048576:.1f} MiB"))
        print(f"  {seconds:.2f}s  phases {result.get('phases')}  shipped {shipped} bytes", flush=True)
    return out


def report(name: str, rows: list[tuple[float, str]], target: str) -> None:
    times = [t for t, _ in rows]
    print(f"{name:<28} median {statistics.median(times):6.2f}s  min {min(times):6.2f}s  max {max(times):6.2f}s  "
          f"shipped/cycle {', '.join(sorted(set(s for _, s in rows)))}  (target {target})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rebuild-runs", type=int, default=3)
    parser.add_argument("--deploy-runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the namespace in place")
    parser.add_argument("--registry", action="store_true", help="deliver through a registry the node pulls from")
    args = parser.parse_args()
    env = cluster_env()
    os.environ.update({k: env[k] for k in ("KUBECONFIG", "CONTAINERD_ADDRESS") if k in env})
    context = env.get("MOORAGE_CLUSTER_CONTEXT", "moorage-local")
    subprocess.run([str(ROOT / "scripts/data-images.sh")], check=True, capture_output=True, timeout=900)
    subprocess.run(["bash", str(ROOT / "scripts/cluster/local-cluster.sh"), "load",
                    *(f"{r}:{t}" for r, t in DATA_IMAGES.values())], check=True, capture_output=True, env=env)
    with tempfile.TemporaryDirectory(prefix="moorage-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp) / "project"
        root.mkdir()
        make_project(root, context)
        if args.registry:
            use_registry(root, stack, Path(env["KUBECONFIG"]).parent)
        api = kube.client(context)
        try:
            run_all(root, env, api, args)
        finally:
            if not args.keep:
                subprocess.run([INV, "dev.undeploy", "--purge", "--yes"], cwd=root, env=env, capture_output=True,
                               timeout=300)
                subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--wait=false"], env=env,
                               capture_output=True)


def service_url(api) -> str:
    """The backend Service's cluster IP (kube-proxy routes it from the node itself)."""
    from kubernetes.client import CoreV1Api

    ip = CoreV1Api(api).read_namespaced_service("moorage-backend", NAMESPACE).spec.cluster_ip
    return f"http://{ip}:8000/healthz"


def run_all(root: Path, env: dict[str, str], api, args) -> None:
    print("dev.watch, sync path:", flush=True)
    watch = Watch(root, env)
    watch.wait_for(r"^watching \d+ folders", timeout=1800)
    url = service_url(api)
    sync = cycles(watch, root, url, args.runs, timeout=120)
    watch.stop()
    own_sync = watch.own
    print("dev.watch, rebuild path (backend without sync rules):", flush=True)
    without_backend_sync(root)
    watch = Watch(root, env)
    watch.wait_for(r"^watching \d+ folders", timeout=1800)
    rebuild = cycles(watch, root, url, args.rebuild_runs, timeout=900)
    watch.stop()
    own_rebuild = watch.own
    print("plain inv dev.deploy:", flush=True)
    plain = deploys(root, env, url, args.deploy_runs)
    print()
    report("dev.watch (sync)", sync, "median < 1 s")
    print(f"{'':<28} the watch's own figure: median {statistics.median(own_sync):.2f}s")
    report("dev.watch (rebuild path)", rebuild, "< 6 s")
    print(f"{'':<28} the watch's own figure: median {statistics.median(own_rebuild):.2f}s")
    report("inv dev.deploy", plain, "issue 15: 17.4 s")


if __name__ == "__main__":
    main()
