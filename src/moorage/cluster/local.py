"""The project's own local cluster (``scripts/cluster/local-cluster.sh``): up, down, status, and its kube context.

``up`` starts upstream Kubernetes on this Linux host with a containerd of its
own (no minikube, kind or registry needed) and, like ``kind create cluster``,
merges its context ``moorage-local`` into the user's kubeconfig and makes it
current, so ``inv dev.deploy`` finds it with no configuration; ``down``
removes what ``up`` added. The script does the work; this module runs it
through ``core.proc`` and reads its output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import kube
from ..core import proc
from ..core.errors import CommandFailed, UserError
from ..core.report import Reporter

SCRIPT = Path("scripts/cluster/local-cluster.sh")
BUILD_SCRIPT = Path("scripts/cluster/build.sh")
UP_TIMEOUT = 600
DOWN_TIMEOUT = 300
BUILD_TIMEOUT = 3600  # a cold build of the Kubernetes binaries takes ~18 min on 2 cores
_COMPONENT = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)\s+(?:running \(pid (?P<pid>\d+)\)|(?P<down>not running))\s*$")


def script_path(root: Path, name: Path = SCRIPT) -> Path:
    """The cluster script: ``$MOORAGE_CLUSTER_SCRIPTS/<file>``, the project's own, else Moorage's checkout's."""
    override = os.environ.get("MOORAGE_CLUSTER_SCRIPTS")
    candidates = [Path(override) / name.name] if override else []
    candidates += [Path(root) / name, Path(__file__).resolve().parents[3] / name]
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(f"{name} was not found in {root} nor in Moorage's checkout",
                    "set MOORAGE_CLUSTER_SCRIPTS to the folder of local-cluster.sh (Moorage's scripts/cluster/)")


@dataclass(frozen=True)
class Component:
    name: str
    running: bool
    pid: int | None = None


@dataclass
class LocalStatus:
    """What ``local-cluster.sh status`` reports: each component, and the nodes with their state."""

    components: list[Component] = field(default_factory=list)
    nodes: list[dict[str, str]] = field(default_factory=list)
    ok: bool = False

    @property
    def running(self) -> bool:
        return any(c.running for c in self.components)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "components": [{"name": c.name, "running": c.running, "pid": c.pid}
                                              for c in self.components], "nodes": self.nodes}


def parse_status(text: str, returncode: int) -> LocalStatus:
    """The status from the script's output: component lines, then ``kubectl get nodes -o wide``."""
    status = LocalStatus(ok=returncode == 0)
    header: list[str] | None = None
    for line in text.splitlines():
        m = _COMPONENT.match(line.strip())
        if m:
            status.components.append(Component(m.group("name"), not m.group("down"),
                                               int(m.group("pid")) if m.group("pid") else None))
        elif line.startswith("NAME ") and "STATUS" in line:
            header = [h.lower().replace("-", "_") for h in line.split()]
        elif header and line.strip():
            # the columns up to INTERNAL-IP are one word each; OS-IMAGE has spaces; CONTAINER-RUNTIME is last
            cells = line.split()
            node = {k: v for k, v in zip(header[:6], cells, strict=False)
                    if k in ("name", "status", "version", "internal_ip")}
            if header[-1] == "container_runtime" and len(cells) > 6:
                node["container_runtime"] = cells[-1]
            status.nodes.append(node)
    return status


def status(root: Path, *, run=None) -> LocalStatus:
    run = run or proc.run
    result = run(["bash", str(script_path(root)), "status"], timeout=60, check=False, what="local-cluster.sh status")
    return parse_status(result.stdout, result.returncode)


def env_vars(output: str) -> dict[str, str]:
    """``export K=V`` lines of ``local-cluster.sh env`` (or the end of ``up``)."""
    out = {}
    for line in output.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            out[key.strip()] = value.split("#")[0].strip()
    return out


def check(root: Path, *, run=None) -> str:
    """'' when the binaries ``up`` needs are built, else what is missing."""
    run = run or proc.run
    result = run(["bash", str(script_path(root)), "check"], timeout=30, check=False, what="local-cluster.sh check")
    return "" if result.returncode == 0 else " ".join(result.stdout.split())


