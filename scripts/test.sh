#!/usr/bin/env bash
# The test command: sets up .venv on first use, installs Moorage with its
# test extra at the versions pinned in requirements-test.lock, and runs pytest.
# Extra arguments go to pytest (scripts/test.sh tests/unit -k config).
#
# The lock holds the exact version of every dependency (used as pip constraints),
# so two CI runs test the same thing. To refresh it, after changing dependencies in
# pyproject.toml or to move to newer versions: scripts/lock-test-deps.sh (resolves
# afresh in a throwaway venv), then run this script and commit the lock.
# The venv is re-installed whenever pyproject.toml or the lock changes.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=requirements-test.lock
[ -f "$LOCK" ] || { echo "$LOCK is missing: run scripts/lock-test-deps.sh" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.moorage-installed
want=$(cat pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -c "$LOCK" pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c "$LOCK" -e '.[test]'
  echo "$want" >"$stamp"
fi
# PostgreSQL server binaries of whatever major version is installed (tests/fixtures/tools.py)
if [ -z "${MOORAGE_PG_BIN:-}" ] && pg_bin=$(scripts/pg-bindir.sh); then
  export MOORAGE_PG_BIN=$pg_bin
fi
exec .venv/bin/python -m pytest "$@"
