#!/bin/sh
# Print one Docker secret without its trailing newline. Airflow's sensitive settings read
# it through *_CMD variables (AIRFLOW__CORE__FERNET_KEY_CMD=".../read-credential.sh name"), so
# the value lives only in the memory of the process that needs it.
set -eu
case "${1:-}" in
    "" | *[!a-z0-9_]*) echo "read-credential.sh: expected a secret name ([a-z0-9_]+)" >&2; exit 2 ;;
esac
printf '%s' "$(cat "${ISOLOIR_SECRETS_DIR:-/run/secrets}/$1")"
