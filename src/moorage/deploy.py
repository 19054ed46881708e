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

from . import artifacts, database, helm, kube, plan, smoke
from .cluster import delivery_method, normalise_ref
from .connection import Connected, connect, diagnostics_dir, wait_release
from .core import lock, proc
from .core.config import DEFAULT_ALEMBIC_INI, Environment, Project, load_secrets, load_values
from .core.errors import Interrupted, MoorageError, OperationFailed
from .core.lock import scope_name
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


@dataclass
class Run:
    """One deploy in progress: what was observed and decided, handed from phase to phase."""

    project: Project
    env: Environment
    options: Options
    reporter: Reporter
    summary: Summary
    secrets: dict[str, str] = field(default_factory=dict)
    env_values: dict[str, Any] = field(default_factory=dict)
    helm_major: int = 4
    cluster: Connected | None = None
    workspace: artifacts.Workspace | None = None
    in_cluster: set[str] = field(default_factory=set)
    image_layer: dict[str, Any] = field(default_factory=dict)
    secret_layer: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    decided: plan.DeployPlan | None = None


def deploy(project: Project, env: Environment, options: Options, reporter: Reporter,
           on_plan: Callable[[plan.DeployPlan], None] | None = None) -> Summary:
    """Deploy ``env``; returns the summary, raises the project's errors on failure.

    One deploy of a release at a time: a second one started meanwhile (another
    terminal, a concurrent CI job on this checkout) is refused, naming the first.
    """
    run = Run(project, env, options, reporter, Summary(env.name, env.namespace, project.release))
    phase = Phases(run.summary, reporter)
    try:
        with phase("preflight", f"preflight: environment {env.name}"):
            preflight(run)
        run.summary.plan = run.decided.lines()
        if on_plan:
            on_plan(run.decided)
        if options.dry_run:
            run.summary.status = "dry-run"
            return run.summary
        scope = scope_name("release", env.name, env.namespace, project.release)
        with lock.hold(project.root, scope, f"a deploy of {project.release} to {env.name}"):
            _execute(run, phase)
        return run.summary
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_state(phase.current, run.summary)) from None
    except Interrupted as exc:
        raise Interrupted(f"{exc.message}; {_interrupted_state(phase.current, run.summary)}") from None


def _execute(run: Run, phase: Phases) -> None:
    decided, summary, env = run.decided, run.summary, run.env
    if decided.build:
        with phase("build", f"build: {', '.join(decided.build)}"):
            build(run)
    if decided.deliver:
        with phase("deliver", f"deliver: {', '.join(decided.deliver)} via {decided.delivery}"):
            deliver(run)
    summary.revision = run.cluster.release.revision if run.cluster.release else None
    if decided.upgrade and run.options.backup_before_migrations and run.cluster.release is not None:
        with phase("backup", "backup: before pending migrations"):
            summary.backup = database.backup_if_migrating(run.project, env, run.options.alembic_ini, run.reporter)
    if decided.upgrade:
        verb = "install" if decided.first_install else "upgrade"
        with phase("helm", f"helm: {verb} {run.project.release}"):
            upgrade(run)
    else:
        run.reporter.ok(f"release {run.project.release} is up to date (revision {summary.revision}): "
                        "nothing to build, deliver or upgrade")
    with phase("wait", "wait: readiness"):
        wait(run)
    run_smoke = run.options.smoke if run.options.smoke is not None else decided.upgrade
    if env.smoke and run_smoke:
        with phase("smoke", "smoke tests"):
            smoke_test(run)
    elif env.smoke:
        run.reporter.line("smoke tests skipped: nothing changed (run them with --smoke)")
    summary.status = "deployed" if decided.upgrade else "up-to-date"
    summary.urls = urls(run.project, env)


def preflight(run: Run) -> None:
    """Read the configuration and the world, and decide the plan; changes nothing."""
    project, env, options = run.project, run.env, run.options
    run.env_values = load_values(env)
    run.secrets = load_secrets(project, env)
    run.helm_major = helm.major_version()
    run.cluster = cluster = connect(project, env, dry_run=options.dry_run, reporter=run.reporter,
                                    allow_production=options.allow_production, read_history=False)
    helm.check_not_pending(cluster.release, cluster.revisions, cluster.context)
    deployed_digest = helm.deployed_digest(project.release, env.namespace, cluster.context) if cluster.release else ""
    run.workspace = ws = artifacts.observe(project, env, context=cluster.context)
    run.in_cluster = artifacts.in_cluster(ws) or set()
    _layers(run)
    shared = ws.engine.cluster_reads_it
    facts = [plan.ImageFacts(s.name, s.ref, s.ref in ws.present, shared or normalise_ref(s.ref) in run.in_cluster)
             for s in ws.states]
    release = (plan.ReleaseState(cluster.release.revision, cluster.release.status, deployed_digest)
               if cluster.release else None)
    run.decided = plan.decide(
        environment=env.name, namespace=env.namespace, context=cluster.context, cluster=ws.cluster.kind,
        delivery="none" if shared else delivery_method(ws.cluster.kind, ws.engine.runtime), images=facts,
        release=release, digest=run.digest, force=options.force, smoke=[c.name for c in env.smoke],
        values_files=[str(env.values_file.relative_to(project.root)), "<generated images>", "<private secrets>"],
    )
    if run.decided.upgrade:
        # Render first: values the chart's schema rejects stop here, before anything is built.
        with helm.layered_values(env, run.image_layer, run.secret_layer, run.digest) as files:
            helm.call(helm.template_command(project.release, project.chart, env.namespace, files), timeout=120,
                      secrets=list(run.secrets.values()), what="helm template", values_files=[env.values_file])


