"""Images: content-hash tags, change detection and builds.

- ``dockerignore``: which context paths Docker leaves out;
- ``dockerfile``: base images and step count of a Dockerfile;
- ``context``: the context walk, the digest cache, the deterministic tar, the CA bundle;
- ``tags``: each image's tag and repository, and which images need a build (pure);
- ``buildkit``: which builder an engine gets (BuildKit through ``docker buildx``, else legacy), BuildKit builds;
- ``build``: one build into an engine, with progress;
- ``listing``: rows for ``images.list``.

Where images run and how they get there is ``moorage.cluster``; an
environment's images end to end (observe, build, deliver) is ``moorage.artifacts``.
"""

from .build import build_image
from .buildkit import Builder, builder_status, choose_builder, require_buildable
from .context import CACHE_FILE, BuildContext, DigestCache, ca_bundle_from_env, scan_context
from .listing import ImageRow, list_rows, table_rows
from .tags import ImageState, PlannedBuild, image_states, missing_bases, plan_builds, select_images

__all__ = [
    "CACHE_FILE", "BuildContext", "Builder", "builder_status", "choose_builder", "require_buildable", "DigestCache", "ImageRow", "ImageState", "PlannedBuild", "build_image",
    "ca_bundle_from_env", "image_states", "list_rows", "missing_bases", "plan_builds", "scan_context",
    "select_images", "table_rows",
]
