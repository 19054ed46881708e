"""Policies every environment's rendered manifests must satisfy (restricted Pod Security, probes,
labels, wiring between Services, NetworkPolicies and pods), plus what production requires."""

from __future__ import annotations

import pytest
import yaml

from tests.chart.conftest import CHART, ENVIRONMENTS, RELEASE, SECRET_VALUES, env_file

pytestmark = pytest.mark.helm

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet"}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)


def pod_template(obj: dict) -> dict:
    """The pod template ({metadata, spec}) of a workload object."""
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def workloads(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]


def containers(obj: dict, init: bool = True) -> list[dict]:
    spec = pod_template(obj)["spec"]
    return spec["containers"] + (spec.get("initContainers", []) if init else [])


def ref(obj: dict, container: dict | None = None) -> str:
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    return f"{name}[{container['name']}]" if container else name


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert matches, f"{kind}/{name} is not rendered"
    return matches[0]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def port_on(container: dict, port: int | str) -> bool:
    ports = container.get("ports", [])
    return any(p.get("name") == port or p["containerPort"] == port for p in ports)


@pytest.fixture(params=ENVIRONMENTS)
def objects(request, render) -> list[dict]:
    return render(request.param)


@pytest.fixture(params=ENVIRONMENTS)
def env_objects(request, render) -> tuple[dict, list[dict]]:
    """(merged values, rendered objects) of one environment."""
    from moorage.helm import merge

    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    env_values = yaml.safe_load(env_file(request.param).read_text()) or {}
    return merge(chart_values, env_values), render(request.param)


def test_every_pod_runs_with_restricted_pod_security(objects):
    problems = []
    for obj in workloads(objects):
        pod = pod_template(obj)["spec"]
        ctx = pod.get("securityContext", {})
        if ctx.get("runAsNonRoot") is not True:
            problems.append(f"{ref(obj)}: runAsNonRoot is not true")
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            if not isinstance(ctx.get(key), int) or ctx[key] < 10000:
                problems.append(f"{ref(obj)}: {key}={ctx.get(key)!r}, want a number >= 10000")
        for container in containers(obj):
            sc = container.get("securityContext", {})
            seccomp = sc.get("seccompProfile") or ctx.get("seccompProfile") or {}
            if seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{ref(obj, container)}: seccompProfile is not RuntimeDefault")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{ref(obj, container)}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{ref(obj, container)}: capabilities do not drop ALL")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{ref(obj, container)}: root filesystem is writable")
            if sc.get("privileged"):
                problems.append(f"{ref(obj, container)}: privileged")
    assert not problems, "\n".join(problems)


def test_every_container_has_requests_and_limits(objects):
    problems = [
        f"{ref(obj, c)}: missing resources.{kind}.{resource}"
        for obj in workloads(objects)
        for c in containers(obj)
        for kind in ("requests", "limits")
        for resource in ("cpu", "memory")
        if resource not in c.get("resources", {}).get(kind, {})
    ]
    assert not problems, "\n".join(problems)


def test_every_image_has_a_fixed_tag(objects):
    for obj in workloads(objects):
        for c in containers(obj):
            name, _, tag = c["image"].rpartition(":")
            assert name and "/" not in tag and tag not in ("", "latest"), f"{ref(obj, c)}: image {c['image']!r}"


def test_long_running_containers_have_startup_liveness_and_readiness_probes(objects):
    for obj in workloads(objects):
        if obj["kind"] not in LONG_RUNNING_KINDS:
            continue
        for c in containers(obj, init=False):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in c, f"{ref(obj, c)}: no {probe}"


def test_probe_ports_exist_on_their_container(objects):
    for obj in workloads(objects):
        for c in containers(obj, init=False):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                action = c.get(probe, {}).get("httpGet") or c.get(probe, {}).get("tcpSocket")
                if action:
                    assert port_on(c, action["port"]), f"{ref(obj, c)}: {probe} port {action['port']} not declared"


def test_volume_mounts_refer_to_pod_volumes(objects):
    for obj in workloads(objects):
        spec = pod_template(obj)["spec"]
        volumes = {v["name"] for v in spec.get("volumes", [])}
        if obj["kind"] == "StatefulSet":
            volumes |= {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        for c in containers(obj):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{ref(obj, c)}: mounts undefined volume {mount['name']}"


def test_every_object_carries_the_recommended_labels(objects):
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in RECOMMENDED_LABELS if label not in labels]
        assert not missing, f"{ref(obj)}: missing labels {missing}"
        assert labels["app.kubernetes.io/name"] == "moorage"
        assert labels["app.kubernetes.io/instance"] == RELEASE


