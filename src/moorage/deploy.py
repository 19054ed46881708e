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

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts, ci_report, database, helm, kube, migrations, pg, plan, prerequisites, smoke
from .cluster import delivery_method, normalise_ref
from .connection import Connected, connect, diagnostics_dir, wait_release
from .core import lock, proc
from .core.config import Environment, Project, load_secrets, load_values, merge
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
    alembic_ini: str | None = None  # invoke config db.alembic_ini; else the environment's migrations setting
    # Images not built nor delivered: their values keep these references (``dev.watch`` rebuilds one
    # image while the others run what they run).
    keep: dict[str, str] = field(default_factory=dict)


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
    shipped: dict[str, int] = field(default_factory=dict)  # bytes sent to the cluster per image, where known
    digests: dict[str, str] = field(default_factory=dict)  # image → the digest the release pins (registry pulls)
    schema: dict[str, Any] | None = None  # set when a failed upgrade moved the schema (see ``recover``)
    failed_phase: str | None = None  # the phase an error ended the deploy in

    def as_dict(self) -> dict[str, Any]:
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


PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


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
    pins: dict[str, str] = field(default_factory=dict)  # ref → manifest digest in the registry (remote clusters)
    image_layer: dict[str, Any] = field(default_factory=dict)
    secret_layer: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    decided: plan.DeployPlan | None = None
    schema_before: list[str] | None = None  # the database's migration heads before the upgrade
    third_party: list[Any] = field(default_factory=list)  # delivery steps of images the project does not build
    manifest: list[dict[str, Any]] = field(default_factory=list)  # the release's objects, read by the wait


def deploy(project: Project, env: Environment, options: Options, reporter: Reporter,
           on_plan: Callable[[list[str]], None] | None = None, summary: Summary | None = None) -> Summary:
    """Deploy ``env``; returns the summary, raises the project's errors on failure.

    ``summary`` (made by the caller) is filled in as the deploy goes, so that it
    tells how far a failed deploy got (``failed_phase``).
    One deploy of a release at a time: a second one started meanwhile (another
    terminal, a concurrent CI job on this checkout) is refused, naming the first.
    """
    run = Run(project, env, options, reporter, summary or Summary(env.name, env.namespace, project.release))
    phase = Phases(run.summary, reporter)
    try:
        with phase("preflight", f"preflight: environment {env.name}"):
            preflight(run)
        run.summary.plan = run.decided.lines()
        run.summary.plan += [f"deliver  {ref} (used by the chart, missing on the nodes)"
                             for step in run.third_party for ref in step.refs]
        if env.prerequisites or env.registry_access.pull_secret:
            run.summary.plan[1:1] = prerequisites.plan_lines(env, project.root)
        if on_plan:
            on_plan(run.summary.plan)
        if options.dry_run:
            run.summary.status = "dry-run"
            return run.summary
        scope = scope_name("release", env.name, env.namespace, project.release)
        with lock.hold(project.root, scope, f"a deploy of {project.release} to {env.name}"):
            _execute(run, phase)
        return run.summary
    except KeyboardInterrupt:
        run.summary.status, run.summary.failed_phase = "interrupted", phase.current
        raise Interrupted(_interrupted_state(phase.current, run.summary)) from None
    except Interrupted as exc:
        run.summary.status, run.summary.failed_phase = "interrupted", phase.current
        raise Interrupted(f"{exc.message}; {_interrupted_state(phase.current, run.summary)}") from None
    except MoorageError:
        run.summary.failed_phase = phase.current
        if run.summary.status != "held":
            run.summary.status = "failed"
        raise


