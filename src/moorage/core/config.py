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
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .datastore import Database, Migrations, database, migrations
from .errors import ConfigError, UserError
from .reader import Reader as _Reader
from .registry_settings import RegistryAccess, registry
from .values import load_values, load_yaml, merge, yaml_loader  # noqa: F401 - re-exported

CONFIG_FILE = "invoke.yaml"
#: Alembic's configuration file: the project's one file of that name unless configuration names it
ALEMBIC_INI = "alembic.ini"
#: allowed values of an environment's ``cluster:``; moorage.cluster detects the kind for "auto"
CLUSTER_KINDS = ("auto", "minikube", "kind", "k3d", "docker-desktop", "rancher-desktop", "colima", "orbstack",
                 "microk8s", "containerd-local", "local-engine", "remote")
ENV_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
DNS_LABEL_RE = ENV_NAME_RE
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class SyncRule:
    """Files ``dev.watch`` copies into running containers: ``src`` a glob from the project root whose part
    below its fixed prefix (:attr:`base`) goes under ``dest``; ``then``: ``reload``, ``restart`` or a command."""

    src: str
    dest: str
    then: str = "reload"

    @property
    def base(self) -> str:
        parts = self.src.split("/")
        fixed = next((i for i, part in enumerate(parts) if set(part) & set("*?[")), len(parts))
        return "/".join(parts[:fixed])


@dataclass(frozen=True)
class Image:
    """One image of the stack: how to build it and where its tag goes in the values."""

    name: str
    dockerfile: str
    context: str = "."
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    values_key: str = ""
    values_style: str = "split"  # "split": {repository, tag}; "string": "repository:tag"
    pull_policy: str | None = None  # written as pullPolicy beside repository and tag
    sync: tuple[SyncRule, ...] = ()  # files dev.watch copies into running containers

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
class SecretSpec:
    """A Secret made from ``.env`` keys before the chart is installed (``data``: Secret key → .env key)."""

    name: str
    data: Mapping[str, str]


@dataclass(frozen=True)
class Prerequisites:
    """Objects the chart expects to exist before it is installed."""

    manifests: tuple[Path, ...] = ()  # YAML files or folders of them, applied server-side
    secrets: tuple[SecretSpec, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.manifests or self.secrets)

    def __add__(self, other: Prerequisites) -> Prerequisites:
        return Prerequisites(self.manifests + other.manifests, self.secrets + other.secrets)

    @property
    def env_keys(self) -> tuple[str, ...]:
        return tuple(key for spec in self.secrets for key in spec.data.values())


@dataclass(frozen=True)
class Environment:
    name: str
    values_files: tuple[Path, ...]  # in the order Helm applies them, after the chart's defaults
    namespace: str
    context: str | None = None
    cluster: str = "auto"
    registry: str = ""
    registry_access: RegistryAccess = RegistryAccess()
    production: bool = False
    timeout: int = 300
    start_minikube: bool = False
    required_secrets: tuple[str, ...] = ()
    smoke: tuple[SmokeCheck, ...] = ()
    prerequisites: Prerequisites = Prerequisites()
    database: Database = Database()
    migrations: Migrations = Migrations()

    @property
    def values_file(self) -> Path:
        """The environment's own (last, winning) values file, named in messages."""
        return self.values_files[-1]


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
    service_template: str = "{release}-{name}"

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

    def service_name(self, name: str) -> str:
        """The full name of the release's Service ``name`` (``service_name`` template of the config)."""
        return self.service_template.format(release=self.release, name=name)

    def production_contexts(self) -> dict[str, str]:
        """Kube contexts that some production environment names, mapped to that environment."""
        return {e.context: e.name for e in self.environments.values() if e.production and e.context}


def load_project(raw: Mapping[str, Any] | None, root: Path | str, source: str = CONFIG_FILE) -> Project:
    """Validate the ``moorage`` configuration mapping and discover environments."""
    root = Path(root).resolve()
    top = _Reader(raw or {}, "moorage", source)
    top.unknown({"root", "release", "chart", "environments_dir", "backups_dir", "diagnostics_dir",
                 "images", "secrets", "environments", "default_env", "service_name", "prerequisites"})
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
    environments = discover_environments(env_dir, release, sections, source, root)
    shared = prerequisites(top.map("prerequisites"), "moorage.prerequisites", source, root)
    if shared:
        environments = {name: replace(env, prerequisites=shared + env.prerequisites)
                        for name, env in environments.items()}
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
        service_template=_service_template(top),
    )


