#!/usr/bin/env bash
# Generate the service secrets compose.yaml expects, one random value per file (mode 0400,
# never committed: docker/.gitignore). Existing files are kept, so re-running is safe.
#
# The two Isoloir keys are NOT made here: the master key and the ledger signing key come
# from `isoloir keys init`, run offline, and are backed up separately
# (docs/production.md, "Keys").
set -euo pipefail

dir="${1:-$(cd "$(dirname "$0")" && pwd)/secrets}"
mkdir -p "${dir}"
chmod 0700 "${dir}"
umask 077

random_hex() { python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(32))'; }
fernet_key() {
    python3 -c 'import base64, os, sys; sys.stdout.write(base64.urlsafe_b64encode(os.urandom(32)).decode())'
}

for name in postgres_password airflow_db_password pipeline_db_password \
            strategist_db_password auditor_db_password airflow_jwt_secret \
            airflow_api_secret_key airflow_fernet_key; do
    file="${dir}/${name}"
    if [[ -s "${file}" ]]; then
        echo "kept      ${file}"
        continue
    fi
    if [[ "${name}" == airflow_fernet_key ]]; then fernet_key > "${file}"; else random_hex > "${file}"; fi
    chmod 0400 "${file}"
    echo "generated ${file}"
done
echo
echo "Containers run as uid 50000: on Linux, give it the files, e.g."
echo "    sudo chown -R 50000:0 ${dir}"
