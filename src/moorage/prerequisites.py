"""Objects a chart expects before it is installed: manifests kept beside it, and Secrets from ``.env``.

Charts often reference ConfigMaps and Secrets they do not create (kept in a
``manifests/`` folder and applied by hand before ``helm install``). Moorage
applies them with server-side apply into the environment's namespace, every
deploy (idempotent: an unchanged object is a no-op on the server), before
Helm runs, so the pods never wait on a missing object. Secrets are built here
from ``.env`` keys: their values travel only in the API request body, never
on a command line, in output or in a file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .core.config import Environment, Prerequisites
from .core.errors import ConfigError
from .core.values import load_yaml_documents

MANAGER = "moorage"


def manifest_files(prereqs: Prerequisites) -> list[Path]:
    """The YAML files named, folders expanded (sorted, so the order is the same every run)."""
    files: list[Path] = []
    for path in prereqs.manifests:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            files.append(path)
    return files


def manifest_objects(prereqs: Prerequisites) -> list[tuple[Path, dict[str, Any]]]:
    """Every object in the manifests with the file it came from; a document without kind/name is bad input."""
    found = []
    for path in manifest_files(prereqs):
        for index, doc in enumerate(load_yaml_documents(path)):
            if doc is None:
                continue
            meta = doc.get("metadata") if isinstance(doc, Mapping) else None
            if not isinstance(doc, Mapping) or not doc.get("kind") or not doc.get("apiVersion") \
                    or not isinstance(meta, Mapping) or not meta.get("name"):
                raise ConfigError(f"{path}: document {index + 1} is not a Kubernetes object "
                                  "(apiVersion, kind and metadata.name are needed)", f"fix {path}")
            found.append((path, dict(doc)))
    return found


def secret_objects(prereqs: Prerequisites, secrets: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Secrets to make, with their data from the loaded ``.env`` values (base64, as the API wants)."""
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": spec.name},
             "data": {key: base64.b64encode(secrets[env_key].encode()).decode()
                      for key, env_key in spec.data.items()}}
            for spec in prereqs.secrets]


def pull_secret_object(env: Environment, secrets: Mapping[str, str]) -> dict[str, Any]:
    """The ``kubernetes.io/dockerconfigjson`` Secret the cluster pulls the environment's images with."""
    access = env.registry_access
    host = env.registry.split("/", 1)[0]
    user, password = secrets[access.username_key], secrets[access.password_key]
    config = {"auths": {host: {"username": user, "password": password,
                               "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": access.pull_secret},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def plan_lines(env: Environment, root: Path) -> list[str]:
    """What a deploy applies before Helm, for ``--dry-run`` and the log (no secret value)."""
    prereqs, access = env.prerequisites, env.registry_access
    lines = []
    if access.pull_secret and env.registry:
        lines.append(f"apply    Secret/{access.pull_secret} (registry {env.registry.split('/', 1)[0]}) from .env keys "
                     f"{access.username_key}, {access.password_key}")
    for path, obj in manifest_objects(prereqs):
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        lines.append(f"apply    {obj['kind']}/{obj['metadata']['name']} (from {shown})")
    for spec in prereqs.secrets:
        lines.append(f"apply    Secret/{spec.name} from .env keys {', '.join(sorted(spec.data.values()))}")
    return lines