def _service_template(top: _Reader) -> str:
    template = top.str("service_name", "{release}-{name}", required=True)
    fields = set(re.findall(r"\{([^}]*)\}", template))
    if "name" not in fields or fields - {"release", "name"}:
        raise top._bad("service_name", "a template with {name} and optionally {release}", template)
    return template


def _image(item: Any, index: int, source: str) -> Image:
    r = _Reader(item, f"moorage.images[{index}]", source)
    r.unknown({"name", "dockerfile", "context", "build_args", "target", "values_key", "values_style",
               "pull_policy", "sync"})
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
        values_key=_values_key(r),
        values_style=r.choice("values_style", ("split", "string"), "split"),
        pull_policy=r.choice("pull_policy", ("Always", "IfNotPresent", "Never"), None),
        sync=tuple(_sync_rule(rule, f"{r.where}.sync[{i}]", source) for i, rule in enumerate(r.list("sync"))),
    )


def _sync_rule(item: Any, where: str, source: str) -> SyncRule:
    r = _Reader(item, where, source)
    r.unknown({"src", "dest", "then"})
    src, dest = r.str("src", required=True).strip().rstrip("/"), r.str("dest", required=True).strip()
    if src.startswith("/") or ".." in src.split("/"):
        raise r._bad("src", "a glob relative to the project root (no leading '/', no '..')", src)
    if not dest.startswith("/"):
        raise r._bad("dest", "an absolute path in the container", dest)
    then = r.str("then", "reload", required=True).strip()
    try:
        shlex.split(then)
    except ValueError:
        raise r._bad("then", "reload, restart or a command line", then) from None
    return SyncRule(src, dest.rstrip("/") or "/", then)


_VALUES_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(\[\d+\])*(\.[A-Za-z0-9_-]+(\[\d+\])*)*$")


def _values_key(r: _Reader) -> str:
    key = r.str("values_key", "") or ""
    if key and not _VALUES_KEY_RE.match(key):
        raise r._bad("values_key", "a dotted values path such as backend.image or workers[0].image", key)
    return key


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
                          source: str = CONFIG_FILE, root: Path | None = None) -> dict[str, Environment]:
    """One Environment per ``<env_dir>/<name>.yaml``, merged with its config section.

    A section may instead list its own ``values`` files (any paths, relative to the project):
    a chart's ``values-local.yaml`` works as it is, with no file under ``env_dir``.
    """
    root = root or env_dir.parent
    files = sorted(env_dir.glob("*.yaml")) if env_dir.is_dir() else []
    found = {f.stem: (f,) for f in files if ENV_NAME_RE.match(f.stem)}
    for name, raw in sections.items():
        listed = (raw or {}).get("values") if isinstance(raw, Mapping) else None
        if listed is not None:
            found[name] = _values_files(name, listed, root, source)
    orphans = sorted(set(sections) - set(found))
    if orphans:
        raise ConfigError(
            f"moorage.environments.{orphans[0]} in {source} has no values file {env_dir.name}/{orphans[0]}.yaml",
            f"create {env_dir.name}/{orphans[0]}.yaml, list its files under values:, or remove the section",
        )
    bad = sorted(n for n in found if not ENV_NAME_RE.match(n))
    if bad:
        raise ConfigError(f"environment name '{bad[0]}' in {source} is not a DNS label",
                          "use lowercase letters, digits and '-'")
    return {name: _environment(name, paths, release, sections.get(name) or {}, source, root)
            for name, paths in sorted(found.items())}


def _values_files(name: str, listed: Any, root: Path, source: str) -> tuple[Path, ...]:
    where = f"moorage.environments.{name}.values"
    if not isinstance(listed, list) or not listed or not all(isinstance(v, str) and v for v in listed):
        raise ConfigError(f"{where} in {source} must be a non-empty list of file paths",
                          f"e.g. values: [chart/values-{name}.yaml]")
    paths = []
    for i, item in enumerate(listed):
        path = Path(item) if Path(item).is_absolute() else root / item
        if not path.is_file():
            raise ConfigError(f"{where}[{i}] in {source}: {item} does not exist",
                              f"create {item} or fix the path (relative to {root})")
        paths.append(path)
    return tuple(paths)