def test_objects_are_named_release_dash_component(objects):
    for obj in objects:
        name = obj["metadata"]["name"]
        assert name == RELEASE or name.startswith(f"{RELEASE}-"), f"{ref(obj)}: not prefixed with the release"
        if obj["kind"] in {"Deployment", "StatefulSet", "Service"}:
            assert name == f"{RELEASE}-{obj['metadata']['labels']['app.kubernetes.io/component']}"


def test_workload_selectors_match_their_pod_labels(objects):
    for obj in workloads(objects):
        labels = pod_template(obj)["metadata"]["labels"]
        for label in RECOMMENDED_LABELS:
            assert label in labels, f"{ref(obj)}: pod template lacks {label}"
        if obj["kind"] in LONG_RUNNING_KINDS:
            assert selects(obj["spec"]["selector"]["matchLabels"], labels), ref(obj)


def test_every_service_selects_pods_with_its_target_port(objects):
    for svc in (o for o in objects if o["kind"] == "Service"):
        targets = [
            w for w in workloads(objects) if selects(svc["spec"]["selector"], pod_template(w)["metadata"]["labels"])
        ]
        assert targets, f"{ref(svc)} selects no pods"
        for port in svc["spec"]["ports"]:
            for workload in targets:
                assert any(port_on(c, port["targetPort"]) for c in containers(workload, init=False)), (
                    f"{ref(svc)}: targetPort {port['targetPort']} not on {ref(workload)}"
                )


def test_every_networkpolicy_selects_existing_pods(objects):
    pods = [pod_template(w)["metadata"]["labels"] for w in workloads(objects)]
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert any(selects(selector, labels) for labels in pods), f"{ref(policy)} selects no pod"


def test_networkpolicies_start_from_a_default_deny(env_objects):
    values, objects = env_objects
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if not values["networkPolicy"]["enabled"]:
        assert policies == [], "networkPolicy.enabled is false but NetworkPolicies were rendered"
        return
    deny = find(objects, "NetworkPolicy", f"{RELEASE}-default-deny")
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    assert {p["port"] for rule in deny["spec"]["egress"] for p in rule["ports"]} == {53}


def test_secret_values_only_appear_in_secrets(objects):
    secrets = [SECRET_VALUES["redis"]["auth"]["password"], SECRET_VALUES["backend"]["secretKey"]]
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = repr(obj)
        for secret in secrets:
            assert secret not in text, f"{ref(obj)} contains a secret value"


def test_app_secrets_reach_containers_through_secret_refs(objects):
    for obj in workloads(objects):
        for c in containers(obj):
            for var in c.get("env", []):
                if var["name"] in {
                    "APP_SECRET_KEY",
                    "REDIS_URL",
                    "POSTGRES_PASSWORD",
                    "PGPASSWORD",
                    "DATABASE_PASSWORD",
                }:
                    assert "secretKeyRef" in var.get("valueFrom", {}), f"{ref(obj, c)}: {var['name']} is a literal"
                if var["name"] == "DATABASE_URL" and "value" in var:
                    assert "$(DATABASE_PASSWORD)" in var["value"], f"{ref(obj, c)}: DATABASE_URL embeds a password"


