"""What the chart says: where its values take images, and, rendered, its Services, ports and probes.

The image slots come from the chart's ``values.yaml`` (a mapping holding a
``repository`` string, as ``backend.image.{repository,tag}`` or
``images.api.{repository,tag}``, or a single ``image: repo:tag`` string).
Rendering goes through ``helm template`` (moorage.helm's command, run by
core.proc) with the environment's values and placeholder images; a value the
chart insists on (``required``) is filled with a placeholder and reported, so
that the render can show the Services and the probes smoke checks come from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import helm
from ..core import proc
from ..core.errors import MoorageError

PLACEHOLDER = "moorage-init-placeholder"
MAX_FILLS = 8
_SECRETISH = re.compile(r"(password|passwd|secret|token|apikey|api_key|credential|privatekey|private_key)", re.I)
_DOTTED = re.compile(r"\b[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)+\b")


@dataclass(frozen=True)
class ImageSlot:
    """A place in the chart's values that names an image."""

    path: str  # dotted values path: ``backend.image`` (mapping) or ``worker.image`` (string)
    repository: str
    form: str  # "mapping" ({repository, tag}) or "string" ("repo:tag")


def image_slots(values: Any, path: tuple[str, ...] = ()) -> list[ImageSlot]:
    """Every image slot of a values tree (lists are not searched: a values path cannot index them today)."""
    slots: list[ImageSlot] = []
    if not isinstance(values, Mapping):
        return slots
    if isinstance(values.get("repository"), str) and path:
        registry = values.get("registry")
        repo = f"{registry}/{values['repository']}" if isinstance(registry, str) and registry else values["repository"]
        slots.append(ImageSlot(".".join(path), repo, "mapping"))
    for key, value in values.items():
        key = str(key)
        if key == "image" and isinstance(value, str) and value:
            slots.append(ImageSlot(".".join((*path, key)), value, "string"))
        elif isinstance(value, Mapping):
            slots += image_slots(value, (*path, key))
    return slots


def _repo_base(repository: str) -> str:
    """``ghcr.io/acme/shop-api:1.2`` → ``shop-api``."""
    last = repository.rsplit("/", 1)[-1]
    return last.split("@")[0].split(":")[0].lower()


def match_score(name: str, slot: ImageSlot) -> int:
    """How well an image name fits a slot: 3 a path key is the name, 2 the repository is, 1 either contains it."""
    parts = [p.lower() for p in slot.path.split(".") if p not in ("image", "images")]
    base = _repo_base(slot.repository)
    if name in parts:
        return 3
    if base == name or base.endswith(("-" + name, "_" + name, "/" + name)) or base.startswith(name + "-"):
        return 2
    if any(name in p or p in name for p in parts if len(p) > 2) or name in base:
        return 1
    return 0


def assign(names: Sequence[str], slots: Sequence[ImageSlot]) -> dict[str, ImageSlot]:
    """Image name → its slot, best matches first, each slot used once."""
    pairs = sorted(((match_score(n, s), i, j) for i, n in enumerate(names) for j, s in enumerate(slots)),
                   key=lambda t: (-t[0], t[1], t[2]))
    out: dict[str, ImageSlot] = {}
    used: set[int] = set()
    for score, i, j in pairs:
        if score and names[i] not in out and j not in used:
            out[names[i]] = slots[j]
            used.add(j)
    return out


# --- rendering -------------------------------------------------------------------