def _layers(run: Run) -> None:
    """The generated values layers and the release digest, from the images' current tags."""
    states = run.workspace.states
    run.summary.images = {s.name: s.ref for s in states}
    run.image_layer = helm.image_values(run.project, {s.name: (s.repository, s.tag) for s in states})
    run.secret_layer = helm.secret_values(run.project, run.secrets)
    run.digest = plan.release_digest(run.project.chart, [run.env_values, run.image_layer, run.secret_layer])


def build(run: Run) -> None:
    """Build the planned images; a base image pulled meanwhile changes tags, so the layers follow."""
    artifacts.build_images(run.workspace, run.project, run.env, force=run.options.force, reporter=run.reporter)
    _layers(run)
    run.summary.built = list(run.decided.build)


def deliver(run: Run) -> None:
    names = run.decided.deliver
    steps = artifacts.delivery_steps(run.workspace, run.in_cluster, [run.summary.images[n] for n in names])
    artifacts.deliver_images(run.workspace, steps, reporter=run.reporter)
    run.summary.delivered = list(names)


def upgrade(run: Run) -> None:
    """helm upgrade --install with the layered values; a failure rolls back (see ``recover``)."""
    project, env, cluster = run.project, run.env, run.cluster
    with helm.layered_values(env, run.image_layer, run.secret_layer, run.digest) as files:
        args = helm.upgrade_command(project.release, project.chart, env, files, run.helm_major,
                                    context=cluster.context, native_wait=run.options.native_wait)
        try:
            helm.call(args, timeout=env.timeout + 60, secrets=list(run.secrets.values()), what="helm upgrade",
                      shield=True, values_files=[env.values_file])
        except OperationFailed as exc:
            recover(run, exc.message)
            raise
    now = helm.status(project.release, env.namespace, cluster.context)
    run.summary.revision = now.revision if now else run.summary.revision


def wait(run: Run) -> None:
    """Wait for the release's workloads; on failure keep this run's diagnostics bundle and roll back."""
    bundle = diagnostics_dir(run.project, run.env)
    try:
        wait_release(run.cluster, run.reporter, out_dir=bundle)
    except OperationFailed as exc:
        run.summary.diagnostics = str(bundle) if bundle.exists() else None
        recover(run, exc.message)
        raise


def smoke_test(run: Run) -> None:
    env, cluster = run.env, run.cluster

    def forward(namespace: str, service: str, port: int):
        return kube.port_forward(cluster.api, namespace, service, port)

    results = smoke.run_checks(env.smoke, env.namespace, run.project.service_name, forward)
    run.summary.smoke = [r.as_dict() for r in results]
    run.reporter.table(["check", "ok", "url", "detail"],
                       [[r.name, "yes" if r.ok else "NO", r.url, r.detail] for r in results], title="smoke tests")
    failed = [r for r in results if not r.ok]
    if failed:
        message = f"smoke test '{failed[0].name}' failed: {failed[0].detail}"
        recover(run, message)
        raise OperationFailed(message, "see the table above; `inv dev.logs --component backend` shows the logs")


def recover(run: Run, reason: str) -> None:
    """Roll back a failed upgrade; leave a failed first install for inspection, saying how to clean up."""
    project, env, cluster, decided, reporter = run.project, run.env, run.cluster, run.decided, run.reporter
    target = f"--namespace {env.namespace} --kube-context {cluster.context}"
    if not decided.upgrade:
        return
    if decided.rollback_to is None:
        reporter.line(f"the first install failed ({reason}); it is left in place for inspection. "
                      f"Clean up with: inv dev.undeploy --env {env.name} (or helm uninstall {project.release} {target})")
        return
    if run.options.no_rollback:
        reporter.line(f"not rolling back (--no-rollback); to do it: inv dev.rollback --env {env.name} "
                      f"--revision {decided.rollback_to}")
        return
    reporter.step(f"rolling back to revision {decided.rollback_to}")
    args = helm.rollback_command(project.release, decided.rollback_to, env.namespace, cluster.context,
                                 env.timeout, run.helm_major)
    try:
        proc.run(args, timeout=env.timeout + 60, what="helm rollback", shield=True)
    except MoorageError as exc:
        reporter.line(f"rollback failed too: {exc.line()}")
        return
    run.summary.rolled_back_to = decided.rollback_to
    try:
        wait_release(cluster, reporter)
    except OperationFailed as exc:
        reporter.line(f"rolled back to revision {decided.rollback_to}, but it is not ready either: {exc.message}")
        return
    reporter.line(f"rolled back to revision {decided.rollback_to}: the previous release is serving again")


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
    summary = deploy(project, env, options, reporter, on_plan=on_plan)
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

