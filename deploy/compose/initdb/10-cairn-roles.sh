#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory, as POSTGRES_USER.
# cairn's migrations create the same roles if they are missing; creating them here lets the login
# role cairn_web exist before the first migration, so its password comes from the environment.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v web_password="$CAIRN_WEB_PASSWORD" <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE cairn_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE ROLE cairn_web LOGIN PASSWORD :'web_password';
GRANT cairn_app TO cairn_web;
SQL
