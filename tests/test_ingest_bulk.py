"""The bulk paths of ingestion give the same answers as the simple ones.

Staging on two processes equals staging on one, byte for byte; a bad row found by a worker
is reported like any other; the temporary-table lookup of known identifiers equals the
``IN`` lookups; indexes dropped for a bulk insert come back, also after a failed load.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import MetaData, inspect, select

from core.errors import InputFileError
from core.settings import load_settings
from pipeline.ingest import ingest_file, prepare_file
from privacy.keys import load_keyring
from transforms.synth import SynthConfig, generate_campaign
from warehouse import store
from warehouse.db import ensure_schema, make_engine

EXPORTS = ("nationbuilder_people.csv", "van_contact_history.txt", "porte_a_porte.csv",
           "donations.csv")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("campaign")
    generate_campaign(SynthConfig(people=1_500, seed=11), out)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest, isoloir_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{isoloir_home / 'warehouse.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_staging_on_two_processes_equals_one(isoloir_home: Path, campaign: Path) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    keyring = load_keyring(settings)
    for name in EXPORTS:
        one = prepare_file(campaign / name, settings, keyring, chunk_rows=100, processes=1)
        single = pq.read_table(one.staged_path)
        Path(one.staged_path).unlink()
        two = prepare_file(campaign / name, settings, keyring, chunk_rows=100, processes=2)
        assert two == one, name  # same counts, same paths
        assert pq.read_table(two.staged_path).equals(single), name
        # withdrawn (do_not_contact) rows are staged with their identifiers only
        assert single.num_rows == one.rows_staged + one.rows_withdrawn
        assert one.rows_staged > 250  # three chunks at least
        Path(two.staged_path).unlink()
    assert not list((settings.work / "staged").iterdir())  # no part file left behind


def test_a_bad_row_in_a_worker_chunk_is_named_and_nothing_is_staged(
        isoloir_home: Path, campaign: Path, tmp_path: Path) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    keyring = load_keyring(settings)
    source = campaign / "nationbuilder_people.csv"
    with source.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    born = rows[0].index("born_at")
    rows[1_200][born] = "31/31/1999"  # data row 1,200: in the fourth chunk of 400
    bad = tmp_path / "nationbuilder_people.csv"
    with bad.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    errors = []
    for processes in (1, 2):
        with pytest.raises(InputFileError) as caught:
            prepare_file(bad, settings, keyring, chunk_rows=400, processes=processes)
        errors.append((caught.value.rule, caught.value.row, caught.value.column))
        assert "31/31" not in str(caught.value)
    assert errors[0] == errors[1]
    assert errors[0][1] is not None and errors[0][1] > 1_200
    assert not list((settings.work / "staged").iterdir())


def _dump(url: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    md = MetaData()
    md.reflect(engine)
    out: list[tuple[object, ...]] = []
    with engine.connect() as conn:
        for name in ("persons", "contacts", "donations", "identifier_links"):
            table = md.tables[name]
            ordered = select(table).order_by(*table.primary_key.columns)
            out.extend((name, *row) for row in conn.execute(ordered))
    engine.dispose()
    return out


def test_joined_lookup_of_known_links_equals_in_lookups(
        warehouse_url: str, campaign: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The second and later files find earlier persons through the temporary-table join."""
    settings = load_settings()
    settings.ensure_dirs()
    keyring = load_keyring(settings)
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    for url, join_from in ((reference, 10**9), (warehouse_url, 1)):
        monkeypatch.setattr(store, "_JOIN_LOOKUP_FROM", join_from)
        engine = make_engine(url)
        ensure_schema(engine)
        for name in EXPORTS:
            result = ingest_file(campaign / name, settings, engine, keyring)
            assert result.status == "loaded"
        engine.dispose()
    dumped = _dump(warehouse_url)
    assert dumped == _dump(reference)
    assert len({row[1] for row in dumped if row[0] == "persons"}) > 1_000


def test_indexes_dropped_for_a_bulk_insert_come_back(
        warehouse_url: str, campaign: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    keyring = load_keyring(settings)
    engine = make_engine(warehouse_url)
    ensure_schema(engine)

    def index_names() -> set[tuple[str, str]]:
        found = inspect(engine)
        return {(t, str(i["name"])) for t in ("identifier_links", "contacts", "donations")
                for i in found.get_indexes(t)}

    before = index_names()
    assert ("identifier_links", "ix_identifier_links_person_id") in before
    monkeypatch.setattr(store, "REBUILD_INDEXES_FROM", 10)
    real_record = store.record_file

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "record_file", boom)
    with pytest.raises(RuntimeError):
        ingest_file(campaign / "van_contact_history.txt", settings, engine, keyring)
    assert index_names() == before  # the failed load's DDL rolled back with its rows
    monkeypatch.setattr(store, "record_file", real_record)
    for name in EXPORTS:
        ingest_file(campaign / name, settings, engine, keyring)
    assert index_names() == before
    with engine.connect() as conn:
        assert store.table_counts(conn)["identifier_links"] > 1_500
    engine.dispose()


def test_a_daemonic_process_stages_in_itself(isoloir_home: Path, campaign: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Celery's prefork workers are daemonic and may not start processes: no failure there."""
    import multiprocessing

    settings = load_settings()
    settings.ensure_dirs()
    keyring = load_keyring(settings)
    monkeypatch.setattr(multiprocessing.current_process(), "_config",
                        dict(multiprocessing.current_process()._config, daemon=True))
    with caplog.at_level("INFO", logger="pipeline.staging"):
        staged = prepare_file(campaign / "nationbuilder_people.csv", settings, keyring,
                              chunk_rows=200, processes=2)
    assert staged.rows_staged > 1_000
    assert "chunks in this process" in caplog.text
