# local/redis:7 -- a stand-in for the official `redis` image, built from
# Debian's redis-server (7.0) on top of local/debian:bookworm
# (scripts/base-images.sh) for clusters without registry access. Built by
# scripts/data-images.sh.
#
# Charts either override the command (this repository's: sh -c '... exec
# redis-server /tmp/redis.conf ...') or pass only `args:` (`--requirepass ...`),
# which the entrypoint hands to redis-server as the official image's does. The
# image provides sh, sed, redis-server
# and redis-cli, runs as any uid with a read-only root filesystem, and keeps
# the official image's one behavioural difference from upstream defaults:
# protected mode is off (see redis-server-wrapper.sh).
ARG BASE=local/debian:bookworm
FROM ${BASE}

ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    mkdir -p /data; \
    chown redis:redis /data; \
    chmod 1777 /data; \
    redis-server --version

COPY redis-server-wrapper.sh /usr/local/bin/redis-server
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint
RUN chmod 0755 /usr/local/bin/redis-server /usr/local/bin/redis-entrypoint

VOLUME /data
WORKDIR /data
EXPOSE 6379
# As in the official image: arguments that start with '-' (a chart's `args:`) go to redis-server.
ENTRYPOINT ["redis-entrypoint"]
CMD ["redis-server"]
