"""Helm through its CLI: layered values, version-aware commands, release state.

Values are layered, last wins: the chart's ``values.yaml`` → the environment's
``environments/<env>.yaml`` → generated values (image repositories and tags)
→ secrets from the ``.env`` files. Generated values and secrets are written
to a private temporary directory (0700, files 0600) that is removed when the
command is done, even on Ctrl-C: secrets never reach a command line, the
output or the logs.

Helm 3 and 4 differ in how they wait: Helm 4 has ``--wait=<strategy>``
(default ``hookOnly``) and ``--rollback-on-failure``; Helm 3 has ``--wait``
and ``--atomic``. By default Moorage lets Helm wait for hooks only and runs
its own readiness engine afterwards (it explains failures far better than
Helm's timeout), rolling back itself when the release does not become ready.
``native_wait`` asks Helm to wait and roll back on its own instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .core import proc
from .core.config import Environment, Project
from .core.errors import CommandFailed, OperationFailed, ToolMissing, UserError

PENDING_STATES = ("pending-install", "pending-upgrade", "pending-rollback")
REDACTED = "moorage-redacted"


@dataclass(frozen=True)
class Release:
    """What ``helm status`` says of a release."""

    name: str
    namespace: str
    revision: int
    status: str
    chart: str = ""
    app_version: str = ""

    @property
    def pending(self) -> bool:
        return self.status in PENDING_STATES


@dataclass(frozen=True)
class Revision:
    revision: int
    status: str
    chart: str
    description: str
    updated: str


# --- values -----------------------------------------------------------------

HELM_MAJORS = (3, 4)
# Tag of the placeholder image references that lint and template render with.
PLACEHOLDER_TAG = "0000000000000000"


def parse_helm_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]


def nest(path: str, value: Any) -> dict[str, Any]:
    """``nest("a.b.c", 1)`` → ``{"a": {"b": {"c": 1}}}``."""
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge as Helm merges values files: mappings merge, everything else replaces."""
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(dict(result[key]), value)
        else:
            result[key] = value
    return result


