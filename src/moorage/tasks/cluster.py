"""``cluster.*``: the project's own local Kubernetes cluster (scripts/cluster/), for a Linux host with no
minikube or kind: ``up``, ``down``, ``status``."""

from __future__ import annotations

from invoke import Collection

from ._boundary import confirm, lazy, mtask, reporter

local = lazy("moorage.cluster.local")

KUBECONFIG_HELP = ("kubeconfig to merge the context moorage-local into and make current "
                   "(default: $KUBECONFIG's first file, else ~/.kube/config)")


def _root(ctx):
    from pathlib import Path

    return Path(ctx.config.get("moorage", {}).get("root") or ".")


@mtask(help={
    "build": "build the binaries first if they are missing (scripts/cluster/build.sh: ~18 min cold, cached after)",
    "kubeconfig": KUBECONFIG_HELP,
    "no_kubeconfig": "do not touch any kubeconfig (use the cluster's own: see the printed KUBECONFIG)",
    "dry_run": "print the commands and change nothing",
})
def up(ctx, build=False, kubeconfig=None, no_kubeconfig=False, dry_run=False):
    """Start the local cluster (root, Linux) and make its context current: dev.deploy then deploys to it."""
    out = reporter()
    root = _root(ctx)
    if dry_run:
        if build:
            out.line(f"bash {local.script_path(root, local.BUILD_SCRIPT)}")
        out.line(f"bash {local.script_path(root)} up")
        if not no_kubeconfig:
            out.line(f"merge context moorage-local into {kubeconfig or 'the default kubeconfig'} and make it current")
        return
    env = local.up(root, reporter=out, build=build, kubeconfig=None if no_kubeconfig else (kubeconfig or ""))
    context = env.get("MOORAGE_CLUSTER_CONTEXT", "moorage-local")
    if env.get("MERGED_INTO"):
        out.ok(f"local cluster up; context '{context}' is current in {env['MERGED_INTO']}: inv dev.deploy deploys to it")
    else:
        out.ok(f"local cluster up (context '{context}'); use it with: export KUBECONFIG={env.get('KUBECONFIG', '?')}")


@mtask(help={
    "yes": "do not ask for confirmation (needed without a terminal)",
    "kubeconfig": "kubeconfig `cluster.up` merged the context into (default: as for up)",
    "no_kubeconfig": "leave every kubeconfig as it is",
})
def down(ctx, yes=False, kubeconfig=None, no_kubeconfig=False):
    """Stop the local cluster and remove its state (its workloads and volumes go with it)."""
    out = reporter()
    confirm("stop the local cluster and delete its state (every release and volume in it)?", yes=yes)
    local.down(_root(ctx), reporter=out, kubeconfig=None if no_kubeconfig else (kubeconfig or ""))
    out.ok("local cluster stopped and its state removed")


@mtask(help={"json": "print the status as JSON"})
def status(ctx, json=False):
    """Show whether each component of the local cluster runs, and its node."""
    from invoke import Exit

    out = reporter(json)
    state = local.status(_root(ctx))
    if json:
        out.emit_json(state.as_dict())
    else:
        out.table(["component", "running", "pid"],
                  [[c.name, "yes" if c.running else "no", str(c.pid or "")] for c in state.components],
                  title="local cluster (scripts/cluster/local-cluster.sh)")
        for node in state.nodes:
            out.line(f"node {node.get('name')}: {node.get('status')} ({node.get('version', '?')}, "
                     f"{node.get('container_runtime', '?')})")
        out.line("running" if state.ok else "not running (start it with: inv cluster.up)")
    if not state.ok:
        raise Exit(code=1)


ns = Collection("cluster")
ns.add_task(up)
ns.add_task(down)
ns.add_task(status)
