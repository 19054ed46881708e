"""``dev.*``: the local loop — deploy, status, logs, port-forward, rollback, undeploy."""

from __future__ import annotations

from invoke import Collection

from ._boundary import confirm, mtask, project, reporter

ENV_HELP = "environment (default: MOORAGE_ENV, then config, then dev)"


@mtask(help={
    "env": ENV_HELP,
    "dry_run": "print the plan (images, delivery, helm command and values files) and change nothing",
    "force": "rebuild every image and upgrade even if nothing changed",
    "no_rollback": "leave a failed upgrade in place instead of rolling back",
    "smoke": "run the smoke tests even when nothing changed",
    "json": "print the summary as JSON on stdout (progress goes to stderr)",
    "junit": "also write the result as JUnit XML to this file (a test case per phase and smoke check)",
})
def deploy(ctx, env=None, dry_run=False, force=False, no_rollback=False, smoke=False, json=False, junit=None):
    """Build changed images, load them into the cluster, helm upgrade, wait for readiness, smoke test."""
    from .. import deploy as pipeline

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter(json)
    options = pipeline.Options(dry_run=dry_run, force=force, no_rollback=no_rollback, smoke=True if smoke else None)
    pipeline.run_and_report(proj, environment, options, out, json, junit=junit)


@mtask(help={"env": ENV_HELP, "json": "print the status as JSON"})
def status(ctx, env=None, json=False):
    """Show the release, its revision history, the images it runs and the state of each workload."""
    from .. import release

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter(json)
    report = release.collect_status(proj, environment)
    if json:
        out.emit_json(report.as_dict())
    else:
        release.show_status(report, out)


@mtask(help={
    "env": ENV_HELP,
    "component": "the workload whose pods to show: its name, the end of its name after a '-', or its pods' "
                 "app.kubernetes.io/component, app or component label (default: every workload of the release)",
    "follow": "keep streaming new lines (Ctrl-C to stop)",
    "tail": "lines of history to show first",
    "previous": "the previous (crashed) container instance",
})
def logs(ctx, env=None, component=None, follow=False, tail=100, previous=False):
    """Show (or follow) the logs of a component's pods, or of every workload's of the release.

    --component NAME picks the release's workloads (from its manifest) named NAME
    or ending in -NAME, or whose pod template has the label
    app.kubernetes.io/component=NAME, app=NAME or component=NAME; their pods are
    found by owner references and the workloads' own selectors, so any chart's
    labels work. When none matches, the error lists the known components.
    """
    from .. import release

    proj = project(ctx)
    environment = proj.env(env)
    try:
        release.show_logs(proj, environment, component, tail=int(tail), follow=follow, previous=previous,
                          write=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        pass


@mtask(name="port-forward", help={
    "env": ENV_HELP,
    "service": "component whose Service to forward (the Service <release>-<service>; default: every Service "
               "of the release, each port of each)",
    "port": "Service port (with --service; default: the first port of the Service)",
    "local_port": "local port to listen on (with --service; default: the Service's port, or a free one if taken)",
})
def port_forward(ctx, env=None, service=None, port=None, local_port=None):
    """Forward local ports to the release's Services (or one of them) until Ctrl-C (no kubectl needed)."""
    import threading

    from .. import release

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()
    try:
        with release.forward_services(proj, environment, service, int(port) if port else None,
                                      int(local_port) if local_port else None, out):
            out.line("(Ctrl-C to stop)")
            threading.Event().wait()
    except KeyboardInterrupt:
        out.line("port-forward stopped")


@mtask(help={
    "env": ENV_HELP,
    "revision": "revision to return to (default: the one before the current)",
    "restore": "first restore this backup (e.g. the pre-upgrade one a held deploy names), then roll back",
    "dry_run": "print the rollback command and change nothing",
    "yes": "do not ask for confirmation (needed without a terminal on a non-dev environment or with --restore)",
})
def rollback(ctx, env=None, revision=None, restore=None, dry_run=False, yes=False):
    """Roll the release back to an earlier revision and wait until it is ready."""
    from .. import database, release

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()
    target = release.rollback_target(proj, environment, int(revision) if revision else None)
    out.line(f"roll back {proj.release} in {environment.namespace} from revision {target.current} "
             f"to revision {target.revision}" + (f", restoring backup {restore} first" if restore else ""))
    if dry_run:
        out.line("dry run: " + " ".join(target.command))
        return
    if environment.name != "dev" or restore:
        confirm(f"roll back {proj.release} in {environment.namespace} to revision {target.revision}"
                + (f" and replace its database with backup {restore}" if restore else "") + "?", yes=yes)
    if restore:
        # The schema goes back first, so the previous code never runs on the newer one.
        result = database.restore(proj, environment, restore, None, confirm=lambda _plan: None, say=out.line)
        out.ok(f"restored {result['backup']} into {result['database']}")
    release.rollback(proj, environment, target, out)


@mtask(help={
    "env": ENV_HELP,
    "purge": "also delete the release's PersistentVolumeClaims (DATA IS LOST)",
    "dry_run": "print what would be removed and change nothing",
    "yes": "do not ask for confirmation (needed without a terminal for --purge or a non-dev environment)",
})
def undeploy(ctx, env=None, purge=False, dry_run=False, yes=False):
    """Uninstall the release; data volumes are kept unless --purge."""
    from .. import release

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()
    plan = release.undeploy_plan(proj, environment, purge=purge)
    for line in plan.lines():
        out.line(line)
    if dry_run:
        return
    if purge or environment.name != "dev":
        confirm(f"uninstall {proj.release} from {environment.namespace}"
                + (" and DELETE its volumes" if purge else "") + "?", yes=yes)
    release.undeploy(proj, environment, plan, out)


@mtask(help={"env": ENV_HELP})
def watch(ctx, env=None):
    """Deploy if out of date, then sync, rebuild or upgrade on every save until Ctrl-C (one line per cycle)."""
    from .. import watch as inner_loop

    proj = project(ctx)
    inner_loop.run(proj, proj.env(env), reporter())


ns = Collection("dev", deploy, status, logs, port_forward, rollback, undeploy, watch)
