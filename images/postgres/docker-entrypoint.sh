#!/bin/sh
# The official postgres image's start-up contract, written for Debian's PostgreSQL 15: on the first start (no
# PG_VERSION in PGDATA) make the cluster with POSTGRES_USER as its superuser and POSTGRES_PASSWORD as its password,
# and the database POSTGRES_DB; then run the command as the postgres user.
set -eu
if [ "${1:-}" = postgres ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
            POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
        fi
        if [ -z "${POSTGRES_PASSWORD:-}" ]; then
            echo "postgres: POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is not set; the database is not initialized" >&2
            exit 1
        fi
        user=${POSTGRES_USER:-postgres}
        db=${POSTGRES_DB:-$user}
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        chown postgres "$pwfile"
        runuser -u postgres -- initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ "$db" != postgres ]; then
            runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
            runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q -U "$user" -d postgres \
                -c "CREATE DATABASE \"$db\" OWNER \"$user\""
            runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        fi
        echo "postgres: initialized $PGDATA (user $user, database $db)"
    fi
    # setpriv execs the server in this process, which Docker signals (STOPSIGNAL SIGINT, PostgreSQL's fast
    # shutdown); runuser would stay as the parent and ignore SIGINT, so every stop ran into the kill timeout
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
fi
exec "$@"
