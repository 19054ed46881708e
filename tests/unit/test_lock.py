"""One operation at a time per scope, and the one that waits is told who holds it."""

import subprocess
import sys
import textwrap

import pytest

from moorage.core.errors import EXIT_FAILED
from moorage.core.lock import Busy, hold, scope_name

HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from moorage.core.lock import hold
    with hold(Path(sys.argv[1]), "db-dev", "backup.restore on the database of 'dev'"):
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_second_holder_is_refused_naming_the_first(tmp_path):
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        with pytest.raises(Busy) as err:
            with hold(tmp_path, "db-dev", "backup.restore on the database of 'dev'"):
                pass
        assert f"pid {first.pid}" in err.value.message
        assert "backup.restore on the database of 'dev'" in err.value.message
        assert "started at" in err.value.message and "already running" in err.value.message
        assert err.value.exit_code == EXIT_FAILED
    finally:
        first.stdin.close()
        first.wait(timeout=30)


def test_lock_is_free_again_once_its_holder_exits(tmp_path):
    subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path)], input="\n", text=True, check=True,
                   capture_output=True)
    with hold(tmp_path, "db-dev", "backup.create") as path:
        assert path.name == "db-dev.lock"


def test_other_scopes_do_not_block_each_other(tmp_path):
    with hold(tmp_path, "db-dev", "backup.create"), hold(tmp_path, "release-dev-shop", "dev.deploy"):
        pass


def test_scope_names_are_file_safe():
    assert scope_name("db", "dev", "host:5432/app db") == "db-dev-host_5432_app_db"
