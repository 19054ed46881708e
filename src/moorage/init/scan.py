"""What a repository holds, read from its files: Dockerfiles, charts, values files, migration tools.

One walk of the tree (:func:`moorage.core.files.walk`: hidden folders,
dependency and build folders skipped) collects the candidates; the functions
below turn each into a description. Nothing here runs a program or writes a file.
"""

from __future__ import annotations

import glob
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import ENV_NAME_RE, IMAGE_NAME_RE, load_yaml
from ..core.errors import UserError
from ..core.files import walk as files_of
from ..images.dockerfile import analyse_dockerfile, dockerfile_instructions

#: folders whose ``<name>.yaml`` files are per-environment Helm values
ENV_DIR_NAMES = ("environments", "envs", "values", "helm-values")
_VALUES_FILE = re.compile(r"^(?:values[-_.](?P<a>[A-Za-z0-9-]+)|(?P<b>[A-Za-z0-9-]+)[-_.]values)\.ya?ml$")
_DOCKERFILE = re.compile(r"^(?:Dockerfile(?:\.(?P<suffix>[^.]+))?|(?P<prefix>[^.]+)\.[Dd]ockerfile)$")


@dataclass
class Tree:
    """The candidate files of one walk, as paths relative to the root (POSIX)."""

    root: Path
    dockerfiles: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)  # folders holding a Chart.yaml
    alembic: list[str] = field(default_factory=list)
    manage_py: list[str] = field(default_factory=list)
    prisma: list[str] = field(default_factory=list)
    up_sql_dirs: list[str] = field(default_factory=list)
    env_dirs: list[str] = field(default_factory=list)


def walk(root: Path) -> Tree:
    """One pass over the repository, collecting every candidate."""
    tree = Tree(root)
    for here, rel, files in files_of(root):
        prefix = "" if rel == "." else f"{rel}/"
        # A subchart (<chart>/charts/<name>/Chart.yaml) is part of its parent, not a chart to deploy.
        if "Chart.yaml" in files and not (here.parent.name == "charts" and (here.parent.parent / "Chart.yaml").is_file()):
            tree.charts.append(rel)
        if here.name in ENV_DIR_NAMES and rel != ".":
            tree.env_dirs.append(rel)
        if any(f.endswith(".up.sql") for f in files):
            tree.up_sql_dirs.append(rel)
        for name in files:
            path = prefix + name
            if _DOCKERFILE.match(name) and not name.endswith(".dockerignore"):
                tree.dockerfiles.append(path)
            elif name == "alembic.ini":
                tree.alembic.append(path)
            elif name == "manage.py":
                tree.manage_py.append(path)
            elif name == "schema.prisma":
                tree.prisma.append(path)
    return tree


# --- Dockerfiles ---------------------------------------------------------------


@dataclass(frozen=True)
class Dockerfile:
    """A Dockerfile with what init needs to describe its image."""

    path: str  # relative to the root
    name: str  # the image name guessed from the path
    context: str  # the build context guessed from its COPY sources
    stages: tuple[str, ...]  # every stage in order: its name, or its index when it has none
    base_args: dict[str, str]  # ARG used in a FROM line -> its default


def image_name(path: str, root_name: str) -> str:
    """``Dockerfile.backend`` → backend, ``services/api/Dockerfile`` → api, ``web.Dockerfile`` → web."""
    p = Path(path)
    m = _DOCKERFILE.match(p.name)
    folder = p.parent.name
    if m and m.group("prefix"):
        raw = m.group("prefix")
    elif m and m.group("suffix"):
        raw = m.group("suffix") if not folder else f"{folder}-{m.group('suffix')}"
    else:
        raw = folder or root_name
    name = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    return name if IMAGE_NAME_RE.match(name or "-") else "app"


def _copy_sources(text: str) -> list[str]:
    """The sources of COPY/ADD instructions that read the build context (not ``--from=``, not URLs)."""
    sources = []
    for ins in dockerfile_instructions(text):
        if ins.keyword not in ("COPY", "ADD") or "--from=" in ins.args:
            continue
        try:
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
        except ValueError:
            continue
        if words[:1] and words[0].startswith("["):  # JSON form
            words = re.findall(r'"([^"]*)"', ins.args)
        sources += [w for w in words[:-1] if "://" not in w and "$" not in w]
    return sources


def guess_context(root: Path, dockerfile: str, text: str) -> str:
    """The folder the COPY sources are relative to: the Dockerfile's own folder or the root."""
    own = Path(dockerfile).parent.as_posix()
    if own == ".":
        return "."
    sources = [s for s in _copy_sources(text) if s not in (".", "./")]
    if not sources:
        return own

    def found(base: Path) -> int:
        return sum(1 for s in sources if glob.glob(glob.escape(str(base)) + "/" + s.lstrip("/")))

    return "." if found(root) > found(root / own) else own


def base_args(text: str) -> dict[str, str]:
    """Build arguments a FROM line takes its image from, with their defaults (``ARG PYTHON_IMAGE=...``)."""
    defaults: dict[str, str] = {}
    used: dict[str, str] = {}
    for ins in dockerfile_instructions(text):
        if ins.keyword == "ARG" and not used:
            for decl in ins.args.split():
                key, eq, default = decl.partition("=")
                if eq:
                    defaults[key] = default.strip("\"'")
        elif ins.keyword == "FROM":
            for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", ins.args):
                if defaults.get(name):
                    used[name] = defaults[name]
    return used


