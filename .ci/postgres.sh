#!/usr/bin/env bash
# Prepares the local PostgreSQL for the change-feed tests (crates/chorus-server/tests/pgfeed.rs):
# the Debian cluster running, wal_level=logical (logical replication), a test role and
# database. Idempotent; works on a fresh machine as root, without stdin.
set -euo pipefail

if ! command -v pg_lsclusters >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
cluster="$version main"
psql_admin() { su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -d postgres -tA -c \"$1\""; }

if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    pg_ctlcluster --skip-systemctl-redirect $cluster start
fi
# Replication connections match only the `replication` keyword of pg_hba.conf.
hba=$(psql_admin 'SHOW hba_file')
if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32' "$hba"; then
    echo "host replication all 127.0.0.1/32 trust" >>"$hba"
    psql_admin "SELECT pg_reload_conf()" >/dev/null
fi
if [ "$(psql_admin 'SHOW wal_level')" != "logical" ]; then
    psql_admin "ALTER SYSTEM SET wal_level = logical"
    pg_ctlcluster --skip-systemctl-redirect $cluster restart
fi
# The feed needs replication slots and walsenders (a test creates a few at once).
for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = 'chorus'")" != "1" ]; then
    psql_admin "CREATE ROLE chorus LOGIN SUPERUSER REPLICATION"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = 'chorus_test'")" != "1" ]; then
    psql_admin "CREATE DATABASE chorus_test OWNER chorus"
fi
echo "postgres $version: wal_level=$(psql_admin 'SHOW wal_level'), role chorus, database chorus_test"
