#!/usr/bin/env bash
# Services and system packages the test suite needs. Idempotent; quiet when all is there.
set -euo pipefail

pg_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(2)
sys.exit(0 if s.connect_ex(("127.0.0.1", 5432)) == 0 else 1)
PY
}

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    sleep 2
  fi
fi
if [ "${CI:-}" = "true" ] && ! pg_up; then
  echo "CI=true: PostgreSQL at 127.0.0.1:5432 is required and cannot be reached" >&2
  exit 1
fi