@dataclass
class Render:
    """The outcome of rendering the chart for one environment."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    filled: dict[str, str] = field(default_factory=dict)  # values path the chart requires -> placeholder given
    error: str = ""  # why it could not be rendered ("" when it was)

    @property
    def ok(self) -> bool:
        return not self.error


def _lookup(values: Any, path: str) -> tuple[bool, Any]:
    for key in path.split("."):
        if not isinstance(values, Mapping) or key not in values:
            return False, None
        values = values[key]
    return True, values


def required_paths(message: str, values: Mapping[str, Any], already: Mapping[str, str]) -> list[str]:
    """Values paths named in a render error that the values hold but leave empty."""
    out = []
    for path in _DOTTED.findall(message):
        found, value = _lookup(values, path)
        if found and value in (None, "") and path not in already and path not in out:
            out.append(path)
    return out


def is_secret(path: str) -> bool:
    """A values path that looks like it holds a secret (a password, a token, a secret key...)."""
    return bool(_SECRETISH.search(path.replace(".", "")))


def render(release: str, chart: Path, namespace: str, values_files: Sequence[Path], image_layer: Mapping[str, Any],
           known_values: Mapping[str, Any], scratch: Path) -> Render:
    """``helm template`` with the given values and placeholder images, filling values the chart requires."""
    result = Render()
    for attempt in range(MAX_FILLS + 1):
        layer = dict(image_layer)
        for path, value in result.filled.items():
            layer = helm.merge(layer, helm.nest(path, value))
        generated = scratch / f"init-values-{attempt}.yaml"
        _dump(generated, layer)
        args = helm.template_command(release, chart, namespace, [*values_files, generated])
        try:
            done = proc.run(args, timeout=120, check=False, what="helm template")
        except MoorageError as exc:
            result.error = exc.line()
            return result
        if done.returncode == 0:
            result.objects = helm.parse_manifest(done.stdout)
            return result
        message = done.stderr.strip()
        # The first path a message names is the one the chart asks for ("x is required, or set y").
        wanted = required_paths(message, known_values, result.filled)[:1]
        if not wanted or attempt == MAX_FILLS:
            result.error = proc.tail_lines(message.replace("Error: ", ""), 2)
            return result
        for path in wanted:
            result.filled[path] = PLACEHOLDER
    return result


def _dump(path: Path, values: Mapping[str, Any]) -> None:
    import yaml

    path.write_text(yaml.safe_dump(dict(values), default_flow_style=False, sort_keys=True))


# --- what the rendered objects say ---------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """An HTTP probe reachable through a Service port: a smoke check candidate."""

    service: str  # the Service's full name
    port: int  # the Service's port
    path: str
    kind: str  # "ready" or "live"


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def _pod(obj: Mapping[str, Any]) -> tuple[dict, dict]:
    template = (obj.get("spec") or {}).get("template") or {}
    return (template.get("metadata") or {}).get("labels") or {}, template.get("spec") or {}


def workloads(objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [o for o in objects if o.get("kind") in WORKLOADS]


def services(objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [o for o in objects if o.get("kind") == "Service"]


def _container_port(container: Mapping[str, Any], port: Any) -> tuple[int | None, str | None]:
    """A probe's port (a number or a port name) as (number, name)."""
    for p in container.get("ports") or []:
        if port in (p.get("containerPort"), p.get("name")):
            return p.get("containerPort"), p.get("name")
    return (port, None) if isinstance(port, int) else (None, None)


def _service_port(service: Mapping[str, Any], number: int | None, name: str | None) -> int | None:
    for p in (service.get("spec") or {}).get("ports") or []:
        target = p.get("targetPort", p.get("port"))
        if target is not None and target in (number, name):
            return p.get("port")
    return None


def probes(objects: Sequence[Mapping[str, Any]]) -> list[Probe]:
    """HTTP readiness and liveness probes of the pods each Service selects, on the Service's ports."""
    found: list[Probe] = []
    pods = [_pod(w) for w in workloads(objects)]
    for svc in services(objects):
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            continue
        for labels, spec in pods:
            if not selector.items() <= labels.items():
                continue
            for container in spec.get("containers") or []:
                for field_name, kind in (("readinessProbe", "ready"), ("livenessProbe", "live")):
                    http = (container.get(field_name) or {}).get("httpGet") or {}
                    if not http or str(http.get("scheme", "HTTP")).upper() != "HTTP":
                        continue
                    port = _service_port(svc, *_container_port(container, http.get("port")))
                    probe = Probe(svc["metadata"]["name"], port or 0, http.get("path") or "/", kind)
                    if port and not any((p.service, p.port, p.path) == (probe.service, port, probe.path) for p in found):
                        found.append(probe)
    return found


def images_used(objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Container image → the workload (``Kind/name``) that first runs it."""
    out: dict[str, str] = {}
    for w in workloads(objects) + [o for o in objects if o.get("kind") in ("Job", "CronJob")]:
        spec = w.get("spec") or {}
        if w.get("kind") == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            if container.get("image"):
                out.setdefault(container["image"], f"{w['kind']}/{w['metadata']['name']}")
    return out
