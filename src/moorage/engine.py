"""The Docker engine client: which engine (``DOCKER_HOST``), a connected docker-py client, and image lookups.

A foundation: ``images`` builds into the engine and ``cluster`` delivers from
it, both through the client made here. docker-py is imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from .core.errors import Unreachable

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def docker_host(docker_env: Mapping[str, str] | None = None) -> str:
    """The engine address that ``docker_env`` (over this process's environment) points at."""
    env = os.environ if docker_env is None else {**os.environ, **docker_env}
    return env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def connect(docker_env: Mapping[str, str] | None = None, timeout: int = 600):
    """A docker-py client for the engine described by DOCKER_* variables (default: this process's)."""
    import docker
    from docker.errors import DockerException

    environment = dict(os.environ)
    if docker_env:
        environment.update(docker_env)
    host = environment.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    try:
        client = docker.DockerClient.from_env(environment=environment, timeout=timeout)
        client.ping()
    except (DockerException, OSError) as exc:
        raise Unreachable(
            f"Docker engine at {host} is not reachable",
            "start the Docker daemon (dockerd), or point DOCKER_HOST at a running engine"
            + ("" if docker_env is None else " (for minikube: minikube start)"),
        ) from exc
    return client


def _not_found():
    from docker.errors import ImageNotFound, NotFound

    return (ImageNotFound, NotFound)


def resolver(client) -> Callable[[str], str | None]:
    """A function from an image reference to its ID in ``client``'s engine (None: absent)."""
    missing = _not_found()

    def resolve(ref: str) -> str | None:
        try:
            return client.api.inspect_image(ref)["Id"]
        except missing:
            return None

    return resolve


def inspect_refs(client, refs: Iterable[str]) -> dict[str, dict | None]:
    """``docker inspect`` of each reference in the engine; None for an absent one."""
    missing = _not_found()
    out = {}
    for ref in refs:
        try:
            out[ref] = client.api.inspect_image(ref)
        except missing:
            out[ref] = None
    return out
