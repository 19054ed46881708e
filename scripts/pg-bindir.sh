#!/usr/bin/env bash
# Print the directory of the PostgreSQL server binaries (initdb, postgres, pg_ctl) the tests use;
# exit 1 when there is none. `pg_config --bindir` first (Debian's wrapper answers for the newest
# installed server, or for libpq-dev, whose version may have no server), then the newest
# /usr/lib/postgresql/*/bin. No version is assumed: Debian 12 ships 15, Debian 13 ships 17.
# scripts/test.sh exports the result as MOORAGE_PG_BIN (tests/fixtures/tools.py reads it).
set -euo pipefail

is_server_bindir() { [ -n "$1" ] && [ -x "$1/initdb" ] && [ -x "$1/postgres" ] && [ -x "$1/pg_ctl" ]; }

if command -v pg_config >/dev/null 2>&1; then
  dir=$(pg_config --bindir 2>/dev/null || true)
  if is_server_bindir "$dir"; then echo "$dir"; exit 0; fi
fi
while read -r dir; do
  if is_server_bindir "$dir"; then echo "$dir"; exit 0; fi
done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
exit 1
