"""From what the repository holds to a proposed configuration, with what was guessed and what to check.

Pure decisions: the inputs are the scan (:mod:`.scan`) and the chart's slots
and render (:mod:`.chart`); the output is a :class:`Proposal` that
:mod:`.write` turns into ``invoke.yaml``. Every guess that might be wrong adds
a line to ``checks``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import DNS_LABEL_RE, Environment, Image, Project
from ..core.errors import UserError
from ..helm import PLACEHOLDER_TAG
from ..targets import deepest_context, postgres_workloads, release_workload_running
from .chart import ImageSlot, Probe, Render, assign, images_used, is_secret, match_score, probes
from .scan import Chart, Dockerfile, EnvFiles, Migrations

PRODUCTION_NAMES = ("prod", "production", "prd", "live")
LOCAL_NAMES = ("dev", "local", "development", "develop", "minikube", "kind")
LINK_DIRS = ("environments", "moorage-environments")
#: stage names that are an alternative build of the image (the last stage is what Docker builds by default)
DEV_STAGES = {"dev", "development", "debug", "local", "test"}
AUX_DIRS = {"test", "tests", "testdata", "fixtures", "e2e", "example", "examples", "docs", "scripts", "hack"}


def loader_has(cls: type, name: str) -> bool:
    """Whether the configuration loader knows a setting (its dataclass has the field): init writes only those."""
    import dataclasses

    return name in {f.name for f in dataclasses.fields(cls)}


@dataclass
class ImagePlan:
    name: str
    dockerfile: str
    context: str
    values_key: str
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    comment: str = ""
    values_style: str = ""  # "string" when the chart takes "repository:tag" as one value


@dataclass
class EnvPlan:
    name: str
    values_file: str  # the file Helm reads, relative to the root
    namespace: str
    values: list[str] = field(default_factory=list)  # listed in the config (loaders that read values: lists)
    production: bool = False
    local: bool = False
    required_secrets: list[str] = field(default_factory=list)
    smoke: list[dict[str, Any]] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)  # written only when the default does not fit


@dataclass
class Proposal:
    """Everything ``inv init`` writes, and what it tells the user."""

    release: str
    chart: str
    env_dir: str
    default_env: str
    service_name: str = "{release}-{name}"  # written only when it is not the default
    images: list[ImagePlan] = field(default_factory=list)
    unused: list[Dockerfile] = field(default_factory=list)
    environments: list[EnvPlan] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # link (in env_dir) -> values file it points at
    created: dict[str, str] = field(default_factory=dict)  # new values file -> its content
    secrets: dict[str, str] = field(default_factory=dict)
    db: dict[str, str] = field(default_factory=dict)
    migration_notes: list[str] = field(default_factory=list)
    guessed: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


def release_name(chart_name: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", chart_name.lower()).strip("-")[:53].strip("-")
    return name if DNS_LABEL_RE.match(name or "-") else "app"


def namespace(release: str, env: str) -> str:
    return f"{release}-{env}"[:63].strip("-")


def default_env(names: Sequence[str]) -> str:
    for wanted in LOCAL_NAMES:
        if wanted in names:
            return wanted
    return next((n for n in names if n not in PRODUCTION_NAMES), names[0])


def secret_key(path: str) -> str:
    """``postgresql.auth.password`` → POSTGRESQL_PASSWORD; ``backend.secretKey`` → BACKEND_SECRET_KEY."""
    parts = path.split(".")
    words = [parts[0], parts[-1]] if len(parts) > 1 else parts
    snake = "_".join(re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", w) for w in words)
    return re.sub(r"[^A-Za-z0-9]+", "_", snake).strip("_").upper()


def auxiliary(path: str) -> bool:
    """A Dockerfile of tests, examples, docs or scripts: listed, never matched to the chart's images."""
    return any(part.lower() in AUX_DIRS for part in Path(path).parts[:-1])


