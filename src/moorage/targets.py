"""Which PostgreSQL an environment's ``db.*`` and ``backup.*`` tasks talk to (its ``database:`` setting).

- :func:`target_for`: a URL (``--database-url``, ``DATABASE_URL``, an external database's ``url_env``
  with its sslmode) or the environment's PostgreSQL pod (:func:`pod_target`, found by its configured
  selector and reached through :class:`KubePods`, the Kubernetes side of ``pg.PodExec``, logging in with
  the configured variable names or superuser).
- :func:`require_database`: the one line for an environment that declares none.
- :func:`migration_workload`: the release's workload a migration Job copies when none is configured:
  the one running the image whose build context holds ``alembic.ini`` (found in the release's manifest).

Orchestration floor, beside ``connection``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from . import helm, kube
from .connection import connect
from .core.config import Environment, Image, Project, load_secrets
from .core.errors import ConfigError, MoorageError, Unreachable, UserError
from .images.tags import repository
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
    name = repository_of(str(container.get("image") or "")).rsplit("/", 1)[-1]
    return POSTGRES_PORT in ports or "postgres" in name


def postgres_workloads(objects: Sequence[dict]) -> list[tuple[str, str, str]]:
    """(``kind/name``, label selector, container) of each PostgreSQL workload among a release's objects."""
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
    return found


def release_database(objects: Sequence[dict], release: str, where: str) -> tuple[str, str]:
    """(label selector, container) of the one PostgreSQL workload among a release's objects.

    UserError when there is none or more than one (``where`` names the setting that says which).
    """
    found = postgres_workloads(objects)
    if len(found) == 1:
        return found[0][1], found[0][2]
    fix = f"name the database pod in {where}.selector (and .container), or set {where}.kind to external or none"
    if not found:
        raise UserError(f"release {release} runs no PostgreSQL that Moorage can tell (no workload with a container "
                        f"listening on {POSTGRES_PORT} or running a postgres image)", fix)
    raise UserError(f"release {release} runs several PostgreSQL workloads ({', '.join(f[0] for f in found)})", fix)


def repository_of(ref: str) -> str:
    """An image reference without its digest and tag: ``reg:5000/shop/api:1.2@sha256:...`` → ``reg:5000/shop/api``."""
    ref = ref.split("@")[0]
    head, _, last = ref.rpartition("/")
    return f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]


def release_workload_running(objects: Sequence[dict], repository: str, release: str, where: str) -> tuple[str, str]:
    """(kind, name) of the release's workload whose containers run ``repository``, for a migration Job to copy.

    Several (a web server and a worker of one image are common): a Deployment
    first, then by name; the Job takes the image and config they share. None:
    UserError (``where`` names the setting that says which).
    """
    found = sorted((obj["kind"] != "Deployment", obj["kind"].lower(), obj["metadata"]["name"]) for obj in objects
                   if obj.get("kind") in WORKLOAD_KINDS and any(
                       repository_of(str(c.get("image") or "")) == repository
                       for c in (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
                       or []))
    if not found:
        raise UserError(f"no workload of release {release} runs image {repository}, the one that holds the "
                        "Alembic scripts, so there is nothing for a migration Job to copy",
                        f"name it in {where}.workload (e.g. deployment/api), or deploy first")
    return found[0][1], found[0][2]


def _release_objects(project: Project, env: Environment, cluster, what: str, setting: str) -> list[dict]:
    """The objects of the deployed release (its manifest); Unreachable naming ``what`` was looked for."""
    try:
        return helm.manifest(project.release, env.namespace, cluster.context)
    except MoorageError:
        raise Unreachable(f"release {project.release} is not deployed in namespace {env.namespace}, so it has no "
                          f"{what} to find", f"deploy the environment first (inv dev.deploy), or name it in "
                          f"moorage.environments.{env.name}.{setting}") from None


def database_pod(project: Project, env: Environment, cluster) -> tuple[str, str | None]:
    """(label selector, container) of the environment's PostgreSQL pod: configured, else found in the release."""
    db = env.database
    if db.selector:
        return db.selector, db.container
    objects = _release_objects(project, env, cluster, "PostgreSQL pod", "database.selector")
    selector, container = release_database(objects, project.release, f"moorage.environments.{env.name}.database")
    return selector, db.container or container


def deepest_context(images: Sequence[Any], path: str) -> Any | None:
    """Of ``images`` (anything with a ``context`` relative to the project root), the one whose build
    context holds ``path`` (relative to the root too), the deepest such; None when none does."""
    target = PurePosixPath(path)

    def depth(image) -> int:
        context = PurePosixPath(image.context)
        return len(context.parts) if not context.parts or target.is_relative_to(context) else -1

    best = max(images, key=depth, default=None)
    return best if best is not None and depth(best) >= 0 else None


def image_holding(project: Project, path: Path, where: str) -> Image:
    """The project's image whose build context holds ``path`` (:func:`deepest_context`); UserError if none does."""
    root, target = project.root.resolve(), path.resolve()
    shown = target.relative_to(root).as_posix() if target.is_relative_to(root) else str(path)
    found = deepest_context(project.images, shown) if target.is_relative_to(root) else None
    if found is None:
        raise UserError(f"no image's build context holds {shown}, so no image of the release has its Alembic scripts",
                        f"name the workload whose image has them in {where}.workload (e.g. deployment/api)")
    return found


def migration_workload(project: Project, env: Environment, ini: Path, cluster) -> tuple[str, str]:
    """(kind, name) of the release's workload that runs the image holding ``ini``, for a migration Job to copy."""
    where = f"moorage.environments.{env.name}.migrations"
    repo = repository(image_holding(project, ini, where), env, project.release)
    objects = _release_objects(project, env, cluster, "workload to migrate from", "migrations.workload")
    return release_workload_running(objects, repo, project.release, where)


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


