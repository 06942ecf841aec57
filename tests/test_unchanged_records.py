"""Incremental cost: a re-export's byte-identical records are skipped before any processing.

Each test loads day 1, then a re-export, through ``ingest_file`` on SQLite and PostgreSQL,
and asserts on the counters the load reports (``rows_skipped``: recognised from the raw
record's keyed hash and never normalized, pseudonymized or resolved) and on the warehouse.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select

from core.settings import Settings
from pipeline.ingest import LoadResult, PreparedFile, ingest_file, load_prepared, prepare_file
from pipeline.unchanged import StaleStagingError
from privacy.keys import Keyring
from tests.helpers.reexport import read_rows, reexport, write_rows
from transforms.synth import SynthConfig, generate_campaign
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import contacts, donations, people_rows, persons

PEOPLE = 600
RING = Keyring.from_bytes({1: secrets.token_bytes(32)})


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("campaign")
    generate_campaign(SynthConfig(people=PEOPLE, seed=8), out)
    return out




def _count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _load(path: Path, settings: Settings, engine: Engine, ring: Keyring = RING,
          **kwargs) -> LoadResult:  # type: ignore[no-untyped-def]
    result = ingest_file(path, settings, engine, ring, **kwargs)
    assert result.status == "loaded", path.name
    return result


def _edit(src: Path, dest: Path, column: str, rows_at: list[int], value: str) -> Path:
    header, rows = read_rows(src)
    at = header.index(column)
    for i in rows_at:
        rows[i][at] = value if rows[i][at] != value else value + "9"
    return write_rows(dest, src, header, rows)


def test_a_reexport_with_one_changed_record_processes_that_record_only(
        campaign: Path, settings: Settings, warehouse: Engine, tmp_path: Path) -> None:
    history = campaign / "van_contact_history.txt"
    first = _load(history, settings, warehouse)
    assert first.rows_skipped == 0  # nothing stored yet: everything is processed
    n = _count(warehouse, contacts)
    # Zip5 is no part of VAN's natural key: the same event, corrected (another commune)
    changed = _edit(history, tmp_path / "changed.txt", "Zip5", [3], "75011")
    day2 = _load(reexport(changed, tmp_path / history.name, seed=1), settings, warehouse)
    processed = day2.rows_read - day2.rows_skipped
    assert processed == 1 + first.rows_excluded  # excluded records are never stored
    assert (day2.rows_changed, day2.rows_loaded, day2.persons_new) == (1, 1, 0)
    assert day2.rows_unchanged == n - 1
    assert _count(warehouse, contacts) == n
    # the day after, the same again: every stored record is skipped, nothing written
    (tmp_path / "d3").mkdir()
    day3 = _load(reexport(changed, tmp_path / "d3" / history.name, seed=2), settings,
                 warehouse)
    assert day3.rows_read - day3.rows_skipped == first.rows_excluded
    assert day3.rows_loaded == 0 and _count(warehouse, contacts) == n


def test_people_reexport_skips_unchanged_rows_but_not_a_withdrawal(
        campaign: Path, settings: Settings, warehouse: Engine, tmp_path: Path) -> None:
    people = campaign / "nationbuilder_people.csv"
    first = _load(people, settings, warehouse)
    header, rows = read_rows(people)
    at_dnc, at_level = header.index("do_not_contact"), header.index("support_level")
    consenting = [i for i, row in enumerate(rows) if row[at_dnc] == "false"]
    leaving, moving = consenting[0], consenting[1]
    rows[leaving][at_dnc] = "true"
    rows[moving][at_level] = "1" if rows[moving][at_level] != "1" else "2"
    n_persons = _count(warehouse, persons)
    day2 = _load(write_rows(tmp_path / people.name, people, header, rows), settings, warehouse)
    assert day2.rows_read - day2.rows_skipped == 2 + first.rows_excluded
    assert day2.persons_withdrawn == 1 and day2.rows_changed == 1
    assert _count(warehouse, persons) == n_persons - 1
    with warehouse.connect() as conn:
        levels = conn.execute(select(func.count()).select_from(persons)
                              .where(persons.c.support_level == int(rows[moving][at_level])))
        assert levels.scalar_one() >= 1


def test_identical_records_stay_two_events_when_skipped(
        campaign: Path, settings: Settings, warehouse: Engine, tmp_path: Path) -> None:
    gifts = campaign / "donations.csv"
    header, rows = read_rows(gifts)
    twice = write_rows(tmp_path / "twice.csv", gifts, header, rows + rows[:1])
    loaded = _load(twice, settings, warehouse).rows_loaded
    assert _count(warehouse, donations) == loaded
    (tmp_path / "again").mkdir()
    again = _load(reexport(twice, tmp_path / "again" / "twice.csv", seed=3), settings,
                  warehouse)
    assert again.rows_loaded == 0 and again.rows_skipped == loaded  # both copies skipped
    thrice = _load(write_rows(tmp_path / "thrice.csv", gifts, header, rows + rows[:1] * 2),
                   settings, warehouse)
    assert (thrice.rows_loaded, thrice.rows_skipped) == (1, loaded)  # a third genuine gift
    assert _count(warehouse, donations) == loaded + 1


def test_a_new_record_sharing_a_natural_key_is_numbered_around_skipped_ones(
        campaign: Path, settings: Settings, warehouse: Engine, tmp_path: Path) -> None:
    gifts = campaign / "donations.csv"
    header, rows = read_rows(gifts)
    _load(gifts, settings, warehouse)
    n = _count(warehouse, donations)
    at_zip = header.index("zip")
    twin = list(rows[0])
    twin[at_zip] = "13001" if twin[at_zip] != "13001" else "69001"  # same key, another row
    day2 = _load(write_rows(tmp_path / "gifts.csv", gifts, header, [twin, *rows]), settings,
                 warehouse)
    assert (day2.rows_loaded, day2.rows_changed, day2.rows_skipped) == (1, 0, n)
    assert _count(warehouse, donations) == n + 1
    with warehouse.connect() as conn:
        ids = conn.execute(select(donations.c.donation_id)).scalars().all()
    assert len(set(ids)) == n + 1 and sum(i.endswith(".2") for i in ids) >= 1


def test_a_key_rotation_between_days_still_resolves_the_same_persons(
        campaign: Path, settings: Settings, warehouse: Engine, tmp_path: Path) -> None:
    k1 = secrets.token_bytes(32)
    old = Keyring.from_bytes({1: k1})
    names = ("nationbuilder_people.csv", "van_contact_history.txt")
    for name in names:
        _load(campaign / name, settings, warehouse, old)
    with warehouse.connect() as conn:
        person_ids = set(conn.execute(select(persons.c.person_id)).scalars())
    rotated = Keyring.from_bytes({1: k1, 2: secrets.token_bytes(32)})
    for d, day in enumerate(("d2", "d3")):
        (tmp_path / day).mkdir()
        results = [_load(reexport(campaign / n, tmp_path / day / n, seed=10 * d + i), settings,
                         warehouse, rotated) for i, n in enumerate(names)]
        assert [r.persons_new for r in results] == [0, 0]
        if day == "d2":  # raw keys are keyed too: the first day after rotation is processed
            assert [r.rows_skipped for r in results] == [0, 0]
        else:
            assert all(r.rows_skipped == r.rows_read - r.rows_excluded for r in results)
        with warehouse.connect() as conn:
            assert set(conn.execute(select(persons.c.person_id)).scalars()) == person_ids


def test_the_stored_raw_key_is_keyed_and_holds_no_identifier(
        campaign: Path, settings: Settings, isoloir_home: Path) -> None:
    people = campaign / "nationbuilder_people.csv"
    keys = []
    for i in range(2):
        engine = make_engine(f"sqlite:///{isoloir_home / f'w{i}.db'}")
        ensure_schema(engine)
        _load(people, settings, engine, Keyring.from_bytes({1: secrets.token_bytes(32)}))
        with engine.connect() as conn:
            keys.append(set(conn.execute(select(people_rows.c.raw_key)).scalars()))
        engine.dispose()
    assert keys[0] and all(re.fullmatch(r"k1:[a-z2-7]{48}", k) for k in keys[0])
    assert not keys[0] & keys[1]  # another key, other hashes: no unkeyed hash of a record
    header, rows = read_rows(people)
    values = {cell.lower() for row in rows for cell in row if len(cell) >= 4}
    assert not any(v in k for k in keys[0] for v in values if "@" in v)


def test_a_skipped_record_changed_before_the_load_stages_the_file_again(
        campaign: Path, settings: Settings, warehouse: Engine, tmp_path: Path) -> None:
    history = campaign / "van_contact_history.txt"
    _load(history, settings, warehouse)
    n = _count(warehouse, contacts)
    day2 = reexport(history, tmp_path / history.name, seed=4)
    prepared = prepare_file(day2, settings, RING, engine=warehouse)
    assert prepared.rows_skipped > 0

    def meanwhile() -> None:  # another load removes a stored event the file skipped
        with warehouse.begin() as conn:
            victim = conn.execute(select(contacts.c.contact_id).limit(1)).scalar_one()
            conn.execute(delete(contacts).where(contacts.c.contact_id == victim))
        _load(campaign / "donations.csv", settings, warehouse)  # the warehouse moved on

    meanwhile()
    with pytest.raises(StaleStagingError):
        load_prepared(prepared, warehouse, RING)
    assert _count(warehouse, contacts) == n - 1  # nothing of the file was applied

    def staged_check(_: PreparedFile) -> dict[str, str]:
        if not checked:
            checked.append(True)
            with warehouse.begin() as conn:
                victim = conn.execute(select(contacts.c.contact_id).limit(1)).scalar_one()
                conn.execute(delete(contacts).where(contacts.c.contact_id == victim))
            _load(campaign / "porte_a_porte.csv", settings, warehouse)
        return {}

    checked: list[bool] = []
    again = ingest_file(day2, settings, warehouse, RING, staged_check=staged_check)
    assert again.status == "loaded" and checked and again.rows_loaded == 2
    with warehouse.connect() as conn:  # both removed events are back, nothing else added
        van = conn.execute(select(func.count()).select_from(contacts)
                           .where(contacts.c.source == "van_contacts")).scalar_one()
    assert van == n