def base_build_args(d: Dockerfile) -> dict[str, str]:
    """``ARG PYTHON_IMAGE=python:3.12-slim`` → ``{PYTHON_IMAGE: "${MOORAGE_PYTHON_IMAGE:-python:3.12-slim}"}``:
    the Dockerfile's default, and a variable to build from another base (a local stand-in, a mirror)."""
    return {arg: f"${{{arg if arg.startswith('MOORAGE_') else 'MOORAGE_' + arg}:-{default}}}"
            for arg, default in d.base_args.items()}


def plan_images(dockerfiles: Sequence[Dockerfile], slots: Sequence[ImageSlot],
                checks: list[str]) -> tuple[list[ImagePlan], list[Dockerfile]]:
    """Match Dockerfiles (then their named stages) to the chart's image slots."""
    everything, dockerfiles = dockerfiles, [d for d in dockerfiles if not auxiliary(d.path)]
    by_name = {d.name: d for d in dockerfiles}
    matched = assign(list(by_name), slots)
    free = [s for s in slots if s not in matched.values()]
    stage_of: dict[str, tuple[Dockerfile, str]] = {}
    for d in dockerfiles:
        for stage in d.stages if len(d.stages) > 1 else ():
            name = re.sub(r"[^a-z0-9]+", "-", stage.lower()).strip("-")
            if name and not stage.isdigit() and name not in by_name and name not in stage_of:
                stage_of[name] = (d, stage)
    by_stage = {n: s for n, s in assign(list(stage_of), free).items() if match_score(n, s) >= 2}
    plans = []
    for name, slot in [*matched.items(), *by_stage.items()]:
        d, target = (by_name[name], None) if name in by_name else stage_of[name]
        plan = ImagePlan(name, d.path, d.context, slot.path, target, base_build_args(d),
                         comment=f"the chart's {slot.path} ({slot.repository})")
        if match_score(name, slot) < 2:
            checks.append(f"image '{name}' ({d.path}) was matched to the chart's {slot.path} "
                          f"({slot.repository}) by a partial name: check values_key")
        if slot.form == "string" and loader_has(Image, "values_style"):
            plan.values_style = "string"
        elif slot.form == "string":
            checks.append(f"the chart takes {slot.path} as one 'repository:tag' string, but Moorage writes "
                          f"{slot.path}.repository and {slot.path}.tag: make the template read those two keys")
        other = [st for st in d.stages[:-1] if st.lower() in DEV_STAGES]
        if target is None and other:
            last = "unnamed" if d.stages[-1].isdigit() else d.stages[-1]
            checks.append(f"{d.path} has stages {', '.join(st for st in d.stages if not st.isdigit())}: image "
                          f"'{name}' builds the last one ({last}); set target: {other[0]} to build that one instead")
        plans.append(plan)
    used = {p.dockerfile for p in plans}
    return plans, [d for d in everything if d.path not in used]