def _execute(run: Run, phase: Phases) -> None:
    decided, summary, env = run.decided, run.summary, run.env
    if decided.build:
        with phase("build", f"build: {', '.join(decided.build)}"):
            build(run)
    if decided.deliver or run.third_party:
        names = [*decided.deliver, *(ref for step in run.third_party for ref in step.refs)]
        with phase("deliver", f"deliver: {', '.join(names)} via {decided.delivery}"):
            deliver(run)
    summary.revision = run.cluster.release.revision if run.cluster.release else None
    if decided.upgrade and run.options.backup_before_migrations and run.cluster.release is not None:
        with phase("backup", "backup: before pending migrations"):
            summary.backup = database.backup_if_migrating(run.project, env, run.options.alembic_ini, run.reporter)
    if env.prerequisites or env.registry_access.pull_secret:
        with phase("prerequisites", "prerequisites: objects the chart expects"):
            apply_prerequisites(run)
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
    summary.urls = urls(env, run.manifest)


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
    stale = helm.missing_dependencies(project.chart)
    if stale and options.dry_run:
        run.reporter.line(f"would run helm dependency build for: {', '.join(stale)}")
    elif stale:
        with run.reporter.progress(f"helm dependency build ({', '.join(stale)})"):
            helm.build_dependencies(project.chart)
    rebuilt = [i.name for i in project.images if i.name not in options.keep]
    run.workspace = ws = artifacts.observe(project, env, context=cluster.context, only=rebuilt or None)
    ws.states = [s for s in ws.states if s.name in rebuilt]
    artifacts.require_delivery_target(ws, env)
    if artifacts.via_registry(ws, env):  # the cluster pulls from the registry: what it holds counts as built
        run.pins = artifacts.in_registry(ws, env, run.secrets, [*ws.refs, *options.keep.values()])
        run.in_cluster = {normalise_ref(ref) for ref in run.pins}
    else:
        run.in_cluster = artifacts.in_cluster(ws) or set()
    _layers(run)
    shared = ws.engine.cluster_reads_it
    facts = [plan.ImageFacts(s.name, s.ref, s.ref in ws.present or s.ref in run.pins,
                             shared or normalise_ref(s.ref) in run.in_cluster)
             for s in ws.states]
    release = (plan.ReleaseState(cluster.release.revision, cluster.release.status, deployed_digest)
               if cluster.release else None)
    run.decided = plan.decide(
        environment=env.name, namespace=env.namespace, context=cluster.context, cluster=ws.cluster.kind,
        delivery="none" if shared else "push" if artifacts.via_registry(ws, env)
        else delivery_method(ws.cluster.kind, ws.engine.runtime), images=facts,
        release=release, digest=run.digest, force=options.force, smoke=[c.name for c in env.smoke],
        values_files=[*(_relative(f, project.root) for f in env.values_files), "<generated images>",
                      "<private secrets>"],
    )
    if run.decided.upgrade and cluster.release is not None:
        run.schema_before = schema_heads(run)
    if run.decided.upgrade:
        # Render first: values the chart's schema rejects stop here, before anything is built.
        with helm.layered_values(env, run.image_layer, run.secret_layer, run.digest) as files:
            rendered = helm.call(helm.template_command(project.release, project.chart, env.namespace, files),
                                 timeout=120, secrets=list(run.secrets.values()), what="helm template",
                                 values_files=env.values_files).stdout
        own = {normalise_ref(ref) for ref in run.summary.images.values()}
        others = [ref for ref in helm.images_in(helm.parse_manifest(rendered)) if normalise_ref(ref) not in own]
        run.third_party = artifacts.third_party_steps(ws, others)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _layers(run: Run) -> None:
    """The generated values layers and the release digest, from the images' current tags."""
    refs = {name: tuple(ref.rsplit(":", 1)) for name, ref in run.options.keep.items()}
    refs.update({s.name: (s.repository, s.tag) for s in run.workspace.states})
    run.summary.images = {i.name: ":".join(refs[i.name]) for i in run.project.images if i.name in refs}
    # pulled from a registry: by digest, or a placeholder of that shape until the push (the chart's schema sees it)
    pushed = {s.name for s in run.workspace.states} if artifacts.via_registry(run.workspace, run.env) else set()
    digests = {name: run.pins.get(f"{repo}:{tag}", PLACEHOLDER_DIGEST) for name, (repo, tag) in refs.items()
               if f"{repo}:{tag}" in run.pins or name in pushed}
    run.summary.digests = {name: d for name, d in digests.items() if d != PLACEHOLDER_DIGEST}
    run.image_layer = merge(helm.image_values(run.project, refs, run.env_values, digests),
                            helm.pull_secret_values(run.env))
    run.secret_layer = helm.secret_values(run.project, run.secrets)
    run.digest = plan.release_digest(run.project.chart, [run.env_values, run.image_layer, run.secret_layer])


def build(run: Run) -> None:
    """Build the planned images; a base image pulled meanwhile changes tags, so the layers follow."""
    artifacts.build_images(run.workspace, run.project, run.env, force=run.options.force, reporter=run.reporter)
    _layers(run)
    run.summary.built = list(run.decided.build)


