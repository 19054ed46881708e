"""``images.*``: build images with content-hash tags, list them, deliver them to the cluster, push them."""

from __future__ import annotations

import time

from invoke import Collection

from ..core.errors import UserError
from ._boundary import lazy, mtask, project, reporter

images = lazy("moorage.images")

ENV_HELP = "environment (default: MOORAGE_ENV, then the config's default_env, then dev)"
DRY_HELP = "print the plan (images, commands) and change nothing"
JSON_HELP = "print a JSON summary on stdout (human lines go to stderr)"


@mtask(help={
    "only": "build only these images (comma-separated names from moorage.images)",
    "force": "rebuild even if an image with the same content hash is already in the engine",
    "env": ENV_HELP,
    "dry_run": DRY_HELP,
    "json": JSON_HELP,
})
def build(ctx, only=None, force=False, env=None, dry_run=False, json=False):
    """Build the images whose inputs changed, tagged with a content hash, into the cluster's engine."""
    start = time.monotonic()
    out = reporter(json)
    proj = project(ctx)
    environment = proj.env(env)
    target = images.observe(proj, environment, only=only)
    plan = images.plan_builds(target.states, target.present, force=force)
    summary = {"environment": environment.name, "cluster": target.cluster.kind, "engine": target.engine.host,
               "dry_run": bool(dry_run), "images": []}
    states = {s.name: s for s in target.states}
    if dry_run:
        out.step(f"build plan for '{environment.name}' (engine {target.engine.host}, cluster {target.cluster.kind})")
        for p in plan:
            bases = ", ".join(f"{ref} ({'present' if iid else 'missing: will be pulled'})"
                              for ref, iid in states[p.name].bases.items())
            out.line(f"{p.action:5} {p.name:12} {p.ref}  [{p.reason}]" + (f"  base: {bases}" if bases else ""))
            summary["images"].append({"name": p.name, "ref": p.ref, "action": p.action, "reason": p.reason})
    else:
        refreshed = images.pull_missing_bases(target, proj, environment, plan, reporter=out)
        if refreshed is not target.states:
            target.states = refreshed
            plan = images.plan_builds(refreshed, target.present, force=force)
            states = {s.name: s for s in refreshed}
        ca = images.ca_bundle_from_env()
        for p in plan:
            row = {"name": p.name, "ref": p.ref, "action": p.action, "reason": p.reason}
            if p.action == "skip":
                out.ok(f"{p.name}: {p.reason} ({p.ref})")
            else:
                t0 = time.monotonic()
                row["image_id"] = images.build(target.client, states[p.name], target.contexts[p.name], reporter=out,
                                               ca_bundle=ca, log_dir=proj.root / ".moorage" / "logs")
                row["seconds"] = images.elapsed(t0)
                out.ok(f"{p.name}: built {p.ref} in {row['seconds']:.1f}s")
            summary["images"].append(row)
    summary["seconds"] = images.elapsed(start)
    if json:
        out.emit_json(summary)


@mtask(help={"env": ENV_HELP, "json": JSON_HELP})
def list_(ctx, env=None, json=False):
    """Show each image's current tag and whether it is built in the environment's engine."""
    out = reporter(json)
    proj = project(ctx)
    environment = proj.env(env)
    target = images.observe(proj, environment)
    rows = images.list_rows(target.states, images.inspect_refs(target.client, [s.ref for s in target.states]))
    if json:
        out.emit_json({"environment": environment.name, "engine": target.engine.host,
                       "images": [r.as_json() for r in rows]})
        return
    out.table(["image", "tag", "built", "size", "created"], images.table_rows(rows),
              title=f"images for '{environment.name}' (engine {target.engine.host})")


def _require_built(target) -> None:
    missing = [s for s in target.states if s.ref not in target.present]
    if missing:
        s = missing[0]
        raise UserError(f"image '{s.name}' ({s.ref}) is not built in the Docker engine at {target.engine.host}",
                        "build it first: inv images.build" + (f" --only {s.name}" if len(missing) == 1 else ""))


def _require_registry(environment, why: str) -> None:
    if not environment.registry:
        raise UserError(f"environment '{environment.name}' {why} but has no registry",
                        f"set moorage.environments.{environment.name}.registry in invoke.yaml, "
                        "or its cluster: (minikube, kind, k3d, docker-desktop)")


def _print_steps(out, steps, nothing: str) -> None:
    if not steps:
        out.ok(nothing)
    for step in steps:
        out.line(step.render())


@mtask(help={"env": ENV_HELP, "dry_run": DRY_HELP})
def load(ctx, env=None, dry_run=False):
    """Make the built images available to the environment's cluster (only those it lacks)."""
    out = reporter()
    proj = project(ctx)
    environment = proj.env(env)
    target = images.observe(proj, environment)
    if target.cluster.kind == "remote":
        _require_registry(environment, f"deploys to a remote cluster (context {target.cluster.context or 'none'})")
    _require_built(target)
    refs = [s.ref for s in target.states]
    present = None if target.engine.cluster_reads_it else images.cluster_images(target.cluster, refs,
                                                                                 client=target.client)
    steps = images.delivery_plan(target.cluster, refs, present, engine_shared=target.engine.cluster_reads_it)
    nothing = (f"the {target.cluster.kind} cluster reads the engine the images are built in: nothing to load"
               if target.engine.cluster_reads_it or target.cluster.kind == "docker-desktop"
               else f"the {target.cluster.kind} cluster already has every image: nothing to load")
    if dry_run:
        out.step(f"delivery plan for '{environment.name}' ({target.cluster.kind} {target.cluster.name})")
        _print_steps(out, steps, nothing)
        return
    if not steps:
        out.ok(nothing)
        return
    images.deliver(steps, client=target.client, reporter=out)
    out.ok(f"{len({r for s in steps for r in s.refs})} image(s) delivered to {target.cluster.kind} {target.cluster.name}")


@mtask(help={"env": ENV_HELP, "dry_run": DRY_HELP})
def push(ctx, env=None, dry_run=False):
    """Push the built images to the environment's registry (skipping tags it already has)."""
    out = reporter()
    proj = project(ctx)
    environment = proj.env(env)
    _require_registry(environment, "is asked to push images")
    target = images.observe(proj, environment)
    _require_built(target)
    refs = [s.ref for s in target.states]
    registry = images.Cluster("remote", environment.registry, target.cluster.context)
    steps = images.delivery_plan(registry, refs, images.cluster_images(registry, refs, client=target.client))
    if dry_run:
        out.step(f"push plan for '{environment.name}' (registry {environment.registry})")
        _print_steps(out, steps, "the registry already has every image: nothing to push")
        return
    if not steps:
        out.ok("the registry already has every image: nothing to push")
        return
    images.deliver(steps, client=target.client, reporter=out)
    out.ok(f"{len(steps)} image(s) pushed to {environment.registry}")


ns = Collection("images")
ns.add_task(build)
ns.add_task(list_, name="list")
ns.add_task(load)
ns.add_task(push)
