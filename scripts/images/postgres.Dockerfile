# local/postgres:15 -- a stand-in for the official `postgres` image, built from
# Debian's postgresql-15 on top of local/debian:bookworm (scripts/base-images.sh)
# for clusters without registry access. Built by scripts/data-images.sh.
#
# Same contract as the official image: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB / PGDATA / POSTGRES_INITDB_ARGS / POSTGRES_HOST_AUTH_METHOD,
# /docker-entrypoint-initdb.d/*.sh|*.sql on first start, the server in the
# foreground as PID 1, listening on every address on 5432, socket in
# /var/run/postgresql. Runs as any uid with a read-only root filesystem when
# PGDATA (or its parent), /var/run/postgresql and /tmp are writable.
ARG BASE=local/debian:bookworm
FROM ${BASE}

ENV PG_MAJOR=15 \
    LANG=C.UTF-8
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data

# Size: the LLVM JIT provider (libLLVM + libz3, ~130 MB of the ~370 MB) and the
# locale sources are left out with dpkg path-excludes, the mechanism Debian's
# slim images use for docs, so the package database stays consistent. Without
# llvmjit.so postgres simply runs without JIT (jit = on finds no provider and
# disables itself); the C.UTF-8 locale is built into glibc.
#
# postgresql-common first, told not to create a "main" cluster (the entrypoint
# runs initdb into PGDATA instead); libnss-wrapper gives an arbitrary uid a
# passwd entry for initdb, which refuses to run as a user it cannot look up.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    printf '%s\n' \
        'path-exclude /usr/lib/x86_64-linux-gnu/libLLVM-*' \
        'path-exclude /usr/lib/x86_64-linux-gnu/libz3.so*' \
        "path-exclude /usr/lib/postgresql/${PG_MAJOR}/lib/llvmjit*" \
        "path-exclude /usr/lib/postgresql/${PG_MAJOR}/lib/bitcode/*" \
        'path-exclude /usr/share/i18n/*' \
        >/etc/dpkg/dpkg.cfg.d/91-moorage-postgres-slim; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null; \
    sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf; \
    apt-get install -y -qq --no-install-recommends "postgresql-${PG_MAJOR}" libnss-wrapper >/dev/null; \
    sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "/usr/share/postgresql/${PG_MAJOR}/postgresql.conf.sample"; \
    grep -F "listen_addresses = '*'" "/usr/share/postgresql/${PG_MAJOR}/postgresql.conf.sample"; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    mkdir -p /var/run/postgresql /docker-entrypoint-initdb.d "$PGDATA"; \
    chown -R postgres:postgres /var/run/postgresql "$PGDATA"; \
    chmod 3777 /var/run/postgresql; \
    chmod 1777 "$PGDATA"; \
    postgres --version; \
    pg_dump --version; \
    ! ldd "/usr/lib/postgresql/${PG_MAJOR}/bin/postgres" | grep 'not found'

COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh

VOLUME /var/lib/postgresql/data
# The official image stops with SIGINT (fast shutdown); SIGTERM (what a kubelet
# sends) is a smart shutdown, handled by postgres itself as PID 1.
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
