"""Which builder an engine gets, the buildx command, and reading BuildKit's progress: no Docker.

The progress fixtures are ``docker buildx build --progress=rawjson`` output as
buildx v0.29.1 printed it against dockerd 20.10 (BuildKit v0.8).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.core.errors import EXIT_BAD_INPUT, UserError
from moorage.core.proc import Result
from moorage.images.buildkit import (
    CA_SECRET_ID,
    Builder,
    BuildKitStream,
    buildx_command,
    choose_builder,
    needs_buildkit,
    parse_inspect,
    require_buildable,
)
from moorage.images.context import BuildContext
from moorage.images.tags import ImageState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "buildkit"

INSPECT_RUNNING = """Name:   default
Driver: docker

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.8+unknown
Platforms:        linux/amd64, linux/386
"""
INSPECT_UNREACHABLE = """Name:          default
Driver:
Last Activity: 2026-12-01 11:32:18 +0000 UTC
Error:         Cannot connect to the Docker daemon at unix:///tmp/nonexist.sock. Is the docker daemon running?
"""


class FakeDocker:
    """Answers ``docker buildx version`` / ``inspect`` as the real CLI does, and records the calls."""

    def __init__(self, *, plugin: bool = True, inspect: str = INSPECT_RUNNING):
        self.plugin, self.inspect, self.calls = plugin, inspect, []

    def __call__(self, args, **kw) -> Result:
        self.calls.append((list(args), kw.get("env", {}).get("DOCKER_HOST")))
        if not self.plugin:
            return Result(tuple(args), 1, "", "docker: unknown command: docker buildx\n\nRun 'docker --help'\n")
        return Result(tuple(args), 0, self.inspect, "")


def state(**kw) -> ImageState:
    values = dict(name="app", repository="demo/app", tag="0123456789abcdef", inputs_digest="0123456789abcdef" * 4,
                  bases={"local/base:1": "sha256:" + "1" * 64}, steps=4, dockerfile_arcname="Dockerfile.app",
                  build_args={"BASE": "local/base:1"}, target=None)
    values.update(kw)
    return ImageState(**values)


def context(text: str) -> BuildContext:
    return BuildContext(Path("/p"), Path("/p/Dockerfile.app"), "Dockerfile.app", text, ())


def feed_fixture(name: str) -> tuple[BuildKitStream, list[str]]:
    stream = BuildKitStream("app")
    started = []
    for line in (FIXTURES / name).read_text().splitlines(keepends=True):
        started += stream.feed(line)
    return stream, started


# --- which builder -------------------------------------------------------------------

def test_inspect_of_a_running_docker_driver_is_usable_and_names_the_engine_buildkit():
    assert parse_inspect(INSPECT_RUNNING) == (True, "engine BuildKit v0.8+unknown")


def test_inspect_error_is_not_usable_and_says_why():
    ok, detail = parse_inspect(INSPECT_UNREACHABLE)
    assert not ok and detail.startswith("Cannot connect to the Docker daemon at unix:///tmp/nonexist.sock")


def test_auto_picks_buildkit_in_the_chosen_engine_when_the_plugin_drives_it():
    docker = FakeDocker()
    builder = choose_builder({"DOCKER_HOST": "tcp://192.0.2.1:2376"}, environ={}, run=docker)
    assert builder.kind == "buildkit"
    assert builder.describe() == "BuildKit (docker buildx, engine BuildKit v0.8+unknown)"
    assert docker.calls == [(["docker", "buildx", "inspect", "default"], "tcp://192.0.2.1:2376")]


def test_auto_falls_back_to_legacy_without_the_plugin_and_says_how_to_get_buildkit():
    builder = choose_builder(None, environ={}, run=FakeDocker(plugin=False))
    assert builder.kind == "legacy"
    assert builder.reason == "no docker buildx plugin; for BuildKit: install the docker buildx plugin: " \
                             "scripts/install-buildx.sh"


def test_auto_falls_back_to_legacy_when_the_engine_has_no_usable_buildkit():
    builder = choose_builder(None, environ={}, run=FakeDocker(inspect=INSPECT_UNREACHABLE))
    assert builder.kind == "legacy" and "has no usable BuildKit: Cannot connect" in builder.reason


def test_forced_legacy_probes_nothing():
    docker = FakeDocker()
    builder = choose_builder(None, environ={"MOORAGE_BUILDER": "legacy"}, run=docker)
    assert (builder.kind, builder.reason, docker.calls) == ("legacy", "MOORAGE_BUILDER=legacy", [])


def test_forced_buildkit_without_the_plugin_is_bad_input_not_a_fallback():
    with pytest.raises(UserError) as err:
        choose_builder(None, environ={"MOORAGE_BUILDER": "buildkit"}, run=FakeDocker(plugin=False))
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert err.value.line() == ("MOORAGE_BUILDER=buildkit but no docker buildx plugin (fix: install the docker buildx "
                                "plugin: scripts/install-buildx.sh, or unset MOORAGE_BUILDER to use the legacy builder)")


def test_unknown_builder_name_is_bad_input():
    with pytest.raises(UserError, match="MOORAGE_BUILDER=kaniko is not a builder"):
        choose_builder(None, environ={"MOORAGE_BUILDER": "kaniko"}, run=FakeDocker())


# --- Dockerfiles only BuildKit builds ----------------------------------------------------

def test_buildkit_only_flags_are_found_once_each():
    text = ("FROM b AS s\nRUN --mount=type=cache,target=/c \\\n    --mount=type=secret,id=moorage-ca make\n"
            "COPY --chmod=0750 run.sh /r\nCOPY --from=s --link /a /a\nRUN --network=none true\n")
    assert needs_buildkit(text) == ["RUN --mount", "COPY --chmod", "COPY --link", "RUN --network"]


def test_flags_of_the_command_itself_are_not_dockerfile_flags():
    text = "FROM b\nRUN pip install --network-timeout 5 --mount x\nCOPY --from=b --chown=1:1 a b\n"
    assert needs_buildkit(text) == []


def test_legacy_builder_refuses_a_dockerfile_with_a_secret_mount_before_building():
    ctx = context("FROM b\nRUN --mount=type=secret,id=moorage-ca true\n")
    with pytest.raises(UserError) as err:
        require_buildable(Builder("legacy", "MOORAGE_BUILDER=legacy"), [("app", ctx)])
    assert err.value.line() == (
        "Dockerfile.app of image 'app' uses RUN --mount, which needs BuildKit, but the builder is the legacy one "
        "(MOORAGE_BUILDER=legacy) (fix: unset MOORAGE_BUILDER (or set it to buildkit))")
    require_buildable(Builder("buildkit", "docker buildx"), [("app", ctx)])


# --- the command ------------------------------------------------------------------------

def test_buildx_command_reads_the_context_tar_from_stdin_into_the_engine_with_the_ca_as_a_secret(tmp_path):
    ca = tmp_path / "proxy-ca.pem"
    args = buildx_command(state(target="final"), iidfile=tmp_path / "iid", ca_file=ca)
    assert args[:6] == ["docker", "buildx", "build", "--builder", "default", "--load"]
    assert args[-1] == "-" and "--progress=rawjson" in args
    assert args[args.index("--file") + 1] == "Dockerfile.app" and args[args.index("--tag") + 1] == "demo/app:0123456789abcdef"
    assert args[args.index("--secret") + 1] == f"id={CA_SECRET_ID},src={ca}"
    assert args[args.index("--target") + 1] == "final" and "BASE=local/base:1" in args
    assert "dev.moorage.inputs=" + "0123456789abcdef" * 4 in args and "--no-cache" not in args


def test_buildx_command_without_a_ca_has_no_secret(tmp_path):
    assert "--secret" not in buildx_command(state(), iidfile=tmp_path / "iid", nocache=True)


# --- progress --------------------------------------------------------------------------

def test_failed_run_step_names_the_stage_the_step_its_error_and_output():
    stream, started = feed_fixture("rawjson-failed-run.txt")
    assert "[builder 3/3] RUN echo compiling && echo about to fail && cat /nope" in started
    err = stream.failure("Dockerfile", None, 1)
    assert err.exit_code == 1
    assert err.message == (
        "build of image 'app' failed at step 3/3 of stage 'builder' (RUN echo compiling && echo about to fail && "
        "cat /nope): executor failed running [/bin/sh -c echo compiling && echo about to fail && cat /nope]: "
        "exit code: 1; output: compiling | about to fail | cat: /nope: No such file or directory")
    assert any(line.endswith("ERROR: executor failed running [/bin/sh -c echo compiling && echo about to fail && "
                             "cat /nope]: exit code: 1") for line in stream.log)


def test_cached_rebuild_counts_every_step_done_and_marks_them_cached():
    stream, started = feed_fixture("rawjson-cached.txt")
    assert stream.failed is None and stream.total == 4 and stream.done == 4
    assert started[1] == "[stage-0 2/4] COPY --chmod=0750 app/ /app/ (cached)"
    assert "#5 CACHED" in stream.log


def test_error_outside_any_step_is_buildx_own_last_error_line():
    stream = BuildKitStream("app")
    stream.feed("ERROR: failed to build: failed to solve: failed to read dockerfile: open Dockerfile.app: no such file\n")
    err = stream.failure("Dockerfile.app", Path("/p/.moorage/logs/build-app.log"), 1)
    assert err.message == ("build of image 'app' failed: failed to build: failed to solve: failed to read dockerfile: "
                           "open Dockerfile.app: no such file")
    assert err.hint == "fix that step in Dockerfile.app (full log: /p/.moorage/logs/build-app.log)"
