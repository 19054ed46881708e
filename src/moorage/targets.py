"""Which PostgreSQL an environment's ``db.*`` and ``backup.*`` tasks talk to (its ``database:`` setting).

- :func:`target_for`: a URL (``--database-url``, ``DATABASE_URL``, an external database's ``url_env``
  with its sslmode) or the environment's PostgreSQL pod (:func:`pod_target`, found by its configured
  selector and reached through :class:`KubePods`, the Kubernetes side of ``pg.PodExec``, logging in with
  the configured variable names or superuser).
- :func:`require_database`: the one line for an environment that declares none.

Orchestration floor, beside ``connection``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO

from . import helm, kube
from .connection import connect
from .core.config import Environment, Project, load_secrets
from .core.errors import ConfigError, MoorageError, Unreachable, UserError
from .pg import DatabaseUrl, LocalTarget, PodLogin, PodTarget, Target, database_url_from, parse_database_url


class KubePods:
    """``moorage.kube`` bound to one API client, in the ``pg.PodExec`` shape."""

    def __init__(self, api):
        self.api = api

    def find_pod(self, namespace: str, label_selector: str) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            pods = kube.list_pods(self.api, namespace, label_selector)
        except ApiException as exc:
            raise kube.api_error(self.api, exc, f"listing pods in {namespace}") from exc
        ready = [p for p in pods if kube.pod_ready(p)]
        if not ready:
            raise Unreachable(f"no ready PostgreSQL pod ({label_selector}) in namespace {namespace}",
                              "deploy the environment first (inv dev.deploy) or check inv dev.status")
        return ready[0]["metadata"]["name"]

    def exec_stream(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                    stdin: IO[bytes] | None, on_stdout: Callable[[bytes], None]) -> tuple[int, str]:
        result = kube.exec_stream(self.api, namespace, pod, list(command), container=container,
                                  stdout=on_stdout, stdin=stdin)
        return result.exit_code, result.stderr


POSTGRES_PORT = 5432
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet")


def _is_postgres(container: dict) -> bool:
    """A container listening on PostgreSQL's port or running a postgres image (any registry, tag or digest)."""
    ports = {p.get("containerPort") for p in container.get("ports") or [] if isinstance(p, dict)}
    name = str(container.get("image") or "").split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return POSTGRES_PORT in ports or "postgres" in name


def release_database(objects: Sequence[dict], release: str, where: str) -> tuple[str, str]:
    """(label selector, container) of the one PostgreSQL workload among a release's objects.

    UserError when there is none or more than one (``where`` names the setting that says which).
    """
    found = []
    for obj in objects:
        spec = obj.get("spec") or {}
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        if obj.get("kind") not in WORKLOAD_KINDS or not labels:
            continue
        for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
            if _is_postgres(container):
                selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                found.append((f"{obj['kind'].lower()}/{obj['metadata']['name']}", selector, container["name"]))
                break
    if len(found) == 1:
        return found[0][1], found[0][2]
    fix = f"name the database pod in {where}.selector (and .container), or set {where}.kind to external or none"
    if not found:
        raise UserError(f"release {release} runs no PostgreSQL that Moorage can tell (no workload with a container "
                        f"listening on {POSTGRES_PORT} or running a postgres image)", fix)
    raise UserError(f"release {release} runs several PostgreSQL workloads ({', '.join(f[0] for f in found)})", fix)


def database_pod(project: Project, env: Environment, cluster) -> tuple[str, str | None]:
    """(label selector, container) of the environment's PostgreSQL pod: configured, else found in the release."""
    db = env.database
    if db.selector:
        return db.selector, db.container
    try:
        objects = helm.manifest(project.release, env.namespace, cluster.context)
    except MoorageError:
        raise Unreachable(f"release {project.release} is not deployed in namespace {env.namespace}, so it has no "
                          "PostgreSQL pod to find", "deploy the environment first (inv dev.deploy), or name the pod "
                          f"in moorage.environments.{env.name}.database.selector") from None
    selector, container = release_database(objects, project.release, f"moorage.environments.{env.name}.database")
    return selector, db.container or container


def pod_target(project: Project, env: Environment) -> PodTarget:
    """The environment's PostgreSQL pod (its kube context checked against the configuration)."""
    db = env.database
    cluster = connect(project, env, allow_production=True, read_release=False)
    login = PodLogin(db.user_env, db.database_env, db.password_env, db.superuser, db.superuser_password_env)
    selector, container = database_pod(project, env, cluster)
    return PodTarget.discover(KubePods(cluster.api), env.namespace, selector, container=container, login=login)


def require_database(env: Environment) -> None:
    """UserError when the environment declares no database."""
    if not env.database.exists:
        raise UserError(f"environment '{env.name}' has no database (moorage.environments.{env.name}.database.kind: "
                        "none), so there is nothing to migrate or back up",
                        "set database.kind to pod or external in invoke.yaml if it has one")


def external_url(project: Project, env: Environment) -> DatabaseUrl:
    """The URL of the environment's external database: its ``url_env`` key (the process environment, then
    ``.env.<env>``, then ``.env``), with the configured sslmode unless the URL names one."""
    key = env.database.url_env or ""
    raw = load_secrets(project, env).get(key)
    if not raw:
        raise ConfigError(f"environment '{env.name}' reaches its database through {key}, which is not set",
                          f"set {key}=postgresql://USER:PASSWORD@HOST:PORT/DATABASE in .env.{env.name} (or .env)")
    url = parse_database_url(raw, key)
    if env.database.sslmode and "sslmode" not in dict(url.params):
        url = url.with_param("sslmode", env.database.sslmode)
    return url


def target_for(project: Project, env: Environment, database_url: str | None) -> Target:
    """A LocalTarget when a URL is given (flag or DATABASE_URL) or the environment's database is external,
    else its pod. UserError when the environment has no database."""
    url = database_url_from(database_url)
    if url is not None:
        return LocalTarget(url)
    require_database(env)
    if env.database.kind == "external":
        return LocalTarget(external_url(project, env))
    return pod_target(project, env)


