"""``backup.*``: create, list, fetch, verify, prune, restore and drill database backups."""

from __future__ import annotations

from invoke import Collection

from ..core.errors import OperationFailed
from ._boundary import confirm, lazy, mtask, plain, project, reporter

bk = lazy("moorage.backup")
database = lazy("moorage.database")
drills = lazy("moorage.backup.drill")

# The retention defaults live in moorage.backup.RetentionPolicy, which is not imported here (that
# would load the whole backup package on `inv --list`): the config keys are declared unset.
RETENTION_KEYS = ("keep_last", "keep_daily", "keep_weekly")
DEFAULT_NOTE = "else the built-in policy, which --dry-run shows"

TARGET_HELP = {
    "env": "environment (default: MOORAGE_ENV, then dev); backups live in <backups_dir>/<env>/",
    "database_url": "connect directly to this PostgreSQL URL (else DATABASE_URL, else the env's PostgreSQL pod)",
}


@mtask(auto_shortflags=False, help={**TARGET_HELP,
             "name": "label added to the file name after the timestamp (lowercase, digits, . _ -)",
             "release_revision": "release/chart revision to record in the metadata",
             "dry_run": "name the database and the folder the backup would go to; write nothing",
             "json": "print a JSON summary on stdout"})
def create(ctx, env=None, database_url=None, name=None, release_revision=None, dry_run=False, json=False):
    """Dump the database (pg_dump custom format) into a checked, checksummed backup file."""
    proj = project(ctx)
    out = reporter(json)
    taken = database.take_backup(proj, proj.env(env), database_url, out, label=name,
                                 release_revision=release_revision, dry_run=dry_run)
    if taken is None:
        return
    meta = taken.meta
    out.ok(f"{taken.path} ({meta['size']} bytes, sha256 {meta['sha256'][:12]}..., {meta['seconds']}s)")
    if json:
        out.emit_json(taken.row())


@mtask(name="list", auto_shortflags=False, help={
    "env": TARGET_HELP["env"],
    "json": "print the backups as JSON on stdout",
    "local": "only the backups on this machine (do not read the backup CronJob's volume in the cluster)",
})
def list_(ctx, env=None, json=False, local=False):
    """Show the environment's backups, newest first: local ones and the backup CronJob's, with their last drill."""
    from ..core.report import human_bytes

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter(json)
    directory = bk.backup_dir(proj.backups_dir, environment.name)
    backups, remote_partials = database.all_backups(proj, environment, local_only=local, warn=out.warn)
    partials = bk.partial_files(directory)
    if json:
        out.emit_json({"directory": str(directory),
                       "backups": [{**b.row(), "location": where, "last_drill": (b.meta or {}).get("last_drill")}
                                   for b, where in backups],
                       "partial_files": [str(p) for p in partials], "in_cluster_partial_files": remote_partials})
        return
    rows = [[b.name, b.created.isoformat() if b.created else "?",
             human_bytes(b.meta["size"]) if b.meta and isinstance(b.meta.get("size"), int) else "?",
             b.kind_label, (b.meta or {}).get("database", "?"),
             ",".join((b.meta or {}).get("alembic_heads") or []) or "-", where, drills.drill_summary(b.meta),
             "ok" if b.valid else f"INVALID: {b.problem}"] for b, where in backups]
    if not rows:
        out.line(f"no backups in {directory}")
    else:
        out.table(["name", "created", "size", "kind", "database", "alembic", "location", "last drill", "status"],
                  rows, title=str(directory))
    if partials:
        out.warn(f"{len(partials)} unfinished .partial file(s) from interrupted or running backups "
                 "(not backups; removed by the next backup.create or backup.prune)")
    if remote_partials:
        out.warn(f"{len(remote_partials)} unfinished file(s) in the backup CronJob's volume (a run in progress, "
                 "or one that was killed; the next run removes them)")


@mtask(positional=["name"], auto_shortflags=False, help={
    "name": "name of a backup the in-cluster CronJob made (as in backup.list), or 'latest'",
    "env": TARGET_HELP["env"],
})
def fetch(ctx, name, env=None):
    """Copy a backup the in-cluster CronJob made into the local backups folder (size and sha256 checked)."""
    proj = project(ctx)
    out = reporter()
    with out.progress("fetching", unit="bytes") as bar:
        found = database.resolve_backup(proj, proj.env(env), name, say=out.line, progress=bar.update,
                                        remote_only=True)
    out.ok(f"{found.path} ({found.meta['size']} bytes, sha256 {found.meta['sha256'][:12]}... as recorded in the "
           "cluster)")


@mtask(positional=["name"], auto_shortflags=False, help={
    "name": "backup name (as in backup.list) or 'latest'",
    "env": TARGET_HELP["env"],
    "quick": "read only the archive's table of contents (pg_restore --list), not every data block",
})
def verify(ctx, name, env=None, quick=False):
    """Check a backup's checksum and size and read every data block back; exit 1 with the reason if damaged."""
    proj = project(ctx)
    found = database.resolve_backup(proj, proj.env(env), name, say=reporter().line)  # in-cluster ones are fetched
    result = bk.verify_backup(found, quick=quick)
    reporter().ok(f"{found.name}: sha256 and size match, "
                  + (f"table of contents readable ({result['tables']} tables; data not read: --quick)" if quick
                     else f"every data block reads back ({result['tables']} tables)"))


