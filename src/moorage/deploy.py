"""The deploy pipeline: preflight → build → deliver → helm → wait → smoke → summary.

This is the orchestration floor: it observes the world through the
capabilities (images, helm, kube, readiness, smoke), asks ``moorage.plan`` for
the steps, and executes them, timing each phase. ``--dry-run`` stops after the
plan. The same pipeline serves ``dev.deploy`` (local clusters) and ``deploy``
(staging and production from CI, where images are pushed to the registry).

Failure policy, as in Skaffold/Garden: after an upgrade that does not become
ready (or fails its smoke tests) the release is rolled back to the revision
that was deployed before, unless ``no_rollback``; a failed first install is
left in place for inspection, with the commands to clean it up. Ctrl-C is
turned into a line that says what state things are in; helm itself is never
cut half-way (see ``proc.run(shield=True)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import helm, plan
from .connection import Connected, connect, wait_release
from .core.config import DEFAULT_ALEMBIC_INI, Environment, Project, load_secrets, load_values
from .core.errors import Interrupted, MoorageError, OperationFailed
from .core.report import Reporter


@dataclass
class Options:
    dry_run: bool = False
    force: bool = False
    no_rollback: bool = False
    smoke: bool | None = None  # None: run them unless nothing changed
    native_wait: bool = False
    allow_production: bool = False
    # Take a verified backup before an upgrade that has pending migrations (``deploy`` to shared
    # environments). The database is the environment's pod, or DATABASE_URL (external PostgreSQL).
    backup_before_migrations: bool = False
    alembic_ini: str = DEFAULT_ALEMBIC_INI


@dataclass
class Summary:
    environment: str
    namespace: str
    release: str
    status: str = "planned"
    revision: int | None = None
    images: dict[str, str] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    smoke: list[dict[str, Any]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    rolled_back_to: int | None = None
    diagnostics: str | None = None
    backup: str | None = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Phases:
    """Times each phase and remembers which one is running (for Ctrl-C messages)."""

    def __init__(self, summary: Summary, reporter: Reporter):
        self.summary = summary
        self.reporter = reporter
        self.current = "preflight"

    @contextmanager
    def __call__(self, name: str, title: str | None = None) -> Iterator[None]:
        self.current = name
        if title:
            self.reporter.step(title)
        start = time.monotonic()
        try:
            yield
        finally:
            self.summary.phases[name] = round(time.monotonic() - start, 3)


def run(project: Project, env: Environment, options: Options, reporter: Reporter,
        on_plan: Callable[[plan.DeployPlan], None] | None = None) -> Summary:
    """Deploy ``env``; returns the summary, raises the project's errors on failure."""
    from . import images

    summary = Summary(env.name, env.namespace, project.release)
    phase = Phases(summary, reporter)
    try:
        with phase("preflight", f"preflight: environment {env.name}"):
            env_values = load_values(env)
            secrets = load_secrets(project, env)
            helm_major = helm.major_version()
            cluster = connect(project, env, dry_run=options.dry_run, reporter=reporter,
                              allow_production=options.allow_production, read_history=False)
            helm.check_not_pending(cluster.release, cluster.revisions, cluster.context)
            deployed_digest = (helm.deployed_digest(project.release, env.namespace, cluster.context)
                               if cluster.release else "")
            target = images.observe(project, env, context=cluster.context)
            refs = {s.name: (s.repository, s.tag) for s in target.states}
            summary.images = {s.name: s.ref for s in target.states}
            engine_shared = target.engine.cluster_reads_it
            in_cluster = (set() if engine_shared else
                          images.cluster_images(target.cluster, [s.ref for s in target.states],
                                                client=target.client) or set())
            image_layer = helm.image_values(project, refs)
            secret_layer = helm.secret_values(project, secrets)
            digest = plan.release_digest(project.chart, [env_values, image_layer, secret_layer])
            states = [plan.ImageState(s.name, s.ref, s.ref in target.present,
                                      engine_shared or images.normalise_ref(s.ref) in in_cluster)
                      for s in target.states]
            release_state = (plan.ReleaseState(cluster.release.revision, cluster.release.status, deployed_digest)
                             if cluster.release else None)
            decided = plan.decide(
                environment=env.name, namespace=env.namespace, context=cluster.context,
                cluster=target.cluster.kind, delivery=_delivery_label(target), images=states,
                release=release_state, digest=digest, force=options.force,
                smoke=[c.name for c in env.smoke],
                values_files=[str(env.values_file.relative_to(project.root)), "<generated images>",
                              "<private secrets>"],
            )
            if decided.upgrade:
                # Render first: values the chart's schema rejects stop here, before anything is built.
                _render(project, env, image_layer, secret_layer, digest, secrets)
        summary.plan = decided.lines()
        if on_plan:
            on_plan(decided)
        if options.dry_run:
            summary.status = "dry-run"
            return summary

        if decided.build:
            with phase("build", f"build: {', '.join(decided.build)}"):
                planned = [p for p in images.plan_builds(target.states, target.present, force=options.force)
                           if p.name in decided.build]
                states_now = images.pull_missing_bases(target, project, env, planned, reporter=reporter)
                ca_bundle = images.ca_bundle_from_env()
                for state in states_now:
                    if state.name in decided.build:
                        images.build(target.client, state, target.contexts[state.name], reporter=reporter,
                                     ca_bundle=ca_bundle, log_dir=project.root / ".moorage" / "logs")
                summary.built = list(decided.build)
        if decided.deliver:
            with phase("deliver", f"deliver: {', '.join(decided.deliver)} via {decided.delivery}"):
                steps = images.delivery_plan(target.cluster, [summary.images[n] for n in decided.deliver],
                                             in_cluster, engine_shared=engine_shared)
                images.deliver(steps, client=target.client, reporter=reporter)
                summary.delivered = list(decided.deliver)

        revision = cluster.release.revision if cluster.release else None
        if decided.upgrade and options.backup_before_migrations and cluster.release is not None:
            with phase("backup", "backup: before pending migrations"):
                summary.backup = backup_if_migrating(project, env, options, reporter)
        if decided.upgrade:
            with phase("helm", f"helm: {'install' if decided.first_install else 'upgrade'} {project.release}"):
                layers = {"images": helm.merge(image_layer, {"global": {"deployDigest": digest}}),
                          "secrets": secret_layer}
                with helm.private_values(layers) as files:
                    args = helm.upgrade_command(project.release, project.chart, env,
                                                [env.values_file, files["images"], files["secrets"]],
                                                helm_major, context=cluster.context,
                                                native_wait=options.native_wait)
                    try:
                        helm.run(args, timeout=env.timeout + 60, secrets=list(secrets.values()),
                                 what="helm upgrade", shield=True,
                                 values_hint=f"fix {env.values_file.relative_to(project.root)}")
                    except OperationFailed as exc:
                        _recover(cluster, decided, options, summary, reporter, helm_major, str(exc.message))
                        raise
                now = helm.status(project.release, env.namespace, cluster.context)
                revision = now.revision if now else revision
        else:
            reporter.ok(f"release {project.release} is up to date (revision {revision}): nothing to build, "
                        "deliver or upgrade")
        summary.revision = revision

        with phase("wait", "wait: readiness"):
            _wait(cluster, summary, reporter, helm_major, decided, options)

        run_smoke = options.smoke if options.smoke is not None else decided.upgrade
        if env.smoke and run_smoke:
            with phase("smoke", "smoke tests"):
                _smoke(cluster, summary, reporter, helm_major, decided, options)
        elif env.smoke:
            reporter.line("smoke tests skipped: nothing changed (run them with --smoke)")
        summary.status = "deployed" if decided.upgrade else "up-to-date"
        summary.urls = urls(project, env)
        return summary
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_state(phase.current, summary)) from None
    except Interrupted as exc:
        raise Interrupted(f"{exc.message}; {_interrupted_state(phase.current, summary)}") from None


