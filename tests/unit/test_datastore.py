"""Per-environment database and migration settings: parsed, validated in one line, and obeyed."""

import subprocess

import pytest

from moorage import database, pg
from moorage.core.config import load_project
from moorage.core.errors import EXIT_BAD_INPUT, ConfigError, UserError
from moorage.core.report import Reporter


def project_with(tmp_path, **dev):
    (tmp_path / "environments").mkdir(exist_ok=True)
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    return load_project({"release": "shop", "environments": {"dev": dev}}, tmp_path)


def test_the_defaults_are_the_release_postgresql_pod_and_alembic(tmp_path):
    env = project_with(tmp_path).env("dev")
    # no selector nor container: both are found in the release's manifest (test_db)
    assert env.database.kind == "pod" and env.database.selector is None and env.database.container is None
    assert env.migrations.kind == "alembic"
    # no workload either: the release's one running the image with the Alembic scripts (test_migration_target)
    assert env.migrations.workload_ref() is None


def test_a_pod_database_of_a_third_party_chart(tmp_path):
    project = project_with(tmp_path, database={
        "kind": "pod", "selector": "app.kubernetes.io/name=postgresql, app.kubernetes.io/component=primary",
        "container": "postgresql", "env": {"database": "POSTGRES_DATABASE"},
        "superuser": {"user": "postgres", "password_env": "POSTGRES_POSTGRES_PASSWORD"}})
    db = project.env("dev").database
    assert database.database_pod(project, project.env("dev"), cluster=None) == \
        ("app.kubernetes.io/name=postgresql,app.kubernetes.io/component=primary", "postgresql")
    assert (db.user_env, db.database_env, db.password_env) == ("POSTGRES_USER", "POSTGRES_DATABASE", "POSTGRES_PASSWORD")
    assert (db.superuser, db.superuser_password_env) == ("postgres", "POSTGRES_POSTGRES_PASSWORD")


def test_migrations_by_command_from_a_named_workload(tmp_path):
    env = project_with(tmp_path, migrations={"kind": "command", "workload": "StatefulSet/api",
                                             "command": ["migrate", "-path", "/migrations", "up"]}).env("dev")
    assert env.migrations.workload_ref() == ("statefulset", "api")
    assert env.migrations.command == ("migrate", "-path", "/migrations", "up")


@pytest.mark.parametrize("dev, named", [
    ({"database": {"kind": "mongo"}}, "moorage.environments.dev.database.kind"),
    ({"database": {"kind": "external"}}, "moorage.environments.dev.database.url_env"),
    ({"database": {"kind": "external", "url_env": "URL", "sslmode": "yes"}}, "moorage.environments.dev.database.sslmode"),
    ({"database": {"kind": "external", "url_env": "URL", "selector": "a=b"}}, "moorage.environments.dev.database.selector"),
    ({"database": {"selector": "not a selector!"}}, "moorage.environments.dev.database.selector"),
    ({"database": {"env": {"user": "$(id)"}}}, "moorage.environments.dev.database.env.user"),
    ({"database": {"superuser": {"password_env": "X"}}}, "moorage.environments.dev.database.superuser.user"),
    ({"migrations": {"kind": "flyway"}}, "moorage.environments.dev.migrations.kind"),
    ({"migrations": {"kind": "command", "workload": "deployment/api"}}, "moorage.environments.dev.migrations.command"),
    ({"migrations": {"kind": "command", "command": ["x"]}}, "moorage.environments.dev.migrations.workload"),
    ({"migrations": {"kind": "alembic", "workload": "pod/api"}}, "moorage.environments.dev.migrations.workload"),
    ({"migrations": {"kind": "none", "command": ["x"]}}, "moorage.environments.dev.migrations.command"),
])
def test_bad_settings_are_one_line_naming_the_key(tmp_path, dev, named):
    with pytest.raises(ConfigError) as err:
        project_with(tmp_path, **dev)
    assert named in err.value.line() and "invoke.yaml" in err.value.line()
    assert "\n" not in err.value.line() and err.value.exit_code == EXIT_BAD_INPUT


