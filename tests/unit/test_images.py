"""Image tags, change detection, build contexts and build plans: no Docker, no cluster."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from invoke import Context, Exit

from moorage.core.config import Environment, load_project
from moorage.core.errors import ConfigError, OperationFailed, Unreachable, UserError
from moorage.engine import connect
from moorage.images.build import BuildStream
from moorage.images.context import (
    CA_ARCNAME,
    CACHE_FILE,
    OUTSIDE_DOCKERFILE,
    TAR_MTIME,
    DigestCache,
    ca_bundle_from_env,
    scan_context,
    write_context_tar,
)
from moorage.images.dockerfile import analyse_dockerfile, substitute
from moorage.images.dockerignore import IgnoreMatcher, read_dockerignore
from moorage.images.tags import (
    TAG_LENGTH,
    ImageState,
    image_states,
    missing_bases,
    plan_builds,
    repository,
    select_images,
)

DOCKERFILE = "ARG BASE=local/base:1\nFROM ${BASE}\nCOPY app/ /app/\nCMD [\"/app/run\"]\n"


def make_project(tmp_path: Path, *, dockerignore: str | None = "**/*.log\n", build_args=None, extra_images=()):
    (tmp_path / "environments").mkdir(parents=True)
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hello')\n")
    (tmp_path / "app" / "debug.log").write_text("noise\n")
    (tmp_path / "Dockerfile.app").write_text(DOCKERFILE)
    if dockerignore is not None:
        (tmp_path / ".dockerignore").write_text(dockerignore)
    raw = {"release": "demo", "images": [
        {"name": "app", "dockerfile": "Dockerfile.app", "context": ".", "build_args": build_args or {}},
        *extra_images,
    ], "environments": {"dev": {"registry": ""}}}
    return load_project(raw, tmp_path)


def tags(project, **kw) -> dict[str, str]:
    env = project.env("dev")
    return {s.name: s.tag for s in image_states(project, env, **kw)}


# --- .dockerignore semantics --------------------------------------------------

def matcher(text: str) -> IgnoreMatcher:
    return IgnoreMatcher(read_dockerignore(text))


def test_dockerignore_star_does_not_cross_directories():
    m = matcher("*.log\n")
    assert m.excluded("a.log")
    assert not m.excluded("sub/a.log")


def test_dockerignore_double_star_matches_any_depth():
    m = matcher("**/*.pyc\n")
    assert m.excluded("x.pyc") and m.excluded("a/b/c/x.pyc")
    assert not m.excluded("a/b/x.py")


def test_dockerignore_last_matching_pattern_wins_and_exceptions_reinclude():
    m = matcher("docs\n!docs/keep.md\n")
    assert m.excluded("docs/other.md")
    assert not m.excluded("docs/keep.md")
    m = matcher("!docs/keep.md\ndocs\n")
    assert m.excluded("docs/keep.md")


def test_dockerignore_pattern_matching_a_parent_directory_excludes_its_files():
    m = matcher("build\n")
    assert m.excluded("build/deep/file.o")
    assert not m.excluded("src/build.py")


def test_dockerignore_comments_blank_lines_and_leading_slash_are_cleaned():
    assert read_dockerignore("# comment\n\n  /tmp/  \n!./keep\n") == ["tmp", "!keep"]


def test_dockerignore_question_mark_and_character_class():
    m = matcher("file?.txt\n[ab].md\n")
    assert m.excluded("file1.txt") and not m.excluded("file10.txt")
    assert m.excluded("a.md") and not m.excluded("c.md")


def test_excluded_directory_is_walked_only_when_an_exception_may_reinclude_below_it():
    m = matcher("*\n!app/\n")
    assert m.excluded("tests")
    assert not m.may_reinclude_below("tests")
    assert not m.excluded("app/x.py")


def test_scan_sends_dockerfile_and_dockerignore_even_when_ignored(tmp_path):
    project = make_project(tmp_path, dockerignore="*\n!app/\n")
    ctx = scan_context(project.images[0], project.root)
    names = {e.arcname for e in ctx.entries}
    assert {"Dockerfile.app", ".dockerignore", "app", "app/main.py"} <= names
    assert "environments" not in names and "environments/dev.yaml" not in names


def test_scan_with_allow_list_reincludes_nested_exception_inside_excluded_directory(tmp_path):
    project = make_project(tmp_path, dockerignore="environments\n!environments/dev.yaml\n")
    names = {e.arcname for e in scan_context(project.images[0], project.root).entries}
    assert "environments/dev.yaml" in names
    assert "environments" not in names  # the excluded directory itself is not an entry


def test_per_dockerfile_ignore_file_wins_over_the_context_one(tmp_path):
    project = make_project(tmp_path, dockerignore="")
    (tmp_path / "Dockerfile.app.dockerignore").write_text("app/debug.log\n")
    names = {e.arcname for e in scan_context(project.images[0], project.root).entries}
    assert "app/debug.log" not in names and "app/main.py" in names


def test_scan_never_includes_moorage_state_directory(tmp_path):
    project = make_project(tmp_path, dockerignore=None)
    (tmp_path / ".moorage" / "cache").mkdir(parents=True)
    (tmp_path / ".moorage" / "cache" / "x.json").write_text("{}")
    names = {e.arcname for e in scan_context(project.images[0], project.root).entries}
    assert not any(n.startswith(".moorage") for n in names)


def test_dockerfile_outside_the_context_is_sent_under_a_fixed_name(tmp_path):
    project = make_project(tmp_path, extra_images=[{"name": "sub", "dockerfile": "Dockerfile.app", "context": "app"}])
    ctx = scan_context(project.image("sub"), project.root)
    assert ctx.dockerfile_arcname == OUTSIDE_DOCKERFILE
    assert OUTSIDE_DOCKERFILE in {e.arcname for e in ctx.entries}


def test_missing_dockerfile_is_a_config_error_naming_it(tmp_path):
    project = make_project(tmp_path)
    (tmp_path / "Dockerfile.app").unlink()
    with pytest.raises(ConfigError, match="Dockerfile.app"):
        scan_context(project.images[0], project.root)


# --- tags -----------------------------------------------------------------------

def test_same_inputs_give_the_same_tag_and_never_latest(tmp_path):
    project = make_project(tmp_path)
    first, second = tags(project), tags(project)
    assert first == second
    assert len(first["app"]) == TAG_LENGTH and first["app"] != "latest"


def test_one_byte_change_in_a_context_file_changes_the_tag(tmp_path):
    project = make_project(tmp_path)
    before = tags(project)
    (tmp_path / "app" / "main.py").write_text("print('hellp')\n")
    assert tags(project) != before


def test_change_in_an_ignored_file_keeps_the_tag(tmp_path):
    project = make_project(tmp_path)
    before = tags(project)
    (tmp_path / "app" / "debug.log").write_text("other noise\n")
    (tmp_path / "notes.log").write_text("new ignored file\n")
    assert tags(project) == before


def test_mtime_only_change_keeps_the_tag(tmp_path):
    project = make_project(tmp_path)
    before = tags(project)
    os.utime(tmp_path / "app" / "main.py", ns=(1, 1))
    assert tags(project) == before


def test_mode_change_changes_the_tag(tmp_path):
    project = make_project(tmp_path)
    before = tags(project)
    (tmp_path / "app" / "main.py").chmod(0o755)
    assert tags(project) != before


def test_build_arg_change_changes_the_tag(tmp_path):
    a = tags(make_project(tmp_path / "a", build_args={"BASE": "local/base:1"}))
    b = tags(make_project(tmp_path / "b", build_args={"BASE": "local/base:2"}))
    assert a != b


def test_base_image_id_is_part_of_the_tag(tmp_path):
    project = make_project(tmp_path)
    one = tags(project, resolve_base=lambda ref: "sha256:" + "1" * 64)
    two = tags(project, resolve_base=lambda ref: "sha256:" + "2" * 64)
    assert one != two


def test_ca_bundle_in_the_context_root_is_not_part_of_the_tag(tmp_path):
    project = make_project(tmp_path, dockerignore=None)
    before = tags(project)
    (tmp_path / CA_ARCNAME).write_text("-----BEGIN CERTIFICATE-----\n")
    assert tags(project) == before


def test_unknown_target_is_a_config_error(tmp_path):
    project = make_project(tmp_path)
    bad = load_project({"release": "demo", "images": [
        {"name": "app", "dockerfile": "Dockerfile.app", "target": "nope"}]}, tmp_path)
    with pytest.raises(ConfigError, match="target 'nope'"):
        image_states(bad, project.env("dev"))


# --- change detection cache -------------------------------------------------------

def test_warm_cache_reads_no_file_and_a_touched_file_is_reread(tmp_path):
    project = make_project(tmp_path)
    cache_path = tmp_path / CACHE_FILE
    image_states(project, project.env("dev"))
    assert cache_path.is_file()
    warm = DigestCache(cache_path)
    image_states(project, project.env("dev"), cache=warm)
    assert warm.reads == 0
    (tmp_path / "app" / "main.py").write_text("print('changed')\n")
    again = DigestCache(cache_path)
    image_states(project, project.env("dev"), cache=again)
    assert again.reads == 1


def test_corrupt_cache_is_ignored(tmp_path):
    project = make_project(tmp_path)
    (tmp_path / CACHE_FILE).parent.mkdir(parents=True)
    (tmp_path / CACHE_FILE).write_text("{not json")
    assert tags(project) == tags(project)


# --- context tar -----------------------------------------------------------------

def tar_members(ctx, **kw) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    write_context_tar(ctx, buf, **kw)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_context_tar_is_byte_identical_across_runs_and_mtimes(tmp_path):
    project = make_project(tmp_path)
    one = io.BytesIO()
    write_context_tar(scan_context(project.images[0], project.root), one)
    os.utime(tmp_path / "app" / "main.py", ns=(5, 5))
    two = io.BytesIO()
    write_context_tar(scan_context(project.images[0], project.root), two)
    assert one.getvalue() == two.getvalue()


def test_context_tar_members_are_root_owned_with_fixed_mtime_and_no_ignored_files(tmp_path):
    project = make_project(tmp_path)
    members = tar_members(scan_context(project.images[0], project.root))
    assert "app/debug.log" not in members
    m = members["app/main.py"]
    assert (m.uid, m.gid, m.mtime) == (0, 0, TAR_MTIME)


def test_ca_bundle_is_injected_at_the_context_root(tmp_path):
    project = make_project(tmp_path)
    ca = tmp_path / "proxy.pem"
    ca.write_text("PEM")
    members = tar_members(scan_context(project.images[0], project.root), ca_bundle=ca)
    assert members[CA_ARCNAME].size == 3
    assert CA_ARCNAME not in tar_members(scan_context(project.images[0], project.root))


def test_file_changed_after_hashing_stops_the_build(tmp_path):
    project = make_project(tmp_path)
    ctx = scan_context(project.images[0], project.root)
    (tmp_path / "app" / "main.py").write_text("print('edited meanwhile')\n")
    with pytest.raises(OperationFailed, match="changed while"):
        write_context_tar(ctx, io.BytesIO())


def test_ca_bundle_env_pointing_nowhere_is_bad_input(tmp_path):
    with pytest.raises(UserError, match="MOORAGE_CA_BUNDLE"):
        ca_bundle_from_env({"MOORAGE_CA_BUNDLE": str(tmp_path / "missing.pem")})
    assert ca_bundle_from_env({}) is None


# --- Dockerfile analysis -----------------------------------------------------------

def test_bases_are_resolved_through_global_args_and_build_args():
    text = ("# escape=\\\nARG PYTHON_IMAGE=python:3.12-slim\nFROM ${PYTHON_IMAGE} AS builder\nRUN a \\\n  && b\n"
            "FROM $PYTHON_IMAGE\nCOPY --from=builder /x /x\nCOPY --from=local/tools:1 /t /t\n")
    info = analyse_dockerfile(text, {"PYTHON_IMAGE": "local/python:3.11-slim"})
    assert info.bases == ("local/python:3.11-slim", "local/tools:1")
    assert info.steps == 6


def test_stage_names_and_scratch_are_not_bases_and_target_stops_counting():
    text = "FROM scratch AS a\nCOPY x /x\nFROM a AS b\nRUN true\nFROM local/other:1\n"
    info = analyse_dockerfile(text, {}, target="b")
    assert info.bases == ()
    assert info.steps == 4


def test_arg_default_forms_are_expanded():
    assert substitute("${A:-x}/${B:+y}${C}", {"A": "", "B": "1"}) == "x/y"


# --- build plan ---------------------------------------------------------------------

def state(name: str, tag: str = "abc", bases=None) -> ImageState:
    return ImageState(name, f"demo/{name}", tag, tag * 4, bases or {}, 3, "Dockerfile", {}, None)


def test_plan_skips_images_whose_tag_is_in_the_engine_and_builds_the_rest():
    plan = plan_builds([state("a"), state("b")], {"demo/a:abc"})
    assert [(p.name, p.action) for p in plan] == [("a", "skip"), ("b", "build")]
    assert plan[0].reason == "already built"


def test_plan_with_force_builds_everything():
    plan = plan_builds([state("a")], {"demo/a:abc"}, force=True)
    assert plan[0].action == "build" and plan[0].reason == "forced"


def test_missing_bases_are_reported_only_for_images_to_build():
    states = [state("a", bases={"local/py": None}), state("b", bases={"local/ng": None})]
    plan = plan_builds(states, {"demo/a:abc"})
    assert missing_bases(states, plan) == [("b", "local/ng")]


def test_select_images_rejects_unknown_name(tmp_path):
    project = make_project(tmp_path)
    assert [i.name for i in select_images(project, "app")] == ["app"]
    with pytest.raises(ConfigError, match="unknown image 'nope'"):
        select_images(project, "nope")


def test_labels_carry_the_hash_inputs():
    labels = state("a").labels()
    assert labels["dev.moorage.inputs"] == "abc" * 4
    assert labels["org.opencontainers.image.title"] == "a"


# --- repository naming --------------------------------------------------------------

def env(registry: str = "", name: str = "dev") -> Environment:
    return Environment(name=name, values_files=(Path("x.yaml"),), namespace="ns", registry=registry)


def test_repository_uses_registry_when_the_environment_has_one(tmp_path):
    project = make_project(tmp_path)
    image = project.images[0]
    assert repository(image, env("registry.example.com:5000/team"), "demo") == "registry.example.com:5000/team/app"
    assert repository(image, env(), "demo") == "demo/app"


def test_bad_registry_is_a_config_error_naming_the_key(tmp_path):
    project = make_project(tmp_path)
    with pytest.raises(ConfigError, match="moorage.environments.dev.registry"):
        repository(project.images[0], env("Bad Registry"), "demo")


# --- docker engine errors (no engine needed) ---------------------------------------

def test_dead_docker_socket_is_unreachable_naming_the_host(tmp_path):
    host = f"unix://{tmp_path}/nothing.sock"
    with pytest.raises(Unreachable) as exc:
        connect({"DOCKER_HOST": host})
    assert exc.value.line().startswith(f"Docker engine at {host} is not reachable (fix: ")
    assert exc.value.exit_code == 2


# --- tasks ------------------------------------------------------------------------

def task_context(project_root: Path, raw: dict) -> Context:
    from invoke import Config

    return Context(Config(overrides={"moorage": {**raw, "root": str(project_root)}}))


def test_build_task_with_docker_down_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    from moorage.tasks import images as image_tasks

    make_project(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/dead.sock")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    ctx = task_context(tmp_path, {"release": "demo", "images": [{"name": "app", "dockerfile": "Dockerfile.app"}]})
    with pytest.raises(Exit) as exc:
        image_tasks.build(ctx, dry_run=True)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: Docker engine at unix://{tmp_path}/dead.sock is not reachable "
                   "(fix: start the Docker daemon (dockerd), or point DOCKER_HOST at a running engine)"]


def test_push_task_without_registry_is_bad_input(tmp_path, capsys):
    from moorage.tasks import images as image_tasks

    make_project(tmp_path)
    ctx = task_context(tmp_path, {"release": "demo", "images": [{"name": "app", "dockerfile": "Dockerfile.app"}]})
    with pytest.raises(Exit) as exc:
        image_tasks.push(ctx, env="dev", dry_run=True)
    assert exc.value.code == 2
    assert "environment 'dev' is asked to push images but has no registry" in capsys.readouterr().err


# --- build stream ---------------------------------------------------------------------

def test_build_stream_failure_names_image_step_and_last_output_lines_without_noise():
    stream = BuildStream("backend", 9)
    chunks = [{"stream": "Step 1/9 : FROM local/base:1\n"}, {"stream": " ---> 4833642e83f6\n"},
              {"stream": "Step 4/9 : RUN pip install -r req.txt\n"}, {"stream": " ---> Running in 873a4efeaaa1\n"},
              {"stream": "\x1b[91mERROR: No matching distribution found for fastapi\n\x1b[0m"},
              {"stream": "Removing intermediate container 873a4efeaaa1\n"},
              {"errorDetail": {"code": 1, "message": "The command '/bin/sh -c pip install -r req.txt' returned a non-zero code: 1"},
               "error": "The command '/bin/sh -c pip install -r req.txt' returned a non-zero code: 1"}]
    started = [line for c in chunks for line in stream.feed(c)]
    assert started == ["Step 1/9 : FROM local/base:1", "Step 4/9 : RUN pip install -r req.txt"]
    err = stream.failure("Dockerfile.backend", None)
    assert err.exit_code == 1
    assert err.message == ("build of image 'backend' failed at step 4/9 (RUN pip install -r req.txt): The command "
                           "'/bin/sh -c pip install -r req.txt' returned a non-zero code: 1; output: "
                           "ERROR: No matching distribution found for fastapi")


def test_build_stream_records_the_image_id():
    stream = BuildStream("web", 3)
    stream.feed({"aux": {"ID": "sha256:abc"}})
    assert stream.image_id == "sha256:abc" and stream.error is None