@mtask(auto_shortflags=False, help={
    "env": TARGET_HELP["env"],
    "keep_last": f"keep this many newest backups (default: config backup.keep_last, {DEFAULT_NOTE})",
    "keep_daily": f"keep the newest backup of each of the last N days (default: config backup.keep_daily, {DEFAULT_NOTE})",
    "keep_weekly": f"keep the newest backup of each of the last N weeks (default: config backup.keep_weekly, {DEFAULT_NOTE})",
    "dry_run": "show what would be deleted and delete nothing",
    "yes": "do not ask (required for a production environment without a terminal)",
})
def prune(ctx, env=None, keep_last=None, keep_daily=None, keep_weekly=None, dry_run=False, yes=False):
    """Delete backups outside the retention policy (keep N newest, daily and weekly ones)."""
    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()
    policy = bk.RetentionPolicy.choose(ctx.config.get("backup", {}) or {}, keep_last=keep_last,
                                       keep_daily=keep_daily, keep_weekly=keep_weekly)
    directory = bk.backup_dir(proj.backups_dir, environment.name)
    decisions, skipped, partials = bk.prune(directory, policy, dry_run=True)
    goes = [d for d in decisions if not d.keep]
    out.table(["name", "action", "why"],
              [[d.name, "keep" if d.keep else "delete", "; ".join(d.reasons)] for d in decisions]
              + [[b.name, "skip", f"invalid ({b.problem}); check and delete by hand"] for b in skipped]
              + [[p.name, "delete", "unfinished partial file"] for p in partials],
              title=f"retention {policy.keep_last} newest, {policy.keep_daily} daily, {policy.keep_weekly} weekly")
    if dry_run:
        out.line(f"dry run: {len(goes)} backup(s) and {len(partials)} partial file(s) would be deleted")
        return
    if not goes and not partials:
        out.ok("nothing to prune")
        return
    if environment.production:
        confirm(f"delete {len(goes)} backup(s) of production environment '{environment.name}'?", yes=yes)
    bk.prune(directory, policy)
    out.ok(f"deleted {len(goes)} backup(s) and {len(partials)} partial file(s); kept {len(decisions) - len(goes)}")


@mtask(positional=["name"], auto_shortflags=False, help={
    "name": "backup name (as in backup.list) or 'latest' (the newest ordinary one; safety backups by name only)",
    **TARGET_HELP,
    "yes": "do not ask for confirmation (required without a terminal)",
    "force_env": "restore a backup taken from another environment",
    "jobs": "parallel pg_restore jobs (direct connections only; default 1)",
    "drop_old": "drop the replaced database after the swap instead of keeping it as <db>_pre_restore_<ts>",
    "dry_run": "verify the backup and print the plan; change nothing",
})
def restore(ctx, name, env=None, database_url=None, yes=False, force_env=False, jobs=1, drop_old=False,
            dry_run=False):
    """Restore a verified backup into a new database and swap it in; the original stays intact on failure."""
    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()

    def approve(plan) -> None:
        out.step(f"restore plan for {plan.target}")
        for i, step in enumerate(plan.steps, 1):
            out.line(f"  {i}. {step}")
        if dry_run:
            raise _DryRun
        confirm(f"replace database '{plan.database}' ({environment.name}) with backup {plan.backup.name}?",
                yes=yes)

    try:  # Ctrl-C ends as Interrupted (130) saying what state the database is in
        result = database.restore(proj, environment, name, database_url, confirm=approve, force_env=force_env,
                                  jobs=int(jobs), keep_old=not drop_old, say=out.line)
    except _DryRun:
        out.line("dry run: backup verified; nothing was changed")
        return
    out.ok(f"restored {result['backup']} into {result['database']}"
           + (f"; the previous database is kept as {result['old_database']}" if result.get("old_database") else ""))


class _DryRun(Exception):
    pass


@mtask(positional=["name"], auto_shortflags=False, help={
    "name": "backup name (as in backup.list) or 'latest'",
    "env": TARGET_HELP["env"],
    "database_url": "the server to drill on, by URL (else DATABASE_URL, else the env's PostgreSQL pod); "
                    "the drill's database is created beside the URL's database",
    "jobs": "parallel pg_restore jobs (direct connections only; default 1)",
    "json": "print the drill's result as JSON on stdout",
})
def drill(ctx, name, env=None, database_url=None, jobs=1, json=False):
    """Restore a backup into a throwaway database, check its invariants, drop it; exit 1 naming each failed check."""
    proj = project(ctx)
    out = reporter(json)
    checks = drills.drill_checks(plain((ctx.config.get("backup") or {}).get("drill_checks")))
    try:
        result = database.drill(proj, proj.env(env), name, database_url, checks=checks, jobs=int(jobs), say=out.line)
    except KeyboardInterrupt:
        raise OperationFailed("drill interrupted: its throwaway database was dropped; nothing else was changed",
                              exit_code=130) from None
    out.table(["check", "result", "detail"], [[c.name, "ok" if c.ok else "FAILED", c.detail] for c in result.checks],
              title=f"drill of {result.backup} in {result.database}")
    if json:
        out.emit_json({"backup": result.backup, **result.record()})
    if not result.ok:
        raise OperationFailed(f"drill of {result.backup} failed: "
                              + "; ".join(f"check '{c.name}': {c.detail}" for c in result.failed),
                              "the result is recorded in the backup's metadata (inv backup.list); use another "
                              "backup, or fix the check if the check is wrong")
    out.ok(f"drill of {result.backup} passed: restored in {result.restore_seconds:.1f}s, {len(result.checks)} checks, "
           f"{result.database} dropped")


ns = Collection("backup", create, list_, fetch, verify, prune, restore, drill)
# drill_checks: [{name, sql}], each run in the restored database by backup.drill; it must return one row, true.
ns.configure({"backup": {**dict.fromkeys(RETENTION_KEYS), "drill_checks": None}})
