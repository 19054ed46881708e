"""``inv init`` (or ``python -m moorage init`` before a tasks.py exists): a first configuration."""

from __future__ import annotations

import os
from pathlib import Path

from ._boundary import lazy, mtask, reporter

setup = lazy("moorage.init")


@mtask(help={
    "force": "replace an existing invoke.yaml / tasks.py (the old ones are kept as *.bak)",
    "chart": "the chart folder to deploy (default: the shallowest Chart.yaml found)",
    "release": "the Helm release name (default: the chart's name)",
    "dry_run": "print the invoke.yaml it would write and what it guessed; write nothing",
})
def init(ctx, force=False, chart=None, release=None, dry_run=False):
    """Write invoke.yaml and tasks.py for this repository from its Dockerfiles, chart and values files."""
    root = Path((ctx.config.get("moorage", {}) or {}).get("root") or os.getcwd())
    out = reporter()
    done = setup.run(root, chart=chart, release=release, force=force, dry_run=dry_run)
    if dry_run:
        out.line(done.text.rstrip())
    out.step(f"guessed from {done.root}")
    for line in done.proposal.guessed:
        out.line(f"  {line}")
    if done.proposal.checks:
        out.step("check")
        for line in done.proposal.checks:
            out.line(f"  - {line}")
    if dry_run:
        out.line(f"dry run: nothing written ({done.seconds:.2f}s)")
        return
    out.ok(f"wrote {', '.join(done.written)} in {done.seconds:.2f}s")
    out.line("next: inv doctor, then inv dev.deploy --dry-run, then inv dev.deploy")
