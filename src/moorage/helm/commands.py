"""Helm's command lines for Helm 3 and 4 (pure), and which major is installed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from ..core import proc
from ..core.config import Environment
from ..core.errors import ToolMissing

HELM_MAJORS = (3, 4)


def parse_helm_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]




def target_args(namespace: str, context: str | None) -> list[str]:
    args = ["--namespace", namespace]
    if context:
        args += ["--kube-context", context]
    return args


def upgrade_command(release: str, chart: Path, env: Environment, values_files: Sequence[Path],
                    helm_major: int, *, context: str | None = None, native_wait: bool = False,
                    timeout: int | None = None) -> list[str]:
    """``helm upgrade --install`` with layered values, right for Helm 3 or 4."""
    timeout = timeout or env.timeout
    args = ["helm", "upgrade", "--install", release, str(chart), *target_args(env.namespace, context),
            "--create-namespace", "--timeout", f"{timeout}s"]
    for path in values_files:
        args += ["--values", str(path)]
    if helm_major >= 4:
        args += ["--wait=watcher", "--rollback-on-failure"] if native_wait else ["--wait=hookOnly"]
    elif native_wait:
        args += ["--wait", "--atomic"]
    return args


def template_command(release: str, chart: Path, namespace: str, values_files: Sequence[Path]) -> list[str]:
    args = ["helm", "template", release, str(chart), "--namespace", namespace]
    for path in values_files:
        args += ["--values", str(path)]
    return args


def lint_command(chart: Path, values_files: Sequence[Path], strict: bool = True) -> list[str]:
    args = ["helm", "lint", str(chart)]
    if strict:
        args.append("--strict")
    for path in values_files:
        args += ["--values", str(path)]
    return args


def rollback_command(release: str, revision: int, namespace: str, context: str | None,
                     timeout: int, helm_major: int) -> list[str]:
    args = ["helm", "rollback", release, str(revision), *target_args(namespace, context), "--timeout", f"{timeout}s"]
    args += ["--wait=hookOnly"] if helm_major >= 4 else []
    return args


def uninstall_command(release: str, namespace: str, context: str | None, timeout: int) -> list[str]:
    return ["helm", "uninstall", release, *target_args(namespace, context), "--timeout", f"{timeout}s"]


def test_command(release: str, namespace: str, context: str | None, timeout: int) -> list[str]:
    return ["helm", "test", release, *target_args(namespace, context), "--timeout", f"{timeout}s", "--logs"]






@lru_cache(maxsize=1)
def major_version() -> int:
    """Helm's major version (3 or 4); anything else is a ToolMissing."""
    out = proc.run(["helm", "version", "--template", "{{.Version}}"], timeout=20, what="helm version").stdout
    version = parse_helm_version(out)
    if version is None or version[0] not in HELM_MAJORS:
        raise ToolMissing(f"unsupported Helm version '{out.strip()}'", "install Helm 3 or 4 (scripts/install-helm.sh)")
    return version[0]
