"""The reference project laid out as a user's checkout, for the end-to-end modules.

Each module copies it into its own temporary directory, writes its environment and
``invoke.yaml`` there, and runs ``inv`` in it. PostgreSQL and Redis come from the local
stand-in images (scripts/data-images.sh), put on the node and never pulled.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DATA_IMAGES = {"postgresql": ("local/postgres", "15"), "redis": ("local/redis", "7")}


def copy_project(root: Path) -> None:
    """tasks.py, the Dockerfiles and their ignore files, app/ and chart/ into ``root``; an empty environments/."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("tasks.py", ".dockerignore", *(p.name for p in REPO.glob("Dockerfile.*"))):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, root / name)
    for folder in ("app", "chart"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "environments").mkdir()


def data_values() -> dict[str, Any]:
    """Values that run the chart's PostgreSQL and Redis from the stand-in images on the node."""
    return {component: {"image": {"repository": repo, "tag": tag, "pullPolicy": "Never"}}
            for component, (repo, tag) in DATA_IMAGES.items()}


def load_data_images(cluster) -> None:
    """Build the stand-in data images (cached) and put them on the cluster's node."""
    subprocess.run([str(REPO / "scripts" / "data-images.sh")], check=True, capture_output=True, timeout=900)
    cluster.load_images(*(f"{repo}:{tag}" for repo, tag in DATA_IMAGES.values()))
