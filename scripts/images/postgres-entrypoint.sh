#!/bin/sh
# Entrypoint of local/postgres:15, the stand-in for the official postgres image
# (see postgres.Dockerfile). On an empty PGDATA: initdb with POSTGRES_USER as
# superuser and POSTGRES_PASSWORD (scram-sha-256 over TCP from anywhere, trust
# on the local socket), create POSTGRES_DB, run /docker-entrypoint-initdb.d;
# then exec postgres in the foreground so it is PID 1 and gets the signals.
#
# The password never appears on a command line: initdb reads it from a 0600
# file under /tmp that is removed as soon as initdb returns (printf is a shell
# builtin, so writing it spawns no process either).
set -eu

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# `docker run IMAGE -c foo=bar` means postgres with options, as in the official image.
if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$1" != postgres ] || [ "${2:-}" = --version ] || [ "${2:-}" = -V ]; then
    exec "$@"
fi

# Started as root (plain `docker run`): prepare the directories and drop to the
# postgres user, as the official image does. Under Kubernetes (runAsUser) this
# branch is never taken.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

# Non-root: PGDATA (usually a subdirectory of the mounted volume) must be ours.
mkdir -p "$PGDATA" 2>/dev/null || die "cannot create PGDATA=$PGDATA as uid $(id -u); make its parent writable (fsGroup)"
chmod 0700 "$PGDATA" 2>/dev/null || die "PGDATA=$PGDATA is not owned by uid $(id -u); point PGDATA at a subdirectory of the volume"
[ -w /var/run/postgresql ] || die "/var/run/postgresql is not writable (mount an emptyDir there)"

if [ -s "$PGDATA/PG_VERSION" ]; then
    log "PostgreSQL database directory $PGDATA exists; skipping initialization"
    exec "$@"
fi

# --- first start: initialize ------------------------------------------------
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
: "${POSTGRES_INITDB_ARGS:=}"
if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    die "the database is uninitialized and POSTGRES_PASSWORD is empty; set it (or POSTGRES_HOST_AUTH_METHOD=trust, never in production)"
fi
case "$POSTGRES_PASSWORD" in
    *"
"*) die "POSTGRES_PASSWORD must not contain a newline" ;;
esac
[ -w /tmp ] || die "/tmp is not writable (mount an emptyDir there)"

work=$(mktemp -d /tmp/pg-init.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

# initdb refuses to run as a uid without a passwd entry; the root filesystem is
# read-only, so nss_wrapper supplies one from /tmp for the initialization only.
if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
    grep -v '^postgres:' /etc/passwd >"$work/passwd"
    printf 'postgres:x:%s:%s:PostgreSQL:/var/lib/postgresql:/usr/sbin/nologin\n' "$(id -u)" "$(id -g)" >>"$work/passwd"
    cp /etc/group "$work/group"
    if ! getent group "$(id -g)" >/dev/null 2>&1; then
        grep -v '^postgres:' /etc/group >"$work/group"
        printf 'postgres:x:%s:\n' "$(id -g)" >>"$work/group"
    fi
    for lib in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so; do
        [ -e "$lib" ] && { nss_lib=$lib; break; }
    done
    [ -n "${nss_lib:-}" ] || die "libnss_wrapper.so not found"
    export LD_PRELOAD="$nss_lib" NSS_WRAPPER_PASSWD="$work/passwd" NSS_WRAPPER_GROUP="$work/group"
fi

log "initializing $PGDATA (superuser $POSTGRES_USER)"
old_umask=$(umask)
umask 077
printf '%s\n' "$POSTGRES_PASSWORD" >"$work/pwfile"
umask "$old_umask"
pwarg=""
[ -n "$POSTGRES_PASSWORD" ] && pwarg="--pwfile=$work/pwfile"
# shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list, as in the official image
if ! initdb --username="$POSTGRES_USER" $pwarg --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" \
        $POSTGRES_INITDB_ARGS >"$work/initdb.log" 2>&1; then
    rm -f "$work/pwfile"
    cat "$work/initdb.log" >&2
    die "initdb failed"
fi
rm -f "$work/pwfile"
printf '\n# Added by the entrypoint: password logins over TCP from anywhere.\nhost all all all %s\n' \
    "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

# A temporary server on the socket only, to create the database and run init scripts.
pg_ctl -D "$PGDATA" -w -t 60 -o "-c listen_addresses='' -p 5432" -l "$work/server.log" start >/dev/null \
    || { cat "$work/server.log" >&2; die "temporary server did not start"; }
psql_() { psql -X -q -v ON_ERROR_STOP=1 --no-password --username "$POSTGRES_USER" "$@"; }
if [ "$POSTGRES_DB" != postgres ]; then
    exists=$(psql_ --dbname postgres -tA --set db="$POSTGRES_DB" <<'SQL'
SELECT 1 FROM pg_database WHERE datname = :'db';
SQL
)
    if [ -z "$exists" ]; then
        log "creating database $POSTGRES_DB"
        psql_ --dbname postgres --set db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
    fi
fi
for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
        *.sh) log "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
        *.sql) log "running $f"; psql_ --dbname "$POSTGRES_DB" -f "$f" ;;
        *.sql.gz) log "running $f"; gunzip -c "$f" | psql_ --dbname "$POSTGRES_DB" ;;
        *) log "ignoring $f" ;;
    esac
done
pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
cat "$work/server.log" >&2

unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
rm -rf "$work"
trap - EXIT INT TERM
log "initialization complete; starting PostgreSQL"
exec "$@"
