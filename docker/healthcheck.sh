#!/usr/bin/env bash
# Container healthchecks, one per Airflow component; compose.yaml passes the component name.
# Without an argument (the image's own HEALTHCHECK) it checks that the project imports.
set -euo pipefail

component="${1:-${ISOLOIR_COMPONENT:-image}}"
case "${component}" in
    api-server)
        curl --fail --silent --show-error --max-time 10 \
            http://localhost:8080/api/v2/version > /dev/null ;;
    scheduler)
        # AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=true serves this inside the container only.
        curl --fail --silent --show-error --max-time 10 http://localhost:8974/health > /dev/null ;;
    dag-processor)
        exec airflow jobs check --job-type DagProcessorJob --hostname "${HOSTNAME}" ;;
    triggerer)
        exec airflow jobs check --job-type TriggererJob --hostname "${HOSTNAME}" ;;
    worker)
        exec celery --app airflow.providers.celery.executors.celery_executor.app \
            inspect ping --destination "celery@${HOSTNAME}" ;;
    image)
        exec python -c "import airflow, core.settings, warehouse.roles" ;;
    *)
        echo "healthcheck.sh: unknown component '${component}'" >&2
        exit 2 ;;
esac
