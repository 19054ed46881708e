"""The reference backend's dev runner (moorage_common.devrun, what the dev values start): a reload serves
the code now on disk on the same socket, a broken save is reported with its error line while the previous
code keeps serving, and the next good save recovers. Real processes from a copy of app/; no database is
needed for /healthz (the lifespan only builds the engine and clients)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import httpx
import pytest

from tests.fixtures.servers import APP_DIR, free_port, wait_for

HEALTHZ = 'return {"status": "ok"}'
PRELOAD = "fastapi,sqlalchemy,sqlalchemy.orm,pydantic,redis,rq,prometheus_client,uvicorn"


@pytest.fixture
def runner(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{app / 'backend'}:{app / 'common'}",
           "DEVRUN_STATE": str(tmp_path / "devrun.json"), "PYTHONDONTWRITEBYTECODE": "1",
           "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db", "REDIS_URL": "redis://127.0.0.1:1/0"}
    log = (tmp_path / "devrun.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moorage_common.devrun", f"--bind=127.0.0.1:{port}", "--overlap",
                             f"--preload={PRELOAD}", "moorage_backend.devserver:serve"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/healthz"

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, 60, "the dev runner's first generation")

    def reload() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "moorage_common.devrun", "reload", "--timeout", "60"], env=env,
                              capture_output=True, text=True, timeout=90)

    yield app / "backend" / "moorage_backend" / "main.py", url, reload, proc
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_a_reload_serves_the_code_on_disk_on_the_same_socket(runner):
    main, url, reload, _proc = runner
    main.write_text(main.read_text().replace(HEALTHZ, 'return {"status": "ok", "generation": "two"}'))
    result = reload()
    assert result.returncode == 0 and "generation 2 serves" in result.stdout, result.stderr
    assert httpx.get(url, timeout=5).json() == {"status": "ok", "generation": "two"}


def test_a_broken_save_is_reported_and_the_previous_code_serves_until_the_next_good_one(runner):
    main, url, reload, proc = runner
    good = main.read_text()
    main.write_text(good + "\ndef broken(:\n")
    broken = reload()
    assert broken.returncode == 1
    assert f'File "{main}", line' in broken.stderr and "SyntaxError" in broken.stderr, broken.stderr
    assert httpx.get(url, timeout=5).json() == {"status": "ok"}, "the previous code still serves"
    main.write_text(good.replace(HEALTHZ, 'return {"status": "ok", "fixed": True}'))
    fixed = reload()
    assert fixed.returncode == 0, fixed.stderr
    assert httpx.get(url, timeout=5).json() == {"status": "ok", "fixed": True}
    assert proc.poll() is None, "the runner itself never restarted"
