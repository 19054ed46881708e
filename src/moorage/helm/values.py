"""Values layers: generated image and secret values, list-safe paths, private values files."""

from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.config import Environment, Image, Project, load_yaml, merge
from ..core.errors import UserError

REDACTED = "moorage-redacted"


# --- values -----------------------------------------------------------------

# Tag of the placeholder image references that lint and template render with.
PLACEHOLDER_TAG = "0000000000000000"


_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def path_tokens(path: str) -> list[str | int]:
    """``"workers[0].image"`` → ``["workers", 0, "image"]``."""
    return [int(index) if index else key for key, index in _TOKEN.findall(path)]


def nest(path: str | Sequence[str | int], value: Any) -> dict[str, Any]:
    """``nest("a.b.c", 1)`` → ``{"a": {"b": {"c": 1}}}`` (keys only; see ``set_value`` for lists)."""
    out: Any = value
    for key in reversed(path.split(".") if isinstance(path, str) else list(path)):
        out = {key: out}
    return out


def _assign(node: Any, tokens: Sequence[str | int], value: Any, path: str) -> Any:
    if not tokens:
        return merge(node, value) if isinstance(node, Mapping) and isinstance(value, Mapping) else value
    head, rest = tokens[0], tokens[1:]
    if isinstance(head, int):
        if not isinstance(node, list) or head >= len(node):
            raise UserError(f"values path {path}: there is no item {head} in the chart's values there",
                            "check values_key against the chart's values.yaml")
        items = copy.deepcopy(node)
        items[head] = _assign(items[head], rest, value, path)
        return items
    mapping = dict(node) if isinstance(node, Mapping) else {}
    mapping[head] = _assign(mapping.get(head), rest, value, path)
    return mapping


def set_value(overlay: dict[str, Any], base: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``overlay`` with ``value`` at ``path``, as it must be written to a values file.

    Helm replaces lists whole, so a path through a list index (``workers[0].image``) carries the
    whole list from ``base`` (the chart's and the environment's values) with that one item changed.
    """
    tokens = path_tokens(path)
    first_index = next((i for i, t in enumerate(tokens) if isinstance(t, int)), None)
    if first_index is None:
        return merge(overlay, nest(tokens, value))
    prefix = tokens[:first_index]
    current: Any = merge(base, overlay)
    for key in prefix:
        current = current.get(key) if isinstance(current, Mapping) else None
    return merge(overlay, nest(prefix, _assign(current, tokens[first_index:], value, path)))


def image_value(image: Image, repository: str, tag: str, digest: str = "", *, digest_key: bool = False) -> Any:
    """What the chart expects at the image's values path: ``{repository, tag}`` or ``"repo:tag"``.

    With a ``digest`` (an image pulled from a registry, pinned): ``{..., digest}`` where the chart has a
    ``digest`` key beside ``tag`` (``digest_key``, as Bitnami-style charts do), else ``tag@digest``,
    which a chart that renders ``repository:tag`` passes on as a pull by digest.
    """
    if digest and not digest_key:
        tag = f"{tag}@{digest}"
    if image.values_style == "string":
        return f"{repository}:{tag}"
    value = {"repository": repository, "tag": tag}
    if digest and digest_key:
        value["digest"] = digest
    if image.pull_policy:
        value["pullPolicy"] = image.pull_policy
    return value


def value_at(values: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``a.b``, ``workers[0].image``); None where it is absent."""
    node: Any = values
    for token in path_tokens(path):
        if isinstance(token, int):
            node = node[token] if isinstance(node, list) and -len(node) <= token < len(node) else None
        else:
            node = node.get(token) if isinstance(node, Mapping) else None
    return node


def chart_defaults(project: Project) -> dict[str, Any]:
    """The chart's own ``values.yaml`` (empty when it has none)."""
    path = project.chart / "values.yaml"
    return (load_yaml(path) or {}) if path.is_file() else {}


def image_values(project: Project, refs: Mapping[str, tuple[str, str]],
                 base: Mapping[str, Any] | None = None, digests: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Generated values: ``refs`` maps image name → (repository, tag), ``digests`` name → the digest to pin
    (registry deploys); ``base`` is what the layers below hold."""
    digests = digests or {}
    needs_base = digests or any("[" in i.values_path for i in project.images)
    base = merge(chart_defaults(project), base or {}) if needs_base else {}
    values: dict[str, Any] = {}
    for image in project.images:
        if image.name in refs:
            below = value_at(base, image.values_path)
            value = image_value(image, *refs[image.name], digests.get(image.name, ""),
                                digest_key=isinstance(below, Mapping) and "digest" in below)
            values = set_value(values, base, image.values_path, value)
    return values


def secret_values(project: Project, secrets: Mapping[str, str]) -> dict[str, Any]:
    """Secrets placed at the values paths that ``moorage.secrets`` gives them."""
    values: dict[str, Any] = {}
    for key, path in project.secrets.items():
        if secrets.get(key):
            values = merge(values, nest(path, secrets[key]))
    return values


def pull_secret_values(env: Environment) -> dict[str, Any]:
    """``[{name: <pull secret>}]`` at the key the environment's registry settings give the chart, if any."""
    access = env.registry_access
    if not (env.registry and access.pull_secret and access.values_key):
        return {}
    return nest(access.values_key, [{"name": access.pull_secret}])


def placeholder_secrets(project: Project) -> dict[str, str]:
    """Stand-in secret values for rendering without revealing the real ones."""
    return {key: REDACTED for key in project.secrets}


@contextmanager
def private_values(layers: Mapping[str, Mapping[str, Any]]) -> Iterator[dict[str, Path]]:
    """Write each layer to ``<name>.yaml`` in a private directory removed afterwards."""
    import yaml

    directory = Path(tempfile.mkdtemp(prefix="moorage-values-"))
    try:
        os.chmod(directory, 0o700)
        paths = {}
        for name, values in layers.items():
            path = directory / f"{name}.yaml"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                yaml.safe_dump(dict(values), handle, default_flow_style=False, sort_keys=True)
            paths[name] = path
        yield paths
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def layered_values(env: Environment, image_layer: Mapping[str, Any], secret_layer: Mapping[str, Any],
                   digest: str | None = None) -> Iterator[list[Path]]:
    """The values files of a render or an upgrade, in the order Helm applies them.

    Chart defaults → the environment's file → generated image tags (and the deploy digest) → secrets.
    The generated layers live in a private directory that is removed afterwards.
    """
    images = merge(dict(image_layer), {"global": {"deployDigest": digest}}) if digest else image_layer
    with private_values({"images": images, "secrets": secret_layer}) as files:
        yield [*env.values_files, files["images"], files["secrets"]]


def placeholder_layers(project: Project, env: Environment) -> tuple[dict[str, Any], dict[str, Any]]:
    """Image and secret layers for rendering without a build and without the real secrets."""
    prefix = env.registry or project.release
    refs = {image.name: (f"{prefix}/{image.name}", PLACEHOLDER_TAG) for image in project.images}
    return image_values(project, refs), secret_values(project, placeholder_secrets(project))
