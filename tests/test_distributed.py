"""The production path, for real: Airflow's CeleryExecutor spreads the ingestion over two workers.

Against the machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379), the test starts
an api-server (Execution API), a scheduler, a dag-processor and two Celery worker processes on
a fresh metadata database, then triggers ``isoloir_ingest`` on a landing folder of seven
exports (six good, one that must be quarantined). It checks that:

* the ingestion run succeeded, and its mapped ``file.*`` tasks ran on BOTH workers (each
  worker records its own name in ``task_instance.hostname``);
* the PostgreSQL warehouse holds what a sequential, in-process ingest of the same six files
  gives (files, rows, persons, contacts, donations, identifier links): loading files in
  parallel on two machines must not duplicate or lose anyone;
* the release DAG started by itself on the ``isoloir://warehouse`` asset and wrote the ledger;
* no canary identity reached the Airflow metadata database (XCom, Celery results, ...) or any
  log of the cluster.

Skipped locally when PostgreSQL or Redis is unreachable; a failure under CI=true.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.settings import Settings, load_settings
from tests.helpers import exports
from tests.helpers.airflow_cluster import (
    INGEST_TASK_MODULES,
    REPO,
    AirflowCluster,
    airflow_cluster,
    isoloir_env,
    services_unreachable,
    split_export,
)
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import (
    contacts,
    donations,
    identifier_links,
    ingested_files,
    ledger_entries,
    persons,
)

INGEST, RELEASE = "isoloir_ingest", "isoloir_release"
BAD_FILE = "donations_bad.csv"


@pytest.fixture
def services() -> None:
    reason = services_unreachable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: the distributed test needs PostgreSQL and Redis: {reason}")
    pytest.skip(f"{reason}; start PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis "
                "on 127.0.0.1:6379 (e.g. `redis-server --daemonize yes`) to run this test")


def _write_landing(landing: Path, scratch: Path) -> list[str]:
    """Six good exports (every dialect; two split in halves) and one bad one; the good names."""
    scratch.mkdir(parents=True, exist_ok=True)
    good = split_export(exports.nationbuilder_people(scratch / "nb.csv", extra_rows=60), 2,
                        landing, stem="nationbuilder_people")
    good += split_export(exports.van_contacts(scratch / "van.txt", extra_rows=40), 2, landing,
                         stem="van_contact_history")
    good.append(exports.fr_canvass(landing / "porte_a_porte.csv", extra_rows=30))
    good.append(exports.donations(landing / "donations.csv"))
    canary = exports.CANARIES[1]
    (landing / BAD_FILE).write_text(  # a negative amount breaks a blocking expectation
        "donor_id,first_name,last_name,email,zip,amount,date,method,recurring\n"
        f"77,{canary.first},{canary.last},{canary.email},69003,-50.00,2026-03-01,card,false\n",
        encoding="utf-8")
    return sorted(p.name for p in good)


def _warehouse_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                  for t in (ingested_files, persons, contacts, donations, identifier_links)}
        counts["rows_loaded"] = int(conn.execute(
            select(func.coalesce(func.sum(ingested_files.c.rows_loaded), 0))).scalar_one())
    engine.dispose()
    return counts


def _sequential_reference(files: list[Path], env: dict[str, str], home: Path) -> dict[str, int]:
    """What one process ingesting the same files one after the other puts in a warehouse."""
    from pipeline.ingest import ingest_file
    from privacy.keys import load_keyring

    settings = load_settings(env | {"ISOLOIR_HOME": str(home),
                                    "ISOLOIR_WAREHOUSE_URL": f"sqlite:///{home / 'ref.db'}"})
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    keyring = load_keyring(settings)
    for file in files:
        copy = shutil.copy(file, settings.landing / file.name)
        assert ingest_file(Path(copy), settings, engine, keyring).status == "loaded", file.name
    engine.dispose()
    return _warehouse_counts(settings.warehouse_url)


def _sweep_metadata(cluster: AirflowCluster) -> int:
    """No canary in any table of the Airflow metadata database (XCom, Celery results, ...)."""
    tables = [r[0] for r in cluster.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    assert {"xcom", "task_instance", "celery_taskmeta"} <= set(tables)
    for table in tables:
        rows = cluster.query(f'SELECT * FROM "{table}"')
        assert exports.find_canaries(repr(rows)) == [], table
    return len(tables)


def _sweep_files(root: Path, settings: Settings) -> int:
    swept = 0
    for path in root.rglob("*"):
        if path.is_file() and settings.landing not in path.parents \
                and settings.quarantine not in path.parents:
            assert exports.find_canaries(path.read_bytes()) == [], path
            swept += 1
    return swept


def test_split_export_keeps_bytes_header_bom_and_multiline_records(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    body = [b'1,"a\r\nnote on two lines",x\r\n', b'2,"say ""hi""",y\r\n', b"3,plain,z\r\n"]
    source.write_bytes(b"\xef\xbb\xbfid,note,tag\r\n" + b"".join(body))
    parts = split_export(source, 2, tmp_path / "out", stem="nb")
    assert [p.name for p in parts] == ["nb_part1.csv", "nb_part2.csv"]
    assert parts[0].read_bytes() == b"\xef\xbb\xbfid,note,tag\r\n" + body[0] + body[1]
    assert parts[1].read_bytes() == b"\xef\xbb\xbfid,note,tag\r\n" + body[2]
    with pytest.raises(ValueError, match="cannot split 3 records into 4 parts"):
        split_export(source, 4, tmp_path / "out")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_ingestion_spreads_over_two_celery_workers(tmp_path: Path, services: None,
                                                   request: pytest.FixtureRequest) -> None:
    started = time.monotonic()
    warehouse_url: str = request.getfixturevalue("pg_url")
    # no time-based run: the trigger, then the asset. Small chunks: the larger exports are
    # staged chunk by chunk inside the Celery task processes (daemonic: no staging processes).
    env = isoloir_env(tmp_path, warehouse_url, ISOLOIR_CHUNK_ROWS="25",
                      ISOLOIR_INGEST_PROCESSES="2")
    settings = load_settings(env)
    settings.ensure_dirs()
    ensure_schema(make_engine(warehouse_url))  # as airflow-init does in production
    good_names = _write_landing(settings.landing, tmp_path / "scratch")
    good_files = [settings.landing / name for name in good_names]
    expected = _sequential_reference(good_files, env, tmp_path / "reference")
    # every row of the small exports is loaded: NB 2+60, VAN 4+40, door to door 2+30, donations 7
    assert expected["ingested_files"] == 6 and expected["rows_loaded"] == 62 + 44 + 32 + 7

    phases: dict[str, float] = {}
    with airflow_cluster(REPO / "dags", tmp_path / "cluster", env=env,
                         preload=INGEST_TASK_MODULES) as cluster:
        phases["cluster up"] = time.monotonic() - started
        cluster.wait_for_dags([INGEST, RELEASE])
        run_id = "distributed_test"
        cluster.unpause(RELEASE)
        cluster.unpause(INGEST)
        cluster.trigger(INGEST, run_id)
        phases["triggered"] = time.monotonic() - started
        assert cluster.wait_for_run(INGEST, run_id, timeout=300) == "success", \
            cluster.task_instances(INGEST, run_id)
        phases["ingested"] = time.monotonic() - started

        # mapped tasks ran on both workers, every task on a worker, each in a process of its own
        tis = cluster.task_instances(INGEST, run_id)
        workers = set(cluster.worker_names)
        ran = [ti for ti in tis if ti["state"] == "success"]
        mapped = [ti for ti in ran if ti["task_id"].startswith("file.")]
        assert {ti["hostname"] for ti in mapped} == workers, tis
        assert {ti["hostname"] for ti in ran} <= workers, tis
        assert all(ti["pid"] for ti in ran), tis
        assert len({(ti["hostname"], ti["pid"]) for ti in ran}) == len(ran), tis
        assert {ti["map_index"] for ti in tis if ti["task_id"] == "file.validate_raw"} == set(range(7))
        loads = [ti for ti in tis if ti["task_id"] == "file.load"]
        assert sorted(ti["state"] for ti in loads) == ["skipped"] + ["success"] * 6, tis

        # the release DAG ran by itself on the warehouse asset, and charged the ledger
        release = cluster.wait_until(
            "the asset-triggered release run to finish",
            lambda: [r for r in cluster.runs(RELEASE)
                     if r[1] == "asset_triggered" and r[2] in ("success", "failed")],
            timeout=300, every=2.0)
        phases["released"] = time.monotonic() - started
        assert release[0][2] == "success", cluster.task_instances(RELEASE, release[0][0])
        assert {ti["hostname"] for ti in cluster.task_instances(RELEASE, release[0][0])} <= workers
        swept_tables = _sweep_metadata(cluster)

    # the warehouse in PostgreSQL: the six good files, and exactly what a sequential ingest gives
    engine = make_engine(warehouse_url)
    with engine.connect() as conn:
        loaded = sorted(conn.execute(select(ingested_files.c.file_name)).scalars())
        n_ledger = conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one()
    engine.dispose()
    assert loaded == good_names
    assert _warehouse_counts(warehouse_url) == expected
    assert n_ledger > 0
    assert list(settings.published.glob("*.parquet"))

    # the landing zone was emptied, the bad file quarantined with its report
    assert sorted(p.name for p in settings.landing.iterdir()) == []
    assert {BAD_FILE, f"{BAD_FILE}.report.json"} <= {p.name for p in settings.quarantine.iterdir()}

    # no canary in ISOLOIR_HOME (but landing/ and quarantine/) nor in any log of the cluster
    assert _sweep_files(settings.home, settings) > 5
    assert _sweep_files(tmp_path / "cluster", settings) > 5
    logs = b"".join(p.read_bytes() for p in (tmp_path / "cluster").rglob("*.log*") if p.is_file())
    assert b"chunks in this process (a daemonic worker process" in logs
    assert b"chunks on 2 processes" not in logs
    assert swept_tables > 20
    print(f"distributed run: {expected}, phases (s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
