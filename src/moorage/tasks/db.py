"""``db.*``: Alembic migrations (in-cluster Job or direct), status, history, guarded downgrade, psql."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection

from ..core.errors import UserError
from ._boundary import confirm, lazy, mtask, project, reporter

db = lazy("moorage.db")

ENV_HELP = "environment (default: MOORAGE_ENV, then dev)"
URL_HELP = "connect directly to this PostgreSQL URL (else DATABASE_URL, else the env's PostgreSQL pod)"
INI_HELP = "the backend's alembic.ini (default: invoke config db.alembic_ini, else app/backend/alembic.ini)"


def _ini(ctx, proj, alembic_ini: str | None) -> Path:
    path = Path(alembic_ini or (ctx.config.get("db", {}) or {}).get("alembic_ini") or db.DEFAULT_ALEMBIC_INI)
    return path if path.is_absolute() else proj.root / path


def _direct_url(database_url: str | None, what: str) -> db.DatabaseUrl:
    url = db.database_url_from(database_url)
    if url is None:
        raise UserError(f"{what} needs a database URL", "pass --database-url or set DATABASE_URL")
    return url


def _in_cluster_plan(proj, environment, args: list[str], ctx) -> dict:
    conf = ctx.config.get("db", {}) or {}
    deployment = conf.get("backend_deployment") or f"{proj.release}-backend"
    command = [*(conf.get("job_command") or ["alembic"]), *args]
    return {"namespace": environment.namespace, "deployment": deployment, "command": command}


def _run_in_cluster(proj, environment, args: list[str], ctx, out, dry_run: bool) -> None:
    plan = _in_cluster_plan(proj, environment, args, ctx)
    out.step(f"in-cluster: a Job from deployment {plan['namespace']}/{plan['deployment']} (its image, env and "
             f"secrets) runs: {' '.join(plan['command'])}")
    if dry_run:
        out.line("dry run: nothing was created")
        return
    from .. import connection, migrate

    cluster = connection.connect(proj, environment, allow_production=True, read_release=False)
    migrate.run_job(cluster.api, proj, environment, plan["deployment"], plan["command"], out)


@mtask(auto_shortflags=False, help={
    "env": ENV_HELP,
    "revision": "target revision (default: head)",
    "local": "run Alembic here against --database-url / DATABASE_URL instead of an in-cluster Job",
    "database_url": "PostgreSQL URL for --local (implies --local)",
    "alembic_ini": INI_HELP,
    "dry_run": "print the plan and change nothing",
})
def migrate(ctx, env=None, revision="head", local=False, database_url=None, alembic_ini=None, dry_run=False):
    """Upgrade the database to the newest (or given) Alembic revision."""
    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()
    if not (local or database_url):
        _run_in_cluster(proj, environment, ["upgrade", revision], ctx, out, dry_run)
        return
    url = _direct_url(database_url, "db.migrate --local")
    ini = _ini(ctx, proj, alembic_ini)
    out.step(f"alembic upgrade {revision} on {url.masked}")
    if dry_run:
        current = db.database_info(db.LocalTarget(url))["alembic_heads"]
        status = db.migration_status(ini, current)
        for rev in status.pending:
            out.line(f"  would apply {rev.revision}  {rev.message}")
        out.line(f"dry run: {len(status.pending)} revision(s) pending; nothing was changed")
        return
    db.alembic_command(ini, url, "upgrade", revision, on_line=out.line)
    out.ok(f"database at {revision} ({environment.name})")


def _status(ctx, env, database_url, alembic_ini):
    proj = project(ctx)
    environment = proj.env(env)
    target = db.target_for(proj, environment, database_url)
    current = db.database_info(target)["alembic_heads"]
    return target, db.migration_status(_ini(ctx, proj, alembic_ini), current)


@mtask(auto_shortflags=False, help={"env": ENV_HELP, "database_url": URL_HELP, "alembic_ini": INI_HELP, "json": "print JSON on stdout"})
def status(ctx, env=None, database_url=None, alembic_ini=None, json=False):
    """Show the database's Alembic revision, the scripts' head and the pending revisions."""
    out = reporter(json)
    target, st = _status(ctx, env, database_url, alembic_ini)
    if json:
        out.emit_json({"database": target.description, **st.as_dict()})
        return
    out.line(f"database: {target.description}")
    out.line(f"current:  {', '.join(st.current) or '(empty: no alembic_version)'}")
    out.line(f"head:     {', '.join(st.heads)}")
    if st.up_to_date:
        out.ok("up to date")
        return
    out.line(f"pending:  {len(st.pending)}")
    for rev in st.pending:
        out.line(f"  {rev.revision}  {rev.message}")


@mtask(auto_shortflags=False, help={"alembic_ini": INI_HELP, "database_url": "also mark the revision this database is at",
             "json": "print JSON on stdout"})
def history(ctx, alembic_ini=None, database_url=None, json=False):
    """List the migration scripts, newest first."""
    proj = project(ctx)
    out = reporter(json)
    revs = db.revisions(_ini(ctx, proj, alembic_ini))
    current: list[str] = []
    url = db.database_url_from(database_url)
    if url is not None:
        current = db.database_info(db.LocalTarget(url))["alembic_heads"]
    if json:
        out.emit_json([{"revision": r.revision, "down": list(r.down), "message": r.message,
                        "current": r.revision in current} for r in revs])
        return
    out.table(["revision", "down", "message", ""],
              [[r.revision, ",".join(r.down) or "<base>", r.message, "current" if r.revision in current else ""]
               for r in revs])


@mtask(auto_shortflags=False, help={
    "revision": "revision to go down to (an id, 'base', or -1)",
    "env": ENV_HELP,
    "database_url": "PostgreSQL URL (else DATABASE_URL)",
    "alembic_ini": INI_HELP,
    "yes": "do not ask (required for a production environment without a terminal)",
    "dry_run": "print the plan and change nothing",
})
def downgrade(ctx, revision, env=None, database_url=None, alembic_ini=None, yes=False, dry_run=False):
    """Downgrade the database to an older revision, after a verified backup (guarded)."""
    from .. import backup as bk

    proj = project(ctx)
    environment = proj.env(env)
    out = reporter()
    if not revision:
        raise UserError("--revision is required", "pass --revision REV (an id, 'base' or -1)")
    url = db.database_url_from(database_url)
    if url is None:
        _run_in_cluster(proj, environment, ["downgrade", revision], ctx, out, dry_run)
        return
    ini = _ini(ctx, proj, alembic_ini)
    target = db.LocalTarget(url)
    out.step(f"plan: verified backup of {url.masked}, then alembic downgrade {revision}")
    if dry_run:
        out.line("dry run: nothing was changed")
        return
    if environment.production or environment.name != "dev":
        confirm(f"downgrade the database of '{environment.name}' to {revision}?", yes=yes)
    with out.progress("backup before downgrade", unit="bytes") as bar:
        taken = bk.create_backup(target, bk.backup_dir(proj.backups_dir, environment.name),
                                 environment=environment.name, label="pre-downgrade", progress=bar.update)
    bk.verify_backup(taken)
    out.ok(f"backup {taken.name} verified")
    db.alembic_command(ini, url, "downgrade", revision, on_line=out.line)
    out.ok(f"database downgraded to {revision}; restore with: inv backup.restore {taken.name}")


@mtask(auto_shortflags=False, help={"env": ENV_HELP, "database_url": URL_HELP})
def shell(ctx, env=None, database_url=None):
    """Open psql on the database (the password goes through the environment, never the command line)."""
    proj = project(ctx)
    environment = proj.env(env)
    url = db.database_url_from(database_url)
    if url is None:
        raise UserError(f"an interactive shell in the {environment.name} PostgreSQL pod needs a terminal exec",
                        f"run: kubectl -n {environment.namespace} exec -it <postgresql pod> -c postgresql -- psql "
                        "-U \"$POSTGRES_USER\", or pass --database-url")
    code = db.LocalTarget(url).shell()
    if code:
        from invoke import Exit

        raise Exit(code=code)


ns = Collection("db", migrate, status, history, downgrade, shell)
ns.configure({"db": {"alembic_ini": None, "backend_deployment": None, "job_command": None}})
