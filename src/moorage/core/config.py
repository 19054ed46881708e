"""The project configuration: what a user edits to describe their stack.

Configuration lives under the ``moorage:`` key of ``invoke.yaml`` next to
``tasks.py`` (invoke's own configuration system, so ``-f FILE`` and the usual
invoke precedence apply: a CLI flag beats configuration, which beats the
defaults below). This module receives that mapping as plain data, validates it
and returns frozen dataclasses; it never imports invoke.

Environments are discovered from ``environments/<name>.yaml`` (Helm values
overlays). A ``moorage.environments.<name>`` section adds the environment's
settings (namespace, kube context, cluster kind, registry, production flag,
timeouts, smoke checks); an environment without one gets the defaults.

Secrets come from layered dotenv files read with python-dotenv: ``.env``,
then ``.env.<env>``, and the real process environment wins over both.
``moorage.secrets`` maps each secret key to the Helm values path it fills.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, UserError

CONFIG_FILE = "invoke.yaml"
#: where db.* find the backend's Alembic configuration (invoke config ``db.alembic_ini``)
DEFAULT_ALEMBIC_INI = "app/backend/alembic.ini"
#: allowed values of an environment's ``cluster:``; moorage.cluster detects the kind for "auto"
CLUSTER_KINDS = ("auto", "minikube", "kind", "k3d", "docker-desktop", "containerd-local", "remote")
ENV_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
DNS_LABEL_RE = ENV_NAME_RE


@dataclass(frozen=True)
class Image:
    """One image of the stack: how to build it and where its tag goes in the values."""

    name: str
    dockerfile: str
    context: str = "."
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    values_key: str = ""

    @property
    def values_path(self) -> str:
        return self.values_key or f"{self.name}.image"


@dataclass(frozen=True)
class SmokeCheck:
    """An HTTP check run through a port-forward to a Service after a deploy."""

    name: str
    service: str
    port: int
    path: str = "/"
    status: int = 200
    json_keys: tuple[str, ...] = ()
    max_latency_ms: int | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    values_file: Path
    namespace: str
    context: str | None = None
    cluster: str = "auto"
    registry: str = ""
    production: bool = False
    timeout: int = 300
    start_minikube: bool = False
    required_secrets: tuple[str, ...] = ()
    smoke: tuple[SmokeCheck, ...] = ()


@dataclass(frozen=True)
class Project:
    root: Path
    release: str
    chart: Path
    environments_dir: Path
    backups_dir: Path
    diagnostics_dir: Path
    images: tuple[Image, ...]
    secrets: Mapping[str, str]
    environments: Mapping[str, Environment]
    default_env: str

    def env(self, name: str | None = None) -> Environment:
        """The named environment (default: MOORAGE_ENV, then config, then 'dev')."""
        name = name or os.environ.get("MOORAGE_ENV") or self.default_env
        if name not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none"
            raise ConfigError(
                f"unknown environment '{name}' (known: {known})",
                f"pick one of those with --env, or add {self.environments_dir.name}/{name}.yaml",
            )
        return self.environments[name]

    def image(self, name: str) -> Image:
        for image in self.images:
            if image.name == name:
                return image
        known = ", ".join(i.name for i in self.images)
        raise ConfigError(f"unknown image '{name}' (known: {known})",
                          f"use one of the names under moorage.images in {CONFIG_FILE}")

    def selector(self, component: str | None = None) -> str:
        """The label selector of the release's objects (optionally one component's)."""
        selector = f"app.kubernetes.io/instance={self.release}"
        return f"{selector},app.kubernetes.io/component={component}" if component else selector

    def service_name(self, name: str) -> str:
        """The full name of the release's Service ``name``."""
        return f"{self.release}-{name}"

    def production_contexts(self) -> dict[str, str]:
        """Kube contexts that some production environment names, mapped to that environment."""
        return {e.context: e.name for e in self.environments.values() if e.production and e.context}


