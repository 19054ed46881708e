"""The knobs users expect from Bitnami and `helm create` charts: name overrides, a global image registry, image
digests, extra env/volumes/mounts, pod labels, priority classes, topology spread, probe timing and grace periods."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.chart.conftest import CHART, RELEASE, objects_of, run_helm, values_args
from tests.chart.test_policies import containers, find, pod_template, selects, workloads

pytestmark = pytest.mark.helm

DIGEST = "sha256:" + "4e" * 32
# Component -> (kind, name) of the workload its values configure, in the staging render (backups on).
WORKLOAD_OF = {
    "backend": ("Deployment", f"{RELEASE}-backend"),
    "worker": ("Deployment", f"{RELEASE}-worker"),
    "frontend": ("Deployment", f"{RELEASE}-frontend"),
    "postgresql": ("StatefulSet", f"{RELEASE}-postgresql"),
    "redis": ("StatefulSet", f"{RELEASE}-redis"),
    "migrations": ("Job", f"{RELEASE}-migrate-1"),
    "backup": ("CronJob", f"{RELEASE}-backup"),
}
LONG_RUNNING = ("backend", "worker", "frontend", "postgresql", "redis")
DEPLOYMENTS = ("backend", "worker", "frontend")


def main_container(obj: dict) -> dict:
    return containers(obj, init=False)[0]


# --------------------------------------------------------------------------- names


def test_fullname_override_renames_every_object_and_keeps_the_wiring(render_with):
    objects = objects_of(render_with("staging", {"fullnameOverride": "shop"}))
    for obj in objects:
        name = obj["metadata"]["name"]
        assert name == "shop" or name.startswith("shop-"), f"{obj['kind']}/{name}"
    assert_wiring(objects, "shop")


def test_name_override_sets_the_name_label_and_joins_the_object_names(render_with):
    objects = objects_of(render_with("staging", {"nameOverride": "store"}))
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "store", (
            f"{obj['kind']}/{obj['metadata']['name']}"
        )
    find(objects, "Deployment", f"{RELEASE}-store-backend")
    assert_wiring(objects, f"{RELEASE}-store")


def assert_wiring(objects: list[dict], prefix: str) -> None:
    """Services, NetworkPolicies and references between objects still meet under the new names."""
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    pods = [pod_template(w)["metadata"]["labels"] for w in workloads(objects)]
    for obj in objects:
        if obj["kind"] == "Service":
            assert any(selects(obj["spec"]["selector"], labels) for labels in pods), obj["metadata"]["name"]
        if obj["kind"] == "NetworkPolicy":
            assert any(selects(obj["spec"]["podSelector"]["matchLabels"], labels) for labels in pods)
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            assert selects(obj["spec"]["selector"]["matchLabels"], pod_template(obj)["metadata"]["labels"])
    for workload in workloads(objects):
        spec = pod_template(workload)["spec"]
        assert ("ServiceAccount", spec["serviceAccountName"]) in names
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
        for container in containers(workload):
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in names, f"{workload['metadata']['name']}: {var['name']}"
    frontend = find(objects, "Deployment", f"{prefix}-frontend")
    env = {v["name"]: v.get("value") for v in main_container(frontend)["env"]}
    assert env["BACKEND_URL"] == f"http://{prefix}-backend:8000"


# --------------------------------------------------------------------------- images


def test_global_image_registry_replaces_or_prefixes_every_registry(render_with):
    objects = objects_of(render_with("staging", {"global": {"imageRegistry": "mirror.example.com:5000/cache"}}))
    images = {c["image"] for w in workloads(objects) for c in containers(w)}
    assert images == {
        "mirror.example.com:5000/cache/moorage/backend:3f9a1c2b7d4e",
        "mirror.example.com:5000/cache/moorage/worker:3f9a1c2b7d4e",
        "mirror.example.com:5000/cache/moorage/frontend:3f9a1c2b7d4e",
        "mirror.example.com:5000/cache/postgres:16.4",
        "mirror.example.com:5000/cache/redis:7.4",
    }


@pytest.mark.parametrize("component", ["backend", "worker", "frontend", "postgresql", "redis", "backup"])
def test_image_digest_wins_over_the_tag(render_with, component):
    objects = objects_of(render_with("staging", {component: {"image": {"digest": DIGEST}}}))
    kind, name = WORKLOAD_OF[component]
    repository = {
        "backend": "registry.example.com/moorage/backend",
        "worker": "registry.example.com/moorage/worker",
        "frontend": "registry.example.com/moorage/frontend",
        "redis": "redis",
    }.get(component, "postgres")
    assert main_container(find(objects, kind, name))["image"] == f"{repository}@{DIGEST}"


def test_an_app_image_with_a_digest_needs_no_tag(render_with):
    objects = objects_of(render_with("dev", {"backend": {"image": {"tag": "", "digest": DIGEST}}}))
    job = find(objects, "Job", f"{RELEASE}-migrate-1")
    assert main_container(job)["image"].endswith(f"@{DIGEST}")


def test_a_malformed_digest_is_rejected(render_with):
    result = render_with("dev", {"worker": {"image": {"digest": "latest"}}})
    assert result.returncode != 0
    assert "/worker/image/digest" in result.stderr, result.stderr


# --------------------------------------------------------------------------- pods


@pytest.mark.parametrize("component", list(WORKLOAD_OF))
def test_extra_env_volumes_and_mounts_reach_the_component(render_with, component):
    extras = {
        "extraEnv": [{"name": "EXTRA_SETTING", "value": "on"}],
        "extraVolumes": [{"name": "ca-bundle", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca-bundle", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    }
    objects = objects_of(render_with("staging", {component: extras}))
    kind, name = WORKLOAD_OF[component]
    workload = find(objects, kind, name)
    spec = pod_template(workload)["spec"]
    assert {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}} in spec["volumes"]
    # the wait-for-schema gate connects like the app, so it gets the same extras
    for container in containers(workload):
        assert {"name": "EXTRA_SETTING", "value": "on"} in container.get("env", []), container["name"]
        assert extras["extraVolumeMounts"][0] in container["volumeMounts"], container["name"]
    others = [o for o in workloads(objects) if (o["kind"], o["metadata"]["name"]) != (kind, name)]
    for other in others:
        assert "ca-bundle" not in {v["name"] for v in pod_template(other)["spec"].get("volumes", [])}


@pytest.mark.parametrize("component", list(WORKLOAD_OF))
def test_pod_labels_and_priority_class_reach_the_pods_without_breaking_selectors(render_with, component):
    overrides = {
        component: {
            "podLabels": {"team": "payments", "app.kubernetes.io/component": "hijacked"},
            "priorityClassName": "moorage-high",
        }
    }
    objects = objects_of(render_with("staging", overrides))
    kind, name = WORKLOAD_OF[component]
    pod = pod_template(find(objects, kind, name))
    assert pod["metadata"]["labels"]["team"] == "payments"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] != "hijacked", "podLabels overrode a chart label"
    assert pod["spec"]["priorityClassName"] == "moorage-high"
    selector = find(objects, "Service", name)["spec"]["selector"] if kind in {"Deployment", "StatefulSet"} else None
    if selector:
        assert selects(selector, pod["metadata"]["labels"])


@pytest.mark.parametrize("component", DEPLOYMENTS)
def test_topology_spread_constraints_select_the_components_pods_by_default(render_with, component):
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    custom = {**zone, "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"tier": "web"}}}
    objects = objects_of(render_with("staging", {component: {"topologySpreadConstraints": [zone, custom]}}))
    deployment = find(objects, "Deployment", f"{RELEASE}-{component}")
    generated, kept = pod_template(deployment)["spec"]["topologySpreadConstraints"]
    assert generated["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert {k: v for k, v in generated.items() if k != "labelSelector"} == zone
    assert kept == custom


# Today's probe timing, as (periodSeconds, timeoutSeconds, failureThreshold) of startup, liveness, readiness.
DEFAULT_PROBES = {
    "backend": ((2, 2, 60), (10, 3, 3), (5, 3, 3)),
    "worker": ((2, 2, 60), (10, 3, 3), (10, 3, 3)),
    "frontend": ((2, 2, 30), (10, 3, 3), (5, 3, 3)),
    "postgresql": ((2, 5, 90), (10, 5, 6), (5, 5, 3)),
    "redis": ((2, 3, 30), (10, 3, 3), (5, 3, 3)),
}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


@pytest.mark.parametrize("component", LONG_RUNNING)
def test_probe_timing_defaults_are_unchanged(render, component):
    """The chart's own probe timings (dev shortens them on purpose, for the inner loop)."""
    kind, name = WORKLOAD_OF[component]
    container = main_container(find(render("staging"), kind, name))
    for probe, timing in zip(PROBES, DEFAULT_PROBES[component], strict=True):
        got = container[probe]
        assert (got["periodSeconds"], got["timeoutSeconds"], got["failureThreshold"]) == timing, probe
        assert "initialDelaySeconds" not in got


