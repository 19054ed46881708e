"""helm lint --strict and offline Kubernetes schema validation, for every environment."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.chart.conftest import CHART, ENVIRONMENTS, run_helm, values_args

KUBERNETES_VERSIONS = [f"1.{minor}" for minor in range(29, 36)]
# Custom resources have no schema in kubernetes-validate: they may only be warned about.
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com/",)


@pytest.mark.helm
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_chart_passes_helm_lint_strict(helm, generated_values, env):
    result = run_helm(helm, "lint", "--strict", str(CHART), *values_args(env, generated_values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.helm
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rendered_objects_are_valid_kubernetes(render, env, version):
    errors = []
    for obj in render(env):
        ref = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if not obj["apiVersion"].startswith(CUSTOM_RESOURCE_GROUPS):
                errors.append(f"{ref}: no schema for {obj['apiVersion']} in Kubernetes {version}")
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{ref}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert not errors, "\n".join(errors)
