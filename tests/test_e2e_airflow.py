"""End to end through real Airflow (dag.test), on a SQLite and on a PostgreSQL warehouse.

Synthetic exports with canary identities, plus one deliberately bad file, go through the
ingestion DAG and the release DAG. Then: good files loaded, bad one quarantined, published
tables with a valid ledger, reports present, and no canary anywhere outside landing/ and
quarantine/ (Airflow metadata: XCom, rendered fields, logs; task logs; ISOLOIR_HOME; warehouse).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cli.airflow_runner import airflow_env, ensure_metadata_db, run_dag
from core.settings import load_settings
from tests.helpers import exports
from warehouse.db import make_engine
from warehouse.schema import contacts, donations, ingested_files, ledger_entries, persons

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _prepare_home(tmp_path: Path, warehouse_url: str | None) -> tuple[dict[str, str], Path]:
    from privacy.keys import write_new_key_file
    from privacy.signing import create_signing_key

    home = tmp_path / "home"
    key_file = tmp_path / "keys" / "master.key"
    signing = tmp_path / "keys" / "signing.key"
    write_new_key_file(key_file)
    create_signing_key(signing)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISOLOIR_", "AIRFLOW"))}
    env.update(ISOLOIR_HOME=str(home), ISOLOIR_KEY_FILE=str(key_file),
               ISOLOIR_SIGNING_KEY_FILE=str(signing), ISOLOIR_RETRY_DELAY_SECONDS="0",
               # small chunks: the larger files are staged by spawned worker processes
               # inside the Airflow task, as a 1 M-row export is in production
               ISOLOIR_CHUNK_ROWS="120", ISOLOIR_INGEST_PROCESSES="2")
    if warehouse_url:
        env["ISOLOIR_WAREHOUSE_URL"] = warehouse_url
    settings = load_settings(env)
    settings.ensure_dirs()
    exports.nationbuilder_people(settings.landing / "nationbuilder_people.csv", extra_rows=300)
    exports.van_contacts(settings.landing / "van_contact_history.txt", extra_rows=300)
    exports.fr_canvass(settings.landing / "porte_a_porte.csv", extra_rows=200)
    exports.donations(settings.landing / "donations.csv")
    bad = settings.landing / "donations_bad.csv"
    bad.write_text("donor_id,first_name,last_name,email,zip,amount,date,method,recurring\n"
                   f"77,{exports.CANARIES[1].first},{exports.CANARIES[1].last},"
                   f"{exports.CANARIES[1].email},69003,-50.00,2026-03-01,card,false\n",
                   encoding="utf-8")
    return airflow_env(settings, env), home


@pytest.fixture(scope="module")
def migrated_metadata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata database migrated once; each test starts from a copy of it."""
    home = tmp_path_factory.mktemp("airflow-template")
    env = airflow_env(load_settings({"ISOLOIR_HOME": str(home)}))
    ensure_metadata_db(env)
    return home / "airflow" / "airflow.db"