def read_dockerfile(root: Path, path: str) -> Dockerfile | None:
    try:
        text = (root / path).read_text(errors="replace")
    except OSError:
        return None
    info = analyse_dockerfile(text, {})
    if not info.stages:
        return None  # not a Dockerfile (no FROM)
    return Dockerfile(path=path, name=image_name(path, root.resolve().name), context=guess_context(root, path, text),
                      stages=info.stages, base_args=base_args(text))


def dockerfiles(tree: Tree) -> list[Dockerfile]:
    """Each Dockerfile once, with a unique image name (a clash gets the folder in front)."""
    found = [d for d in (read_dockerfile(tree.root, p) for p in tree.dockerfiles) if d is not None]
    names: dict[str, int] = {}
    for d in found:
        names[d.name] = names.get(d.name, 0) + 1
    out, taken = [], set()
    for d in found:
        name = d.name
        if names[name] > 1:
            parent = Path(d.path).parent.as_posix().replace("/", "-").lower()
            name = re.sub(r"[^a-z0-9-]+", "-", f"{parent}-{name}" if parent != "." else name).strip("-")
        while name in taken:
            name += "-2"
        taken.add(name)
        out.append(Dockerfile(d.path, name, d.context, d.stages, d.base_args))
    return out


# --- charts and values ---------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    path: str  # folder, relative to the root
    name: str
    values: dict
    has_dependencies: bool


def pick_chart(tree: Tree, wanted: str | None) -> tuple[Chart, list[str]]:
    """The chart to deploy (``wanted`` wins) and the other charts found."""
    if wanted:
        path = Path(wanted)
        rel = (path if path.is_absolute() else tree.root / path).resolve()
        if not (rel / "Chart.yaml").is_file():
            raise UserError(f"no Chart.yaml in {wanted}", "pass --chart the folder that holds the chart's Chart.yaml")
        chosen = rel.relative_to(tree.root.resolve()).as_posix() if rel.is_relative_to(tree.root.resolve()) else str(rel)
    elif tree.charts:
        # The shallowest chart is the application's; deeper ones are usually examples or libraries.
        chosen = min(tree.charts, key=lambda c: (c.count("/"), c))
    else:
        raise UserError(f"no Helm chart (Chart.yaml) found under {tree.root}",
                        "Moorage deploys a Helm chart: create one (helm create chart) or pass --chart PATH")
    folder = tree.root / chosen
    meta = load_yaml(folder / "Chart.yaml") or {}
    values = load_yaml(folder / "values.yaml") if (folder / "values.yaml").is_file() else {}
    name = str(meta.get("name") or folder.name) if isinstance(meta, dict) else folder.name
    return (Chart(chosen, name, values if isinstance(values, dict) else {},
                  bool(isinstance(meta, dict) and meta.get("dependencies"))),
            [c for c in tree.charts if c != chosen])


@dataclass(frozen=True)
class EnvFiles:
    """Per-environment values files: in one folder as ``<env>.yaml`` (``folder``) or named ``values-<env>.yaml``."""

    files: dict[str, str]  # environment -> values file, relative to the root
    folder: str | None  # set when every file is ``<folder>/<env>.yaml`` (usable as environments_dir)


def _mapping(path: Path) -> bool:
    try:
        return isinstance(load_yaml(path), dict | type(None))
    except UserError:
        return False


def env_files(tree: Tree, chart: Chart) -> EnvFiles:
    """The environments' values files: an environments folder first, then ``values-<env>.yaml`` by the chart."""
    chart_dir = Path(chart.path)
    near = sorted(tree.env_dirs, key=lambda d: (Path(d).parent not in (chart_dir, chart_dir.parent, Path(".")),
                                                d.count("/"), d))
    for folder in near:
        files = {p.stem: p.relative_to(tree.root).as_posix() for p in sorted((tree.root / folder).glob("*.yaml"))
                 if ENV_NAME_RE.match(p.stem) and p.stem != "values" and _mapping(p)}
        if files:
            return EnvFiles(files, folder)
    files: dict[str, str] = {}
    for folder in (chart_dir, chart_dir.parent):
        for p in sorted((tree.root / folder).glob("*.y*ml")):
            m = _VALUES_FILE.match(p.name)
            env = (m.group("a") or m.group("b")).lower() if m else ""
            if env and ENV_NAME_RE.match(env) and env not in files and _mapping(p):
                files[env] = p.relative_to(tree.root).as_posix()
    return EnvFiles(files, None)


# --- migrations ----------------------------------------------------------------


@dataclass(frozen=True)
class Migrations:
    alembic: list[str]
    others: list[str]  # one line per other tool found: what and where


def migrations(tree: Tree) -> Migrations:
    others = []
    for path in tree.manage_py:
        if "django" in (tree.root / path).read_text(errors="replace").lower():
            others.append(f"Django migrations ({path}: python manage.py migrate)")
    others += [f"Prisma migrations ({p}: prisma migrate deploy)" for p in tree.prisma]
    others += [f"golang-migrate SQL files ({d}/*.up.sql: migrate -path {d} up)" for d in tree.up_sql_dirs]
    return Migrations(sorted(tree.alembic, key=lambda p: (p.count("/"), p)), others)
