"""The PostgreSQL and Redis stand-in images of scripts/data-images.sh, run as the chart runs them.

local/postgres:15 and local/redis:7 replace postgres:16.4 and redis:7.4 on
clusters without registry access. Each container here gets what the chart's
StatefulSets give it: uid/gid 10001, a read-only root filesystem, every
capability dropped, no-new-privileges, emptyDirs (tmpfs) for /tmp and
/var/run/postgresql, a data volume whose root belongs to group 10001 with the
setgid bit (what fsGroup makes of a PersistentVolume), the chart's env, its
probe commands, and for Redis the chart's own command, read from the template.
Ports are published on loopback, so clients connect from outside the container
(not over its loopback), as another pod would.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.fixtures.servers import REPO, free_port
from tests.fixtures.tools import require_docker

pytestmark = [pytest.mark.docker]

SCRIPT = REPO / "scripts" / "data-images.sh"
POSTGRES_IMAGE = "local/postgres:15"
REDIS_IMAGE = "local/redis:7"
CHART = REPO / "chart" / "templates"

UID = "10001"
# The password carries the characters a shell, a config file or a conninfo string could trip over.
PASSWORD = f"Pw-'q\"b\\s $HOME;{uuid.uuid4().hex[:10]}"
PG_ENV = {
    "POSTGRES_USER": "moorage",
    "POSTGRES_DB": "moorage",
    "POSTGRES_PASSWORD": PASSWORD,
    "PGDATA": "/var/lib/postgresql/data/pgdata",
}
# The chart's startup/liveness/readiness probe (chart/templates/postgresql/statefulset.yaml).
PG_PROBE = ["sh", "-c", 'exec pg_isready -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d "$POSTGRES_DB"']
PG_DUMP = ["sh", "-c", 'pg_dump -Fc -U "$POSTGRES_USER" "$POSTGRES_DB"']
REDIS_PROBE = ["redis-cli", "-p", "6379", "ping"]
# Ready markers (regular expressions, in log order): the server that the entrypoint execs, not the
# temporary one it runs for the initialization, accepts connections.
PG_READY = (r"\[entrypoint\] (initialization complete|PostgreSQL database directory \S+ exists)",
            "database system is ready to accept connections")
REDIS_READY = ("Ready to accept connections",)
# podSecurityContext + containerSecurityContext of values.yaml, in docker terms.
RESTRICTED = {
    "user": f"{UID}:{UID}",
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}
CMDLINES = ["sh", "-c", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <\"$f\"; echo; done"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data_images(docker_client) -> dict[str, str]:
    """Both images, built (or found up to date) by scripts/data-images.sh in the engine docker-py talks to."""
    require_docker()
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"data-images.sh failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    for image in (POSTGRES_IMAGE, REDIS_IMAGE):
        docker_client.images.get(image)
    return {"postgres": POSTGRES_IMAGE, "redis": REDIS_IMAGE}


@pytest.fixture
def containers(docker_client) -> Iterator[list]:
    """Containers a test starts; removed with their anonymous volumes afterwards."""
    started: list = []
    yield started
    for container in started:
        try:
            container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


@pytest.fixture
def fs_group_volume(docker_client, data_images) -> Iterator[str]:
    """A named volume whose root is what fsGroup 10001 makes of a PersistentVolume: root:10001, 2775."""
    name = f"moorage-test-pgdata-{uuid.uuid4().hex[:8]}"
    docker_client.volumes.create(name)
    docker_client.containers.run(
        data_images["postgres"], ["sh", "-c", f"chown root:{UID} /v && chmod 2775 /v"],
        entrypoint=[], user="0:0", volumes={name: {"bind": "/v", "mode": "rw"}}, remove=True,
    )
    yield name
    # This fixture may be torn down before `containers`: the volume's users go first.
    for container in docker_client.containers.list(all=True, filters={"volume": name}):
        container.remove(force=True, v=True)
    docker_client.volumes.get(name).remove(force=True)


def run_postgres(client, containers: list, image: str, volume: str, port: int, env: dict | None = None):
    container = client.containers.run(
        image,
        detach=True,
        environment=PG_ENV if env is None else env,
        tmpfs={"/tmp": "rw,size=64m", "/var/run/postgresql": "rw,size=16m"},
        volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
        ports={"5432/tcp": ("127.0.0.1", port)},
        name=f"moorage-test-pg-{uuid.uuid4().hex[:8]}",
        **RESTRICTED,
    )
    containers.append(container)
    return container


def logs(container) -> str:
    return container.logs().decode(errors="replace")


def wait_ready(container, markers: Sequence[str], probe: list[str], timeout: float = 90.0) -> None:
    """Follow the container's log until its ready marker (``markers``, in this order); then the chart's
    probe must pass at once, as the startup probe that next runs would see."""
    stream = container.logs(stream=True, follow=True)
    timer = threading.Timer(timeout, stream.close)  # ends the follow: the container never got ready
    timer.start()
    text, pos, left = "", 0, list(markers)
    try:
        for chunk in stream:
            text += chunk.decode(errors="replace")
            while left and (match := re.compile(left[0]).search(text, pos)):
                pos, left = match.end(), left[1:]
            if not left:
                break
    except Exception:  # noqa: BLE001, S110 - the stream closed by the timer
        pass
    finally:
        timer.cancel()
        stream.close()
    if left:
        container.reload()
        pytest.fail(f"{container.name} ({container.status}) never logged {left[0]!r} within {timeout:g}s:\n"
                    f"{logs(container)[-4000:]}")
    result = container.exec_run(probe)
    assert result.exit_code == 0, f"probe {probe} failed once ready: {result.output!r}\n{logs(container)[-4000:]}"


def pg_connect(port: int, password: str = PASSWORD):
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=port, user=PG_ENV["POSTGRES_USER"],
                           dbname=PG_ENV["POSTGRES_DB"], password=password, connect_timeout=5, autocommit=True)


def exec_ok(container, cmd: list[str]) -> tuple[bytes, bytes]:
    result = container.exec_run(cmd, demux=True)
    stdout, stderr = result.output
    assert result.exit_code == 0, f"{cmd} failed ({result.exit_code}): {stderr!r} {stdout!r}"
    return stdout or b"", stderr or b""


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_runs_as_the_chart_runs_it(docker_client, data_images, containers, fs_group_volume):
    import psycopg

    port = free_port()
    pg = run_postgres(docker_client, containers, data_images["postgres"], fs_group_volume, port)
    wait_ready(pg, PG_READY, PG_PROBE)

    # Password login over TCP from outside the container (scram-sha-256 from anywhere).
    with pg_connect(port) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings"
            " WHERE name IN ('listen_addresses', 'port', 'unix_socket_directories', 'data_directory')"
        ).fetchall())
        assert settings == {"listen_addresses": "*", "port": "5432", "unix_socket_directories": "/var/run/postgresql",
                            "data_directory": PG_ENV["PGDATA"]}
        (superuser, scram), = conn.execute(
            "SELECT rolsuper, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = current_user"
        ).fetchall()
        assert superuser and scram
        assert conn.execute("SELECT current_database()").fetchone()[0] == PG_ENV["POSTGRES_DB"]
        conn.execute("CREATE TABLE widgets (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO widgets VALUES (1, 'sprocket')")

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_connect(port, password=PASSWORD + "x").close()

    # Moorage's backup: pg_dump over the local socket via exec; the archive restores (lists) cleanly.
    dump, _ = exec_ok(pg, PG_DUMP)
    assert dump.startswith(b"PGDMP"), dump[:40]
    listing, _ = exec_ok(pg, ["sh", "-c", 'pg_dump -Fc -U "$POSTGRES_USER" "$POSTGRES_DB" >/tmp/t.dump'
                                         " && pg_restore -l /tmp/t.dump && rm /tmp/t.dump"])
    assert b"TABLE public widgets" in listing
    out, _ = exec_ok(pg, ["sh", "-c", 'psql -X -tA -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "SELECT name FROM widgets"'])
    assert out.strip() == b"sprocket"

    # The server is PID 1 and the password is on no command line; initdb's pwfile is gone from /tmp.
    out, _ = exec_ok(pg, CMDLINES)
    assert PASSWORD.encode() not in out
    assert exec_ok(pg, ["cat", "/proc/1/cmdline"])[0].split(b"\0")[0] == b"postgres"
    assert exec_ok(pg, ["ls", "-A", "/tmp"])[0] == b""
    assert PASSWORD not in logs(pg)

    # As uid 10001 with a read-only root: nothing outside the mounts is writable.
    result = pg.exec_run(["sh", "-c", "touch /var/lib/postgresql/x"])
    assert result.exit_code != 0 and b"Read-only file system" in result.output
    assert exec_ok(pg, ["id", "-u"])[0].strip() == UID.encode()


def test_postgres_restart_keeps_data_and_sigterm_shuts_down_cleanly(docker_client, data_images, containers,
                                                                   fs_group_volume):
    port = free_port()
    first = run_postgres(docker_client, containers, data_images["postgres"], fs_group_volume, port)
    wait_ready(first, PG_READY, PG_PROBE)
    with pg_connect(port) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('survives')")

    # What the kubelet sends: SIGTERM to PID 1, which postgres handles as a smart shutdown.
    first.kill(signal="SIGTERM")
    assert first.wait(timeout=60)["StatusCode"] == 0, logs(first)[-3000:]
    assert "received smart shutdown request" in logs(first)
    assert "database system is shut down" in logs(first)

    # A new pod on the same volume: no second initdb, and the data is there. A changed
    # POSTGRES_PASSWORD is ignored on an initialized directory, as with the official image.
    port = free_port()
    second = run_postgres(docker_client, containers, data_images["postgres"], fs_group_volume, port,
                          env={**PG_ENV, "POSTGRES_PASSWORD": "ignored-now"})
    wait_ready(second, PG_READY, PG_PROBE)
    with pg_connect(port) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("survives",)]
    assert "skipping initialization" in logs(second)
    assert "initializing" not in logs(second)


def test_postgres_refuses_to_initialize_without_a_password(docker_client, data_images, containers, fs_group_volume):
    pg = run_postgres(docker_client, containers, data_images["postgres"], fs_group_volume, free_port(),
                      env={**PG_ENV, "POSTGRES_PASSWORD": ""})
    assert pg.wait(timeout=60)["StatusCode"] != 0
    assert "POSTGRES_PASSWORD is empty" in logs(pg)


# --------------------------------------------------------------------------- Redis


def chart_redis_command(appendonly: str) -> list[str]:
    """The container command of chart/templates/redis/statefulset.yaml, rendered for persistence.enabled."""
    template = (CHART / "redis" / "statefulset.yaml").read_text()
    match = re.search(r"\n([ ]+)command:\n[ ]+- sh\n[ ]+- -c\n[ ]+- \|\n((?:\1[ ]+\S.*\n|[ ]*\n)+)", template)
    assert match, "the Redis StatefulSet no longer has a `sh -c |` command block; update this test"
    script = textwrap.dedent(match.group(2))
    script, count = re.subn(r"\{\{\s*ternary \"yes\" \"no\" \$c\.persistence\.enabled\s*\}\}", appendonly, script)
    assert count == 1 and "{{" not in script, f"unexpected template syntax in the Redis command:\n{script}"
    assert "exec redis-server /tmp/redis.conf" in script
    return ["sh", "-c", script]


def run_redis(client, containers: list, image: str, port: int, password: str | None, appendonly: str = "no"):
    env = {"REDIS_PASSWORD": password, "REDISCLI_AUTH": password} if password else {}
    container = client.containers.run(
        image,
        chart_redis_command(appendonly),
        detach=True,
        environment=env,
        tmpfs={"/tmp": "rw,size=16m", "/data": "rw,size=256m"},
        ports={"6379/tcp": ("127.0.0.1", port)},
        name=f"moorage-test-redis-{uuid.uuid4().hex[:8]}",
        **RESTRICTED,
    )
    containers.append(container)
    return container


def test_redis_with_password_runs_the_charts_command(docker_client, data_images, containers):
    import redis

    port = free_port()
    container = run_redis(docker_client, containers, data_images["redis"], port, PASSWORD)
    wait_ready(container, REDIS_READY, REDIS_PROBE)
    out, _ = exec_ok(container, REDIS_PROBE)  # REDISCLI_AUTH from the env, as the probes do
    assert out.strip() == b"PONG"

    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password=PASSWORD + "x", socket_timeout=5).ping()
    client = _redis_pinged(redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=5))
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert client.config_get("dir")["dir"] == "/data"
    assert client.config_get("appendonly")["appendonly"] == "no"
    client.close()

    out, _ = exec_ok(container, CMDLINES)
    assert PASSWORD.encode() not in out
    assert exec_ok(container, ["stat", "-c", "%a %u", "/tmp/redis.conf"])[0].split() == [b"600", UID.encode()]


def test_redis_without_password_serves_other_pods(docker_client, data_images, containers):
    """Dev runs Redis without a password: clients from outside the container must still get in
    (the official image turns protected mode off), and appendonly (persistence.enabled) writes to /data."""
    import redis

    port = free_port()
    container = run_redis(docker_client, containers, data_images["redis"], port, None, appendonly="yes")
    wait_ready(container, REDIS_READY, REDIS_PROBE)
    client = _redis_pinged(redis.Redis(host="127.0.0.1", port=port, socket_timeout=5))
    client.set("k", "v")
    assert client.config_get("protected-mode")["protected-mode"] == "no"
    assert client.config_get("appendonly")["appendonly"] == "yes"
    client.close()
    assert b"appendonlydir" in exec_ok(container, ["ls", "-A", "/data"])[0]


def _redis_pinged(client):
    client.ping()
    return client


def test_images_are_small_and_the_script_is_idempotent(docker_client, data_images):
    sizes = {name: docker_client.images.get(ref).attrs["Size"] for name, ref in data_images.items()}
    assert sizes["postgres"] < 260e6, sizes
    assert sizes["redis"] < 130e6, sizes
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{POSTGRES_IMAGE} exists" in result.stderr and f"{REDIS_IMAGE} exists" in result.stderr
    assert "building" not in result.stderr


def test_install_ci_builds_the_data_images():
    """install-ci.sh builds the images on CI machines, after the base images they start from."""
    lines = (REPO / "scripts" / "install-ci.sh").read_text().splitlines()
    assert lines.index('"$here/data-images.sh"') > lines.index('"$here/base-images.sh"')
    assert Path(SCRIPT).stat().st_mode & 0o111


def test_redis_takes_a_charts_args_as_server_options_like_the_official_image(docker_client, data_images,
                                                                             containers):
    """Third-party charts give only `args: [--requirepass, ...]`: they go to redis-server, not run as a command."""
    import redis

    port = free_port()
    container = docker_client.containers.run(
        data_images["redis"], ["--requirepass", PASSWORD, "--save", ""], detach=True,
        tmpfs={"/tmp": "rw,size=16m", "/data": "rw,size=256m"}, ports={"6379/tcp": ("127.0.0.1", port)},
        environment={"REDISCLI_AUTH": PASSWORD}, name=f"moorage-test-redis-{uuid.uuid4().hex[:8]}", **RESTRICTED)
    containers.append(container)
    wait_ready(container, REDIS_READY, REDIS_PROBE)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()
    client = _redis_pinged(redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=5))
    client.close()
