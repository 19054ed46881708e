"""``db.*``: migrations (Alembic in a Job or here, any command in a Job, or none: per environment, its
``migrations:`` setting), status, history, guarded downgrade, psql."""

from __future__ import annotations

from invoke import Collection, Exit

from ._boundary import confirm, lazy, mtask, project, reporter

database = lazy("moorage.database")

ENV_HELP = "environment (default: MOORAGE_ENV, then dev)"
URL_HELP = "connect directly to this PostgreSQL URL (else DATABASE_URL, else the env's PostgreSQL pod)"
INI_HELP = ("the app's alembic.ini (default: migrations.alembic_ini, then invoke config db.alembic_ini, "
            "else the project's one alembic.ini)")


def _settings(ctx):
    return database.DbSettings.from_config(ctx.config.get("db", {}))


@mtask(auto_shortflags=False, help={
    "env": ENV_HELP,
    "revision": "target revision (default: head)",
    "local": "run Alembic here against --database-url / DATABASE_URL instead of an in-cluster Job",
    "database_url": "PostgreSQL URL for --local (implies --local)",
    "alembic_ini": INI_HELP,
    "yes": "do not ask (required outside dev without a terminal)",
    "dry_run": "print the plan and change nothing",
})
def migrate(ctx, env=None, revision="head", local=False, database_url=None, alembic_ini=None, yes=False,
            dry_run=False):
    """Run the environment's migrations: Alembic to the newest (or given) revision, or its command (asks first
    outside dev)."""
    proj = project(ctx)
    database.migrate(proj, proj.env(env), revision, reporter(), local=local, database_url=database_url,
                     alembic_ini=alembic_ini, settings=_settings(ctx), dry_run=dry_run,
                     confirm=lambda question: confirm(question, yes=yes))


@mtask(auto_shortflags=False, help={"env": ENV_HELP, "database_url": URL_HELP, "alembic_ini": INI_HELP, "json": "print JSON on stdout"})
def status(ctx, env=None, database_url=None, alembic_ini=None, json=False):
    """Show the database's Alembic revision, the scripts' head and the pending revisions (or, for migrations
    by a command, the output of its ``status_command``)."""
    out = reporter(json)
    proj = project(ctx)
    environment = proj.env(env)
    if environment.migrations.kind == "command" and environment.migrations.status_command:
        lines = database.tool_status(proj, environment, _settings(ctx), out)
        if json:
            out.emit_json({"tool": list(environment.migrations.status_command), "output": lines})
        return
    target, st = database.status(proj, environment, database_url, alembic_ini, _settings(ctx), out)
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


@mtask(auto_shortflags=False, help={"env": ENV_HELP, "alembic_ini": INI_HELP,
                                    "database_url": "also mark the revision this database is at",
                                    "json": "print JSON on stdout"})
def history(ctx, env=None, alembic_ini=None, database_url=None, json=False):
    """List the migration scripts, newest first."""
    out = reporter(json)
    proj = project(ctx)
    revs, current = database.history(proj, proj.env(env), database_url, alembic_ini, _settings(ctx), out)
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
    "database_url": "PostgreSQL URL (else DATABASE_URL, else the env's PostgreSQL pod and an in-cluster Job)",
    "alembic_ini": INI_HELP,
    "yes": "do not ask (required outside dev without a terminal)",
    "dry_run": "print the plan and change nothing",
})
def downgrade(ctx, revision, env=None, database_url=None, alembic_ini=None, yes=False, dry_run=False):
    """Downgrade the database to an older revision, after a verified backup (guarded)."""
    proj = project(ctx)
    database.downgrade(proj, proj.env(env), revision, reporter(), confirm=lambda question: confirm(question, yes=yes),
                       database_url=database_url, alembic_ini=alembic_ini, settings=_settings(ctx), dry_run=dry_run)


@mtask(auto_shortflags=False, help={"env": ENV_HELP, "database_url": URL_HELP})
def shell(ctx, env=None, database_url=None):
    """Open psql on the database (the password goes through the environment, never the command line)."""
    code = database.shell(project(ctx).env(env), database_url)
    if code:
        raise Exit(code=code)


ns = Collection("db", migrate, status, history, downgrade, shell)
ns.configure({"db": {"alembic_ini": None, "backend_deployment": None, "job_command": None, "alembic_timeout": None}})
