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

# Headless Chromium for the real-browser report tests (Debian packages).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || { echo "could not install chromium; browser tests will fail in CI" >&2; [ "${CI:-}" != "true" ] || exit 1; }
  fi
fi

# Redis: the Celery broker of the distributed test.
redis_up() { python3 -c "import socket,sys; s=socket.socket(); s.settimeout(2); sys.exit(0 if s.connect_ex(('127.0.0.1',6379))==0 else 1)"; }
if ! redis_up && command -v redis-server >/dev/null 2>&1; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  sleep 1
fi
if [ "${CI:-}" = "true" ] && ! redis_up; then
  echo "CI=true: Redis at 127.0.0.1:6379 is required (distributed test) and cannot be reached" >&2
  exit 1
fi
