"""An environment's images end to end: observe them, build the planned ones, deliver them to the cluster.

Orchestration shared by ``deploy`` and the ``images.*`` tasks: it joins the
cluster (kind, build engine, delivery) with the images (tags, builds) through
one Docker engine client. :func:`observe` only reads; :func:`build_images`,
:func:`deliver_images` and :func:`pull_missing_bases` act.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cluster import (
    ClusterTarget,
    DeliveryStep,
    Engine,
    adopt_engine,
    build_engine,
    cluster_images,
    current_context,
    deliver,
    delivery_plan,
    detect_cluster,
    docker_nodes,
    engine_facts,
    push,
    registry,
)
from .core.config import CLUSTER_KINDS, Environment, Project
from .core.errors import OperationFailed, UserError
from .core.report import Reporter
from .engine import connect, inspect_refs, resolver
from .images import (
    BuildContext,
    ImageRow,
    ImageState,
    PlannedBuild,
    build_image,
    ca_bundle_from_env,
    choose_builder,
    image_states,
    list_rows,
    missing_bases,
    plan_builds,
    require_buildable,
    select_images,
)

LOG_DIR = ".moorage/logs"
LOCAL_KINDS = [k for k in CLUSTER_KINDS if k not in ("auto", "remote")]


@dataclass
class Workspace:
    """An environment's cluster, the engine its images are built in, and their current tags."""

    cluster: ClusterTarget
    engine: Engine
    client: Any
    states: list[ImageState]
    contexts: dict[str, BuildContext]
    present: set[str]  # refs of ``states`` present in the build engine

    @property
    def refs(self) -> list[str]:
        return [s.ref for s in self.states]

    def plan(self, *, force: bool = False) -> list[PlannedBuild]:
        """Which images to build: those whose tag is not in the engine (all with ``force``)."""
        return plan_builds(self.states, self.present, force=force)


@dataclass(frozen=True)
class BuildOutcome:
    """What became of one planned image: built (with its ID and seconds) or skipped."""

    name: str
    ref: str
    action: str  # "build" or "skip"
    reason: str
    image_id: str | None = None
    seconds: float | None = None
    builder: str | None = None  # "buildkit" or "legacy"

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "ref": self.ref, "action": self.action, "reason": self.reason}
        if self.action == "build":
            row.update(image_id=self.image_id, seconds=self.seconds, builder=self.builder)
        return row


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)


def observe(project: Project, env: Environment, *, only: str | Iterable[str] | None = None,
            context: str | None = None, run=None) -> Workspace:
    """Detect the cluster, connect to the engine to build in, and compute every tag (read-only)."""
    cluster = detect_cluster(context if context is not None else current_context(env), env.cluster, run=run)
    engine = build_engine(cluster, run=run)
    client = connect(engine.docker_env)
    if cluster.kind == "remote" and docker_nodes(cluster):  # a cluster no rule knows may run on this very engine
        cluster, shared, _ = adopt_engine(cluster, engine_facts(client, engine.host))
        engine = Engine(engine.docker_env, engine.host, shared, engine.runtime)
    contexts: dict[str, BuildContext] = {}
    states = image_states(project, env, images=select_images(project, only), resolve_base=resolver(client),
                          contexts=contexts)
    present = {ref for ref, info in inspect_refs(client, [s.ref for s in states]).items() if info}
    return Workspace(cluster, engine, client, states, contexts, present)


def image_rows(ws: Workspace) -> list[ImageRow]:
    """Each image's tag with what the build engine holds for it (``images.list``)."""
    return list_rows(ws.states, inspect_refs(ws.client, ws.refs))


def pull_missing_bases(ws: Workspace, project: Project, env: Environment, plan: Sequence[PlannedBuild],
                       *, reporter: Reporter) -> list[ImageState]:
    """Pull the base images a planned build lacks, then recompute tags (a base's ID is part of the tag)."""
    from docker.errors import APIError

    wanted = missing_bases(ws.states, plan)
    if not wanted:
        return ws.states
    for name, ref in wanted:
        with reporter.progress(f"pull base image {ref} for {name}"):
            try:
                ws.client.api.pull(ref)
            except APIError as exc:
                raise UserError(
                    f"base image '{ref}' of image '{name}' is not in the Docker engine at {ws.engine.host} "
                    f"and cannot be pulled: {exc.explanation or exc}",
                    "load it into that engine (scripts/base-images.sh, docker load) or point the build arg "
                    "at a local image (e.g. MOORAGE_PYTHON_IMAGE)",
                ) from None
    names = {s.name for s in ws.states}
    return image_states(project, env, images=[i for i in project.images if i.name in names],
                        resolve_base=resolver(ws.client), contexts=ws.contexts)


