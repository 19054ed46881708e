#!/usr/bin/env bash
# The test command: sets up .venv on first use, installs Moorage with its
# test extra, and runs pytest. Extra arguments go to pytest
# (scripts/test.sh tests/unit -k config).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.moorage-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
exec .venv/bin/python -m pytest "$@"
