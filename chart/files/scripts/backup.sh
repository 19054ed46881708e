#!/bin/sh
# Backup CronJob: the same backups as `inv backup.create`, written into the volume at /backups:
#   <UTC time>-<environment>-scheduled.dump   pg_dump's custom format
#   <UTC time>-<environment>-scheduled.json   the metadata Moorage writes: sha256, size, database,
#       environment, server and pg_dump versions, migration head, tables, per-table row counts, times
# The dump is written as .partial, read back whole (every data block decoded and its rows counted,
# in the dump's own snapshot), its metadata written, and only then renamed: a .dump exists only when
# it is complete and checked. `inv backup.list` lists these, `inv backup.fetch` copies one out, and
# backup.verify / restore / drill take them like local ones.
# Connection settings come from the PG* variables; ENVIRONMENT, NAMESPACE, RELEASE_REVISION, CHART
# and RETENTION from the chart.
set -eu
umask 077

dir=${BACKUP_DIR:-/backups}
epoch=$(date -u +%s)
stem="$(date -u -d "@$epoch" +%Y%m%dT%H%M%SZ)-${ENVIRONMENT}-scheduled"
dump="$dir/$stem.dump"
meta="$dir/$stem.json"
part="$dump.partial"
tmp=$(mktemp -d)
cleanup() { rm -f "$part" "$meta.partial"; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

json() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S+00:00; }

# Leftovers of runs that were killed (concurrencyPolicy: Forbid, so none is running).
rm -f "$dir"/*.partial

echo "dumping ${PGDATABASE}@${PGHOST}:${PGPORT} to ${dump}"
server_version=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -c "SHOW server_version")
pg_dump --format=custom --no-password --file="$part" 2>"$tmp/dump.err" || { cat "$tmp/dump.err" >&2; exit 1; }
if [ -s "$tmp/dump.err" ]; then
  echo "pg_dump reported problems; the dump was not kept:" >&2
  cat "$tmp/dump.err" >&2
  exit 1
fi
sync "$part"
dumped=$(date -u +%s)

size=$(stat -c %s "$part")
sha256=$(sha256sum "$part" | cut -d' ' -f1)
pg_restore --list "$part" >"$tmp/list"
tables=$(awk '$1 ~ /^[0-9]+;$/ && $4 == "TABLE" && $5 != "DATA" { n++ } END { print n + 0 }' "$tmp/list")
pg_dump_version=$(sed -n 's/^;[[:space:]]*Dumped by pg_dump version: //p' "$tmp/list" | head -n 1)

# Every data block decoded: rows per COPY block, and the rows of public.alembic_version.
{ pg_restore --data-only --file=- "$part" 2>"$tmp/read.err"; echo $? >"$tmp/read.rc"; } | awk -v heads="$tmp/heads" '
  function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return s }
  table == "" && /^COPY .* FROM stdin;$/ {
    name = substr($0, 6); i = index(name, " ("); if (i == 0) i = index(name, " FROM stdin;")
    table = substr(name, 1, i - 1); sub(/ +$/, "", table); rows[table] += 0; order[++n] = table; next
  }
  table != "" && $0 == "\\." { table = ""; next }
  table != "" { rows[table]++; if (table == "public.alembic_version") print $1 > heads }
  END {
    printf "{"
    for (k = 1; k <= n; k++) printf "%s\"%s\": %d", (k > 1 ? ", " : ""), esc(order[k]), rows[order[k]]
    printf "}"
  }' >"$tmp/rows.json"
if [ "$(cat "$tmp/read.rc")" != 0 ]; then
  echo "the dump does not read back; it was not kept:" >&2
  cat "$tmp/read.err" >&2
  exit 1
fi
heads="["
if [ -s "$tmp/heads" ]; then
  heads="[$(sort "$tmp/heads" | sed 's/\\/\\\\/g; s/"/\\"/g; s/.*/"&"/' | paste -sd, -)"
fi
heads="$heads]"

finished=$(date -u +%s)
cat >"$meta.partial" <<EOF
{"name": "$stem", "file": "$stem.dump", "format": "custom", "sha256": "$sha256", "size": $size, "database": $(json "$PGDATABASE"), "server_version": $(json "$server_version"), "pg_dump_version": $(json "$pg_dump_version"), "environment": $(json "$ENVIRONMENT"), "target": $(json "cronjob $NAMESPACE/${HOSTNAME:-?}"), "made_by": "cronjob", "kind": "ordinary", "label": "scheduled", "release_revision": $(json "$RELEASE_REVISION"), "alembic_heads": $heads, "tables": $tables, "row_counts": $(cat "$tmp/rows.json"), "started_at": "$(iso "$epoch")", "finished_at": "$(iso "$finished")", "seconds": $((dumped - epoch)), "moorage_version": $(json "$CHART")}
EOF
sync "$meta.partial"
mv "$meta.partial" "$meta"
mv "$part" "$dump" # the commit point
sync "$dir"
echo "wrote ${dump} (${size} bytes, sha256 ${sha256}, ${tables} tables)"

# Retention: newest first, delete every dump beyond the first $RETENTION, with its metadata.
ls -1t "$dir"/*.dump 2>/dev/null | tail -n +"$((RETENTION + 1))" | while read -r old; do
  echo "retention: deleting ${old}"
  rm -f -- "${old%.dump}.json" "${old%.dump}.drill.json" "$old"
done