class _Reader:
    """Typed access to a raw mapping, with errors that name the key and the file."""

    def __init__(self, raw: Mapping[str, Any], where: str, source: str):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} in {source} must be a mapping, got {type(raw).__name__}",
                              f"fix {where} in {source}")
        self.raw = raw
        self.where = where
        self.source = source

    def _bad(self, key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(
            f"{self.where}.{key} in {self.source} must be {expected}, got {value!r}",
            f"fix {self.where}.{key} in {self.source}",
        )

    def unknown(self, allowed: set[str]) -> None:
        extra = sorted(set(self.raw) - allowed)
        if extra:
            raise ConfigError(
                f"unknown key {self.where}.{extra[0]} in {self.source}",
                f"remove it or use one of: {', '.join(sorted(allowed))}",
            )

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw.get(key, default)
        if value is None:
            if required:
                raise ConfigError(f"{self.where}.{key} is missing in {self.source}",
                                  f"add {self.where}.{key} to {self.source}")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise self._bad(key, "a non-empty string" if required else "a string", value)
        return value

    def int(self, key: str, default: int | None, *, minimum: int = 0) -> int | None:
        value = self.raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(key, f"an integer >= {minimum}", value)
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._bad(key, "a list of strings", value)
        return tuple(value)

    def str_map(self, key: str) -> dict[str, str]:
        value = self.raw.get(key, {}) or {}
        if not isinstance(value, Mapping):
            raise self._bad(key, "a mapping of strings", value)
        out = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise self._bad(f"{key}.{k}", "a string", v)
            out[str(k)] = str(v)
        return out

    def list(self, key: str) -> list[Any]:
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            raise self._bad(key, "a list", value)
        return value

    def map(self, key: str) -> Mapping[str, Any]:
        value = self.raw.get(key, {}) or {}
        if not isinstance(value, Mapping):
            raise self._bad(key, "a mapping", value)
        return value


def load_project(raw: Mapping[str, Any] | None, root: Path | str, source: str = CONFIG_FILE) -> Project:
    """Validate the ``moorage`` configuration mapping and discover environments."""
    root = Path(root).resolve()
    top = _Reader(raw or {}, "moorage", source)
    top.unknown({"root", "release", "chart", "environments_dir", "backups_dir", "diagnostics_dir",
                 "images", "secrets", "environments", "default_env"})
    release = top.str("release", "moorage", required=True)
    if not DNS_LABEL_RE.match(release):
        raise top._bad("release", "a DNS label (lowercase letters, digits, '-')", release)

    images = tuple(_image(item, i, source) for i, item in enumerate(top.list("images")))
    names = [i.name for i in images]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"image name '{dupes[0]}' appears twice in moorage.images in {source}",
                          "give each image a unique name")

    secrets = top.str_map("secrets")
    env_dir = root / top.str("environments_dir", "environments", required=True)
    sections = top.map("environments")
    environments = discover_environments(env_dir, release, sections, source)
    return Project(
        root=root,
        release=release,
        chart=root / top.str("chart", "chart", required=True),
        environments_dir=env_dir,
        backups_dir=root / top.str("backups_dir", "backups", required=True),
        diagnostics_dir=root / top.str("diagnostics_dir", ".moorage/diagnostics", required=True),
        images=images,
        secrets=secrets,
        environments=environments,
        default_env=top.str("default_env", "dev", required=True),
    )