def build_images(ws: Workspace, project: Project, env: Environment, *, reporter: Reporter, force: bool = False,
                 on_done: Callable[[BuildOutcome], None] | None = None) -> list[BuildOutcome]:
    """Build the images whose tag is not in the engine (all with ``force``), missing bases pulled first.

    Pulling a base changes the tags that named it, so the plan is made again
    after a pull and ``ws.states`` updated. ``on_done`` hears of each image as
    it is built or skipped. Logs go to ``.moorage/logs/`` of the project.
    """
    plan = ws.plan(force=force)
    ca_bundle = ca_bundle_from_env()
    # BuildKit or legacy, and whether it can build these Dockerfiles: known before anything changes.
    builder = choose_builder(ws.engine.docker_env) if any(p.action == "build" for p in plan) else None
    if builder is not None:
        require_buildable(builder, [(p.name, ws.contexts[p.name]) for p in plan if p.action == "build"])
    refreshed = pull_missing_bases(ws, project, env, plan, reporter=reporter)
    if refreshed is not ws.states:
        ws.states = refreshed
        plan = ws.plan(force=force)
    states = {s.name: s for s in ws.states}
    done = []
    for p in plan:
        if p.action == "skip":
            outcome = BuildOutcome(p.name, p.ref, p.action, p.reason)
        else:
            start = time.monotonic()
            image_id = build_image(ws.client, states[p.name], ws.contexts[p.name], reporter=reporter,
                                   builder=builder, ca_bundle=ca_bundle, log_dir=project.root / LOG_DIR)
            outcome = BuildOutcome(p.name, p.ref, p.action, p.reason, image_id, elapsed(start),
                                   builder.kind if builder else None)
        done.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return done


def require_built(ws: Workspace) -> None:
    """UserError unless every image is built in the engine (delivery sends what is there)."""
    missing = [s for s in ws.states if s.ref not in ws.present]
    if missing:
        s = missing[0]
        raise UserError(f"image '{s.name}' ({s.ref}) is not built in the Docker engine at {ws.engine.host}",
                        "build it first: inv images.build" + (f" --only {s.name}" if len(missing) == 1 else ""))


def require_registry(env: Environment, why: str, outcome: str = "") -> None:
    """UserError unless the environment names a registry; ``why`` says what needs one, ``outcome`` what was spared."""
    if not env.registry:
        raise UserError(f"environment '{env.name}' {why} but has no registry" + (f": {outcome}" if outcome else ""),
                        f"set moorage.environments.{env.name}.registry in invoke.yaml (images are pushed there), "
                        f"or, for a local cluster, its cluster: ({', '.join(LOCAL_KINDS)}); `inv doctor` says why "
                        "the cluster was taken for a remote one")


def require_delivery_target(ws: Workspace, env: Environment) -> None:
    """Refuse a remote cluster without a registry before anything is built (a push would go to Docker Hub)."""
    if ws.cluster.kind == "remote":
        require_registry(env, f"deploys to a remote cluster (context '{ws.cluster.context or 'none'}': "
                              f"{ws.cluster.reason or 'no local cluster recognised'})", "nothing was built or pushed")


def in_cluster(ws: Workspace) -> set[str] | None:
    """References the cluster already has; None when it cannot be told or when it reads the build engine."""
    if ws.engine.cluster_reads_it:
        return None
    return cluster_images(ws.cluster, ws.refs, client=ws.client)


def registry_credentials(env: Environment, secrets: Mapping[str, str]) -> registry.Credentials | None:
    """The credentials the environment's registry settings name, read from the loaded ``.env`` values;
    without such keys, what ``docker login`` stored for the registry's host (the pull Secret is made
    from the ``.env`` keys only: a developer's own login never goes into a cluster)."""
    access = env.registry_access
    if not access.username_key:
        return registry.docker_login(env.registry.partition("/")[0]) if env.registry else None
    return registry.Credentials(secrets[access.username_key], secrets[access.password_key],
                                f".env keys {access.username_key} and {access.password_key}")


def engine_auth(credentials: registry.Credentials | None) -> dict[str, str] | None:
    """The Docker engine's auth_config for a push (an API header, never argv)."""
    return {"username": credentials.username, "password": credentials.password} if credentials else None