def test_an_external_database_url_comes_from_dotenv_with_its_sslmode(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("APP_DB_URL", raising=False)
    project = project_with(tmp_path, database={"kind": "external", "url_env": "APP_DB_URL", "sslmode": "require"})
    env = project.env("dev")
    with pytest.raises(ConfigError) as err:
        database.target_for(project, env, None)
    assert "APP_DB_URL" in err.value.line()
    (tmp_path / ".env").write_text("APP_DB_URL=postgresql://app:s3cret-pw@db.example:6543/app\n")
    target = database.target_for(project, env, None)
    assert isinstance(target, pg.LocalTarget)
    assert target.env()["PGSSLMODE"] == "require" and target.env()["PGPORT"] == "6543"
    assert "s3cret-pw" not in target.description and "s3cret-pw" in target.url.raw


def test_an_environment_without_a_database_refuses_db_and_backup_tasks(tmp_path):
    project = project_with(tmp_path, database={"kind": "none"})
    with pytest.raises(UserError) as err:
        database.target_for(project, project.env("dev"), None)
    assert "has no database" in err.value.line()
    assert database.backup_if_migrating(project, project.env("dev"), None, Reporter()) is None


def test_no_migrations_is_nothing_to_run(tmp_path, capsys):
    project = project_with(tmp_path, migrations={"kind": "none"})
    database.migrate(project, project.env("dev"), "head", Reporter())
    captured = capsys.readouterr()
    assert "nothing to run" in captured.out + captured.err
    with pytest.raises(UserError) as err:
        database.status(project, project.env("dev"), None)
    assert "db.status reads Alembic revisions" in err.value.line()


def run_wrapper(login: pg.PodLogin, environ: dict[str, str]) -> str:
    target = pg.PodTarget(None, "ns", "pod", login=login)
    argv = target.command(["sh", "-c", 'echo "$PGUSER|$PGDATABASE|${PGPASSWORD:-}"'])
    return subprocess.run(argv, env={"PATH": "/usr/bin:/bin", **environ}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_pod_login_reads_the_configured_variables_inside_the_container():
    bitnami = {"POSTGRES_USER": "chat", "POSTGRES_DATABASE": "chatdb", "POSTGRES_PASSWORD": "userpw",
               "POSTGRES_POSTGRES_PASSWORD": "adminpw"}
    assert run_wrapper(pg.PodLogin(database_env="POSTGRES_DATABASE"), bitnami) == "chat|chatdb|userpw"
    superuser = pg.PodLogin(database_env="POSTGRES_DATABASE", superuser="postgres",
                            superuser_password_env="POSTGRES_POSTGRES_PASSWORD")
    assert run_wrapper(superuser, bitnami) == "postgres|chatdb|adminpw"
    assert run_wrapper(pg.PodLogin(), {"POSTGRES_USER": "app"}) == "app|app|"


HISTORY = """INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
0003 -> 0004 (head), add an index
(0002a, 0002b) -> 0003 (mergepoint), merge the two branches
0001 -> 0002b, second branch
0001 -> 0002a, first branch
<base> -> 0001, create conversations
"""


def test_alembic_history_printed_in_an_image_gives_the_pending_revisions():
    from moorage import migrations

    found = migrations.parse_history(HISTORY.splitlines())
    assert [m.revision for m in found] == ["0004", "0003", "0002b", "0002a", "0001"]
    assert found[1].down == ("0002a", "0002b") and found[-1].down == () and found[0].message == "add an index"
    status = migrations.status_of(found, ["0002a"])
    assert status.heads == ("0004",) and [m.revision for m in status.pending] == ["0002b", "0003", "0004"]
    assert migrations.status_of(found, ["0004"]).up_to_date
    assert [m.revision for m in migrations.status_of(found, []).pending] == ["0001", "0002a", "0002b", "0003", "0004"]
    with pytest.raises(UserError):
        migrations.status_of(found, ["9999"])


def test_a_command_migration_may_name_its_status_command(tmp_path):
    env = project_with(tmp_path, migrations={"kind": "command", "workload": "deployment/api", "command": ["up"],
                                             "status_command": ["migrate", "version"]}).env("dev")
    assert env.migrations.status_command == ("migrate", "version")
