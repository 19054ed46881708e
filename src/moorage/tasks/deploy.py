"""``deploy``: staging and production from CI — push, upgrade with rollback, wait, smoke."""

from __future__ import annotations

import os

from ._boundary import confirm, mtask, project, reporter


@mtask(help={
    "env": "environment to deploy (staging, prod...; required)",
    "yes": "confirm a production deploy (CI=true also counts: there is nobody to ask)",
    "dry_run": "print the plan and change nothing",
    "no_rollback": "leave a failed upgrade in place instead of rolling back",
    "json": "print the summary as JSON on stdout",
    "junit": "also write the result as JUnit XML to this file (a test case per phase and smoke check)",
})
def deploy(ctx, env, yes=False, dry_run=False, no_rollback=False, json=False, junit=None):
    """Deploy to a shared environment from CI: push images, upgrade, wait, smoke, roll back on failure."""
    from .. import deploy as pipeline

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter(json)
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if environment.production and not dry_run and not in_ci:
        confirm(f"deploy to production environment '{environment.name}' ({environment.namespace})?", yes=yes)
    options = pipeline.Options(dry_run=dry_run, no_rollback=no_rollback, smoke=True, allow_production=True,
                               backup_before_migrations=True,
                               alembic_ini=(ctx.config.get("db", {}) or {}).get("alembic_ini"))
    pipeline.run_and_report(proj, environment, options, out, json, junit=junit)
