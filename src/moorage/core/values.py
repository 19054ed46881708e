"""Helm values and YAML files: reading them with a one-line error, and merging them as Helm does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError


class HasValuesFiles(Protocol):
    values_files: tuple[Path, ...]


def yaml_loader():
    """libyaml's loader when PyYAML was built with it (several times faster on big manifests)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error names the file and line."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", f"create {path}") from None
    try:
        return yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML in {where}: {problem}",
                          f"fix the syntax at {where}") from None


def load_yaml_documents(path: Path) -> list[Any]:
    """Every document of a multi-document YAML file; a syntax error names the file and line."""
    import yaml

    try:
        return list(yaml.load_all(path.read_text(), Loader=yaml_loader()))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"malformed YAML in {where}: {getattr(exc, 'problem', None) or 'invalid YAML'}",
                          f"fix the syntax at {where}") from None


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge as Helm merges values files: mappings merge, everything else (lists too) replaces."""
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def load_values(env: HasValuesFiles) -> dict[str, Any]:
    """The environment's values files merged in order, each checked to be a YAML mapping."""
    merged: dict[str, Any] = {}
    for path in env.values_files:
        data = load_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a YAML mapping of Helm values, got {type(data).__name__}",
                              f"make the top level of {path} a mapping")
        merged = merge(merged, data)
    return merged