def deliver(run: Run) -> None:
    """Images onto the nodes, or into the registry a remote cluster pulls from (then pinned by digest)."""
    names, ws, env = run.decided.deliver, run.workspace, run.env
    refs = [run.summary.images[n] for n in names]
    run.summary.shipped = artifacts.deliver_images(ws, run.third_party, reporter=run.reporter)  # onto the nodes
    if artifacts.via_registry(ws, env):  # the images kept (dev.watch) keep their pins
        shipped, pins = artifacts.push_missing(ws, env, run.secrets, refs, reporter=run.reporter)
        run.pins = {**{ref: run.pins[ref] for ref in run.options.keep.values() if ref in run.pins}, **pins}
        _layers(run)
    else:
        shipped = artifacts.deliver_images(ws, artifacts.delivery_steps(ws, run.in_cluster, refs), reporter=run.reporter)
    run.summary.shipped.update(shipped)
    run.summary.delivered = [*names, *(ref for step in run.third_party for ref in step.refs)]


def apply_prerequisites(run: Run) -> None:
    """Manifests and ``.env`` Secrets the chart expects, applied server-side before Helm runs."""
    prereqs = run.env.prerequisites
    objects = [obj for _path, obj in prerequisites.manifest_objects(prereqs)]
    objects += prerequisites.secret_objects(prereqs, run.secrets)
    if run.env.registry_access.pull_secret and run.env.registry:
        objects.append(prerequisites.pull_secret_object(run.env, run.secrets))
    applied = kube.apply(run.cluster.api, objects, run.env.namespace, manager=prerequisites.MANAGER)
    run.reporter.ok(f"applied {len(applied)} object(s): {', '.join(applied)}")


def upgrade(run: Run) -> None:
    """helm upgrade --install with the layered values; a failure rolls back (see ``recover``)."""
    project, env, cluster = run.project, run.env, run.cluster
    with helm.layered_values(env, run.image_layer, run.secret_layer, run.digest) as files:
        args = helm.upgrade_command(project.release, project.chart, env, files, run.helm_major,
                                    context=cluster.context, native_wait=run.options.native_wait)
        try:
            helm.call(args, timeout=env.timeout + 60, secrets=list(run.secrets.values()), what="helm upgrade",
                      shield=True, values_files=env.values_files)
        except OperationFailed as exc:
            message = exc.message + hook_reason(run.cluster, env.namespace, exc.message)
            recover(run, message)
            raise OperationFailed(message, exc.hint, exit_code=exc.exit_code) from None
    now = helm.status(project.release, env.namespace, cluster.context)
    run.summary.revision = now.revision if now else run.summary.revision


_HOOK_JOB = re.compile(r"Job/([a-z0-9.-]+)/([a-z0-9.-]+)|job ([a-z0-9.-]+) failed")


def hook_reason(cluster: Connected, namespace: str, message: str) -> str:
    """Why a chart's hook Job failed (its pod's last log lines), when helm's message names one; else ""."""
    found = _HOOK_JOB.search(message)
    if not found:
        return ""
    namespace, job = (found.group(1), found.group(2)) if found.group(2) else (namespace, found.group(3))
    try:
        tail = kube.job_log_tail(cluster.api, namespace, job)
    except MoorageError:
        return ""
    return f"; hook job {job} logged: {tail}" if tail else ""


def wait(run: Run) -> None:
    """Wait for the release's workloads; on failure keep this run's diagnostics bundle and roll back."""
    bundle = diagnostics_dir(run.project, run.env)
    try:
        run.manifest = wait_release(run.cluster, run.reporter, out_dir=bundle)
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
        raise OperationFailed(message, f"see the table above; `inv dev.logs --env {env.name}` shows the logs")


def recover(run: Run, reason: str) -> None:
    """Roll back a failed upgrade; leave a failed first install for inspection, saying how to clean up.

    When the upgrade's migration moved the schema to revisions the previous code was not declared to
    accept, the previous code is not put back (see ``hold``).
    """
    project, env, cluster, decided, reporter = run.project, run.env, run.cluster, run.decided, run.reporter
    if not decided.upgrade:
        return
    target = f"--namespace {env.namespace} --kube-context {cluster.context}"
    if decided.rollback_to is None:
        reporter.line(f"the first install failed ({reason}); it is left in place for inspection. "
                      f"Clean up with: inv dev.undeploy --env {env.name} (or helm uninstall {project.release} {target})")
        return
    check = _schema_after_failure(run)
    if check is not None and not check.previous_code_fits:
        hold(run, check)
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