def via_registry(ws: Workspace, env: Environment) -> bool:
    """Whether the cluster pulls the images from the environment's registry (pushed there, pinned by digest):
    a remote cluster always; a local one whose registry settings say ``push: true``; never one that
    reads the build engine."""
    if ws.engine.cluster_reads_it:
        return False
    return ws.cluster.kind == "remote" or bool(env.registry and env.registry_access.push)


def in_registry(ws: Workspace, env: Environment, secrets: Mapping[str, str],
                refs: Sequence[str] | None = None) -> dict[str, str]:
    """The manifest digest of each image (default: the workspace's) the registry already holds with the
    same content; absent ones left out.

    One clear line when the registry is down, untrusted, refuses the credentials, or holds one of
    the tags with other content; it only reads.
    """
    refs = ws.refs if refs is None else list(refs)
    ids = {ref: info["Id"] for ref, info in inspect_refs(ws.client, refs).items() if info}
    return registry.lookup(refs, ids, credentials=registry_credentials(env, secrets), ca=env.registry_access.ca,
                           where=f"moorage.environments.{env.name}.registry")


def delivery_steps(ws: Workspace, present: Iterable[str] | None, refs: Sequence[str] | None = None) -> list[DeliveryStep]:
    """The steps that make ``refs`` (default: every image) readable by the cluster, given what it has."""
    return delivery_plan(ws.cluster, ws.refs if refs is None else refs, present,
                         engine_shared=ws.engine.cluster_reads_it)


def third_party_steps(ws: Workspace, refs: Sequence[str]) -> list[DeliveryStep]:
    """Images the chart uses but the project does not build (postgres, redis, busybox...).

    On a local cluster, those the nodes lack and the build engine has are delivered like the
    project's own (an air-gapped laptop has them only there); a remote cluster pulls them itself.
    """
    if ws.engine.cluster_reads_it or ws.cluster.kind == "remote" or not refs:
        return []
    local = [ref for ref, info in inspect_refs(ws.client, list(refs)).items() if info]
    if not local:
        return []
    return delivery_plan(ws.cluster, local, cluster_images(ws.cluster, local, client=ws.client))


def registry_steps(ws: Workspace, env: Environment, present: Iterable[str],
                   refs: Sequence[str] | None = None) -> list[DeliveryStep]:
    """The pushes that put ``refs`` (default: every image) in the environment's registry, skipping ``present``."""
    target = ClusterTarget("remote", env.registry, ws.cluster.context)
    return delivery_plan(target, ws.refs if refs is None else refs, present)


def push_missing(ws: Workspace, env: Environment, secrets: Mapping[str, str], refs: Sequence[str], *,
                 reporter: Reporter) -> tuple[dict[str, int], dict[str, str]]:
    """Push what the registry lacks of ``refs``; the bytes it received and the digest of every image there.

    The registry is read again first: the builds are done, so contents compare.
    """
    steps = registry_steps(ws, env, in_registry(ws, env, secrets), refs)
    sent = deliver_images(ws, steps, reporter=reporter, env=env, secrets=secrets)
    return sent, in_registry(ws, env, secrets)


def deliver_images(ws: Workspace, steps: Sequence[DeliveryStep], *, reporter: Reporter,
                   env: Environment | None = None, secrets: Mapping[str, str] | None = None) -> dict[str, int]:
    """Execute delivery (or push) steps from the workspace's engine; the bytes sent per reference, where known.

    A push uses the environment's registry credentials; what it sent is read back from the registry
    (the compressed sizes of the layers the engine uploaded, those the registry lacked).
    """
    pushes = [step.refs[0] for step in steps if step.action == "push"]
    sent = deliver([step for step in steps if step.action != "push"], client=ws.client, reporter=reporter)
    if not pushes:
        return sent
    credentials = registry_credentials(env, secrets or {}) if env is not None else None
    uploaded = {ref: push(ws.client, ref, reporter=reporter, auth=engine_auth(credentials)) for ref in pushes}
    where = f"moorage.environments.{env.name}.registry" if env is not None else "the environment's registry"
    held = registry.manifests(pushes, credentials=credentials, ca=env.registry_access.ca if env else None, where=where)
    for ref in pushes:
        if held[ref] is None:
            raise OperationFailed(f"the registry does not hold {ref} after its push", "check the registry's logs")
        layers = ws.client.api.inspect_image(ref)["RootFS"]["Layers"]
        sent[ref] = registry.pushed_bytes(held[ref], layers, uploaded[ref])
        had = len(layers) - len(uploaded[ref])
        reporter.line(f"{ref}: pushed {len(uploaded[ref])} of {len(layers)} layers, {sent[ref]} bytes"
                      + (f" (the registry had the other {had})" if had else ""))
    return sent