def backup_if_migrating(project: Project, env: Environment, options: Options, reporter: Reporter) -> str | None:
    """A verified backup when the new code has migrations the database has not applied; its path, or None."""
    from . import backup, db

    target = db.target_for(project, env, None)
    current = db.database_info(target)["alembic_heads"]
    status = db.migration_status(project.root / options.alembic_ini, current)
    if not status.pending:
        reporter.line("no pending migrations: no backup needed")
        return None
    names = ", ".join(r.revision for r in status.pending)
    reporter.line(f"pending migrations ({names}): taking a verified backup first")
    taken = backup.create_backup(target, backup.backup_dir(project.backups_dir, env.name), environment=env.name,
                                 label="pre-upgrade")
    backup.verify_backup(taken)
    reporter.ok(f"backup {taken.path.name} verified")
    return str(taken.path)


def _delivery_label(target) -> str:
    if target.engine.cluster_reads_it:
        return "none"
    return plan.delivery_for(target.cluster.kind, target.engine.runtime)


def _render(project: Project, env: Environment, image_layer: dict, secret_layer: dict, digest: str,
            secrets: dict[str, str]) -> None:
    layers = {"images": helm.merge(image_layer, {"global": {"deployDigest": digest}}), "secrets": secret_layer}
    with helm.private_values(layers) as files:
        args = helm.template_command(project.release, project.chart, env.namespace,
                                     [env.values_file, files["images"], files["secrets"]])
        helm.run(args, timeout=120, secrets=list(secrets.values()), what="helm template",
                 values_hint=f"fix {env.values_file.relative_to(project.root)}")