def schema_heads(run: Run) -> list[str] | None:
    """The database's migration heads, or None where the stack has no Alembic database to read."""
    env = run.env
    if not env.database.exists or env.migrations.kind != "alembic" or \
            database.readable_alembic_ini(run.project, env, run.options.alembic_ini)[0] is None:
        return None
    try:
        return pg.database_info(database.target_for(run.project, run.env, None))["alembic_heads"]
    except MoorageError as exc:
        run.reporter.line(f"note: the schema version could not be read ({exc.message}); "
                          "a failed upgrade will be rolled back without checking it")
        return None


def _schema_after_failure(run: Run) -> plan.SchemaCheck | None:
    if run.schema_before is None:
        return None
    after = schema_heads(run)
    if after is None or sorted(after) == sorted(run.schema_before):
        return None
    ini = database.env_alembic_ini(run.project, run.env, run.options.alembic_ini)
    before_status = migrations.migration_status(ini, run.schema_before)
    after_status = migrations.migration_status(ini, after)
    compatible = [m.revision for m in before_status.pending if m.backward_compatible]
    return plan.schema_check(run.schema_before, after, [m.revision for m in before_status.pending],
                             [m.revision for m in after_status.pending], compatible)


def hold(run: Run, check: plan.SchemaCheck) -> None:
    """Leave the release at the new revision and stop the previous code, then print the ways out."""
    project, env, reporter, decided = run.project, run.env, run.reporter, run.decided
    stopped = []
    for obj in helm.manifest(project.release, env.namespace, run.cluster.context):
        if obj.get("kind") == "Deployment":
            stopped += kube.stop_previous(run.cluster.api, env.namespace, obj["metadata"]["name"])
    before, after = ", ".join(check.before) or "base", ", ".join(check.after)
    run.summary.status = "held"
    run.summary.schema = {"before": list(check.before), "after": list(check.after), "applied": list(check.applied),
                          "incompatible": list(check.incompatible), "stopped": stopped}
    reporter.line(f"not rolling back: the upgrade's migration moved the database from {before} to {after}, "
                  f"and {', '.join(check.incompatible)} is not declared backward-compatible, so the code of "
                  f"revision {decided.rollback_to} cannot run on it")
    if stopped:
        reporter.line(f"stopped the previous code's pods ({', '.join(stopped)}): they would serve on a schema "
                      "they do not know")
    back = (f"inv dev.rollback --env {env.name} --revision {decided.rollback_to} --restore "
            f"{Path(run.summary.backup).name} --yes" if run.summary.backup else
            f"inv db.downgrade --env {env.name} --revision {before} --yes, then "
            f"inv dev.rollback --env {env.name} --revision {decided.rollback_to}")
    reporter.line("two ways out:")
    reporter.line(f"  fix forward: fix the code and run inv {'dev.deploy' if not env.production else 'deploy'} "
                  f"--env {env.name} again")
    reporter.line(f"  go back with the data: {back}")


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


def urls(env: Environment, manifest: list[dict[str, Any]]) -> list[str]:
    """Where to open the application: the release's Ingress hosts, and its Services through a port-forward."""
    return [*smoke.ingress_urls(manifest),
            f"`inv dev.port-forward --env {env.name}` puts the release's Services on 127.0.0.1"]


def run_and_report(project: Project, env: Environment, options: Options, reporter: Reporter,
                   json_mode: bool = False, junit: str | None = None) -> Summary:
    """Run the pipeline and show its result: the plan on --dry-run, the summary table, or JSON; and
    the CI reports (:mod:`moorage.ci_report`: ``junit``, GitHub's job summary) whatever the outcome."""
    on_plan = (lambda lines: [reporter.line(line) for line in lines]) if options.dry_run else None
    ci_report.check_path(junit)
    summary = Summary(env.name, env.namespace, project.release)
    try:
        deploy(project, env, options, reporter, on_plan=on_plan, summary=summary)
    except MoorageError as exc:
        if not options.dry_run:
            ci_report.publish(summary.as_dict(), exc, junit=junit, say=reporter.line)
        raise
    if not options.dry_run:
        ci_report.publish(summary.as_dict(), None, junit=junit, say=reporter.line)
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

