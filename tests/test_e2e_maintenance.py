"""The maintenance DAG end to end through real Airflow (``dag.test``), with a privacy sweep,
on a SQLite and on a PostgreSQL warehouse.

Exports with canary identities are loaded; request files holding canary values (one good,
one malformed) are dropped in ``requests/``, both named after the person; an old raw file
waits in ``processed/``. After ``isoloir_maintenance``: the persons are gone, the request
folder is empty, the bad file is quarantined under a neutral name, the DPO report exists,
and no canary is anywhere but landing/ and quarantine/ (Airflow metadata: XCom, rendered
fields, logs; task logs; the report; the erasure log; the warehouse).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.airflow_runner import airflow_env, run_dag
from core.settings import load_settings
from pipeline.ingest import ingest_file
from privacy.erasure import request_pseudonyms
from privacy.keys import load_keyring, write_new_key_file
from privacy.signing import create_signing_key
from tests.helpers import exports
from tests.test_e2e_airflow import (  # noqa: F401  (a module fixture, reused)
    _fresh_metadata,
    _sweep_airflow_metadata,
    _sweep_warehouse,
    migrated_metadata,
    warehouse_url,
)
from warehouse.db import make_engine
from warehouse.erasure import monthly_summary
from warehouse.schema import identifier_links

pytestmark = pytest.mark.slow


def test_maintenance_dag_end_to_end_without_leaks(
        tmp_path: Path, migrated_metadata: Path, warehouse_url: str | None) -> None:  # noqa: F811
    home = tmp_path / "home"
    key_file = tmp_path / "keys" / "master.key"
    signing = tmp_path / "keys" / "signing.key"
    write_new_key_file(key_file)
    create_signing_key(signing)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISOLOIR_", "AIRFLOW"))}
    env.update(ISOLOIR_HOME=str(home), ISOLOIR_KEY_FILE=str(key_file),
               ISOLOIR_SIGNING_KEY_FILE=str(signing), ISOLOIR_RETRY_DELAY_SECONDS="0")
    if warehouse_url:
        env["ISOLOIR_WAREHOUSE_URL"] = warehouse_url
    settings = load_settings(env)
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    keyring = load_keyring(settings, env)
    for f in (exports.nationbuilder_people(settings.landing / "nationbuilder_people.csv"),
              exports.van_contacts(settings.landing / "van_contact_history.txt"),
              exports.donations(settings.landing / "donations.csv")):
        assert ingest_file(f, settings, engine, keyring).status == "loaded"
        f.unlink()
    c0, c1 = exports.CANARIES
    (settings.requests / f"{c0.first}_{c0.last}.csv").write_text(
        "email,phone,source_id,reason\n"
        f"{c0.email},{c0.phone_national},,erasure\n,,van:51,objection\n", encoding="utf-8")
    (settings.requests / f"{c1.last}.csv").write_text(
        f"email,reason\n{c1.email},{c1.note}\n", encoding="utf-8")  # a reason that is free text
    old_raw = settings.processed / "old_export.csv"
    old_raw.parent.mkdir(mode=0o700, exist_ok=True)
    old_raw.write_text("nationbuilder_id,email\n1000,x@example.org\n", encoding="utf-8")
    before = {c.email: request_pseudonyms(keyring, "campaign", [("email", c.email.lower())])
              for c in exports.CANARIES}

    airflow = airflow_env(settings, env)
    _fresh_metadata(airflow, migrated_metadata)
    run_dag("isoloir_maintenance", airflow)

    assert list(settings.requests.iterdir()) == []
    with engine.connect() as conn:
        for pseudonyms in before.values():
            assert conn.execute(select(identifier_links.c.person_id).where(
                identifier_links.c.pseudonym.in_(pseudonyms))).first() is None
        [month] = monthly_summary(conn)
    assert (month.requests, month.persons_erased, month.request_files_rejected) == (2, 2, 1)
    quarantined = sorted(p.name for p in settings.quarantine.iterdir())
    assert len(quarantined) == 2 and all(n.startswith("erasure-request-") for n in quarantined)
    assert old_raw.exists()  # written just now: the raw retention (30 days) keeps it
    report = json.loads((settings.reports / "maintenance_report.json").read_text())
    assert report["totals"]["requests"] == 2 and report["this_run"]["requests"]["persons"] == 2
    assert (settings.reports / "maintenance_report.html").is_file()

    swept = set()
    for path in home.rglob("*"):
        if path.is_file() and settings.quarantine not in path.parents and \
                settings.landing not in path.parents:
            assert exports.find_canaries(path.read_bytes()) == [], path
            swept.add(path.name)
    assert {"maintenance_report.json", "maintenance_report.html", "airflow.db"} <= swept
    task_logs = [p for p in (settings.airflow_home / "logs").rglob("*") if p.is_file()]
    assert task_logs and b"request file(s) processed" in b"".join(p.read_bytes()
                                                                   for p in task_logs)
    _sweep_airflow_metadata(settings.airflow_home / "airflow.db")
    _sweep_warehouse(engine)
