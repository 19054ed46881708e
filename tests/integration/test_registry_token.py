"""A registry with token authentication (what GHCR, Docker Hub and Harbor speak): the real registry
verifies the tokens, the Docker engine pushes with them, Moorage reads with them.

Credentials come from the environment's ``.env`` keys, else from what ``docker login`` stored in the
Docker client's config (``DOCKER_CONFIG`` points at a temporary one here); without any, Moorage asks
for an anonymous token, which reads a public repository and nothing else.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.registry import TestRegistry, running_registry
from tests.fixtures.tools import require_docker
from tests.integration.test_images_docker import Demo, demo  # noqa: F401 - fixture

pytestmark = pytest.mark.docker

WITH_KEYS = "username: REGISTRY_USERNAME, password: REGISTRY_PASSWORD"


@pytest.fixture(scope="module")
def token_registry() -> Iterator[TestRegistry]:
    require_docker()
    with running_registry(token=True) as registry:
        yield registry


@pytest.fixture
def project(demo, token_registry, docker_client, tmp_path):  # noqa: F811 - fixture
    """The demo project, a repository of its own, and an empty Docker client config."""
    demo.repository = f"token-{uuid.uuid4().hex[:8]}"
    demo.docker_config = tmp_path / "docker-config"
    demo.docker_config.mkdir()
    yield demo
    for image in docker_client.api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{token_registry.host}/"):
                docker_client.api.remove_image(tag, force=True)


def configure(project: Demo, registry: TestRegistry, repository: str, credentials: str = "") -> None:
    fields = f', {credentials}' if credentials else ""
    project.write_config(env_section=f'{{registry: {{url: "{registry.host}/{repository}"{fields}}}}}')


def inv(project: Demo, *args: str, **kw):
    return project.inv(*args, env={"DOCKER_CONFIG": str(project.docker_config), **kw.pop("env", {})}, **kw)


def pushed(registry: TestRegistry, refs: dict[str, str]) -> dict[str, str | None]:
    """The digest the registry holds under each reference, or None."""
    out = {}
    for name, ref in refs.items():
        found = registry.manifest(*ref.split("/", 1)[1].rsplit(":", 1))
        out[name] = found["digest"] if found else None
    return out


def error_line(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_images_are_pushed_and_read_with_tokens_for_the_environment_s_credentials(project, token_registry):
    configure(project, token_registry, project.repository, WITH_KEYS)
    (project.root / ".env").write_text(f"REGISTRY_USERNAME={token_registry.username}\n"
                                       f"REGISTRY_PASSWORD={token_registry.password}\n")
    refs = {i["name"]: i["ref"] for i in project.build_json()["images"]}
    before = len(token_registry.token_service.requests)
    first = inv(project, "images.push", check=True)
    assert "2 image(s) pushed" in first.stdout + first.stderr
    assert all(pushed(token_registry, refs).values())
    again = inv(project, "images.push", check=True)
    assert "the registry already has every image: nothing to push" in again.stdout + again.stderr
    asked = token_registry.token_service.requests[before:]
    # Moorage's reads and the engine's push both went through the token service, as the user
    assert {r.account for r in asked} == {token_registry.username}
    app = refs["app"].split("/", 1)[1].rsplit(":", 1)[0]
    assert {"pull", "push"} <= {a for r in asked for name, actions in r.granted if name == app for a in actions}
    assert token_registry.password not in first.stdout + first.stderr + again.stdout + again.stderr


def test_a_wrong_password_is_refused_by_the_token_service_in_one_line(project, token_registry):
    configure(project, token_registry, project.repository, WITH_KEYS)
    (project.root / ".env").write_text(f"REGISTRY_USERNAME={token_registry.username}\nREGISTRY_PASSWORD=wrong\n")
    refs = {i["name"]: i["ref"] for i in project.build_json()["images"]}
    result = inv(project, "images.push")
    assert result.returncode == 2
    assert f"registry {token_registry.host} refused the credentials from .env keys" in error_line(result)
    assert pushed(token_registry, refs) == {"app": None, "web": None}


def test_what_docker_login_stored_is_used_when_the_environment_names_no_credentials(project, token_registry):
    configure(project, token_registry, project.repository)
    login = base64.b64encode(f"{token_registry.username}:{token_registry.password}".encode()).decode()
    (project.docker_config / "config.json").write_text(json.dumps({"auths": {token_registry.host: {"auth": login}}}))
    refs = {i["name"]: i["ref"] for i in project.build_json()["images"]}
    result = inv(project, "images.push", check=True)
    assert "2 image(s) pushed" in result.stdout + result.stderr
    assert all(pushed(token_registry, refs).values())


def test_without_credentials_a_private_repository_is_one_line_naming_both_ways_to_give_them(project, token_registry):
    configure(project, token_registry, project.repository)
    refs = {i["name"]: i["ref"] for i in project.build_json()["images"]}
    before = len(token_registry.token_service.requests)
    result = inv(project, "images.push")
    assert result.returncode == 2
    line = error_line(result)
    assert f"registry {token_registry.host} requires credentials" in line and f"docker login {token_registry.host}" in line
    anonymous = token_registry.token_service.requests[before:]
    assert anonymous and all(r.account == "" and not r.granted for r in anonymous)
    assert pushed(token_registry, refs) == {"app": None, "web": None}


def test_a_public_repository_is_read_with_an_anonymous_token(project, token_registry):
    public = f"public/{project.repository}"
    configure(project, token_registry, public, WITH_KEYS)
    (project.root / ".env").write_text(f"REGISTRY_USERNAME={token_registry.username}\n"
                                       f"REGISTRY_PASSWORD={token_registry.password}\n")
    project.build_json()
    inv(project, "images.push", check=True)
    configure(project, token_registry, public)  # no credentials anywhere now
    (project.root / ".env").unlink()
    before = len(token_registry.token_service.requests)
    result = inv(project, "images.push", check=True)
    assert "the registry already has every image: nothing to push" in result.stdout + result.stderr
    anonymous = token_registry.token_service.requests[before:]
    assert anonymous and {r.account for r in anonymous} == {""}
    assert all(actions == ("pull",) for r in anonymous for _, actions in r.granted)
