#!/bin/sh
# /usr/local/bin/redis-server: Debian's /usr/bin/redis-server with the official
# redis image's compiled-in default of `protected-mode no` (the official image
# patches that default because a container's port is only reachable where it
# is published). Upstream's default (yes) would refuse every client that is not
# on loopback while no password is set, i.e. other pods in a dev release.
#
# An explicit protected-mode in the arguments or in the config file wins, as
# with the official image. Command-line options override the config file in
# Redis, so the default is inserted only when neither sets it.
set -eu
real=/usr/bin/redis-server

case "${1:-}" in
    -v | --version | -h | --help | --test-memory | --check-system | -)
        exec "$real" "$@" ;;
esac
for arg in "$@"; do
    [ "$arg" = --protected-mode ] && exec "$real" "$@"
done
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    # First argument is the config file.
    if [ -r "$1" ] && grep -qiE '^[[:space:]]*protected-mode([[:space:]]|$)' "$1"; then
        exec "$real" "$@"
    fi
    conf=$1
    shift
    exec "$real" "$conf" --protected-mode no "$@"
fi
exec "$real" --protected-mode no "$@"
