"""``inv init``: a first ``invoke.yaml`` and ``tasks.py`` for an existing repository.

Orchestration floor. It reads the repository (:mod:`.scan`: Dockerfiles and
their stages, the chart and its values files, migration tools), matches the
Dockerfiles to the chart's image values and renders the chart with the
default environment's values (:mod:`.chart`, through ``moorage.helm``'s
command and ``core.proc``) to find Services, ports and probe paths, decides
(:mod:`.guess`), then writes a commented configuration that today's loader
has accepted (:mod:`.write`). Nothing is overwritten without ``force``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import load_yaml
from . import chart as charts
from . import guess, scan, write
from .guess import Proposal


@dataclass
class Outcome:
    """What ``inv init`` did: the proposal, the text of invoke.yaml, the files written, the time it took."""

    root: Path
    proposal: Proposal
    text: str
    written: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run(root: Path | str, *, chart: str | None = None, release: str | None = None, force: bool = False,
        dry_run: bool = False) -> Outcome:
    """Read the repository at ``root``, propose a configuration, check it and (unless ``dry_run``) write it."""
    start = time.monotonic()
    root = Path(root).resolve()
    write.refuse_existing(root, force or dry_run)
    proposal = propose(root, chart=chart, release=release)
    text = write.config_text(proposal)
    write.validate(proposal, text, root)
    outcome = Outcome(root, proposal, text)
    if not dry_run:
        outcome.written = write.write_files(root, proposal, text)
    outcome.seconds = round(time.monotonic() - start, 2)
    return outcome


def propose(root: Path, *, chart: str | None = None, release: str | None = None) -> Proposal:
    """The configuration the repository suggests, with what was guessed and what to check."""
    tree = scan.walk(root)
    found, others = scan.pick_chart(tree, chart)
    name = release or guess.release_name(found.name)
    guessed = [f"chart         {found.path} (release {name})"]
    checks: list[str] = []
    slots = charts.image_slots(found.values)
    images, unused = guess.plan_images(scan.dockerfiles(tree), slots, checks)
    guessed += [f"image         {i.name}: {i.dockerfile} (context {i.context}) -> values {i.values_key}"
                + (f", target {i.target}" if i.target else "") for i in images]
    taken = {d for d in guess.LINK_DIRS if (root / d).exists()}
    env_dir, envs, links, created = guess.plan_environments(name, scan.env_files(tree, found), taken, checks, guessed)
    default = guess.default_env([e.name for e in envs])
    proposal = Proposal(release=name, chart=found.path, env_dir=env_dir, default_env=default, images=images,
                        unused=unused, environments=envs, links=links, created=created)
    render = _render(root, found, proposal)
    _from_render(proposal, render, guessed, checks)
    proposal.db, proposal.migration_notes = guess.plan_database(name, scan.migrations(tree), images, render,
                                                               guessed, checks)
    guess.plan_database_location(render, envs, guessed, checks)
    pulled = guess.third_party(slots, images, render, name)
    if pulled:
        guessed.append(f"pulled        {', '.join(pulled)} (images the chart runs that no Dockerfile here builds)")
    guess.chart_notes(found, others, render, checks)
    if unused:
        checks.append(f"Dockerfiles not matched to the chart's values: {', '.join(d.path for d in unused)} "
                      "(listed, commented out, in invoke.yaml)")
    if proposal.secrets:
        checks.append(f"put {', '.join(proposal.secrets)} in .env (or .env.<env>, or export them) before deploying")
    _gitignore(root, checks)
    proposal.guessed, proposal.checks = guessed, checks
    return proposal


def _from_render(proposal: Proposal, render: charts.Render, guessed: list[str], checks: list[str]) -> None:
    """The default environment's smoke checks (from the probes) and secrets (values the chart requires)."""
    name = proposal.release
    first = next(e for e in proposal.environments if e.name == proposal.default_env)
    found = charts.probes(render.objects)
    proposal.service_name = guess.service_names(name, found)
    first.smoke = guess.smoke_checks(name, found, checks, proposal.service_name)
    proposal.secrets = guess.secrets_from(render, checks)
    first.required_secrets = list(proposal.secrets)
    label = f"smoke ({first.name})"
    full = proposal.service_name.replace("{release}", name)
    guessed += [f"{label:<13} {s['name']}: GET {s['path']} on Service {full.replace('{name}', s['service'])}:"
                f"{s['port']}" for s in first.smoke]
    guessed += [f"secret        {k} -> {v} (the chart requires it)" for k, v in proposal.secrets.items()]


def _render(root: Path, found: scan.Chart, proposal: Proposal) -> charts.Render:
    """The chart rendered with the default environment's values and placeholder images."""
    env = next(e for e in proposal.environments if e.name == proposal.default_env)
    source = proposal.links.get(env.values_file, env.values_file)
    with tempfile.TemporaryDirectory(prefix="moorage-init-") as scratch:
        if env.values_file in proposal.created:
            values_file = Path(scratch) / "env.yaml"
            values_file.write_text(proposal.created[env.values_file])
        else:
            values_file = root / source
        env_values = load_yaml(values_file) or {}
        known = guess.values_of(found.values, env_values if isinstance(env_values, dict) else {})
        layer = guess.image_layer(proposal.release, proposal.images)
        return charts.render(proposal.release, root / found.path, env.namespace, [values_file], layer, known,
                             Path(scratch))


def _gitignore(root: Path, checks: list[str]) -> None:
    ignore = root / ".gitignore"
    text = ignore.read_text(errors="replace") if ignore.is_file() else ""
    wanted = [p for p in (".env", ".env.*", ".moorage/") if p not in text.split()]
    if wanted and ((root / ".git").exists() or ignore.is_file()):
        checks.append(f"add {', '.join(wanted)} to .gitignore (secrets and Moorage's local state)")
