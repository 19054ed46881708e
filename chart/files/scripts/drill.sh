#!/bin/sh
# Drill CronJob: `inv backup.drill` in the cluster, for the newest backup of the backup CronJob's volume.
# It is restored into a throwaway database <db>_drill_<UTC time> on the same server (never over an existing
# database: the drill refuses to start if that name exists), and checked there: the archive's sha256 and
# size against its metadata, pg_restore's exit, the number of tables, each table's rows against the
# recorded row_counts, the migration head against alembic_heads, and each configured check (a file
# <name>.sql in $CHECKS_DIR whose query must return one row, true). The throwaway database is dropped
# (also on failure and when the pod is stopped), and the result is written beside the dump as
# <name>.drill.json, which `inv backup.list` shows as the backup's last drill. Exit 1 when a check failed.
# Connection settings come from the PG* variables (the user needs CREATEDB); NAMESPACE and CHART from the chart.
set -eu
umask 077

dir=${BACKUP_DIR:-/backups}
checks_dir=${CHECKS_DIR:-/drill-checks}
tab=$(printf '\t')
tmp=$(mktemp -d)
name=""
ours=false
dropped=false

json() { printf '"%s"' "$(printf '%s' "$1" | tr '\n\t' '  ' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S+00:00; }
pq() { psql -X -q -A -t -v ON_ERROR_STOP=1 -F "$tab" -v meta="$meta_json" -v name="$name" "$@"; }
drop() {
  if [ "$ours" = true ] && pq -d postgres >/dev/null 2>"$tmp/drop.err" <<'SQL'
DROP DATABASE IF EXISTS :"name" WITH (FORCE)
SQL
  then dropped=true; ours=false; echo "dropped $name"
  elif [ "$ours" = true ]; then echo "could not drop $name: $(tail -n 1 "$tmp/drop.err")" >&2
  fi
}
trap 'drop; rm -rf "$tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

dump=$(ls -1t "$dir"/*.dump 2>/dev/null | head -n 1 || true)
if [ -z "$dump" ]; then echo "no backup in $dir to drill" >&2; exit 1; fi
meta="${dump%.dump}.json"
result="${dump%.dump}.drill.json"
if [ ! -f "$meta" ]; then echo "$dump has no metadata: not a backup Moorage can check" >&2; exit 1; fi
meta_json=$(tr -d '\n' <"$meta")
epoch=$(date -u +%s)
name="$(printf '%.40s' "$PGDATABASE")_drill_$(date -u -d "@$epoch" +%Y%m%dt%H%M%Sz)"
checks=""
failed=""
add() { # name ok detail
  checks="${checks:+$checks, }{\"name\": $(json "$1"), \"ok\": $2, \"detail\": $(json "$3")}"
  if [ "$2" != true ]; then failed="${failed:+$failed, }$(json "$1")"; fi
  echo "check $1: $([ "$2" = true ] && echo ok || echo FAILED): $3"
}

echo "drill of $(basename "$dump") in the throwaway database $name"
size=$(stat -c %s "$dump")
sha256=$(sha256sum "$dump" | cut -d' ' -f1)
recorded=$(pq -d postgres <<'SQL'
SELECT coalesce(:'meta'::json ->> 'size', '?') || E'\t' || coalesce(:'meta'::json ->> 'sha256', '?')
SQL
)
if [ "$recorded" = "$size$tab$sha256" ]; then
  add archive true "sha256 and size match"
else
  add archive false "$size bytes, sha256 $(printf '%.12s' "$sha256")..., the metadata says ${recorded%%"$tab"*} bytes, sha256 $(printf '%.12s' "${recorded#*"$tab"}")..."
fi

restore_seconds=null
if [ -z "$failed" ]; then
  exists=$(pq -d postgres <<'SQL'
SELECT count(*) FROM pg_database WHERE datname = :'name'
SQL
)
  if [ "$exists" != 0 ]; then echo "database $name already exists: the drill never restores over one" >&2; exit 2; fi
  ours=true
  # with the live database's encoding and locale, as `inv backup.drill` creates it
  if ! pq -d postgres -v live="$PGDATABASE" >/dev/null 2>"$tmp/create.err" <<'SQL'
SELECT format('CREATE DATABASE %I TEMPLATE template0', :'name')
       || coalesce((SELECT format(' ENCODING %L LC_COLLATE %L LC_CTYPE %L', pg_encoding_to_char(encoding), datcollate,
                                  datctype) FROM pg_database WHERE datname = :'live'), '')
\gexec
SQL
  then
    ours=false
    echo "could not create $name: $(tail -n 1 "$tmp/create.err")" >&2
    exit 2
  fi
  t0=$(date +%s)
  if pg_restore --exit-on-error --no-password --dbname="$name" "$dump" 2>"$tmp/restore.err"; then
    restore_seconds=$(($(date +%s) - t0))
    add restore true "pg_restore took ${restore_seconds}s"
  else
    add restore false "pg_restore failed: $(tail -n 1 "$tmp/restore.err")"
  fi
fi

if [ -z "$failed" ]; then
  # tables, row counts and the migration head, from the metadata (PostgreSQL reads the JSON)
  pq -d "$name" >"$tmp/invariants" 2>"$tmp/invariants.err" <<'SQL' || add invariants false "$(tail -n 1 "$tmp/invariants.err")"
WITH m AS (SELECT :'meta'::jsonb AS j),
rc AS (
  SELECT t.key, t.value::bigint AS recorded, to_regclass(t.key) AS rel
  FROM m, jsonb_each_text(CASE WHEN jsonb_typeof(m.j -> 'row_counts') = 'object' THEN m.j -> 'row_counts' ELSE '{}' END) t
),
counted AS (
  SELECT key, recorded, CASE WHEN rel IS NOT NULL THEN (xpath('/row/c/text()', query_to_xml(
    format('SELECT count(*) AS c FROM ONLY %s', rel), false, true, '')))[1]::text::bigint END AS restored
  FROM rc
),
tables AS (
  SELECT count(*) AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND s.nspname NOT IN ('pg_catalog', 'information_schema') AND s.nspname NOT LIKE 'pg_toast%'
),
heads AS (
  SELECT coalesce(CASE WHEN to_regclass('public.alembic_version') IS NOT NULL THEN (xpath('/row/h/text()', query_to_xml(
           'SELECT string_agg(version_num, '','' ORDER BY version_num) AS h FROM public.alembic_version',
           false, true, '')))[1]::text END, '') AS got,
         coalesce((SELECT string_agg(v, ',' ORDER BY v) FROM m, jsonb_array_elements_text(m.j -> 'alembic_heads') v), '')
           AS wanted
)
SELECT 'tables', n >= (j ->> 'tables')::int, n || ' restored, the backup has ' || (j ->> 'tables')
FROM tables, m WHERE j ? 'tables'
UNION ALL
SELECT 'row count ' || key, false,
       coalesce(restored || ' rows restored, the backup recorded ' || recorded, 'table missing after the restore')
FROM counted WHERE restored IS DISTINCT FROM recorded
UNION ALL
SELECT 'row counts', true, CASE WHEN NOT (j ? 'row_counts') THEN 'skipped: this backup has no recorded row counts'
                                ELSE (SELECT count(*) FROM counted) || ' tables match the recorded counts' END
FROM m WHERE NOT EXISTS (SELECT 1 FROM counted WHERE restored IS DISTINCT FROM recorded)
UNION ALL
SELECT 'migration head', got = wanted,
       CASE WHEN got = wanted THEN coalesce('alembic_version ' || nullif(got, ''), 'no alembic_version')
            ELSE 'restored at ' || coalesce(nullif(got, ''), 'none') || ', the backup at ' || coalesce(nullif(wanted, ''), 'none') END
FROM heads, m WHERE j ? 'alembic_heads'
SQL
  while IFS="$tab" read -r check ok detail; do
    add "$check" "$([ "$ok" = t ] && echo true || echo false)" "$detail"
  done <"$tmp/invariants"
  for file in "$checks_dir"/*.sql; do
    [ -f "$file" ] || continue
    check=$(basename "$file" .sql)
    if out=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$name" -f "$file" 2>"$tmp/check.err"); then
      if [ "$out" = t ]; then add "$check" true true
      elif [ -z "$out" ]; then add "$check" false "returned no row, not one row with true"
      else add "$check" false "returned '$(printf '%s' "$out" | head -n 1)'$([ "$(printf '%s\n' "$out" | wc -l)" -gt 1 ] && echo ' and more rows'), not one row with true"
      fi
    else
      add "$check" false "failed: $(tail -n 1 "$tmp/check.err")"
    fi
  done
fi

drop
finished=$(date -u +%s)
ok=false
if [ -z "$failed" ] && [ -n "$checks" ]; then ok=true; fi
cat >"$result.partial" <<EOF
{"at": "$(iso "$epoch")", "ok": $ok, "database": $(json "$name"), "target": $(json "cronjob ${NAMESPACE:-?}/${HOSTNAME:-?}"), "restore_seconds": $restore_seconds, "seconds": $((finished - epoch)), "dropped": $dropped, "checks": [$checks], "failed": [$failed], "moorage_version": $(json "${CHART:-?}"), "made_by": "cronjob"}
EOF
sync "$result.partial"
mv "$result.partial" "$result"
if [ "$ok" != true ]; then echo "drill FAILED: $failed" >&2; exit 1; fi
echo "drill passed"
