"""Any team's stack by configuration alone: four test stacks, each in the style of one seed system
(tests/e2e/stacks/README.md), driven end to end on the real local cluster through `inv` and nothing but
their invoke.yaml: first deploy (ready, smoke), a no-op re-deploy, status, logs, backup and restore,
migrations, a broken upgrade that fails fast with its reason, and an undeploy that keeps the data.

Each stack is a project of its own (copied to a temporary folder, with a `.env` of fresh random
secrets) in a namespace of its own. The tests run in order per stack, as a user's day would, stack
after stack (the module-scoped ``stack`` fixture groups them), and every stack is purged and its
namespaces deleted before the next one starts. Built images are shared across runs through the
engine's cache (the stacks' dependency layers are identical). First-deploy and no-op times go to
the pytest cache (``moorage/stack-timings``); they are never asserted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.tools import missing, require_docker

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = Path(__file__).resolve().parent / "stacks"
INV = str(Path(sys.executable).with_name("inv"))
CA_BUNDLE = Path(os.environ.get("MOORAGE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
MARKER = "kept by the backup"


@dataclass
class Database:
    """Where the test itself reads the stack's database: a pod (by label), its container, and the shell
    expressions of the user and database inside it."""

    namespace: str
    selector: str
    container: str
    user: str = '"$POSTGRES_USER"'
    dbname: str = '"$POSTGRES_DB"'
    table: str = ""  # an application table the backup test writes the MARKER row into
    column: str = ""  # ... in this text column


@dataclass
class Stack:
    name: str
    folder: str
    env: str
    namespace: str
    workloads: set[str]
    log_component: str  # dev.logs --component
    log_line: str  # a line the component's app printed at start
    database: Database
    pvcs: tuple[str, ...]  # PersistentVolumeClaims the chart makes, kept by dev.undeploy
    secrets: dict[str, str]
    broken: Callable[[Path], Callable[[], None]]  # breaks the project, returns how to mend it
    broken_reasons: tuple[str, ...]  # what the failed deploy must say, besides the rollback
    migrate: Callable[[Project], None]  # db.migrate and what it did
    ci_change: Callable[[Path], Callable[[], None]]  # a harmless values change, for `deploy --env`
    extra_namespaces: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


class Project:
    def __init__(self, stack: Stack, root: Path, cluster):
        self.stack, self.root, self.cluster = stack, root, cluster

    def inv(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": self.cluster.kubeconfig,
               "CONTAINERD_ADDRESS": self.cluster.containerd_address,
               "MOORAGE_PYTHON_IMAGE": os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim")}
        if CA_BUNDLE.is_file():  # pip inside the builds, behind the machine's TLS-inspecting proxy
            env.setdefault("MOORAGE_CA_BUNDLE", str(CA_BUNDLE))
        for key in ("MOORAGE_ENV", "DATABASE_URL", *self.stack.secrets):
            env.pop(key, None)
        result = subprocess.run([INV, *args], cwd=self.root, capture_output=True, text=True, env=env,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        leaked = [key for key, value in self.stack.secrets.items()
                  if len(value) >= 8 and value in result.stdout + result.stderr]
        assert not leaked, f"inv {' '.join(args)} printed the secret(s) {leaked}"
        return result

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        result = self.inv(*args, **kw)
        assert result.returncode == 0, f"inv {' '.join(args)} exited {result.returncode}:\n" \
                                       f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.cluster.kubectl(*args, **kw)

    def psql(self, sql: str) -> str:
        """Run ``sql`` in the stack's database through the database pod's own psql (stdin: no quoting)."""
        db = self.stack.database
        pod = self.kubectl("-n", db.namespace, "get", "pods", "-l", db.selector, "--field-selector",
                           "status.phase=Running", "-o", "jsonpath={.items[0].metadata.name}").stdout.strip()
        assert pod, f"no running database pod ({db.selector}) in {db.namespace}"
        result = subprocess.run(
            ["kubectl", "--kubeconfig", self.cluster.kubeconfig, "--context", self.cluster.context, "-n",
             db.namespace, "exec", "-i", pod, "-c", db.container, "--", "sh", "-c",
             f"psql -X -q -tA -v ON_ERROR_STOP=1 -U {db.user} -d {db.dbname}"],
            input=sql, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"psql in {pod}: {result.stderr}"
        return result.stdout.strip()


def random_secret() -> str:
    return secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


def edit(path: Path, change: Callable[[str], str]) -> Callable[[], None]:
    """Change a project file; returns how to put it back."""
    good = path.read_text()
    changed = change(good)
    assert changed != good, f"the test's edit of {path.name} matched nothing"
    path.write_text(changed)
    return lambda: path.write_text(good)


# --- the four stacks -----------------------------------------------------------------------------

def rhesis_migrate(project: Project) -> None:
    result = project.ok("db.migrate", "--yes")
    assert '"schema at version"' in result.stdout + result.stderr, "the Job's output is streamed"
    assert project.psql("SELECT max(version) FROM schema_version") == "2"


def no_migrations(project: Project) -> None:
    """`migrations: none` (the schema comes from the database's init scripts): nothing runs, nothing fails."""
    project.ok("db.migrate", "--yes")
    jobs = project.kubectl("-n", project.stack.namespace, "get", "jobs", "-o", "name").stdout.split()
    assert jobs == [], f"db.migrate made {jobs}"
    assert project.psql("SELECT to_regclass('session_messages') IS NOT NULL") == "t"


def kubechat_migrate(project: Project) -> None:
    assert project.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations") == "001"
    told = json.loads(json.loads(project.ok("db.status", "--json").stdout)["output"][-1])
    assert told == {"applied": ["001"], "pending": ["002_clusters.sql"]}, told
    result = project.ok("db.migrate", "--yes")
    assert '"applied"' in result.stdout + result.stderr and "002_clusters.sql" in result.stdout + result.stderr
    assert project.psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations") == "001,002"
    assert project.psql("SELECT to_regclass('clusters') IS NOT NULL") == "t"


REVISION_0002 = '''"""titles are searchable

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_conversations_title", "conversations", ["title"])


def downgrade() -> None:
    op.drop_index("ix_conversations_title", table_name="conversations")
'''

REVISION_0003_BROKEN = '''"""broken on purpose

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT broken_on_purpose_by_the_e2e_test()")


def downgrade() -> None:
    pass
'''


def aks_migrate(project: Project) -> None:
    assert project.psql("SELECT version_num FROM alembic_version") == "0001", "the hook Job migrated the install"
    (project.root / "backend/migrations/versions/0002_title_index.py").write_text(REVISION_0002)
    pending = json.loads(project.ok("db.status", "--json").stdout)
    assert pending["current"] == ["0001"] and [r["revision"] for r in pending["pending"]] == ["0002"]
    project.ok("db.migrate", "--yes")
    assert project.psql("SELECT version_num FROM alembic_version") == "0002"
    assert json.loads(project.ok("db.status", "--json").stdout)["up_to_date"] is True


def log_level(path: str, old: str, new: str) -> Callable[[Path], Callable[[], None]]:
    return lambda root: edit(root / path, lambda text: text.replace(old, new))


def crash_the_backend(root: Path) -> Callable[[], None]:
    return edit(root / "apps/backend/server.py", lambda text: text.replace(
        'if __name__ == "__main__":', 'raise SystemExit("broken on purpose by the e2e test")\n\n\nif __name__ == "__main__":'))


def need_a_missing_secret(root: Path) -> Callable[[], None]:
    return edit(root / "session_backend/helm/session-backend/values-development.yaml", lambda text: text.replace(
        "  env:\n", "  env:\n    - {name: FEATURE_FLAGS, valueFrom: {secretKeyRef: {name: sb-feature-flags, key: enabled}}}\n"))


def wait_with_a_missing_image(root: Path) -> Callable[[], None]:
    return edit(root / "infrastructure/helm/chatops/values-dev.yaml", lambda text: text.replace(
        'waitImage: {repository: local/postgres, tag: "15"', 'waitImage: {repository: local/postgres, tag: "15-missing"'))


def add_a_failing_migration(root: Path) -> Callable[[], None]:
    path = root / "backend/migrations/versions/0003_broken.py"
    path.write_text(REVISION_0003_BROKEN)
    return path.unlink


STACKS = {
    "rhesis": Stack(
        name="rhesis", folder="rhesis_style", env="local", namespace="e2e-stack-rhesis",
        workloads={"deployment/backend", "deployment/worker", "deployment/postgres", "deployment/redis"},
        log_component="backend", log_line='"schema ready"',
        database=Database("e2e-stack-rhesis", "app=postgres,tier=database", "postgres",
                          table="items", column="name"),
        pvcs=("postgres-pvc",),
        secrets={"TIDEPOOL_DB_PASSWORD": "", "TIDEPOOL_REDIS_PASSWORD": ""},
        broken=crash_the_backend,
        broken_reasons=("deployment/backend", "CrashLoopBackOff", "broken on purpose by the e2e test"),
        migrate=rhesis_migrate,
        ci_change=log_level("infrastructure/k8s/charts/tidepool/values-local.yaml", "value: debug}", "value: info}")),
    "strands": Stack(
        name="strands", folder="strands_style", env="development", namespace="e2e-stack-strands",
        workloads={"deployment/sb-session-backend", "statefulset/sb-session-backend-postgresql"},
        log_component="api", log_line='"session backend listening"',
        database=Database("e2e-stack-strands", "app.kubernetes.io/instance=sb,app.kubernetes.io/component=database",
                          "postgresql", table="sessions", column="session_id"),
        pvcs=("data-sb-session-backend-postgresql-0",),
        secrets={"SB_POSTGRES_PASSWORD": ""},
        broken=need_a_missing_secret,
        broken_reasons=("deployment/sb-session-backend", "CreateContainerConfigError", "sb-feature-flags"),
        migrate=no_migrations,
        ci_change=log_level("session_backend/helm/session-backend/values-development.yaml", "value: DEBUG}",
                            "value: INFO}")),
    "kubechat": Stack(
        name="kubechat", folder="kubechat_style", env="dev", namespace="e2e-stack-kubechat",
        workloads={"deployment/chatops-api", "deployment/chatops-web", "statefulset/chatops-postgresql",
                   "statefulset/chatops-redis-master"},
        log_component="api", log_line='"api listening"',
        database=Database("e2e-stack-kubechat", "app.kubernetes.io/name=postgresql,app.kubernetes.io/component=primary",
                          "postgresql", dbname='"$POSTGRES_DATABASE"', table="users", column="username"),
        pvcs=("data-chatops-postgresql-0",),
        secrets={"CHATOPS_DB_PASSWORD": "", "CHATOPS_DB_ADMIN_PASSWORD": "", "CHATOPS_REDIS_PASSWORD": ""},
        broken=wait_with_a_missing_image,
        broken_reasons=("deployment/chatops-api", "local/postgres:15-missing"),
        migrate=kubechat_migrate,
        ci_change=log_level("infrastructure/helm/chatops/values-dev.yaml", "LOG_LEVEL: debug", "LOG_LEVEL: info")),
    "aks": Stack(
        name="aks", folder="aks_style", env="dev", namespace="e2e-stack-aks",
        workloads={"deployment/ai-app-backend", "deployment/ai-app-frontend"},
        log_component="backend", log_line='"backend listening"',
        database=Database("e2e-stack-aks-db", "app=external-postgres", "postgres", user="chatapp", dbname="chatdb",
                          table="conversations", column="title"),
        pvcs=(),
        secrets={"AIAPP_DB_PASSWORD": ""},
        broken=add_a_failing_migration,
        broken_reasons=("broken_on_purpose_by_the_e2e_test",),
        migrate=aks_migrate,
        ci_change=log_level("infra/helm/ai-app/environments/dev-values.yaml", "frontend:\n  replicaCount: 1",
                            "frontend:\n  replicaCount: 2"),
        extra_namespaces=("e2e-stack-aks-db",)),
}


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_images():
    """The stand-in PostgreSQL and Redis images in the local engine (Moorage delivers them to the node)."""
    require_docker()
    for tool in ("helm", "ctr", "openssl"):
        if shutil.which(tool) is None:
            missing(f"'{tool}' is not installed")
    subprocess.run([str(REPO / "scripts" / "data-images.sh")], check=True, capture_output=True, timeout=900)


def not_sources(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone would not have: caches, and a chart's built dependencies (charts/ beside Chart.yaml)."""
    built = {"charts"} if "Chart.yaml" in names else set()
    return built | {n for n in names if n == "__pycache__" or n.endswith(".pyc")}


def external_database(cluster, root: Path, stack: Stack) -> dict[str, str]:
    """The aks stack's "external" PostgreSQL (TLS on), and the URL Moorage reaches it by from this host:
    the Service's cluster IP (kube-proxy routes it from the node, which is this host); the host does not
    resolve the cluster's DNS names, the pods do (the chart uses external-postgres.<ns>.svc)."""
    ns = stack.extra_namespaces[0]
    password = random_secret()
    cluster.kubectl("create", "namespace", ns)
    key, crt = root / "tls.key", root / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=external-postgres", "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    cluster.kubectl("-n", ns, "create", "secret", "tls", "external-postgres-tls", f"--cert={crt}", f"--key={key}")
    key.unlink()
    env_file = root / "db-password.env"
    env_file.write_text(f"password={password}\n")
    cluster.kubectl("-n", ns, "create", "secret", "generic", "external-postgres-auth", f"--from-env-file={env_file}")
    env_file.unlink()
    cluster.kubectl("-n", ns, "apply", "-f", str(root / "external-db" / "postgres.yaml"))
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/external-postgres", "--timeout=180s", timeout=200)
    ip = cluster.kubectl("-n", ns, "get", "service", "external-postgres", "-o",
                         "jsonpath={.spec.clusterIP}").stdout.strip()
    return {"AIAPP_DB_USER": "chatapp", "AIAPP_DB_PASSWORD": password,
            "AIAPP_DATABASE_URL": f"postgresql://chatapp:{password}@{ip}:5432/chatdb?sslmode=require"}


@pytest.fixture(scope="module", params=list(STACKS))
def stack(request, real_cluster, data_images, tmp_path_factory) -> Iterator[Project]:
    spec = STACKS[request.param]
    root = tmp_path_factory.mktemp(spec.name) / "project"
    shutil.copytree(STACKS_DIR / spec.folder, root, ignore=not_sources)
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    for ns in (spec.namespace, *spec.extra_namespaces):  # a run that died before its teardown
        real_cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
    values = {key: random_secret() for key in spec.secrets}
    if spec.extra_namespaces:
        values |= external_database(real_cluster, root, spec)
    spec.secrets = values
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    project = Project(spec, root, real_cluster)
    yield project
    project.inv("dev.undeploy", "--purge", "--yes", timeout=300)
    for ns in (spec.namespace, *spec.extra_namespaces):
        real_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        cache.set(f"moorage/stack-timings/{spec.name}", spec.timings)
    print(f"\nstack {spec.name} timings: {spec.timings}")


# --- a user's day, per stack ---------------------------------------------------------------------

def test_first_deploy_is_ready_and_passes_the_smoke_checks(stack):
    t0 = time.monotonic()
    summary = json.loads(stack.ok("dev.deploy", "--json").stdout)
    stack.stack.timings["first_deploy_s"] = round(time.monotonic() - t0, 1)
    assert summary["status"] == "deployed" and summary["revision"] == 1, summary
    assert summary["smoke"] and all(check["ok"] for check in summary["smoke"]), summary["smoke"]


def test_a_second_deploy_with_nothing_changed_does_nothing(stack):
    t0 = time.monotonic()
    summary = json.loads(stack.ok("dev.deploy", "--json").stdout)
    stack.stack.timings["noop_deploy_s"] = round(time.monotonic() - t0, 1)
    assert summary["status"] == "up-to-date", summary
    assert summary["built"] == [] and summary["delivered"] == [] and summary["revision"] == 1


def test_status_shows_every_workload_ready(stack):
    status = json.loads(stack.ok("dev.status", "--json").stdout)
    assert status["state"] == "deployed" and status["revision"] == 1
    states = {r["resource"]: r["state"] for r in status["resources"]}
    assert stack.stack.workloads <= set(states), states
    assert all(states[w] == "ready" for w in stack.stack.workloads), states


def test_logs_show_the_components_pods(stack):
    result = stack.ok("dev.logs", "--component", stack.stack.log_component, "--tail", "200")
    assert stack.stack.log_line in result.stdout, result.stdout[-2000:]


def test_backup_and_restore_round_trip(stack):
    db = stack.stack.database
    stack.psql(f"INSERT INTO {db.table} ({db.column}) VALUES ('{MARKER}')")
    before = stack.psql(f"SELECT count(*) FROM {db.table}")
    stack.ok("backup.create")
    stack.ok("backup.verify", "latest")
    stack.psql(f"DELETE FROM {db.table}")
    assert stack.psql(f"SELECT count(*) FROM {db.table}") == "0"
    stack.ok("backup.restore", "latest", "--yes")
    assert stack.psql(f"SELECT count(*) FROM {db.table}") == before
    assert stack.psql(f"SELECT count(*) FROM {db.table} WHERE {db.column} = '{MARKER}'") == "1"


def test_db_migrate(stack):
    stack.stack.migrate(stack)


def test_ci_deploy_upgrades_it(stack):
    """`deploy --env` (CI's path) upgrades every stack, whatever its database and migration tool."""
    revision = json.loads(stack.ok("dev.status", "--json").stdout)["revision"]
    stack.stack.ci_change(stack.root)
    junit = stack.root / "reports" / "deploy.xml"
    summary = json.loads(stack.ok("deploy", "--env", stack.stack.env, "--json", "--junit", str(junit)).stdout)
    assert summary["status"] == "deployed" and summary["revision"] == revision + 1, summary
    assert summary["smoke"] and all(check["ok"] for check in summary["smoke"]), summary["smoke"]
    from junitparser import JUnitXml

    (suite,) = list(JUnitXml.fromfile(str(junit)))
    assert suite.failures == 0 and {"phase helm", "phase wait"} <= {case.name for case in suite}
    assert {f"smoke {check['name']}" for check in summary["smoke"]} <= {case.name for case in suite}


def test_a_broken_upgrade_fails_fast_with_its_reason_and_rolls_back(stack):
    revision = json.loads(stack.ok("dev.status", "--json").stdout)["revision"]
    mend = stack.stack.broken(stack.root)
    try:
        result = stack.inv("dev.deploy", timeout=400)
    finally:
        mend()
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-4000:]
    for reason in stack.stack.broken_reasons:
        assert reason in out, f"{reason!r} not in:\n{out[-4000:]}"
    assert f"rolled back to revision {revision}" in out, out[-4000:]
    status = json.loads(stack.ok("dev.status", "--json").stdout)
    assert status["state"] == "deployed"
    states = {r["resource"]: r["state"] for r in status["resources"]}
    assert all(states.get(w) == "ready" for w in stack.stack.workloads), states


def test_undeploy_keeps_the_data(stack):
    db = stack.stack.database
    rows = stack.psql(f"SELECT count(*) FROM {db.table}")
    result = stack.ok("dev.undeploy", "--yes")
    claims = set(stack.kubectl("-n", stack.stack.namespace, "get", "pvc", "-o", "name").stdout.split())
    for pvc in stack.stack.pvcs:
        assert f"persistentvolumeclaim/{pvc}" in claims, f"{pvc} was deleted: {claims}"
        assert pvc in result.stdout, f"the undeploy does not say it kept {pvc}:\n{result.stdout}"
    assert json.loads(stack.ok("dev.status", "--json").stdout)["installed"] is False
    if not stack.stack.pvcs:  # the external database: untouched
        assert stack.psql(f"SELECT count(*) FROM {db.table}") == rows


