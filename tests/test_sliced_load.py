"""The load reads its staged file slice by slice: slices change memory, never the result.

Several days of exports (people, a VAN history and donations; then the same again,
re-ordered, grown, with records repeated in the file and a do_not_contact) go through two
warehouses with the same key: one loaded in a single slice, one in slices of a few rows,
so that persons, repeated natural keys and repeated raw records all straddle slices. Every
table must come out identical. The numbering of repeated keys, done from 64-bit hashes of
the keys, is checked against the whole-file window it replaces.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import Engine, inspect, select, text

from core.settings import Settings
from pipeline import changes, staged
from pipeline.ingest import ingest_file
from pipeline.staged import StagedFile
from privacy.keys import Keyring
from privacy.pseudonymize import EVENT_KEY, FINGERPRINT, RAW_HASH, WITHDRAWN
from tests.helpers.reexport import read_rows, reexport, rows_with, write_rows
from transforms.synth import SynthConfig, generate_campaign
from warehouse import store
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import (
    contacts,
    donations,
    identifier_links,
    objections,
    people_rows,
    persons,
)

RING = Keyring.from_bytes({1: secrets.token_bytes(32)})
NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
TABLES = (persons, identifier_links, people_rows, contacts, donations, objections)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("campaign")
    generate_campaign(SynthConfig(people=600, seed=8), out)
    return out



def _days(campaign: Path, out: Path) -> list[list[Path]]:
    """Day 1 as synthesized (the history with some records given twice); day 2 the same
    exports re-ordered, grown, and one supporter now do_not_contact."""
    history, gifts = campaign / "van_contact_history.txt", campaign / "donations.csv"
    people = campaign / "nationbuilder_people.csv"
    (out / "day1").mkdir()
    (out / "day2").mkdir()
    header, rows = read_rows(history)
    doubled = write_rows(out / "day1" / history.name, history, header,
                         rows + rows[:40] + rows[5:9])  # identical records, three times some
    day2_history = reexport(doubled, out / "day2" / history.name, seed=3,
                            extra=rows_with(history, "DateCanvassed", "03/02/2026", 25))
    day2_gifts = reexport(gifts, out / "day2" / gifts.name, seed=4,
                          extra=rows_with(gifts, "date", "2026-03-02", 6))
    p_header, p_rows = read_rows(people)
    withdrawn = p_header.index("do_not_contact")
    p_rows[10][withdrawn] = "true"
    day2_people = write_rows(out / "day2" / people.name, people, p_header, p_rows[::-1])
    return [[people, doubled, gifts], [day2_people, day2_history, day2_gifts]]


def _dump(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the warehouse tables a load writes, sorted (first_file/loaded_at aside:
    both runs load the same files)."""
    with engine.connect() as conn:
        return {t.name: sorted(tuple(str(v) for v in row)
                               for row in conn.execute(select(t)).all()) for t in TABLES}


def _run(days: list[list[Path]], settings: Settings, url: str) -> dict[str, list[tuple]]:
    engine = make_engine(url)
    ensure_schema(engine)
    try:
        for day in days:
            for path in day:
                result = ingest_file(path, settings, engine, RING, now=NOW)
                assert result.status == "loaded", path.name
        return _dump(engine)
    finally:
        engine.dispose()


