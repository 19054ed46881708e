"""``images.*``: build images with content-hash tags, list them, deliver them to the cluster, push them."""

from __future__ import annotations

import time

from invoke import Collection

from ._boundary import lazy, mtask, project, reporter

artifacts = lazy("moorage.artifacts")
images = lazy("moorage.images")
config = lazy("moorage.core.config")

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
    ws = artifacts.observe(proj, environment, only=only)
    summary = {"environment": environment.name, "cluster": ws.cluster.kind, "engine": ws.engine.host,
               "dry_run": bool(dry_run), "images": []}
    if dry_run:
        out.step(f"build plan for '{environment.name}' (engine {ws.engine.host}, cluster {ws.cluster.kind})")
        states = {s.name: s for s in ws.states}
        for p in ws.plan(force=force):
            bases = ", ".join(f"{ref} ({'present' if iid else 'missing: will be pulled'})"
                              for ref, iid in states[p.name].bases.items())
            out.line(f"{p.action:5} {p.name:12} {p.ref}  [{p.reason}]" + (f"  base: {bases}" if bases else ""))
            summary["images"].append({"name": p.name, "ref": p.ref, "action": p.action, "reason": p.reason})
    else:
        done = artifacts.build_images(ws, proj, environment, force=force, reporter=out,
                                      on_done=lambda b: out.ok(_build_line(b)))
        summary["images"] = [b.as_json() for b in done]
    summary["seconds"] = artifacts.elapsed(start)
    if json:
        out.emit_json(summary)


def _build_line(outcome) -> str:
    if outcome.action == "skip":
        return f"{outcome.name}: {outcome.reason} ({outcome.ref})"
    return f"{outcome.name}: built {outcome.ref} in {outcome.seconds:.1f}s"


@mtask(help={"env": ENV_HELP, "json": JSON_HELP})
def list_(ctx, env=None, json=False):
    """Show each image's current tag and whether it is built in the environment's engine."""
    out = reporter(json)
    proj = project(ctx)
    environment = proj.env(env)
    ws = artifacts.observe(proj, environment)
    rows = artifacts.image_rows(ws)
    if json:
        out.emit_json({"environment": environment.name, "engine": ws.engine.host,
                       "images": [r.as_json() for r in rows]})
        return
    out.table(["image", "tag", "built", "size", "created"], images.table_rows(rows),
              title=f"images for '{environment.name}' (engine {ws.engine.host})")


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
    ws = artifacts.observe(proj, environment)
    if ws.cluster.kind == "remote":
        artifacts.require_registry(environment, f"deploys to a remote cluster (context {ws.cluster.context or 'none'})")
    if artifacts.via_registry(ws, environment):  # the nodes pull from the registry
        return _push(out, proj, environment, ws, dry_run)
    artifacts.require_built(ws)
    steps = artifacts.delivery_steps(ws, artifacts.in_cluster(ws))
    nothing = (f"the {ws.cluster.kind} cluster reads the engine the images are built in: nothing to load"
               if ws.engine.cluster_reads_it or ws.cluster.kind == "docker-desktop"
               else f"the {ws.cluster.kind} cluster already has every image: nothing to load")
    if dry_run:
        out.step(f"delivery plan for '{environment.name}' ({ws.cluster.kind} {ws.cluster.name})")
        _print_steps(out, steps, nothing)
        return
    if not steps:
        out.ok(nothing)
        return
    artifacts.deliver_images(ws, steps, reporter=out)
    out.ok(f"{len({r for s in steps for r in s.refs})} image(s) delivered to {ws.cluster.kind} {ws.cluster.name}")


@mtask(help={"env": ENV_HELP, "dry_run": DRY_HELP})
def push(ctx, env=None, dry_run=False):
    """Push the built images to the environment's registry (skipping tags it already has)."""
    out = reporter()
    proj = project(ctx)
    environment = proj.env(env)
    artifacts.require_registry(environment, "is asked to push images")
    _push(out, proj, environment, artifacts.observe(proj, environment), dry_run)


def _push(out, proj, environment, ws, dry_run: bool) -> None:
    """Push what the registry lacks; a tag it holds with other content, bad credentials or no answer stop first."""
    artifacts.require_built(ws)
    secrets = config.load_secrets(proj, environment)
    steps = artifacts.registry_steps(ws, environment, artifacts.in_registry(ws, environment, secrets))
    if dry_run:
        out.step(f"push plan for '{environment.name}' (registry {environment.registry})")
        _print_steps(out, steps, "the registry already has every image: nothing to push")
        return
    if not steps:
        out.ok("the registry already has every image: nothing to push")
        return
    sent = artifacts.deliver_images(ws, steps, reporter=out, env=environment, secrets=secrets)
    out.ok(f"{len(steps)} image(s) pushed to {environment.registry} ({sum(sent.values())} bytes of layers it lacked)")


ns = Collection("images")
ns.add_task(build)
ns.add_task(list_, name="list")
ns.add_task(load)
ns.add_task(push)
