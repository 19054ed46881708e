"""``inv doctor``: is this machine ready to deploy, and is the cluster the right one?"""

from __future__ import annotations

from ._boundary import lazy, mtask, project, reporter

checks_mod = lazy("moorage.doctor")


@mtask(help={
    "env": "environment to check (default: MOORAGE_ENV, then config, then dev)",
    "json": "print the checks as JSON",
    "skip_cluster": "do not contact the cluster (tools only)",
})
def doctor(ctx, env=None, json=False, skip_cluster=False):
    """Check tools, versions, Docker, the cluster and context safety, with a fix for each failure."""
    from invoke import Exit

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter(json)
    checks = [checks_mod.check_python(), checks_mod.check_docker(), checks_mod.check_helm()]
    context = None
    if not skip_cluster:
        from .. import kube

        def reachable(name):
            return f"Kubernetes {kube.ping(kube.client(name))} reachable"

        cluster_checks = checks_mod.check_context(proj, environment, kube.current_context, reachable)
        checks += cluster_checks
        try:
            context = environment.context or kube.current_context()
        except Exception:  # noqa: BLE001 - already reported as a failed check
            context = None
    for tool in checks_mod.needed_tools(environment, context):
        checks.append(checks_mod.check_tool(tool, checks_mod.TOOL_VERSION_ARGS.get(tool, ["version"])))
    failed = [c for c in checks if not c.ok]
    if json:
        out.emit_json({"environment": environment.name, "ok": not failed,
                       "checks": [c.as_dict() for c in checks]})
    else:
        out.table(["check", "ok", "detail", "fix"],
                  [[c.name, "yes" if c.ok else "NO", c.detail, c.hint] for c in checks],
                  title=f"moorage doctor (environment {environment.name})")
        out.line(f"{len(failed)} problem(s) found" if failed else "all checks passed")
    if failed:
        raise Exit(code=1)