def up(root: Path, *, reporter: Reporter, build: bool = False, kubeconfig: str | None = "", run=None) -> dict[str, str]:
    """Start the cluster (building its binaries first with ``build``); returns its env (KUBECONFIG, context, socket).

    ``kubeconfig`` is where its context is merged and made current ('' the
    default kubeconfig, None: nowhere).
    """
    run = run or proc.run
    if build:
        with reporter.progress("building the local cluster's binaries (scripts/cluster/build.sh)"):
            run(["bash", str(script_path(root, BUILD_SCRIPT))], timeout=BUILD_TIMEOUT, what="build.sh")
    missing = check(root, run=run)
    if missing:
        raise UserError(f"the local cluster's binaries are not built ({missing})",
                        "run: inv cluster.up --build (or scripts/cluster/build.sh; ~18 min cold, cached after)")
    with reporter.progress("starting the local cluster (local-cluster.sh up)"):
        try:
            result = run(["bash", str(script_path(root)), "up"], timeout=UP_TIMEOUT, what="local-cluster.sh up")
        except CommandFailed as exc:
            raise CommandFailed(exc.message, "it needs root on a Linux host; see the logs under "
                                "/var/lib/moorage-k8s/logs/ and scripts/cluster/README.md", stderr=exc.stderr,
                                returncode=exc.returncode) from None
    env = env_vars(result.stdout)
    if kubeconfig is not None and env.get("KUBECONFIG"):
        env["MERGED_INTO"] = merge_into(kubeconfig or kube.kubeconfig_path().split(os.pathsep)[0],
                                        env["KUBECONFIG"], env.get("MOORAGE_CLUSTER_CONTEXT", "moorage-local"))
    return env


def down(root: Path, *, reporter: Reporter, kubeconfig: str | None = "", run=None) -> None:
    """Stop the cluster and remove its state; its context leaves the kubeconfig ``up`` merged it into."""
    run = run or proc.run
    context = env_vars(run(["bash", str(script_path(root)), "env"], timeout=30, check=False,
                           what="local-cluster.sh env").stdout).get("MOORAGE_CLUSTER_CONTEXT", "moorage-local")
    with reporter.progress("stopping the local cluster (local-cluster.sh down)"):
        run(["bash", str(script_path(root)), "down"], timeout=DOWN_TIMEOUT, what="local-cluster.sh down")
    if kubeconfig is not None:
        path = Path(os.path.expanduser(kubeconfig or kube.kubeconfig_path().split(os.pathsep)[0]))
        if path.is_file():
            _write(path, remove_context(_read(path), context))


# --------------------------------------------------------------------------
# The kubeconfig: merge the cluster's context in (pure), and out again
# --------------------------------------------------------------------------

def _named(entries: list[dict[str, Any]] | None, name: str) -> list[dict[str, Any]]:
    return [e for e in entries or [] if e.get("name") != name]


def merge_context(target: Mapping[str, Any], source: Mapping[str, Any], context: str) -> dict[str, Any]:
    """``target`` with ``context`` of ``source`` (and its cluster and user) added or replaced, and made current."""
    ctx = next((c for c in source.get("contexts") or [] if c.get("name") == context), None)
    if ctx is None:
        raise UserError(f"the local cluster's kubeconfig has no context '{context}'",
                        "run `scripts/cluster/local-cluster.sh env` and check the kubeconfig it names")
    cluster_name, user_name = ctx["context"]["cluster"], ctx["context"]["user"]
    out = {"apiVersion": "v1", "kind": "Config", "preferences": {}, **dict(target)}
    for key, name in (("clusters", cluster_name), ("users", user_name), ("contexts", context)):
        entry = next(e for e in source.get(key) or [] if e.get("name") == name)
        out[key] = [*_named(out.get(key), name), entry]
    out["current-context"] = context
    return out


def remove_context(target: Mapping[str, Any], context: str) -> dict[str, Any]:
    """``target`` without ``context`` and the cluster and user it named."""
    out = dict(target)
    ctx = next((c for c in out.get("contexts") or [] if c.get("name") == context), None)
    if ctx is None:
        return out
    out["contexts"] = _named(out.get("contexts"), context)
    out["clusters"] = _named(out.get("clusters"), ctx["context"].get("cluster", ""))
    out["users"] = _named(out.get("users"), ctx["context"].get("user", ""))
    if out.get("current-context") == context:
        out["current-context"] = ""
    return out


def _read(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}


def _write(path: Path, data: Mapping[str, Any]) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.moorage-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(dict(data), handle, sort_keys=False)
    os.replace(tmp, path)


def merge_into(kubeconfig: str, cluster_kubeconfig: str, context: str) -> str:
    """Merge the cluster's context into ``kubeconfig`` (made current); returns its path."""
    path = Path(os.path.expanduser(kubeconfig))
    source = Path(cluster_kubeconfig)
    if path.resolve() == source.resolve():
        return str(path)
    _write(path, merge_context(_read(path), _read(source), context))
    return str(path)
