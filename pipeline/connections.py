"""Secrets and connections held by Airflow, resolved where they are used (at task run time).

Why here and not in ``privacy/keys.py``: the keyring is a privacy primitive that must not
know who schedules it. The orchestrator's secrets backend is a pipeline concern, so this
module asks Airflow for the connection's password and hands it to
:func:`privacy.keys.load_keyring` by value. Outside an Airflow task (no ``AIRFLOW_CTX_DAG_ID``
and no ``AIRFLOW_CONN_<ID>`` variable) Airflow is never imported, so the CLI stays fast.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from core.settings import Settings
from privacy.keys import MASTER_KEY_CONN_ID, Keyring, load_keyring

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "isoloir_warehouse"


def _airflow_connection(conn_id: str, env: Mapping[str, str]) -> Any | None:
    """The Airflow connection ``conn_id`` inside a task (or when defined by env), else None."""
    if not env.get("AIRFLOW_CTX_DAG_ID") and not env.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
        return None
    try:
        from airflow.sdk import Connection

        return Connection.get(conn_id)
    except Exception:  # not defined there: the environment or key file decides  # noqa: BLE001
        log.debug("no Airflow connection %s; using environment or files", conn_id)
        return None


def master_key_secret(environ: Mapping[str, str] | None = None) -> str | None:
    """The password of the Airflow connection ``isoloir_master_key``, if one is defined."""
    conn = _airflow_connection(MASTER_KEY_CONN_ID, os.environ if environ is None else environ)
    secret = (conn.password or "").strip() if conn is not None else ""
    return secret or None


def warehouse_url_from_airflow(environ: Mapping[str, str] | None = None) -> str | None:
    """The warehouse URL from the Airflow connection ``isoloir_warehouse``, if one is defined."""
    conn = _airflow_connection(WAREHOUSE_CONN_ID, os.environ if environ is None else environ)
    uri = conn.get_uri() if conn is not None else None
    return uri.replace("postgres://", "postgresql://", 1) if uri else None


def load_master_keyring(settings: Settings, environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring from the Airflow secret, then ``ISOLOIR_MASTER_KEY``, then the key file."""
    env = os.environ if environ is None else environ
    return load_keyring(settings, env, secret=master_key_secret(env))