def test_slices_of_a_few_rows_load_the_same_warehouse(campaign: Path, settings: Settings,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    days = _days(campaign, tmp_path)
    whole = _run(days, settings, f"sqlite:///{tmp_path / 'whole.db'}")
    monkeypatch.setattr(staged, "LOAD_SLICE_ROWS", 37)
    monkeypatch.setattr(store, "REBUILD_INDEXES_FROM", 50)  # deferred indexes, rebuilt
    sliced = _run(days, settings, f"sqlite:///{tmp_path / 'sliced.db'}")
    assert len(whole["contacts"]) > 1000 and len(whole["objections"]) > 0
    for table in whole:
        assert sliced[table] == whole[table], table


def test_deferred_indexes_are_rebuilt_after_a_sliced_load(campaign: Path, settings: Settings,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          pg_url: str) -> None:
    monkeypatch.setattr(staged, "LOAD_SLICE_ROWS", 101)
    monkeypatch.setattr(store, "REBUILD_INDEXES_FROM", 50)
    for url in (f"sqlite:///{tmp_path / 'w.db'}", pg_url):
        engine = make_engine(url)
        ensure_schema(engine)
        try:
            expected = {t.name: {str(i.name) for i in t.indexes} for t in TABLES}
            for path in (campaign / "nationbuilder_people.csv",
                         campaign / "van_contact_history.txt"):
                ingest_file(path, settings, engine, RING)
            found = inspect(engine)
            for table in (contacts, people_rows, identifier_links):
                names = {i["name"] for i in found.get_indexes(table.name)}
                assert expected[table.name] <= names, table.name
            with engine.connect() as conn:  # the index is used, and finds every row
                held = conn.execute(text("SELECT count(*) FROM contacts WHERE person_id IN "
                                         "(SELECT person_id FROM persons)")).scalar_one()
                assert held == conn.execute(text("SELECT count(*) FROM contacts")).scalar_one()
        finally:
            engine.dispose()


def test_a_failed_sliced_load_leaves_the_indexes_and_nothing_else(
        campaign: Path, settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staged, "LOAD_SLICE_ROWS", 101)
    monkeypatch.setattr(store, "REBUILD_INDEXES_FROM", 50)
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    ensure_schema(engine)
    ingest_file(campaign / "nationbuilder_people.csv", settings, engine, RING)
    before = _dump(engine)
    real = store.bulk_insert
    calls = iter(range(1000))

    def failing(conn, table, frame, **kw):  # type: ignore[no-untyped-def]
        if table is contacts and next(calls) == 3:  # the fourth slice of the history
            raise RuntimeError("disk full")
        return real(conn, table, frame, **kw)

    monkeypatch.setattr(store, "bulk_insert", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_file(campaign / "van_contact_history.txt", settings, engine, RING)
    assert _dump(engine) == before
    names = {i["name"] for i in inspect(engine).get_indexes("contacts")}
    assert {str(i.name) for i in contacts.indexes} <= names
    engine.dispose()


def _whole_file_numbering(frame: pl.DataFrame) -> pl.DataFrame:
    """What the load computed before slices: windows over the whole file."""
    raw = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(RAW_HASH)
    loaded = frame.with_columns(raw.alias("raw_occurrence")).filter(~pl.col(WITHDRAWN))
    event = pl.int_range(1, pl.len() + 1).over(EVENT_KEY, order_by=pl.col(FINGERPRINT))
    return loaded.select(
        "row", pl.concat_str([pl.col(EVENT_KEY), pl.lit("."), event.cast(pl.String)]).alias("id"),
        pl.concat_str([pl.col(RAW_HASH), pl.lit("."), pl.col("raw_occurrence")
                       .cast(pl.String)]).alias("raw_key"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_numbering_from_hashes_equals_the_whole_file_window(tmp_path: Path, seed: int,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    rng = np.random.default_rng(seed)
    n = 5_000
    keys = rng.integers(0, 3_000, n)  # many natural keys repeated, some three times or more
    frame = pl.DataFrame({
        EVENT_KEY: [f"k1:{k:06d}" for k in keys],
        FINGERPRINT: [f"k1:f{rng.integers(0, 4)}" for _ in range(n)],  # ties within a key
        RAW_HASH: [f"k1:r{k % 900:04d}" for k in rng.integers(0, 10_000, n)],
        WITHDRAWN: rng.random(n) < 0.05,
    }).with_row_index("row")
    path = tmp_path / "staged.parquet"
    frame.drop("row").write_parquet(path, row_group_size=700)
    monkeypatch.setattr(staged, "LOAD_SLICE_ROWS", 613)
    file = StagedFile.open(path)
    numbering = changes.number_rows(None, file, "contacts",  # type: ignore[arg-type]
                                    pl.Series("row", [], dtype=pl.UInt32), None)
    got = pl.concat([changes.with_keys(f, "contacts", numbering).select("row", "id", "raw_key")
                     for f in file.slices([EVENT_KEY, FINGERPRINT, RAW_HASH],
                                          rows=numbering.active)])
    want = _whole_file_numbering(frame)
    assert numbering.active.tolist() == want.get_column("row").to_list()
    assert got.get_column("raw_key").to_list() == want.get_column("raw_key").to_list()
    # within a key, rows with the same fingerprint are interchangeable: compare as multisets
    # of (id, fingerprint), which is what the warehouse stores
    fp = frame.select("row", FINGERPRINT)
    pairs = sorted(got.join(fp, on="row").select("id", FINGERPRINT).rows())
    assert pairs == sorted(want.join(fp, on="row").select("id", FINGERPRINT).rows())
    assert len(set(got.get_column("id"))) == got.height  # every event its own id
