"""A proposal as files: a commented ``invoke.yaml``, a two-line ``tasks.py``, environment links.

The text is checked before anything is written: parsed back it must be the
data it was made from, and today's configuration loader
(:func:`moorage.core.config.load_project`) must accept it, environments
included (links are staged in a temporary folder for that).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from ..core.config import CLUSTER_KINDS, CONFIG_FILE, load_project
from ..core.errors import UserError
from .guess import EnvPlan, ImagePlan, Proposal

TASKS_FILE = "tasks.py"
DEFAULT_SERVICE_NAME = "{release}-{name}"
TASKS_TEXT = ("from moorage.tasks import namespace  # Moorage's tasks: inv --list; settings: invoke.yaml\n"
              "ns = namespace(__file__)\n")
CLUSTER_HELP = textwrap.wrap("cluster: auto detects the cluster; set it to say which it is: "
                             + ", ".join(k for k in CLUSTER_KINDS if k != "auto") + ".", 100,
                             initial_indent="      # ", subsequent_indent="      # ", break_on_hyphens=False)


def scalar(value: Any) -> str:
    """A YAML scalar: plain when it reads back as itself, else double-quoted."""
    import json
    import re

    import yaml

    if isinstance(value, bool) or value is None or isinstance(value, int):
        return json.dumps(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./-]*", text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)


def flow(mapping: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in mapping.items()) + "}"


def config_data(p: Proposal) -> dict[str, Any]:
    """The configuration as plain data (what the text must parse back to)."""
    moorage: dict[str, Any] = {"release": p.release, "chart": p.chart, "environments_dir": p.env_dir,
                               "default_env": p.default_env}
    if p.service_name != DEFAULT_SERVICE_NAME:
        moorage["service_name"] = p.service_name
    moorage["images"] = [_image(i) for i in p.images]
    if p.secrets:
        moorage["secrets"] = dict(p.secrets)
    moorage["environments"] = {e.name: _env(e) for e in p.environments}
    data: dict[str, Any] = {"moorage": moorage}
    if p.db:
        data["db"] = dict(p.db)
    return data


def _image(i: ImagePlan) -> dict[str, Any]:
    out: dict[str, Any] = {"name": i.name, "dockerfile": i.dockerfile, "context": i.context, "values_key": i.values_key}
    if i.values_style:
        out["values_style"] = i.values_style
    if i.target:
        out["target"] = i.target
    if i.build_args:
        out["build_args"] = dict(i.build_args)
    return out


def _env(e: EnvPlan) -> dict[str, Any]:
    out: dict[str, Any] = {"values": list(e.values)} if e.values else {}
    out["namespace"] = e.namespace
    if e.local:
        out["cluster"] = "auto"
    if e.production:
        out["production"] = True
    if e.required_secrets:
        out["required_secrets"] = list(e.required_secrets)
    if e.smoke:
        out["smoke"] = [dict(s) for s in e.smoke]
    if e.database:
        out["database"] = dict(e.database)
    return out


def config_text(p: Proposal) -> str:
    """The commented ``invoke.yaml``."""
    lines = [
        "# Moorage configuration, written by `inv init` from what this repository holds.",
        "# Read the lines marked 'check:' (and what `inv init` printed); every key is",
        "# documented in Moorage's README (\"Configuration\").",
        "moorage:",
        "  # Helm release name; smoke checks name Services <release>-<service>.",
        f"  release: {scalar(p.release)}",
        "  # The Helm chart to deploy.",
        f"  chart: {scalar(p.chart)}",
        *_env_dir_comment(p),
        f"  environments_dir: {scalar(p.env_dir)}",
        "  # The environment when neither --env nor MOORAGE_ENV is given.",
        f"  default_env: {scalar(p.default_env)}",
        *([] if p.service_name == DEFAULT_SERVICE_NAME else [
            "  # The chart names its Services without the release: a smoke check's service is the full name.",
            f"  service_name: {scalar(p.service_name)}"]),
        "",
        *_images_text(p),
        *_secrets_text(p),
        "  environments:",
    ]
    for env in p.environments:
        lines += _env_text(env, p)
    if p.db:
        lines += ["", "# Settings of the db.* tasks (invoke's namespaced configuration)."]
        lines += ["db:"] + [f"  {k}: {scalar(v)}" for k, v in p.db.items()]
    if p.migration_notes:
        lines += ["", "# check: migrations Moorage does not run (its db.* tasks drive Alembic):"]
        lines += [f"#   {note}" for note in p.migration_notes]
    return "\n".join(lines) + "\n"


def _env_dir_comment(p: Proposal) -> list[str]:
    if any(e.values for e in p.environments):
        return ["  # A folder of <name>.yaml values files, one per environment (none here: each environment",
                "  # below lists its own values files)."]
    return ["  # One Helm values file per environment, <environments_dir>/<name>.yaml, layered over the chart's."]


def _images_text(p: Proposal) -> list[str]:
    lines = ["  # The images built here. Each tag is a content hash of the image's build inputs; a deploy",
             "  # writes <values_key>.repository and <values_key>.tag into the chart's values."]
    if not p.images:
        lines.append("  images: []  # check: no Dockerfile matched an image of the chart's values")
    else:
        lines.append("  images:")
    for i in p.images:
        lines.append(f"    - name: {scalar(i.name)}  # {i.comment}" if i.comment else f"    - name: {scalar(i.name)}")
        lines += [f"      dockerfile: {scalar(i.dockerfile)}", f"      context: {scalar(i.context)}",
                  f"      values_key: {scalar(i.values_key)}"]
        if i.values_style:
            lines.append(f"      values_style: {scalar(i.values_style)}  # the chart takes one 'repository:tag' value")
        if i.target:
            lines.append(f"      target: {scalar(i.target)}")
        if i.build_args:
            lines.append("      build_args:  # the base image: export the variable to build from another one")
            lines += [f"        {k}: {scalar(v)}" for k, v in i.build_args.items()]
    if p.unused:
        lines.append("  # check: Dockerfiles no image value of the chart seems to use (add them with a values_key):")
        lines += [f"  #   - {flow({'name': d.name, 'dockerfile': d.path, 'context': d.context})}" for d in p.unused]
    return lines + [""]


def _secrets_text(p: Proposal) -> list[str]:
    if not p.secrets:
        return []
    lines = ["  # Values the chart requires that look secret: key (from .env, .env.<env> or the environment)",
             "  # -> the values path it fills. Helm gets them only through a private temporary file.",
             "  secrets:"]
    lines += [f"    {k}: {scalar(v)}" for k, v in p.secrets.items()]
    return lines + [""]


def _env_text(env: EnvPlan, p: Proposal) -> list[str]:
    source = p.links.get(env.values_file)
    if env.values:
        lines = [f"    {env.name}:", "      # Helm values files of this environment, over the chart's values.yaml.",
                 f"      values: [{', '.join(scalar(v) for v in env.values)}]"]
    else:
        lines = [f"    {env.name}:  # values: {env.values_file}" + (f" -> {source}" if source else "")]
    lines.append(f"      namespace: {scalar(env.namespace)}")
    if env.local:
        lines += [*CLUSTER_HELP, "      cluster: auto"]
    if env.production:
        lines.append("      production: true  # dev.* tasks refuse it; `inv deploy` asks before changing it")
    if not env.local:
        lines += ["      # check: the kube context of this environment and the registry its images are pushed to:",
                  "      # context: my-cluster",
                  f"      # registry: registry.example.com/{p.release}"]
    if env.required_secrets:
        lines.append(f"      required_secrets: [{', '.join(scalar(s) for s in env.required_secrets)}]")
    if env.smoke:
        lines.append("      # HTTP checks after each deploy, from the chart's readiness and liveness probes.")
        lines.append("      smoke:")
        lines += [f"        - {flow(s)}" for s in env.smoke]
    if env.database:
        lines.append("      # the chart runs no PostgreSQL: db.* and backup.* refuse, deploys take no backup")
        lines.append(f"      database: {flow(env.database)}")
    return lines


# --- validation and files ---------------------------------------------------------


def validate(p: Proposal, text: str, root: Path) -> None:
    """The text parses back to the proposal and today's configuration loader accepts it."""
    import yaml

    parsed = yaml.safe_load(text)
    if parsed != config_data(p):  # a bug in this module, not bad input
        raise AssertionError(f"invoke.yaml text does not parse back to its data:\n{text}")
    raw = dict(parsed["moorage"])
    with tempfile.TemporaryDirectory(prefix="moorage-init-") as scratch:
        if p.links or p.created:
            staged = Path(scratch) / "environments"
            staged.mkdir()
            for link, target in p.links.items():
                (staged / Path(link).name).symlink_to((root / target).resolve())
            for path, content in p.created.items():
                (staged / Path(path).name).write_text(content)
            raw["environments_dir"] = str(staged)
        project = load_project(raw, root, source=f"the {CONFIG_FILE} inv init would write")
    missing = sorted(set(e.name for e in p.environments) - set(project.environments))
    if missing:
        raise AssertionError(f"environments {missing} would not be found by the loader")


