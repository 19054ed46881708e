#!/bin/sh
# Render the nginx configuration from the environment and run nginx in the foreground.
#   BACKEND_URL        where /api/ is proxied (default http://moorage-backend:8000)
#   LISTEN_PORT        port to listen on (default 8080)
#   WORKER_PROCESSES   nginx worker processes (default 1)
# `start.sh -t` only tests the rendered configuration (used at image build time).
set -eu

BACKEND_URL="${BACKEND_URL:-http://moorage-backend:8000}"
BACKEND_URL="${BACKEND_URL%/}"   # a trailing slash would make nginx strip /api from proxied paths
LISTEN_PORT="${LISTEN_PORT:-8080}"
WORKER_PROCESSES="${WORKER_PROCESSES:-1}"
TEMPLATE="${NGINX_TEMPLATE:-/etc/moorage/nginx.conf.template}"
CONF=/tmp/nginx.conf

fail() { echo "start.sh: $*" >&2; exit 2; }

case "$BACKEND_URL" in
    http://*|https://*) ;;
    *) fail "BACKEND_URL must start with http:// or https://, got '$BACKEND_URL'" ;;
esac
case "$BACKEND_URL" in
    *[!A-Za-z0-9.:/_-]*) fail "BACKEND_URL contains characters that are not allowed: '$BACKEND_URL'" ;;
esac
case "$LISTEN_PORT" in
    ''|*[!0-9]*) fail "LISTEN_PORT must be a number, got '$LISTEN_PORT'" ;;
esac
case "$WORKER_PROCESSES" in
    auto) ;;
    ''|*[!0-9]*) fail "WORKER_PROCESSES must be a number or auto, got '$WORKER_PROCESSES'" ;;
esac

sed -e "s|@BACKEND_URL@|$BACKEND_URL|g" \
    -e "s|@LISTEN_PORT@|$LISTEN_PORT|g" \
    -e "s|@WORKER_PROCESSES@|$WORKER_PROCESSES|g" \
    "$TEMPLATE" > "$CONF"

if [ "${1:-}" = "-t" ]; then
    exec nginx -t -q -e stderr -c "$CONF"
fi
echo "start.sh: proxying /api/ to $BACKEND_URL, listening on $LISTEN_PORT" >&2
exec nginx -e stderr -c "$CONF" -g 'daemon off;'
