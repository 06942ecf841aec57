#!/usr/bin/env bash
# Isoloir's container entrypoint, in front of the official Airflow one.
#
# It writes the libpq password file (PGPASSFILE, on a tmpfs) from the Docker secrets this
# container received, so that every database URL in compose.yaml carries a user name and no
# password: Airflow's metadata connection, the Celery result backend and the warehouse
# (ISOLOIR_WAREHOUSE_URL) all authenticate through libpq. No password is ever placed in an
# environment variable, a file of the repository or an image layer.
# Then it hands over to /entrypoint (waits for the database, runs `airflow <command>`).
set -euo pipefail

secrets_dir="${ISOLOIR_SECRETS_DIR:-/run/secrets}"
pgpass="${PGPASSFILE:-/run/isoloir/pgpass}"

umask 077
: > "${pgpass}"
chmod 0600 "${pgpass}"

add_login() {  # add_login USER SECRET_NAME -- a pgpass line, if this container has that secret
    local file="${secrets_dir}/$2" password
    [[ -r "${file}" ]] || return 0
    password="$(cat "${file}")"
    password="${password//\\/\\\\}"
    password="${password//:/\\:}"
    printf '*:*:*:%s:%s\n' "$1" "${password}" >> "${pgpass}"
}

add_login "${AIRFLOW_DB_USER:-airflow}" airflow_db_password
add_login "${ISOLOIR_PIPELINE_LOGIN:-isoloir_pipeline_login}" pipeline_db_password
add_login "${ISOLOIR_DB_ADMIN_USER:-postgres}" postgres_password

exec "${AIRFLOW_ENTRYPOINT:-/entrypoint}" "$@"
