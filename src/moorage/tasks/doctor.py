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
    checks = checks_mod.run_checks(proj, environment, skip_cluster=skip_cluster)
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