def plan_environments(release: str, envs: EnvFiles, taken: set[str], checks: list[str],
                      guessed: list[str]) -> tuple[str, list[EnvPlan], dict[str, str], dict[str, str]]:
    """(environments_dir, environments, links to make, files to create).

    Values files in one folder as ``<env>.yaml`` make that folder the environments_dir. Files named
    ``values-<env>.yaml`` are listed under each environment's ``values:`` when the loader reads such
    lists, else linked as ``<environments_dir>/<env>.yaml`` (the loader reads one file per environment there).
    """
    links: dict[str, str] = {}
    created: dict[str, str] = {}
    if envs.folder:
        guessed.append(f"environments  {', '.join(envs.files)} from {envs.folder}/<name>.yaml")
        plans = [_env_plan(release, n, f) for n, f in envs.files.items()]
        return envs.folder, plans, links, created
    # A folder that does not exist: the loader would take any <name>.yaml in it for an environment.
    env_dir = next((d for d in LINK_DIRS if d not in taken), LINK_DIRS[-1])
    listed = loader_has(Environment, "values_files")
    plans = []
    for env, target in envs.files.items():
        if listed:
            plans.append(_env_plan(release, env, target, values=[target]))
            guessed.append(f"environment   {env} from {target}")
        else:
            link = f"{env_dir}/{env}.yaml"
            links[link] = target
            plans.append(_env_plan(release, env, link))
            guessed.append(f"environment   {env} from {target} (linked as {link})")
    if links:
        checks.append(f"{env_dir}/ holds links to the chart's values files (Moorage reads one values file "
                      f"per environment from {env_dir}/<name>.yaml): commit them with invoke.yaml")
    if not plans:
        link = f"{env_dir}/dev.yaml"
        created[link] = ("# Helm values of the dev environment, layered over the chart's values.yaml.\n"
                         "# Written by `inv init` (no per-environment values file was found).\n{}\n")
        plans.append(_env_plan(release, "dev", link))
        checks.append(f"no per-environment values file was found: {link} (empty) was created for 'dev'")
    for plan in plans:
        if plan.production:
            checks.append(f"environment '{plan.name}' is marked production: true (dev.* tasks refuse it); "
                          "set its kube context and registry")
        elif not plan.local:
            checks.append(f"environment '{plan.name}': set its kube context and registry before deploying to it")
    return env_dir, plans, links, created


def _env_plan(release: str, name: str, values_file: str, values: list[str] | None = None) -> EnvPlan:
    return EnvPlan(name, values_file, namespace(release, name), values=values or [],
                   production=name in PRODUCTION_NAMES, local=name in LOCAL_NAMES)


def service_names(release: str, found: Sequence[Probe]) -> str:
    """``{release}-{name}``, or ``{name}`` when no probed Service carries the release prefix (fixed names)
    and the loader has the ``service_name`` setting."""
    fixed = found and not any(p.service.startswith(f"{release}-") for p in found)
    return "{name}" if fixed and loader_has(Project, "service_template") else "{release}-{name}"


def smoke_checks(release: str, found: Sequence[Probe], checks: list[str],
                 template: str = "{release}-{name}") -> list[dict[str, Any]]:
    """One HTTP check per probe path and Service port; the check's ``service`` is the name the template fills."""
    out = []
    prefix = template.replace("{release}", release).split("{name}")[0]
    for probe in found:
        if not probe.service.startswith(prefix):
            checks.append(f"Service {probe.service} has an HTTP {probe.kind} probe at {probe.path} but its name does "
                          f"not start with '{prefix}' (smoke checks name Services <release>-<name>): no check written")
            continue
        short = probe.service[len(prefix):]
        out.append({"name": f"{short}-{probe.kind}", "service": short, "port": probe.port, "path": probe.path,
                    "status": 200})
    return out


def plan_database(release: str, found: Migrations, images: Sequence[ImagePlan], render: Render,
                  guessed: list[str], checks: list[str]) -> tuple[dict[str, str], list[str]]:
    """invoke's ``db.*`` settings for an Alembic project, and notes for other migration tools."""
    notes = list(found.others)
    checks += [f"{n}: Moorage's db.* tasks run Alembic only; run these from the chart (a Job or an init container)"
               for n in notes]
    if not found.alembic:
        return {}, notes
    ini = found.alembic[0]
    db = {"alembic_ini": ini}
    if len(found.alembic) > 1:
        checks.append(f"several alembic.ini files ({', '.join(found.alembic)}): db.alembic_ini names the first")
    owner = deepest_context(images, ini)
    if owner is None:
        guessed.append(f"migrations    alembic ({ini})")
        checks.append(f"no image's build context holds {ini}: db.migrate's Job needs an image with Alembic in it")
        return db, notes
    try:  # the workload db.migrate will find in the release by itself: nothing to write
        kind, name = release_workload_running(render.objects, f"{release}/{owner.name}", release,
                                              "moorage.environments.<env>.migrations")
    except UserError:
        guessed.append(f"migrations    alembic ({ini})")
        checks.append(f"no workload of the rendered chart runs image '{owner.name}': set "
                      "moorage.environments.<env>.migrations.workload to the one whose image runs Alembic")
        return db, notes
    guessed.append(f"migrations    alembic ({ini}); db.migrate runs as a Job from {kind} {name} (image '{owner.name}')")
    checks.append(f"db.migrate runs `alembic upgrade head` in image '{owner.name}': its working directory must "
                  "hold alembic.ini (else set db.job_command: [alembic, -c, /path/to/alembic.ini])")
    return db, notes


