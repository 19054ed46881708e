"""Fixtures of the chart tests: the real helm binary, rendered once per environment per session."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
ENVIRONMENTS_DIR = REPO / "environments"
ENVIRONMENTS = sorted(path.stem for path in ENVIRONMENTS_DIR.glob("*.yaml"))
RELEASE = "moorage"

# The same shapes the deploy task generates: image values, then private secrets.
IMAGE_VALUES = {
    component: {"image": {"repository": f"registry.example.com/moorage/{component}", "tag": "3f9a1c2b7d4e"}}
    for component in ("backend", "worker", "frontend")
}
SECRET_VALUES = {
    "postgresql": {"auth": {"password": "pg pass/with@odd+chars"}},
    "redis": {"auth": {"password": "redis-pass-4d8e"}},
    "backend": {"secretKey": "app-secret-key-9c1f"},
}


def env_file(env: str) -> Path:
    return ENVIRONMENTS_DIR / f"{env}.yaml"


@pytest.fixture(scope="session")
def helm() -> str:
    require_tool("helm")
    return "helm"


@pytest.fixture(scope="session")
def generated_values(tmp_path_factory) -> list[Path]:
    """The image values file and the private (0600) secrets values file."""
    directory = tmp_path_factory.mktemp("values")
    images = directory / "images.yaml"
    images.write_text(yaml.safe_dump(IMAGE_VALUES))
    secrets = directory / "secrets.yaml"
    secrets.touch(mode=0o600)
    secrets.write_text(yaml.safe_dump(SECRET_VALUES))
    return [images, secrets]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def values_args(env: str, generated: list[Path], *extra: Path) -> list[str]:
    args = ["-f", str(env_file(env))]
    for path in (*generated, *extra):
        args += ["-f", str(path)]
    return args


def template(helm: str, env: str, generated: list[Path], *extra: Path) -> subprocess.CompletedProcess:
    return run_helm(
        helm, "template", RELEASE, str(CHART), "--namespace", f"moorage-{env}", *values_args(env, generated, *extra)
    )


@pytest.fixture(scope="session")
def render(helm, generated_values):
    """render(env) -> the list of objects `helm template` produces, computed once per environment."""
    cache: dict[str, list[dict]] = {}

    def _render(env: str) -> list[dict]:
        if env not in cache:
            result = template(helm, env, generated_values)
            assert result.returncode == 0, f"helm template failed for {env}:\n{result.stderr}"
            cache[env] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[env]

    return _render


def objects_of(result: subprocess.CompletedProcess) -> list[dict]:
    """The objects of a successful `helm template`."""
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture
def render_with(helm, generated_values, tmp_path):
    """render_with(env, overrides, namespace=..., chart=...) -> the `helm template` run of an environment
    with one more values layer (a dict) on top of the generated ones."""
    counter = itertools.count()

    def _render(env: str, overrides: dict, *, namespace: str | None = None, chart: Path = CHART):
        extra = tmp_path / f"override-{next(counter)}.yaml"
        extra.write_text(yaml.safe_dump(overrides))
        return run_helm(
            helm,
            "template",
            RELEASE,
            str(chart),
            "--namespace",
            namespace or f"moorage-{env}",
            *values_args(env, generated_values, extra),
        )

    return _render


@pytest.fixture
def chart_without_schema(tmp_path) -> Path:
    """A copy of the chart without values.schema.json: what the templates refuse on their own."""
    chart = tmp_path / "chart-without-schema"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    return chart
