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

from ..core.config import merge
from .call import TERMINATING, blame, call, rejected_values, schema_problems
from .commands import (
    HELM_MAJORS,
    lint_command,
    major_version,
    parse_helm_version,
    rollback_command,
    template_command,
    test_command,
    uninstall_command,
    upgrade_command,
)
from .dependencies import build_dependencies, declares_dependencies, missing_dependencies, stale_dependencies
from .release import (
    PENDING_STATES,
    Release,
    Revision,
    check_not_pending,
    deployed_digest,
    history,
    images_in,
    last_deployed,
    manifest,
    parse_history,
    parse_manifest,
    parse_status,
    status,
)
from .values import (
    PLACEHOLDER_TAG,
    REDACTED,
    chart_defaults,
    image_value,
    image_values,
    layered_values,
    nest,
    path_tokens,
    placeholder_layers,
    placeholder_secrets,
    private_values,
    pull_secret_values,
    secret_values,
    set_value,
)

__all__ = [
    "HELM_MAJORS", "PENDING_STATES", "PLACEHOLDER_TAG", "REDACTED", "TERMINATING", "Release", "Revision",
    "blame", "build_dependencies", "call", "chart_defaults", "check_not_pending", "declares_dependencies",
    "deployed_digest", "history", "image_value", "image_values", "images_in", "last_deployed", "layered_values",
    "lint_command", "major_version", "manifest", "merge", "missing_dependencies", "nest", "parse_helm_version",
    "parse_history", "parse_manifest", "parse_status", "path_tokens", "placeholder_layers", "placeholder_secrets",
    "private_values", "pull_secret_values", "rejected_values", "rollback_command", "schema_problems", "secret_values", "set_value",
    "stale_dependencies", "status", "template_command", "test_command", "uninstall_command", "upgrade_command",
]