def plan_database_location(render: Render, environments: Sequence[EnvPlan], guessed: list[str],
                           checks: list[str]) -> None:
    """Where the environments' PostgreSQL is: the default (the release's one PostgreSQL pod, found by the
    db.* and backup.* tasks) when the chart runs one; ``kind: none`` when it runs none."""
    if not render.ok:
        return
    found = postgres_workloads(render.objects)
    if len(found) == 1:
        guessed.append(f"database      PostgreSQL in {found[0][0]} (container {found[0][2]}): db.* and backup.* "
                       "find it in the release")
    elif found:
        checks.append(f"the chart runs several PostgreSQL workloads ({', '.join(f[0] for f in found)}): set "
                      "moorage.environments.<env>.database.selector (and .container) to the app's")
    else:
        for env in environments:
            env.database = {"kind": "none"}
        guessed.append("database      none: the chart runs no PostgreSQL (db.* and backup.* refuse, deploys take "
                       "no backup)")
        checks.append("the chart runs no PostgreSQL, so database: {kind: none} is written: if the app uses one "
                      "outside the cluster, set kind: external and url_env (the .env key holding its URL)")


def third_party(slots: Sequence[ImageSlot], images: Sequence[ImagePlan], render: Render, release: str) -> list[str]:
    """Images the chart runs that no Dockerfile here builds (the cluster pulls them)."""
    keys = {i.values_key for i in images}
    from_values = [s.repository for s in slots if s.path not in keys]
    from_render = [ref for ref in images_used(render.objects) if not ref.startswith(f"{release}/")]
    return sorted(set(from_render) or set(from_values))


def secrets_from(render: Render, checks: list[str]) -> dict[str, str]:
    """Values the chart requires to render: the secret-looking ones become ``secrets``; the rest are checks."""
    out = {}
    for path in render.filled:
        if is_secret(path):
            out[secret_key(path)] = path
        else:
            checks.append(f"the chart requires {path} to render: set it in the environment's values file")
    return out


def values_of(*layers: Mapping[str, Any]) -> dict[str, Any]:
    from ..helm import merge

    out: dict[str, Any] = {}
    for layer in layers:
        out = merge(out, layer or {})
    return out


def image_layer(release: str, images: Sequence[ImagePlan]) -> dict[str, Any]:
    """Placeholder image values, as a deploy writes real ones."""
    from ..helm import merge, nest

    out: dict[str, Any] = {}
    for image in images:
        out = merge(out, nest(image.values_key, {"repository": f"{release}/{image.name}", "tag": PLACEHOLDER_TAG}))
    return out


def chart_notes(chart: Chart, others: Sequence[str], render: Render, checks: list[str]) -> None:
    if others:
        checks.append(f"other charts found ({', '.join(others)}): {chart.path} was chosen (pass --chart to pick one)")
    if not render.ok:
        fix = f" (run: helm dependency build {chart.path})" if chart.has_dependencies and "missing in charts" in \
            render.error else ""
        checks.append(f"the chart did not render, so no smoke checks were guessed: {render.error}{fix}")
    elif not probes(render.objects):
        checks.append("no Service of the rendered chart selects pods with an HTTP probe: no smoke checks written")