def test_backend_and_worker_wait_for_the_schema_and_migrations_are_not_a_hook(objects):
    job = find(objects, "Job", f"{RELEASE}-migrate-1")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1].endswith("migrate.py")
    for name in ("backend", "worker"):
        deployment = find(objects, "Deployment", f"{RELEASE}-{name}")
        init = [c["name"] for c in pod_template(deployment)["spec"].get("initContainers", [])]
        # the schema gate first; in dev the live-update seed (dev.watch) after it
        assert init[:1] == ["wait-for-schema"] and set(init[1:]) <= {"seed-live-update"}, f"{name}: {init}"
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_helm_test_pod_checks_backend_and_frontend(objects):
    pod = find(objects, "Pod", f"{RELEASE}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {v["name"]: v["value"] for v in pod["spec"]["containers"][0]["env"]}
    assert env == {"BACKEND_URL": f"http://{RELEASE}-backend:8000", "FRONTEND_URL": f"http://{RELEASE}-frontend:8080"}


def test_frontend_gets_the_backend_url(objects):
    frontend = find(objects, "Deployment", f"{RELEASE}-frontend")
    env = {v["name"]: v.get("value") for v in containers(frontend)[0]["env"]}
    assert env["BACKEND_URL"] == f"http://{RELEASE}-backend:8000"


def test_backup_cronjob_is_safe_when_enabled(env_objects):
    values, objects = env_objects
    cronjobs = [o for o in objects if o["kind"] == "CronJob"]
    if not values["backup"]["enabled"]:
        assert cronjobs == [], "backup.enabled is false but a CronJob was rendered"
        return
    (cron,) = cronjobs
    assert cron["metadata"]["name"] == f"{RELEASE}-backup"
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0 and job["backoffLimit"] >= 0
    env = {v["name"] for v in job["template"]["spec"]["containers"][0]["env"]}
    assert {"PGHOST", "PGUSER", "PGDATABASE", "PGPASSWORD", "RETENTION"} <= env


def test_in_chart_postgresql_keeps_the_naming_contract(render):
    objects = render("dev")
    sts = find(objects, "StatefulSet", f"{RELEASE}-postgresql")
    (container,) = [c for c in containers(sts) if c["name"] == "postgresql"]
    env = {v["name"]: v for v in container["env"]}
    assert {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"} <= env.keys()
    data_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    assert env["PGDATA"]["value"].startswith(data_mount + "/"), "PGDATA must be a subdirectory of the volume"
    assert "/var/run/postgresql" in {m["mountPath"] for m in container["volumeMounts"]}
    find(objects, "Service", f"{RELEASE}-postgresql")
    find(objects, "Service", f"{RELEASE}-redis")


def test_dev_is_minikube_sized(render):
    objects = render("dev")
    for name in ("backend", "worker", "frontend"):
        assert find(objects, "Deployment", f"{RELEASE}-{name}")["spec"]["replicas"] == 1
    assert not [o for o in objects if o["kind"] in {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"}]


class TestProd:
    @pytest.fixture
    def prod(self, render):
        assert "prod" in ENVIRONMENTS, "environments/prod.yaml is part of the project"
        return render("prod")

    def test_prod_autoscales_each_app_from_three_replicas(self, prod):
        for name in ("backend", "worker", "frontend"):
            hpa = find(prod, "HorizontalPodAutoscaler", f"{RELEASE}-{name}")
            assert hpa["spec"]["minReplicas"] >= 3
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{RELEASE}-{name}",
            }
            assert "replicas" not in find(prod, "Deployment", f"{RELEASE}-{name}")["spec"], "HPA owns replicas"

    def test_prod_has_disruption_budgets(self, prod):
        for name in ("backend", "worker", "frontend"):
            pdb = find(prod, "PodDisruptionBudget", f"{RELEASE}-{name}")
            assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == name

    def test_prod_spreads_pods_with_anti_affinity(self, prod):
        for name in ("backend", "frontend", "worker"):
            spec = pod_template(find(prod, "Deployment", f"{RELEASE}-{name}"))["spec"]
            assert "podAntiAffinity" in spec.get("affinity", {}), f"{name} has no pod anti-affinity"

    def test_prod_ingress_has_tls_from_cert_manager(self, prod):
        ingress = find(prod, "Ingress", f"{RELEASE}-frontend")
        assert ingress["spec"]["tls"] and ingress["spec"]["tls"][0]["secretName"]
        assert ingress["spec"]["rules"][0]["host"] in ingress["spec"]["tls"][0]["hosts"]
        assert any(key.startswith("cert-manager.io/") for key in ingress["metadata"]["annotations"])

    def test_prod_uses_the_external_database_over_tls(self, prod):
        assert not [o for o in prod if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"{RELEASE}-postgresql"]
        backend = find(prod, "Deployment", f"{RELEASE}-backend")
        env = {v["name"]: v for v in containers(backend, init=False)[0]["env"]}
        assert "sslmode=require" in env["DATABASE_URL"]["value"]
        assert "@moorage-prod.postgres.example.com:5432/" in env["DATABASE_URL"]["value"]
        assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "moorage-prod-database"

    def test_prod_allows_egress_to_the_external_database_port(self, prod):
        policy = find(prod, "NetworkPolicy", f"{RELEASE}-backend")
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
        assert 5432 in ports

    def test_prod_runs_backups_and_monitoring(self, prod):
        find(prod, "CronJob", f"{RELEASE}-backup")
        find(prod, "ServiceMonitor", f"{RELEASE}-backend")