def _image(item: Any, index: int, source: str) -> Image:
    r = _Reader(item, f"moorage.images[{index}]", source)
    r.unknown({"name", "dockerfile", "context", "build_args", "target", "values_key"})
    name = r.str("name", required=True)
    if not IMAGE_NAME_RE.match(name):
        raise ConfigError(
            f"bad image name '{name}' at moorage.images[{index}].name in {source}",
            "use lowercase letters, digits and . _ - / (a Docker repository name)",
        )
    return Image(
        name=name,
        dockerfile=r.str("dockerfile", f"Dockerfile.{name}", required=True),
        context=r.str("context", ".", required=True),
        build_args={k: expand(v, f"moorage.images[{index}].build_args.{k}", source)
                    for k, v in r.str_map("build_args").items()},
        target=r.str("target"),
        values_key=r.str("values_key", "") or "",
    )


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: str, where: str, source: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` from the environment.

    Lets one committed config serve users with and without registry access
    (``PYTHON_IMAGE: "${MOORAGE_PYTHON_IMAGE:-python:3.12-slim}"``).
    """
    environ = os.environ if environ is None else environ

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if environ.get(name):
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where} in {source} uses ${{{name}}}, which is not set",
                          f"export {name} or write ${{{name}:-default}}")

    return _VAR_RE.sub(sub, value)


def discover_environments(env_dir: Path, release: str, sections: Mapping[str, Any],
                          source: str = CONFIG_FILE) -> dict[str, Environment]:
    """One Environment per ``<env_dir>/<name>.yaml``, merged with its config section."""
    files = sorted(env_dir.glob("*.yaml")) if env_dir.is_dir() else []
    found = {f.stem: f for f in files if ENV_NAME_RE.match(f.stem)}
    orphans = sorted(set(sections) - set(found))
    if orphans:
        raise ConfigError(
            f"moorage.environments.{orphans[0]} in {source} has no values file {env_dir.name}/{orphans[0]}.yaml",
            f"create {env_dir.name}/{orphans[0]}.yaml or remove the section",
        )
    return {name: _environment(name, path, release, sections.get(name) or {}, source)
            for name, path in found.items()}


def _environment(name: str, values_file: Path, release: str, raw: Mapping[str, Any], source: str) -> Environment:
    r = _Reader(raw, f"moorage.environments.{name}", source)
    r.unknown({"namespace", "context", "cluster", "registry", "production", "timeout",
               "start_minikube", "required_secrets", "smoke"})
    cluster = r.str("cluster", "auto", required=True)
    if cluster not in CLUSTER_KINDS:
        raise r._bad("cluster", f"one of {', '.join(CLUSTER_KINDS)}", cluster)
    namespace = r.str("namespace", f"{release}-{name}", required=True)
    if not DNS_LABEL_RE.match(namespace):
        raise r._bad("namespace", "a DNS label (lowercase letters, digits, '-')", namespace)
    smoke = tuple(_smoke(item, f"{r.where}.smoke[{i}]", source) for i, item in enumerate(r.list("smoke")))
    return Environment(
        name=name,
        values_file=values_file,
        namespace=namespace,
        context=r.str("context"),
        cluster=cluster,
        registry=(r.str("registry", "") or "").rstrip("/"),
        production=r.bool("production", False),
        timeout=r.int("timeout", 300, minimum=1),
        start_minikube=r.bool("start_minikube", False),
        required_secrets=r.str_list("required_secrets"),
        smoke=smoke,
    )


def _smoke(item: Any, where: str, source: str) -> SmokeCheck:
    r = _Reader(item, where, source)
    r.unknown({"name", "service", "port", "path", "status", "json_keys", "max_latency_ms"})
    path = r.str("path", "/", required=True)
    if not path.startswith("/"):
        raise r._bad("path", "a path starting with '/'", path)
    return SmokeCheck(
        name=r.str("name", required=True),
        service=r.str("service", required=True),
        port=r.int("port", None, minimum=1) or _missing(r, "port"),
        path=path,
        status=r.int("status", 200, minimum=100),
        json_keys=r.str_list("json_keys"),
        max_latency_ms=r.int("max_latency_ms", None, minimum=1),
    )


def _missing(r: _Reader, key: str):
    raise ConfigError(f"{r.where}.{key} is missing in {r.source}", f"add {r.where}.{key} to {r.source}")


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


def load_values(env: Environment) -> dict[str, Any]:
    """The environment's values overlay, checked to be a YAML mapping."""
    data = load_yaml(env.values_file)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{env.values_file} must hold a YAML mapping of Helm values, got {type(data).__name__}",
                          f"make the top level of {env.values_file} a mapping")
    return data


def load_secrets(project: Project, env: Environment, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Layered secrets: ``.env``, then ``.env.<env>``, then the process environment.

    Only keys named in ``moorage.secrets`` or the environment's ``required_secrets``
    are returned. A required key that is missing or empty is a ConfigError.
    """
    environ = os.environ if environ is None else environ
    wanted = set(project.secrets) | set(env.required_secrets)
    merged: dict[str, str] = {}
    for path in (project.root / ".env", project.root / f".env.{env.name}"):
        if path.is_file():
            for key, value in read_dotenv(path).items():
                if key in wanted and value is not None:
                    merged[key] = value
    for key in wanted:
        if key in environ:
            merged[key] = environ[key]
    for key in env.required_secrets:
        if not merged.get(key, "").strip():
            raise ConfigError(
                f"required secret {key} for environment '{env.name}' is missing or empty",
                f"set {key}=... in .env.{env.name} (or .env, or the environment); see .env.example",
            )
    return merged


def read_dotenv(path: Path) -> dict[str, str | None]:
    """One ``.env`` file's keys; a file that is not UTF-8 text is a ConfigError naming where."""
    from dotenv import dotenv_values

    try:
        return dotenv_values(path, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                          f"save {path.name} as UTF-8") from None


def check_config_file(root: Path) -> None:
    """Fail early, in one line, on a malformed ``invoke.yaml`` (invoke would raise a traceback).

    The parse is skipped while the file is unchanged since it last parsed (a stamp of size and
    mtime under ``.moorage/``), so ``inv --list`` pays a stat, not a parse.
    """
    path = root / CONFIG_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return
    stamp = root / ".moorage" / "config-ok"
    signature = f"{stat.st_size}:{stat.st_mtime_ns}"
    try:
        if stamp.read_text() == signature:
            return
    except OSError:
        pass
    load_yaml(path)
    try:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(signature)
    except OSError:  # a read-only checkout parses every time
        pass


def guard_context(project: Project, env: Environment, current_context: str | None) -> None:
    """Refuse to act on a production context from a non-production environment."""
    owner = project.production_contexts().get(current_context or "")
    if owner and not env.production:
        raise UserError(
            f"kube context '{current_context}' belongs to production environment '{owner}'; "
            f"refusing to run '{env.name}' tasks against it",
            f"switch context (kubectl config use-context ...) or set moorage.environments.{env.name}.context",
        )
