#!/bin/sh
# Backup CronJob: pg_dump -Fc into /backups, then keep only the newest $RETENTION dumps.
# The dump is written as .partial and renamed only when pg_dump succeeded.
# Connection settings come from the PG* environment variables.
set -eu
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
target="/backups/${PGDATABASE}-${stamp}.dump"
echo "dumping ${PGDATABASE}@${PGHOST}:${PGPORT} to ${target}"
rm -f /backups/*.partial
pg_dump --format=custom --no-password --file="${target}.partial"
mv "${target}.partial" "${target}"
echo "wrote ${target} ($(wc -c < "${target}") bytes)"
# Retention: newest first, delete everything beyond the first $RETENTION.
ls -1t /backups/*.dump 2>/dev/null | tail -n +"$((RETENTION + 1))" | while read -r old; do
  echo "retention: deleting ${old}"
  rm -f -- "${old}"
done
