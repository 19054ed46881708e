#!/bin/sh
# Entrypoint of local/redis:7, with the official redis image's contract: when the
# first argument is an option (`--requirepass ...`, as a chart's `args:` gives
# it) or a config file (`*.conf`), the arguments go to redis-server; anything
# else is run as a command (`redis-cli`, `sh -c ...`).
set -eu
if [ $# -eq 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
exec "$@"