def refuse_existing(root: Path, force: bool) -> None:
    """UserError (nothing written) when invoke.yaml, or a tasks.py that is not Moorage's, is already there."""
    if force:
        return
    tasks = root / TASKS_FILE
    present = [name for name, there in ((CONFIG_FILE, (root / CONFIG_FILE).exists()),
                                        (TASKS_FILE, tasks.exists() and not moorage_tasks(root))) if there]
    if present:
        raise UserError(f"{' and '.join(present)} already exist{'s' if len(present) == 1 else ''} in {root}; "
                        "nothing was written", "re-run with --force to replace them; the old files are kept as *.bak")


def moorage_tasks(root: Path) -> bool:
    """Whether the repository's tasks.py already loads Moorage's tasks (then it is kept as it is)."""
    tasks = root / TASKS_FILE
    return tasks.is_file() and "moorage.tasks" in tasks.read_text(errors="replace")


def write_files(root: Path, p: Proposal, text: str) -> list[str]:
    """Write everything; a file replaced is kept as ``<name>.bak``. Returns what was written."""
    written = []
    for link, target in p.links.items():
        path = root / link
        path.parent.mkdir(parents=True, exist_ok=True)
        relative = os.path.relpath(root / target, path.parent)
        if path.is_symlink() and os.readlink(path) == relative:
            continue
        if path.exists() or path.is_symlink():
            path.replace(path.with_name(path.name + ".bak"))
        try:
            path.symlink_to(relative)
        except OSError:  # no symlinks here (some Windows setups): a copy, which must then be kept in step
            shutil.copyfile(root / target, path)
        written.append(f"{link} -> {target}")
    for rel, content in p.created.items():
        if not (root / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(content)
            written.append(rel)
    if not moorage_tasks(root):
        _replace(root / TASKS_FILE, TASKS_TEXT)
        written.append(TASKS_FILE)
    _replace(root / CONFIG_FILE, text)
    written.append(CONFIG_FILE)
    return written


def _replace(path: Path, text: str) -> None:
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