@pytest.mark.parametrize("component", LONG_RUNNING)
def test_probe_timing_and_grace_period_are_configurable(render_with, component):
    timing = {"initialDelaySeconds": 7, "periodSeconds": 11, "timeoutSeconds": 4, "failureThreshold": 9}
    overrides = {component: {"terminationGracePeriodSeconds": 123, **{probe: timing for probe in PROBES}}}
    objects = objects_of(render_with("staging", overrides))
    kind, name = WORKLOAD_OF[component]
    workload = find(objects, kind, name)
    assert pod_template(workload)["spec"]["terminationGracePeriodSeconds"] == 123
    container = main_container(workload)
    for probe in PROBES:
        action = {k: v for k, v in container[probe].items() if k in ("httpGet", "exec")}
        assert container[probe] == {**action, **timing}, probe
        assert action, f"{probe} lost its action"


def test_worker_keeps_its_longer_grace_period_by_default(render):
    worker = find(render("dev"), "Deployment", f"{RELEASE}-worker")
    assert pod_template(worker)["spec"]["terminationGracePeriodSeconds"] == 60


# --------------------------------------------------------------------------- all together

EVERY_KNOB = {
    "nameOverride": "store",
    "global": {"imageRegistry": "mirror.example.com"},
    **{
        component: {
            "podLabels": {"team": "payments"},
            "priorityClassName": "moorage-high",
            "extraEnv": [{"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "extra", "key": "value"}}}],
            "extraVolumes": [{"name": "extra", "secret": {"secretName": "extra"}}],
            "extraVolumeMounts": [{"name": "extra", "mountPath": "/etc/extra", "readOnly": True}],
            **(
                {
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "DoNotSchedule",
                        }
                    ]
                }
                if component in DEPLOYMENTS
                else {}
            ),
            **(
                {
                    "terminationGracePeriodSeconds": 45,
                    "livenessProbe": {
                        "initialDelaySeconds": 5,
                        "periodSeconds": 20,
                        "timeoutSeconds": 5,
                        "failureThreshold": 4,
                    },
                }
                if component in LONG_RUNNING
                else {}
            ),
        }
        for component in WORKLOAD_OF
    },
}


def test_every_knob_at_once_passes_lint_and_kubernetes_validation(helm, generated_values, render_with, tmp_path):
    values = tmp_path / "every-knob.yaml"
    values.write_text(yaml.safe_dump(EVERY_KNOB))
    lint = run_helm(helm, "lint", "--strict", str(CHART), *values_args("staging", generated_values, values))
    assert lint.returncode == 0 and "[WARNING]" not in lint.stdout, lint.stdout + lint.stderr
    objects = objects_of(render_with("staging", EVERY_KNOB))
    errors = []
    for obj in objects:
        for version in ("1.29", "1.35"):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} ({version}): {exc.message}")
    assert not errors, "\n".join(errors)
