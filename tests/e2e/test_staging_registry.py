"""`inv deploy --env staging` as CI runs it: images pushed to a real registry, the cluster pulls them.

The registry is the CNCF distribution registry (tests/fixtures/registry.py) with TLS from a CA made
for this run and htpasswd auth; the Docker engine trusts it through /etc/docker/certs.d and the local
cluster's containerd through its certs.d hosts.toml, both removed afterwards. The environment is
``cluster: remote`` with a registry: Moorage pushes only what the registry lacks, makes the pull
Secret from ``.env`` keys, and upgrades with the images pinned by digest. Nothing is loaded onto the
node but the stand-in data images (the chart's PostgreSQL and Redis, pullPolicy Never).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid

import pytest

from tests.e2e.reference import DATA_IMAGES, REPO, copy_project, data_values, load_data_images
from tests.e2e.test_deploy_real_cluster import E2E
from tests.fixtures.tools import missing, require_docker

pytestmark = pytest.mark.cluster

NAMESPACE = "moorage-staging-e2e"
LOCAL_NAMESPACE = "moorage-local-push-e2e"  # the `local` environment: this cluster, images through the registry
SECRET = f"stg-{uuid.uuid4().hex[:10]}"
REPOSITORY = "moorage-e2e"


class Staging(E2E):
    def deploy(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.inv("deploy", "--env", "staging", *args, env=env)

    def revision(self) -> int:
        out = subprocess.run(["helm", "--kube-context", self.cluster.context, "-n", NAMESPACE, "history",
                              self.release, "-o", "json"], capture_output=True, text=True, check=True,
                             env={"KUBECONFIG": self.cluster.kubeconfig, "PATH": "/usr/local/bin:/usr/bin:/bin"})
        return max(entry["revision"] for entry in json.loads(out.stdout))


@pytest.fixture(scope="module")
def staging(real_cluster, oci_registry, tmp_path_factory):
    require_docker()
    if shutil.which("helm") is None:
        missing("'helm' is not installed")
    import yaml

    from moorage.helm import merge

    oci_registry.trust_cluster(real_cluster.state_dir)
    root = tmp_path_factory.mktemp("staging") / "project"
    copy_project(root)
    dev = yaml.safe_load((REPO / "environments" / "dev.yaml").read_text())
    data = data_values()
    data.update({component: {"liveUpdate": {"enabled": False}} for component in ("backend", "worker")})
    data["global"] = {"environment": "staging"}
    (root / "environments" / "staging.yaml").write_text(yaml.safe_dump(merge(dev, data)))
    (root / "environments" / "local.yaml").write_text(yaml.safe_dump(merge(dev, {**data, "global": {}})))
    config = yaml.safe_load((REPO / "invoke.yaml").read_text())
    config["moorage"]["environments"] = {"staging": {
        "namespace": NAMESPACE, "context": real_cluster.context, "cluster": "remote", "timeout": 600,
        "registry": {"url": f"{oci_registry.host}/{REPOSITORY}",
                     "username": "REGISTRY_USERNAME", "password": "REGISTRY_PASSWORD"},
        "required_secrets": ["POSTGRES_PASSWORD"],
        "smoke": config["moorage"]["environments"]["dev"]["smoke"],
    }, "local": {
        "namespace": LOCAL_NAMESPACE, "context": real_cluster.context, "cluster": "containerd-local", "timeout": 600,
        "registry": {"url": f"{oci_registry.host}/{REPOSITORY}", "push": True,
                     "username": "REGISTRY_USERNAME", "password": "REGISTRY_PASSWORD"},
        "required_secrets": ["POSTGRES_PASSWORD"],
        "smoke": config["moorage"]["environments"]["dev"]["smoke"][:1],
    }}
    config["moorage"]["default_env"] = "staging"
    (root / "invoke.yaml").write_text(yaml.safe_dump(config))
    (root / ".env").write_text(f"POSTGRES_PASSWORD={SECRET}\nREGISTRY_USERNAME={oci_registry.username}\n"
                               f"REGISTRY_PASSWORD={oci_registry.password}\n")
    load_data_images(real_cluster)
    project = Staging(root, real_cluster)
    yield project
    for env, namespace in (("staging", NAMESPACE), ("local", LOCAL_NAMESPACE)):
        project.inv("dev.undeploy", "--env", env, "--purge", "--yes", timeout=300)
        real_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _pod_images(staging, namespace: str = NAMESPACE) -> dict[str, tuple[str, str]]:
    """container image → (what the pod spec names, the digest the node pulled) of the release's pods."""
    pods = json.loads(staging.cluster.kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    out = {}
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []):
            spec = next(c["image"] for c in pod["spec"]["containers"] if c["name"] == status["name"])
            out[spec] = (spec, status.get("imageID", ""))
    return out


