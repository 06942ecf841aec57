"""The ingest DAG as the data engineer sees it, with every other tool's export (issue #15).

One real ``dag.test()`` run over the five extra synthetic exports (Action Network, Action
Populaire, NationBuilder contacts and donations, VAN My Voters), the NationBuilder people
export saved as an ``.xlsx`` workbook, and one broken file. Then: each mapped task instance is
named ``<file> · <profile>`` in the metadata database (``task_instance.rendered_map_index``),
the run's summary says how many files were quarantined (task log and asset event extra), and
no canary identity (including an unread free-text column naming it) is anywhere outside
landing/ and quarantine/: not in the metadata database, the logs or the warehouse.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.airflow_runner import airflow_env, ensure_metadata_db, run_dag
from core.settings import load_settings
from tests.helpers import exports
from tests.helpers.resave import read_export, write_workbook
from transforms.sources import NATIONBUILDER_PEOPLE
from transforms.synth import CanaryPerson, SynthConfig, generate_campaign
from warehouse.db import make_engine
from warehouse.schema import contacts, donations, identifier_links, ingested_files, persons

pytestmark = pytest.mark.slow
pytest.importorskip("openpyxl")

_C = exports.CANARIES[0]
CANARY = CanaryPerson(_C.first, _C.last, _C.email, _C.phone_national, _C.street)
EXPECTED = {
    "action_network_people.csv": "action_network_people",
    "action_populaire.csv": "action_populaire",
    "nationbuilder_contacts.csv": "nationbuilder_contacts",
    "nationbuilder_donations.csv": "nationbuilder_donations",
    "van_my_voters.txt": "van_people",
    "nationbuilder_people.xlsx": "nationbuilder_people",
}


def test_labels_quarantine_count_and_no_leak(tmp_path: Path) -> None:
    from privacy.keys import write_new_key_file
    from privacy.signing import create_signing_key

    home = tmp_path / "home"
    key_file = tmp_path / "keys" / "master.key"
    write_new_key_file(key_file)
    create_signing_key(tmp_path / "keys" / "signing.key")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISOLOIR_", "AIRFLOW"))}
    env.update(ISOLOIR_HOME=str(home), ISOLOIR_KEY_FILE=str(key_file),
               ISOLOIR_SIGNING_KEY_FILE=str(tmp_path / "keys" / "signing.key"),
               ISOLOIR_RETRY_DELAY_SECONDS="0", ISOLOIR_TASK_RETRIES="0")
    settings = load_settings(env)
    settings.ensure_dirs()
    made = generate_campaign(SynthConfig(people=200, seed=21, canaries=(CANARY,),
                                         extra_sources=True), tmp_path / "synth")
    for f in made.files[4:]:
        f.path.replace(settings.landing / f.name)
    write_workbook(settings.landing / "nationbuilder_people.xlsx",
                   read_export(made.file("nationbuilder_people").path, NATIONBUILDER_PEOPLE),
                   NATIONBUILDER_PEOPLE)
    (settings.landing / "donations_broken.xlsx").write_bytes(b"PK\x03\x04 cut short")
    for name in EXPECTED:
        assert name == "nationbuilder_contacts.csv" or \
            exports.find_canaries(_as_text(settings.landing / name))  # the sweep means something

    dag_env = airflow_env(settings, env)
    ensure_metadata_db(dag_env)
    run_dag("isoloir_ingest", dag_env)

    db = sqlite3.connect(settings.airflow_home / "airflow.db")
    try:
        labels = db.execute("select task_id, rendered_map_index, state from task_instance "
                            "where map_index >= 0").fetchall()
        events = [json.loads(r[0]) for r in db.execute("select extra from asset_event")]
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            rows = db.execute(f'select * from "{table}"').fetchall()  # noqa: S608
            assert exports.find_canaries(repr(rows)) == [], table
    finally:
        db.close()
    shown = {(task, label) for task, label, _ in labels}
    for name, profile in EXPECTED.items():
        for task in ("validate_raw", "pseudonymize", "validate_pseudonymized", "load",
                     "remove_raw"):
            assert (f"file.{task}", f"{name} · {profile}") in shown, (task, name, sorted(shown))
    assert ("file.validate_raw", "donations_broken.xlsx · quarantined") in shown
    # pseudonymize runs and skips itself (still named); later tasks are skipped unrun
    assert ("file.pseudonymize", "donations_broken.xlsx · quarantined") in shown

    message = "1 of 7 files quarantined: see quarantine/"
    assert events and events[-1]["quarantine_message"] == message
    assert events[-1]["quarantined"] == ["donations_broken.xlsx"]
    assert events[-1]["files_loaded"] == 6
    logs = b"".join(p.read_bytes() for p in (settings.airflow_home / "logs").rglob("*")
                    if p.is_file())
    assert message.encode() in logs
    assert "workbook_unreadable" in (settings.quarantine /
                                     "donations_broken.xlsx.report.json").read_text()

    engine = make_engine(settings.warehouse_url)
    with engine.connect() as conn:
        loaded = dict(conn.execute(select(ingested_files.c.file_name, ingested_files.c.source)).all())
        assert loaded == EXPECTED
        for table in (persons, contacts, donations, identifier_links):
            swept = repr(conn.execute(select(table)).all())
            assert exports.find_canaries(swept) == [], table.name
    swept_files = 0
    for path in home.rglob("*"):
        if path.is_file() and settings.quarantine not in path.parents and \
                settings.landing not in path.parents:
            assert exports.find_canaries(path.read_bytes()) == [], path
            swept_files += 1
    assert swept_files > 10
    assert list((settings.work / "workbooks").iterdir()) == []


def _as_text(path: Path) -> str:
    if path.suffix == ".xlsx":
        from transforms.workbook import sheet_as_csv

        with sheet_as_csv(path, path.parent.parent.parent / "peek") as converted:
            return converted.path.read_text(encoding="utf-8")
    return path.read_text(encoding="utf-8-sig")