def _fresh_metadata(env: dict[str, str], template: Path) -> None:
    target = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_both_dags_end_to_end_without_leaks(tmp_path: Path, warehouse_url: str | None,
                                            migrated_metadata: Path) -> None:
    env, home = _prepare_home(tmp_path, warehouse_url)
    settings = load_settings(env)
    _fresh_metadata(env, migrated_metadata)
    run_dag("isoloir_ingest", env)
    run_dag("isoloir_release", env, conf={"run_key": "e2e"})

    # good files loaded, the bad one quarantined with its report, landing emptied
    assert sorted(p.name for p in settings.landing.iterdir()) == []
    quarantined = sorted(p.name for p in settings.quarantine.iterdir())
    assert "donations_bad.csv" in quarantined
    assert "donations_bad.csv.report.json" in quarantined
    engine = make_engine(settings.warehouse_url)
    with engine.connect() as conn:
        loaded = conn.execute(select(ingested_files.c.file_name)).scalars().all()
        assert sorted(loaded) == ["donations.csv", "nationbuilder_people.csv",
                                  "porte_a_porte.csv", "van_contact_history.txt"]
        assert conn.execute(select(func.count()).select_from(persons)).scalar_one() > 300
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() > 500
        assert conn.execute(select(func.count()).select_from(donations)).scalar_one() == 7
        assert conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one() > 0

    # published tables, a valid ledger, reports
    assert list(settings.published.glob("*.csv")) and list(settings.published.glob("*.parquet"))
    verify = subprocess.run([sys.executable, "-m", "cli.main", "audit", "verify", "--json"],
                            env=env, capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (settings.reports / "strategist_report.html").exists()
    assert (settings.reports / "audit_report.html").exists()

    # PII sweep: everything under ISOLOIR_HOME but landing/ and quarantine/ (this includes the
    # Airflow metadata database with XCom, rendered fields and logs, and the task log files)
    swept = 0
    for path in home.rglob("*"):
        if path.is_file() and settings.quarantine not in path.parents and \
                settings.landing not in path.parents:
            assert exports.find_canaries(path.read_bytes()) == [], path
            swept += 1
    assert swept > 10
    task_logs = b"".join(p.read_bytes() for p in (settings.airflow_home / "logs").rglob("*")
                         if p.is_file())
    assert b"chunks on 2 processes" in task_logs  # staging really ran in worker processes
    assert (settings.airflow_home / "airflow.db").exists()
    _sweep_airflow_metadata(settings.airflow_home / "airflow.db")
    _sweep_warehouse(engine)


def _sweep_airflow_metadata(db: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        for table in ("xcom", "rendered_task_instance_fields", "log", "task_instance"):
            assert table in tables
        for table in tables:
            rows = conn.execute(f'select * from "{table}"').fetchall()  # noqa: S608
            assert exports.find_canaries(repr(rows)) == [], table
    finally:
        conn.close()


def _sweep_warehouse(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import MetaData

    md = MetaData()
    md.reflect(engine)
    with engine.connect() as conn:
        for table in md.sorted_tables:
            assert exports.find_canaries(repr(conn.execute(select(table)).all())) == [], table.name


def _fault_run(env: dict[str, str], dag_id: str, target: str, marker: Path,
               conf: dict[str, str] | None = None) -> None:
    cmd = [sys.executable, "-m", "tests.helpers.fault_runner", dag_id, target, str(marker)]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    done = subprocess.run(cmd, env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert marker.exists(), "the injected failure never happened"


def test_retries_never_load_twice_or_charge_twice(tmp_path: Path, migrated_metadata: Path) -> None:
    env, _ = _prepare_home(tmp_path, None)
    settings = load_settings(env)
    _fresh_metadata(env, migrated_metadata)
    _fault_run(env, "isoloir_ingest", "load_file", tmp_path / "load.failed")
    engine = make_engine(settings.warehouse_url)
    with engine.connect() as conn:
        n_contacts = conn.execute(select(func.count()).select_from(contacts)).scalar_one()
        files = conn.execute(select(ingested_files.c.file_name, ingested_files.c.rows_loaded)).all()
    # each file once, and the contacts table holds exactly the rows the files loaded
    assert len(files) == len({f for f, _ in files}) == 4
    assert n_contacts == sum(n for f, n in files if f in ("van_contact_history.txt",
                                                          "porte_a_porte.csv"))

    _fault_run(env, "isoloir_release", "release_plan", tmp_path / "release.failed",
               conf={"run_key": "retry"})
    with engine.connect() as conn:
        charges = conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one()
    published = {p.name: p.read_bytes() for p in settings.published.iterdir()}
    run_dag("isoloir_release", env, conf={"run_key": "retry"})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one() == charges
    assert {p.name: p.read_bytes() for p in settings.published.iterdir()} == published


def test_daily_reexports_through_the_ingest_dag(tmp_path: Path, warehouse_url: str | None,
                                                migrated_metadata: Path) -> None:
    """Day 2's full re-export adds only its new events; do_not_contact people leave."""
    from tests.helpers.reexport import read_rows, reexport, rows_with, write_rows
    from transforms.synth import SynthConfig, generate_campaign
    from warehouse.schema import objections

    env, _ = _prepare_home(tmp_path, warehouse_url)
    settings = load_settings(env)
    for stale in settings.landing.iterdir():
        stale.unlink()
    source = tmp_path / "synth"
    generate_campaign(SynthConfig(people=600, seed=8), source)
    names = ("nationbuilder_people.csv", "van_contact_history.txt", "donations.csv")
    for name in names:
        shutil.copy(source / name, settings.landing / name)
    _fresh_metadata(env, migrated_metadata)
    run_dag("isoloir_ingest", env)
    engine = make_engine(settings.warehouse_url)

    def counts() -> dict[str, int]:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (persons, contacts, donations, objections)}

    day1 = counts()
    header, rows = read_rows(source / "nationbuilder_people.csv")
    at_dnc = header.index("do_not_contact")
    leaving = [r for r in rows if r[at_dnc] == "false"][:10]
    for row in leaving:
        row[at_dnc] = "true"
    write_rows(tmp_path / "people_day2.csv", source / "nationbuilder_people.csv", header, rows)
    reexport(tmp_path / "people_day2.csv", settings.landing / "nationbuilder_people.csv", seed=1)
    history = source / "van_contact_history.txt"
    reexport(history, settings.landing / history.name, seed=2,
             extra=rows_with(history, "DateCanvassed", "02/27/2026", 6))
    reexport(source / "donations.csv", settings.landing / "donations.csv", seed=3)
    run_dag("isoloir_ingest", env)
    day2 = counts()
    assert day2["objections"] >= 10
    assert day1["persons"] - 10 <= day2["persons"] < day1["persons"]
    # every contact of day 1 once (less those of the people who left), plus the 6 new ones
    assert day2["contacts"] <= day1["contacts"] + 6
    assert day2["contacts"] > day1["contacts"] - 200
    with engine.connect() as conn:
        details = [json.loads(d) for d in conn.execute(select(ingested_files.c.details)
                                                       .where(ingested_files.c.file_name ==
                                                              history.name)).scalars()]
    assert sorted(d["rows_unchanged"] for d in details)[0] == 0
    assert max(d["rows_unchanged"] for d in details) > 1000
    # day 2's unchanged records were recognised before processing (pipeline.unchanged)
    assert max(d["rows_skipped_unchanged"] for d in details) > 1000