def _interrupted_state(current: str, summary: Summary) -> str:
    states = {
        "preflight": "nothing was changed",
        "build": "no change was made to the cluster (finished image builds are kept)",
        "deliver": "the cluster was not upgraded (images already delivered stay cached)",
        "helm": "helm finished its step; check the release with `inv dev.status`",
        "wait": f"revision {summary.revision} is applied but its readiness was not confirmed; "
                "check with `inv dev.status`",
        "smoke": f"revision {summary.revision} is ready; smoke tests did not finish",
    }
    return f"interrupted during {current}: {states.get(current, 'see `inv dev.status`')}"


def _wait(cluster: Connected, summary: Summary, reporter: Reporter, helm_major: int,
          decided: plan.DeployPlan, options: Options) -> None:
    try:
        wait_release(cluster, reporter)
    except OperationFailed as exc:
        bundles = sorted(cluster.project.diagnostics_dir.glob(f"{cluster.env.name}-*"))
        summary.diagnostics = str(bundles[-1]) if bundles else None
        _recover(cluster, decided, options, summary, reporter, helm_major, exc.message)
        raise


def _smoke(cluster: Connected, summary: Summary, reporter: Reporter, helm_major: int,
           decided: plan.DeployPlan, options: Options) -> None:
    from . import kube, smoke

    env = cluster.env

    def forward(namespace: str, service: str, port: int):
        return kube.port_forward(cluster.api, namespace, service, port)

    results = smoke.run_checks(env.smoke, env.namespace, cluster.project.release, forward)
    summary.smoke = [r.as_dict() for r in results]
    reporter.table(["check", "ok", "url", "detail"],
                   [[r.name, "yes" if r.ok else "NO", r.url, r.detail] for r in results], title="smoke tests")
    failed = [r for r in results if not r.ok]
    if failed:
        message = f"smoke test '{failed[0].name}' failed: {failed[0].detail}"
        _recover(cluster, decided, options, summary, reporter, helm_major, message)
        raise OperationFailed(message, "see the table above; `inv dev.logs --component backend` shows the logs")


def _recover(cluster: Connected, decided: plan.DeployPlan, options: Options, summary: Summary,
             reporter: Reporter, helm_major: int, reason: str) -> None:
    """Roll back a failed upgrade; leave a failed first install for inspection, saying how to clean up."""
    from .core import proc

    project, env = cluster.project, cluster.env
    target = f"--namespace {env.namespace} --kube-context {cluster.context}"
    if not decided.upgrade:
        return
    if decided.rollback_to is None:
        reporter.line(f"the first install failed ({reason}); it is left in place for inspection. "
                      f"Clean up with: inv dev.undeploy --env {env.name} (or helm uninstall {project.release} {target})")
        return
    if options.no_rollback:
        reporter.line(f"not rolling back (--no-rollback); to do it: inv dev.rollback --env {env.name} "
                      f"--revision {decided.rollback_to}")
        return
    reporter.step(f"rolling back to revision {decided.rollback_to}")
    args = helm.rollback_command(project.release, decided.rollback_to, env.namespace, cluster.context,
                                 env.timeout, helm_major)
    try:
        proc.run(args, timeout=env.timeout + 60, what="helm rollback", shield=True)
    except MoorageError as exc:
        reporter.line(f"rollback failed too: {exc.line()}")
        return
    summary.rolled_back_to = decided.rollback_to
    try:
        wait_release(cluster, reporter, diagnostics=False)
    except OperationFailed as exc:
        reporter.line(f"rolled back to revision {decided.rollback_to}, but it is not ready either: {exc.message}")
        return
    reporter.line(f"rolled back to revision {decided.rollback_to}: the previous release is serving again")


def urls(project: Project, env: Environment) -> list[str]:
    """Where to open the application: the Ingress host if one is set, else a port-forward."""
    values = load_values(env)
    ingress = values.get("ingress") or {}
    found = []
    if ingress.get("enabled") and ingress.get("host"):
        scheme = "https" if ingress.get("tls") else "http"
        found.append(f"{scheme}://{ingress['host']}/")
    found.append(f"http://127.0.0.1:8080/ after `inv dev.port-forward --env {env.name} --service frontend`")
    return found


def run_and_report(project: Project, env: Environment, options: Options, reporter: Reporter,
                   json_mode: bool = False) -> Summary:
    """Run the pipeline and show its result: the plan on --dry-run, the summary table, or JSON."""
    on_plan = (lambda p: [reporter.line(line) for line in p.lines()]) if options.dry_run else None
    summary = run(project, env, options, reporter, on_plan=on_plan)
    if json_mode:
        reporter.emit_json(summary.as_dict())
    elif not options.dry_run:
        print_summary(summary, reporter)
    return summary


def print_summary(summary: Summary, reporter: Reporter) -> None:
    rows = [[name, f"{seconds:.1f}s"] for name, seconds in summary.phases.items()]
    reporter.table(["phase", "time"], rows, title=f"{summary.release} in {summary.namespace}: {summary.status}"
                   + (f", revision {summary.revision}" if summary.revision else ""))
    for url in summary.urls:
        reporter.line(f"open: {url}")