def test_first_staging_deploy_pushes_the_images_and_the_cluster_pulls_them_by_digest(staging, oci_registry):
    result = staging.deploy("--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    summary = json.loads(result.stdout)
    assert summary["status"] == "deployed", summary
    assert summary["smoke"] and all(check["ok"] for check in summary["smoke"]), summary["smoke"]
    running = _pod_images(staging)
    for name, ref in summary["images"].items():
        assert ref.startswith(f"{oci_registry.host}/{REPOSITORY}/{name}:")
        repository, tag = ref.split("/", 1)[1].rsplit(":", 1)
        manifest = oci_registry.manifest(repository, tag)
        assert manifest is not None, f"{ref} is not in the registry"
        # by digest: repository@digest (the reference chart's digest value) or repository:tag@digest
        pinned = [f"{ref}@{manifest['digest']}", f"{ref.rsplit(':', 1)[0]}@{manifest['digest']}"]
        spec = next((p for p in pinned if p in running), None)
        assert spec, f"no pod runs {name} by the digest the registry holds: {sorted(running)}"
        assert running[spec][1].endswith(manifest["digest"]), running[spec]
    # bytes were pushed for each image the registry lacked (a reused registry may hold some already)
    assert all(size > 0 for size in summary["shipped"].values()), summary["shipped"]
    pull = json.loads(staging.cluster.kubectl("-n", NAMESPACE, "get", "secret", "moorage-registry",
                                              "-o", "json").stdout)
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))["auths"]
    assert auths[oci_registry.host]["username"] == oci_registry.username
    for secret in (SECRET, oci_registry.password):
        assert secret not in result.stdout + result.stderr


def test_a_second_run_with_nothing_changed_pushes_nothing_and_upgrades_nothing(staging):
    before = staging.revision()
    result = staging.deploy("--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["status"] == "up-to-date" and summary["built"] == [] and summary["delivered"] == []
    assert summary["shipped"] == {} and "push" not in result.stderr.lower()
    assert staging.revision() == before


def _refused_with_one_line(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_wrong_credentials_are_one_line_and_nothing_is_deployed(staging, oci_registry):
    before = staging.revision()
    line = _refused_with_one_line(staging.deploy(env={"REGISTRY_PASSWORD": "not-the-password"}), 2,
                                  f"registry {oci_registry.host} refused the credentials",
                                  "REGISTRY_USERNAME", "REGISTRY_PASSWORD")
    assert "not-the-password" not in line
    assert staging.revision() == before


def test_a_registry_that_is_down_is_one_line_and_nothing_is_deployed(staging, oci_registry):
    before = staging.revision()
    with oci_registry.stopped():
        result = staging.deploy()
    _refused_with_one_line(result, 1, f"registry {oci_registry.host} is unreachable", "moorage.environments.staging")
    assert staging.revision() == before


def test_a_tag_the_registry_holds_with_other_content_is_refused_and_nothing_is_deployed(staging, oci_registry):
    import docker

    before = staging.revision()
    source = staging.root / "app" / "backend" / "moorage_backend" / "__init__.py"
    original = source.read_text()
    source.write_text(original + "\n# a change that makes a new tag\n")
    try:
        built = json.loads(staging.ok("images.build", "--env", "staging", "--only", "backend", "--json").stdout)
        ref = built["images"][0]["ref"]
        repository, tag = ref.rsplit(":", 1)
        client = docker.from_env()
        own = client.images.get(ref)
        other = client.images.get(":".join(DATA_IMAGES["redis"]))
        # another image goes into the registry under the new tag, pushed through the engine's API
        other.tag(repository, tag=tag)
        try:
            for chunk in client.api.push(repository, tag=tag, stream=True, decode=True,
                                         auth_config={"username": oci_registry.username,
                                                      "password": oci_registry.password}):
                assert "error" not in chunk, chunk
        finally:
            own.tag(repository, tag=tag)  # the tag names this build again in the engine
        result = staging.deploy()
        _refused_with_one_line(result, 2, f"tag {ref} exists in the registry with other content")
        assert staging.revision() == before
    finally:
        source.write_text(original)



def test_a_local_cluster_whose_registry_says_push_pulls_its_images_and_gets_only_the_changed_layers(staging,
                                                                                                  oci_registry):
    first = staging.ok("dev.deploy", "--env", "local", "--json")
    summary = json.loads(first.stdout)
    assert summary["status"] == "deployed" and all(check["ok"] for check in summary["smoke"]), summary
    # staging pushed these very images: nothing is built, pushed or loaded onto the node
    assert summary["built"] == [] and summary["delivered"] == [] and summary["shipped"] == {}
    assert "ctr" not in first.stderr
    source = staging.root / "app" / "backend" / "moorage_backend" / "__init__.py"
    original = source.read_text()
    source.write_text(original + f"\n# changed for the local push {uuid.uuid4().hex}\n")
    try:
        second = json.loads(staging.ok("dev.deploy", "--env", "local", "--json").stdout)
    finally:
        source.write_text(original)
    assert second["built"] == ["backend"] and second["delivered"] == ["backend"], second
    ref = second["images"]["backend"]
    # only the layers above the dependencies went: a few tens of KB of a ~190 MB image
    assert 0 < second["shipped"][ref] < 1_000_000, second["shipped"]
    manifest = oci_registry.manifest(*ref.split("/", 1)[1].rsplit(":", 1))
    assert second["digests"]["backend"] == manifest["digest"]
    running = _pod_images(staging, LOCAL_NAMESPACE)
    assert f"{ref.rsplit(':', 1)[0]}@{manifest['digest']}" in running, sorted(running)
