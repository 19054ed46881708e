"""`inv images.push` against a real registry (distribution, TLS from a test CA, htpasswd auth).

The project is the two-image demo of test_images_docker; its environment names the registry
with credentials from ``.env`` keys. What is asserted is read back from the registry's own API.
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.integration.test_images_docker import Demo, demo  # noqa: F401 - fixture

pytestmark = pytest.mark.docker


@pytest.fixture
def pushing(demo, oci_registry, docker_client):  # noqa: F811 - fixture
    repository = f"push-{uuid.uuid4().hex[:8]}"
    demo.write_config(env_section=f'{{registry: {{url: "{oci_registry.host}/{repository}", '
                                  'username: REGISTRY_USERNAME, password: REGISTRY_PASSWORD}}')
    (demo.root / ".env").write_text(f"REGISTRY_USERNAME={oci_registry.username}\n"
                                    f"REGISTRY_PASSWORD={oci_registry.password}\n")
    demo.repository = repository
    yield demo
    for image in docker_client.api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{oci_registry.host}/{repository}/"):
                docker_client.api.remove_image(tag, force=True)


def _refs(summary: dict) -> dict[str, str]:
    return {i["name"]: i["ref"] for i in summary["images"]}


def _error_line(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_push_sends_what_the_registry_lacks_then_nothing(pushing, oci_registry, docker_client):
    refs = _refs(pushing.build_json())
    first = pushing.inv("images.push", check=True)
    assert "2 image(s) pushed" in first.stderr + first.stdout
    for name, ref in refs.items():
        path, tag = ref.split("/", 1)[1].rsplit(":", 1)
        manifest = oci_registry.manifest(path, tag)
        assert manifest["config"]["digest"] == docker_client.api.inspect_image(ref)["Id"], name
    again = pushing.inv("images.push", check=True)
    assert "the registry already has every image: nothing to push" in again.stderr + again.stdout
    assert oci_registry.password not in first.stdout + first.stderr + again.stdout + again.stderr


def test_a_one_line_change_pushes_only_that_images_new_layer(pushing, oci_registry):
    pushing.build_json()
    pushing.inv("images.push", check=True)
    (pushing.root / "app" / "main.txt").write_text("version 2\n")
    refs = _refs(pushing.build_json())
    second = pushing.inv("images.push", check=True)
    out = second.stderr + second.stdout
    assert "1 image(s) pushed" in out
    pattern = r"(\S+): pushed (\d+) of (\d+) layers, (\d+) bytes"
    sent = {ref: (int(n), int(total), int(size)) for ref, n, total, size in re.findall(pattern, out)}
    assert list(sent) == [refs["app"]], out
    manifest = oci_registry.manifest(*refs["app"].split("/", 1)[1].rsplit(":", 1))
    whole = sum(layer["size"] for layer in manifest["layers"])
    # the base layer is in the registry already: only the layers above it went
    layers, total, size = sent[refs["app"]]
    assert 0 < layers < total == len(manifest["layers"]) and 0 < size < whole / 2, (sent, whole)


def test_wrong_credentials_are_one_line_and_nothing_is_pushed(pushing, oci_registry):
    refs = _refs(pushing.build_json())
    result = pushing.inv("images.push", env={"REGISTRY_PASSWORD": "wrong-password"})
    assert result.returncode == 2
    line = _error_line(result)
    assert f"registry {oci_registry.host} refused the credentials" in line and "REGISTRY_PASSWORD" in line
    assert "wrong-password" not in result.stderr + result.stdout
    assert all(oci_registry.manifest(*ref.split("/", 1)[1].rsplit(":", 1)) is None for ref in refs.values())


def test_a_registry_that_asks_for_credentials_the_environment_lacks(pushing, oci_registry):
    pushing.write_config(env_section=f'{{registry: "{oci_registry.host}/{pushing.repository}"}}')
    pushing.build_json()
    result = pushing.inv("images.push")
    assert result.returncode == 2
    assert "requires credentials" in _error_line(result)


def test_a_registry_that_is_down_is_one_line(pushing, oci_registry):
    pushing.build_json()
    with oci_registry.stopped():
        result = pushing.inv("images.push")
    assert result.returncode == 1
    line = _error_line(result)
    assert f"registry {oci_registry.host} is unreachable" in line and "moorage.environments.dev.registry" in line


def test_a_certificate_from_another_ca_is_not_trusted(pushing, oci_registry, tmp_path):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    pushing.write_config(env_section=f'{{registry: {{url: "{oci_registry.host}/{pushing.repository}", '
                                     f'ca: "{other}", username: REGISTRY_USERNAME, password: REGISTRY_PASSWORD}}}}')
    pushing.build_json()
    result = pushing.inv("images.push")
    assert result.returncode == 2
    line = _error_line(result)
    assert "TLS certificate is not trusted" in line and "moorage.environments.dev.registry.ca" in line


def test_a_tag_holding_other_content_is_refused_not_overwritten(pushing, oci_registry, docker_client):
    refs = _refs(pushing.build_json())
    repository, tag = refs["app"].rsplit(":", 1)
    own = docker_client.images.get(refs["app"])
    docker_client.images.get(refs["web"]).tag(repository, tag=tag)
    try:
        for chunk in docker_client.api.push(repository, tag=tag, stream=True, decode=True, auth_config={
                "username": oci_registry.username, "password": oci_registry.password}):
            assert "error" not in chunk, chunk
    finally:
        own.tag(repository, tag=tag)
    planted = oci_registry.manifest(*refs["app"].split("/", 1)[1].rsplit(":", 1))
    result = pushing.inv("images.push")
    assert result.returncode == 2
    assert f"tag {refs['app']} exists in the registry with other content" in _error_line(result)
    assert oci_registry.manifest(*refs["app"].split("/", 1)[1].rsplit(":", 1))["digest"] == planted["digest"]
    assert oci_registry.manifest(*refs["web"].split("/", 1)[1].rsplit(":", 1)) is None


def test_doctor_says_whether_the_registry_answers_trusts_and_accepts_the_credentials(pushing, oci_registry):
    import json

    (pushing.root / "tasks.py").write_text(pushing.root.joinpath("tasks.py").read_text().replace(
        "from moorage.tasks import images", "from moorage.tasks import doctor, images").replace(
        "ns.add_collection(images.ns)", "ns.add_collection(images.ns)\nns.add_task(doctor.doctor)"))
    good = pushing.inv("doctor", "--json", "--skip-cluster")
    checks = {c["name"]: c for c in json.loads(good.stdout)["checks"]}
    assert checks["registry"]["ok"], checks["registry"]
    assert f"accepts as {oci_registry.username}" in checks["registry"]["detail"]
    bad = pushing.inv("doctor", "--json", "--skip-cluster", env={"REGISTRY_PASSWORD": "nope"})
    checks = {c["name"]: c for c in json.loads(bad.stdout)["checks"]}
    assert not checks["registry"]["ok"] and "refused the credentials" in checks["registry"]["detail"]
    assert bad.returncode != 0 and "nope" not in bad.stdout + bad.stderr


def test_a_plain_http_registry_on_loopback_is_spoken_to_over_http_as_the_engine_does(demo, docker_client):  # noqa: F811
    from tests.fixtures.registry import running_registry

    with running_registry(tls=False) as local:
        demo.write_config(env_section=f'{{registry: "{local.host}/plain"}}')
        refs = _refs(demo.build_json())
        try:
            first = demo.inv("images.push", check=True)
            assert "2 image(s) pushed" in first.stderr + first.stdout
            for ref in refs.values():
                manifest = local.manifest(*ref.split("/", 1)[1].rsplit(":", 1))
                assert manifest["config"]["digest"] == docker_client.api.inspect_image(ref)["Id"]
            again = demo.inv("images.push", check=True)
            assert "nothing to push" in again.stderr + again.stdout
        finally:
            for ref in refs.values():
                docker_client.api.remove_image(ref, force=True)