def _environment(name: str, values_files: tuple[Path, ...], release: str, raw: Mapping[str, Any],
                 source: str, root: Path) -> Environment:
    r = _Reader(raw, f"moorage.environments.{name}", source)
    r.unknown({"namespace", "context", "cluster", "registry", "production", "timeout",
               "start_minikube", "required_secrets", "smoke", "values", "prerequisites", "database", "migrations"})
    cluster = r.str("cluster", "auto", required=True)
    if cluster not in CLUSTER_KINDS:
        raise r._bad("cluster", f"one of {', '.join(CLUSTER_KINDS)}", cluster)
    namespace = r.str("namespace", f"{release}-{name}", required=True)
    if not DNS_LABEL_RE.match(namespace):
        raise r._bad("namespace", "a DNS label (lowercase letters, digits, '-')", namespace)
    smoke = tuple(_smoke(item, f"{r.where}.smoke[{i}]", source) for i, item in enumerate(r.list("smoke")))
    registry_url, access = registry(r.raw.get("registry"), f"{r.where}.registry", source, root, release)
    return Environment(
        name=name,
        values_files=values_files,
        namespace=namespace,
        context=r.str("context"),
        cluster=cluster,
        registry=registry_url,
        registry_access=access,
        production=r.bool("production", False),
        timeout=r.int("timeout", 300, minimum=1),
        start_minikube=r.bool("start_minikube", False),
        required_secrets=r.str_list("required_secrets"),
        smoke=smoke,
        prerequisites=prerequisites(r.map("prerequisites"), f"{r.where}.prerequisites", source, root),
        database=database(r.raw.get("database"), f"{r.where}.database", source),
        migrations=migrations(r.raw.get("migrations"), f"{r.where}.migrations", source),
    )


def prerequisites(raw: Mapping[str, Any], where: str, source: str, root: Path) -> Prerequisites:
    """``prerequisites: {manifests: [paths], secrets: [{name, data: {SECRET_KEY: ENV_KEY}}]}``."""
    r = _Reader(raw, where, source)
    r.unknown({"manifests", "secrets"})
    manifests = []
    for i, item in enumerate(r.str_list("manifests")):
        path = root / item
        if not path.exists():
            raise ConfigError(f"{where}.manifests[{i}] in {source}: {item} does not exist",
                              f"fix the path (relative to {root}) or create it")
        manifests.append(path)
    secrets = []
    for i, item in enumerate(r.list("secrets")):
        s = _Reader(item, f"{where}.secrets[{i}]", source)
        s.unknown({"name", "data"})
        name = s.str("name", required=True)
        if not DNS_SUBDOMAIN_RE.match(name):
            raise s._bad("name", "a Kubernetes object name (lowercase letters, digits, '-', '.')", name)
        data = s.str_map("data")
        if not data:
            raise s._bad("data", "a mapping of Secret key to .env key", data)
        secrets.append(SecretSpec(name, data))
    return Prerequisites(tuple(manifests), tuple(secrets))


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


def load_secrets(project: Project, env: Environment, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Layered secrets: ``.env``, then ``.env.<env>``, then the process environment.

    Only keys named in ``moorage.secrets`` or the environment's ``required_secrets``
    are returned. A required key that is missing or empty is a ConfigError.
    """
    environ = os.environ if environ is None else environ
    needed = (*env.required_secrets, *env.prerequisites.env_keys, *env.registry_access.env_keys)
    wanted = set(project.secrets) | set(needed)
    if env.database.url_env:
        wanted.add(env.database.url_env)
    merged: dict[str, str] = {}
    for path in (project.root / ".env", project.root / f".env.{env.name}"):
        if path.is_file():
            for key, value in read_dotenv(path).items():
                if key in wanted and value is not None:
                    merged[key] = value
    for key in wanted:
        if key in environ:
            merged[key] = environ[key]
    for key in needed:
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