def image_values(project: Project, refs: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """Generated values: ``refs`` maps image name → (repository, tag)."""
    values: dict[str, Any] = {}
    for image in project.images:
        if image.name in refs:
            repository, tag = refs[image.name]
            values = merge(values, nest(image.values_path, {"repository": repository, "tag": tag}))
    return values


def secret_values(project: Project, secrets: Mapping[str, str]) -> dict[str, Any]:
    """Secrets placed at the values paths that ``moorage.secrets`` gives them."""
    values: dict[str, Any] = {}
    for key, path in project.secrets.items():
        if secrets.get(key):
            values = merge(values, nest(path, secrets[key]))
    return values


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
        yield [env.values_file, files["images"], files["secrets"]]


def placeholder_layers(project: Project, env: Environment) -> tuple[dict[str, Any], dict[str, Any]]:
    """Image and secret layers for rendering without a build and without the real secrets."""
    prefix = env.registry or project.release
    refs = {image.name: (f"{prefix}/{image.name}", PLACEHOLDER_TAG) for image in project.images}
    return image_values(project, refs), secret_values(project, placeholder_secrets(project))


# --- commands (pure) ----------------------------------------------------------


def _target(namespace: str, context: str | None) -> list[str]:
    args = ["--namespace", namespace]
    if context:
        args += ["--kube-context", context]
    return args


def upgrade_command(release: str, chart: Path, env: Environment, values_files: Sequence[Path],
                    helm_major: int, *, context: str | None = None, native_wait: bool = False,
                    timeout: int | None = None) -> list[str]:
    """``helm upgrade --install`` with layered values, right for Helm 3 or 4."""
    timeout = timeout or env.timeout
    args = ["helm", "upgrade", "--install", release, str(chart), *_target(env.namespace, context),
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
    args = ["helm", "rollback", release, str(revision), *_target(namespace, context), "--timeout", f"{timeout}s"]
    args += ["--wait=hookOnly"] if helm_major >= 4 else []
    return args


def uninstall_command(release: str, namespace: str, context: str | None, timeout: int) -> list[str]:
    return ["helm", "uninstall", release, *_target(namespace, context), "--timeout", f"{timeout}s"]


def test_command(release: str, namespace: str, context: str | None, timeout: int) -> list[str]:
    return ["helm", "test", release, *_target(namespace, context), "--timeout", f"{timeout}s", "--logs"]


# --- effects ------------------------------------------------------------------


@lru_cache(maxsize=1)
def major_version() -> int:
    """Helm's major version (3 or 4); anything else is a ToolMissing."""
    out = proc.run(["helm", "version", "--template", "{{.Version}}"], timeout=20, what="helm version").stdout
    version = parse_helm_version(out)
    if version is None or version[0] not in HELM_MAJORS:
        raise ToolMissing(f"unsupported Helm version '{out.strip()}'", "install Helm 3 or 4 (scripts/install-helm.sh)")
    return version[0]


def status(release: str, namespace: str, context: str | None) -> Release | None:
    """The release's state, or None when it is not installed."""
    result = proc.run(["helm", "status", release, *_target(namespace, context), "--output", "json"],
                      timeout=60, check=False, what="helm status")
    if result.returncode != 0:
        if "not found" in result.stderr.lower():
            return None
        raise OperationFailed(f"helm status {release} failed: {proc.tail_lines(result.stderr, 3)}",
                              "check that the cluster is reachable (inv doctor)")
    return parse_status(result.stdout)


def parse_status(text: str) -> Release:
    data = json.loads(text)
    info = data.get("info", {})
    chart = data.get("chart", {}).get("metadata", {})
    return Release(name=data["name"], namespace=data.get("namespace", ""), revision=int(data.get("version", 0)),
                   status=info.get("status", "unknown"),
                   chart=f"{chart.get('name', '')}-{chart.get('version', '')}", app_version=chart.get("appVersion", ""))


def history(release: str, namespace: str, context: str | None) -> list[Revision]:
    result = proc.run(["helm", "history", release, *_target(namespace, context), "--output", "json"],
                      timeout=60, check=False, what="helm history")
    if result.returncode != 0:
        return []
    return parse_history(result.stdout)


def parse_history(text: str) -> list[Revision]:
    return [Revision(revision=int(r["revision"]), status=r.get("status", ""), chart=r.get("chart", ""),
                     description=r.get("description", ""), updated=str(r.get("updated", "")))
            for r in json.loads(text or "[]")]


def last_deployed(revisions: Sequence[Revision], before: int | None = None) -> Revision | None:
    """The newest revision that was deployed successfully (optionally older than ``before``)."""
    good = [r for r in revisions if r.status in ("deployed", "superseded") and (before is None or r.revision < before)]
    return max(good, key=lambda r: r.revision) if good else None


def check_not_pending(release: Release | None, revisions: Sequence[Revision], context: str | None) -> None:
    """A release stuck in pending-* blocks every upgrade: say how to recover."""
    if release is None or not release.pending:
        return
    target = f"--namespace {release.namespace}" + (f" --kube-context {context}" if context else "")
    previous = last_deployed(revisions, before=release.revision)
    if previous is not None:
        fix = f"helm rollback {release.name} {previous.revision} {target}"
    else:
        fix = f"helm uninstall {release.name} {target}"
    raise UserError(
        f"release '{release.name}' is stuck in {release.status} at revision {release.revision} "
        "(an earlier helm run was interrupted)",
        f"make sure no other deploy is running, then: {fix}",
    )


def deployed_digest(release: str, namespace: str, context: str | None) -> str:
    """The ``global.deployDigest`` the release was deployed with ("" when unknown)."""
    result = proc.run(["helm", "get", "values", release, *_target(namespace, context), "--output", "json"],
                      timeout=60, check=False, what="helm get values")
    if result.returncode != 0:
        return ""
    try:
        values = json.loads(result.stdout or "{}") or {}
    except ValueError:
        return ""
    return str((values.get("global") or {}).get("deployDigest") or "")


def manifest(release: str, namespace: str, context: str | None) -> list[dict[str, Any]]:
    out = proc.run(["helm", "get", "manifest", release, *_target(namespace, context)],
                   timeout=60, what="helm get manifest").stdout
    return parse_manifest(out)


def parse_manifest(text: str) -> list[dict[str, Any]]:
    import yaml

    from .core.config import yaml_loader

    return [doc for doc in yaml.load_all(text, Loader=yaml_loader()) if isinstance(doc, dict) and doc.get("kind")]


def images_in(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every container image referenced by pod templates in ``objects``."""
    images = []
    for obj in objects:
        spec = obj.get("spec") or {}
        template = (spec.get("jobTemplate", {}).get("spec", {}) if obj.get("kind") == "CronJob" else spec).get(
            "template", {})
        pod = template.get("spec") or (spec if obj.get("kind") == "Pod" else {})
        for key in ("initContainers", "containers"):
            for container in pod.get(key) or []:
                if container.get("image") and container["image"] not in images:
                    images.append(container["image"])
    return images


SCHEMA_MARKERS = ("values don't meet the specifications of the schema", "values.schema.json")
_SCHEMA_LINE = re.compile(r"^- at '(?P<pointer>[^']*)': (?P<problem>.+)$", re.M)
_EXTRA_KEYS = re.compile(r"additional propert(?:y|ies) (?P<keys>'[^']+'(?:, '[^']+')*) not allowed")
TERMINATING = "because it is being terminated"


def schema_problems(stderr: str) -> list[tuple[tuple[str, ...], str]]:
    """Each schema violation helm reports, as (key path, problem).

    ``- at '/backend': additional properties 'replicas' not allowed`` becomes
    ``(("backend", "replicas"), "not allowed by the chart's values schema")``.
    """
    found = []
    for match in _SCHEMA_LINE.finditer(stderr):
        path = tuple(p.replace("~1", "/").replace("~0", "~") for p in match["pointer"].split("/") if p)
        extra = _EXTRA_KEYS.search(match["problem"])
        if extra:
            for key in re.findall(r"'([^']+)'", extra["keys"]):
                found.append(((*path, key), "not allowed by the chart's values schema"))
        else:
            found.append((path, match["problem"]))
    return found


def _sets(values: Any, path: Sequence[str]) -> bool:
    for key in path:
        if isinstance(values, Mapping) and key in values:
            values = values[key]
        elif isinstance(values, list) and key.isdigit() and int(key) < len(values):
            values = values[int(key)]
        else:
            return False
    return True


def blame(path: Sequence[str], values_files: Sequence[Path]) -> Path | None:
    """The last of ``values_files`` that sets ``path`` (the one Helm took it from), if any."""
    from .core.config import load_yaml

    for file in reversed(values_files):
        try:
            if _sets(load_yaml(file), path):
                return file
        except UserError:
            continue
    return None


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def rejected_values(what: str, stderr: str, values_files: Sequence[Path]) -> UserError:
    """One line naming the key, the file that set it and the problem."""
    problems = schema_problems(stderr)
    if not problems:
        return UserError(f"{what}: the values were rejected by the chart: "
                         f"{proc.tail_lines(stderr.replace('Error: ', ''), 2)}",
                         "fix the values in " + (", ".join(_shown(f) for f in values_files) or "the values files"))
    path, problem = problems[0]
    key = ".".join(path) or "(top level)"
    source = blame(path, values_files)
    where = f" in {_shown(source)}" if source else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    fix = (f"fix {_shown(source)}: remove or correct {key}" if source
           else f"set {key} to a valid value in the environment's values")
    return UserError(f"{what}: the values were rejected by the chart: {key}{where}: {problem}{more}", fix)


def call(args: Sequence[str], *, timeout: float, secrets: Sequence[str] = (), what: str,
         values_files: Sequence[Path] = (), shield: bool = False) -> proc.Result:
    """Run a helm command; values rejected by the chart are bad input (exit 2) naming key and file.

    ``values_files`` are the user's own files, searched to say which one set a rejected key.
    """
    try:
        return proc.run(args, timeout=timeout, secrets=secrets, what=what, shield=shield)
    except CommandFailed as exc:
        text = f"{exc.stderr}\n{exc.stdout}"  # helm lint reports on stdout
        if any(marker in text for marker in SCHEMA_MARKERS) or "execution error at" in text:
            raise rejected_values(what, text, values_files) from None
        if TERMINATING in text:
            namespace = re.search(r'namespace[s]? "?([a-z0-9-]+)"? ', text)
            name = namespace.group(1) if namespace else "the target namespace"
            raise OperationFailed(f"{what}: namespace {name} is being deleted, so nothing can be created in it",
                                  "wait until it is gone (kubectl get namespace), then run this again") from None
        raise
