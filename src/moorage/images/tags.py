"""Tags: each image's content hash, its repository, and which images need a build.

The tag of an image is a hash of everything that decides its content: the
Dockerfile, the build context as Docker sends it (``.dockerignore`` applied:
paths, modes, contents), the build arguments, the target stage and the IDs of
the base images its ``FROM`` lines name. An unchanged image keeps its tag, so
"is ``<repo>:<tag>`` present?" is the whole change detection, and a build is
skipped when the answer is yes (:func:`plan_builds`, a pure function).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..core.config import Environment, Image, Project
from ..core.errors import ConfigError
from .context import CACHE_FILE, BuildContext, DigestCache, scan_context
from .dockerfile import analyse_dockerfile

TAG_LENGTH = 16
HASH_VERSION = "moorage-image-inputs/1"
_REF_RE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)$"
)


@dataclass(frozen=True)
class ImageState:
    """An image of the stack with its computed tag and where it goes."""

    name: str
    repository: str
    tag: str
    inputs_digest: str  # the full sha256 the tag is cut from
    bases: Mapping[str, str | None]  # base reference -> image ID in the engine (None: absent)
    steps: int
    dockerfile_arcname: str
    build_args: Mapping[str, str]
    target: str | None

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    def labels(self) -> dict[str, str]:
        return {
            "org.opencontainers.image.title": self.name,
            "org.opencontainers.image.version": self.tag,
            "dev.moorage.image": self.name,
            "dev.moorage.inputs": self.inputs_digest,
            "dev.moorage.base-images": json.dumps(dict(self.bases), sort_keys=True),
        }


def inputs_digest(ctx: BuildContext, build_args: Mapping[str, str], target: str | None,
                  bases: Mapping[str, str | None]) -> str:
    """The sha256 of an image's build inputs; the tag is its prefix."""
    doc = {
        "v": HASH_VERSION,
        "dockerfile": hashlib.sha256(ctx.dockerfile_text.encode()).hexdigest(),
        "dockerfile_path": ctx.dockerfile_arcname,
        "files": ctx.files_digest(),
        "build_args": dict(sorted(build_args.items())),
        "target": target or "",
        "bases": dict(sorted(bases.items())),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def repository(image: Image, env: Environment | None, release: str) -> str:
    """``<registry>/<name>`` when the environment has a registry, else ``<release>/<name>``."""
    registry = env.registry if env is not None else ""
    repo = f"{registry}/{image.name}" if registry else f"{release}/{image.name}"
    if not _REF_RE.match(repo) or len(repo) > 255:
        where = f"moorage.environments.{env.name}.registry" if registry else f"image '{image.name}'"
        raise ConfigError(f"bad image repository '{repo}' (from {where})",
                          "use a lowercase registry host[:port]/path and lowercase image names")
    return repo


def image_states(project: Project, env: Environment | None, *, images: Sequence[Image] | None = None,
                 resolve_base: Callable[[str], str | None] = lambda ref: None,
                 cache: DigestCache | None = None, contexts: dict | None = None) -> list[ImageState]:
    """Compute each image's tag. ``resolve_base`` maps a base reference to its image ID."""
    own_cache = cache is None
    if own_cache:
        cache = DigestCache(project.root / CACHE_FILE)
    states = []
    for image in images if images is not None else project.images:
        ctx = scan_context(image, project.root, cache)
        if contexts is not None:
            contexts[image.name] = ctx
        info = analyse_dockerfile(ctx.dockerfile_text, image.build_args, image.target)
        if image.target and image.target.lower() not in info.stages:
            raise ConfigError(f"target '{image.target}' of image '{image.name}' is not a stage of {image.dockerfile}",
                              f"use one of: {', '.join(s for s in info.stages if not s.isdigit()) or 'none'}")
        bases = {ref: resolve_base(ref) for ref in info.bases}
        digest = inputs_digest(ctx, image.build_args, image.target, bases)
        states.append(ImageState(
            name=image.name, repository=repository(image, env, project.release), tag=digest[:TAG_LENGTH],
            inputs_digest=digest, bases=bases, steps=info.steps, dockerfile_arcname=ctx.dockerfile_arcname,
            build_args=dict(image.build_args), target=image.target,
        ))
    if own_cache:
        cache.save()
    return states


def select_images(project: Project, only: str | Iterable[str] | None) -> list[Image]:
    """The images named by ``--only`` (comma-separated), in config order; all by default."""
    if not only:
        return list(project.images)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    wanted = {project.image(n).name for n in names}
    return [i for i in project.images if i.name in wanted]



@dataclass(frozen=True)
class PlannedBuild:
    name: str
    ref: str
    action: str  # "build" or "skip"
    reason: str


def plan_builds(states: Sequence[ImageState], present: Iterable[str], *, force: bool = False) -> list[PlannedBuild]:
    """Which images to build: those whose tag is not in the engine yet (all with ``force``)."""
    present = set(present)
    plan = []
    for s in states:
        if force:
            plan.append(PlannedBuild(s.name, s.ref, "build", "forced"))
        elif s.ref in present:
            plan.append(PlannedBuild(s.name, s.ref, "skip", "already built"))
        else:
            plan.append(PlannedBuild(s.name, s.ref, "build", "inputs changed (tag not in the engine)"))
    return plan


def missing_bases(states: Sequence[ImageState], plan: Sequence[PlannedBuild]) -> list[tuple[str, str]]:
    """(image, base) pairs a planned build needs but the engine lacks (there is no registry to pull from)."""
    building = {p.name for p in plan if p.action == "build"}
    return [(s.name, ref) for s in states if s.name in building for ref, iid in s.bases.items() if iid is None]
