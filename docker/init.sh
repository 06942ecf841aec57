#!/usr/bin/env bash
# airflow-init: the one-shot bootstrap that every `docker compose up` runs before the
# long-running services start. Each step is idempotent.
set -euo pipefail

echo "== Databases: airflow (metadata, owned by role airflow) and the warehouse"
python /opt/isoloir-app/bin/bootstrap_db.py

echo "== Airflow metadata database: migrate"
airflow db migrate

echo "== Warehouse: schema and tables, least-privilege roles, LOGIN users"
# warehouse.roles reads only file paths and names from the environment (see compose.yaml).
python -m warehouse.roles

echo "== Airflow connection isoloir_warehouse (libpq reads the password from PGPASSFILE)"
airflow connections delete isoloir_warehouse > /dev/null 2>&1 || true
airflow connections add isoloir_warehouse \
    --conn-type postgres \
    --conn-host "${ISOLOIR_DB_HOST:-postgres}" \
    --conn-port "${ISOLOIR_DB_PORT:-5432}" \
    --conn-schema "${ISOLOIR_DB_NAME:-isoloir}" \
    --conn-login "${ISOLOIR_PIPELINE_LOGIN:-isoloir_pipeline_login}" \
    --conn-extra '{"options": "-csearch_path=warehouse"}'

echo "== airflow-init done"
