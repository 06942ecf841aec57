#!/usr/bin/env python
"""airflow-init, first step: the two databases and Airflow's own database owner.

Runs as the PostgreSQL superuser (its password reaches libpq through PGPASSFILE, written by
entrypoint.sh) before ``airflow db migrate``:

* role ``airflow`` (LOGIN; its password from the ``airflow_db_password`` secret, sent as a
  SCRAM verifier computed here, never in clear) owning database ``airflow``;
* database ``isoloir`` for the warehouse, the ledger and the published schema, whose roles
  and grants ``python -m warehouse.roles`` applies next.

Idempotent: existing roles and databases are kept (the password is re-set each time).
Names default to those compose.yaml uses; the variables exist so tests can use their own.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger("isoloir.bootstrap_db")


def _secret(name: str) -> str:
    path = Path(os.environ.get("ISOLOIR_SECRETS_DIR", "/run/secrets")) / name
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise SystemExit(f"secret {name} is empty")
    return value


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = os.environ.get("ISOLOIR_DB_HOST", "postgres")
    port = os.environ.get("ISOLOIR_DB_PORT", "5432")
    admin = os.environ.get("ISOLOIR_DB_ADMIN_USER", "postgres")
    warehouse_db = os.environ.get("ISOLOIR_DB_NAME", "isoloir")
    airflow_user = os.environ.get("AIRFLOW_DB_USER", "airflow")
    airflow_db = os.environ.get("AIRFLOW_DB_NAME", "airflow")
    with psycopg.connect(host=host, port=port, user=admin, dbname="postgres",
                         autocommit=True) as conn:
        role = sql.Identifier(airflow_user)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (airflow_user,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            log.info("created role %s", airflow_user)
        verifier = conn.pgconn.encrypt_password(
            _secret("airflow_db_password").encode(), airflow_user.encode(), b"scram-sha-256")
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
            role, sql.Literal(verifier.decode("ascii"))))
        for database, owner in ((airflow_db, airflow_user), (warehouse_db, admin)):
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (database,)).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(owner)))
                log.info("created database %s", database)
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(database)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
