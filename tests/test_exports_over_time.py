"""Exports over time: daily snapshots, withdrawals, key rotation and late files converge.

Every test runs several days of exports through the same warehouse (SQLite and PostgreSQL),
as campaigns send them: the whole history again, re-ordered, with a few new rows.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from cli.main import app
from core.settings import Settings
from pipeline.ingest import LoadResult, ingest_file
from privacy.keys import Keyring
from privacy.pseudonymize import PURPOSE_IDENTITY
from tests.helpers.reexport import read_rows, reexport, rows_with, write_rows
from transforms.synth import SynthConfig, generate_campaign
from warehouse.db import ensure_schema
from warehouse.schema import contacts, donations, identifier_links, objections, persons

SEED = 5
PEOPLE = 1500


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("campaign")
    generate_campaign(SynthConfig(people=PEOPLE, seed=SEED), out)
    return out




RING = Keyring.from_bytes({1: secrets.token_bytes(32)})


def _count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _load(path: Path, settings: Settings, engine: Engine, ring: Keyring = RING) -> LoadResult:
    result = ingest_file(path, settings, engine, ring)
    assert result.status == "loaded", path.name
    return result


# ------------------------------------------------------------------------------------ tests

def test_a_reexported_history_adds_only_its_new_rows(campaign: Path, settings: Settings,
                                                     warehouse: Engine, tmp_path: Path) -> None:
    history, gifts = campaign / "van_contact_history.txt", campaign / "donations.csv"
    first_c = _load(history, settings, warehouse)
    first_d = _load(gifts, settings, warehouse)
    n_contacts, n_donations = _count(warehouse, contacts), _count(warehouse, donations)
    assert n_contacts == first_c.rows_loaded > 1000 and n_donations == first_d.rows_loaded > 50

    day2 = tmp_path / "day2"
    day2.mkdir()
    new_contacts = rows_with(history, "DateCanvassed", "02/27/2026", 7)
    new_gifts = rows_with(gifts, "date", "2026-02-27", 4)
    again_c = _load(reexport(history, day2 / history.name, extra=new_contacts, seed=1),
                    settings, warehouse)
    again_d = _load(reexport(gifts, day2 / gifts.name, extra=new_gifts, seed=2),
                    settings, warehouse)
    assert _count(warehouse, contacts) == n_contacts + 7
    assert _count(warehouse, donations) == n_donations + 4
    assert (again_c.rows_loaded, again_c.rows_unchanged) == (7, n_contacts)
    assert (again_d.rows_loaded, again_d.rows_unchanged) == (4, n_donations)
    assert again_c.persons_new == 0 and again_d.persons_new == 0

    # the third day, the same again (another order): nothing at all is written
    third = _load(reexport(day2 / history.name, tmp_path / history.name, seed=3), settings,
                  warehouse)
    assert third.rows_loaded == 0 and _count(warehouse, contacts) == n_contacts + 7


def test_two_identical_rows_of_one_file_stay_two_events(campaign: Path, settings: Settings,
                                                        warehouse: Engine,
                                                        tmp_path: Path) -> None:
    gifts = campaign / "donations.csv"
    header, rows = read_rows(gifts)
    twice = write_rows(tmp_path / "donations.csv", gifts, header, rows + rows[:1])  # given twice
    loaded = _load(twice, settings, warehouse).rows_loaded
    assert loaded == _count(warehouse, donations)
    single = tmp_path / "single"
    single.mkdir()
    # a re-export that lists it twice again adds nothing; one that lists it once removes nothing
    assert _load(reexport(twice, single / "a.csv", seed=4), settings, warehouse).rows_loaded == 0
    assert _count(warehouse, donations) == loaded
    fresh_engine_count = _count(warehouse, donations)
    only_once = write_rows(tmp_path / "only_once.csv", gifts, header, rows)
    assert _load(only_once, settings, warehouse).rows_loaded == 0
    assert _count(warehouse, donations) == fresh_engine_count


def _nb_ids_with_activity(campaign: Path, count: int) -> list[str]:
    """NationBuilder ids of people whose row in the people export has consent."""
    header, rows = read_rows(campaign / "nationbuilder_people.csv")
    at_id, at_dnc = header.index("nationbuilder_id"), header.index("do_not_contact")
    return [row[at_id] for row in rows if row[at_dnc] == "false"][:count]


def _with_do_not_contact(src: Path, dest: Path, ids: set[str], value: str) -> Path:
    header, rows = read_rows(src)
    at_id, at_dnc = header.index("nationbuilder_id"), header.index("do_not_contact")
    for row in rows:
        if row[at_id] in ids:
            row[at_dnc] = value
    return write_rows(dest, src, header, rows)


def _persons_of(engine: Engine, ring: Keyring, nb_ids: list[str]) -> set[str]:
    pseudonymizer = ring.pseudonymizer("campaign", PURPOSE_IDENTITY)
    wanted = [pseudonymizer.pseudonymize_one("source_id", f"nb:{i}") for i in nb_ids]
    with engine.connect() as conn:
        return set(conn.execute(select(identifier_links.c.person_id)
                                .where(identifier_links.c.pseudonym.in_(wanted))).scalars())


def test_do_not_contact_takes_the_whole_person_out(campaign: Path, settings: Settings,
                                                   warehouse: Engine, tmp_path: Path) -> None:
    people = campaign / "nationbuilder_people.csv"
    for name in ("nationbuilder_people.csv", "van_contact_history.txt", "donations.csv"):
        _load(campaign / name, settings, warehouse)
    leaving = _nb_ids_with_activity(campaign, 100)
    gone = _persons_of(warehouse, RING, leaving)
    assert len(gone) >= 95  # a few share a person with another id (a household)
    with warehouse.connect() as conn:
        their_rows = conn.execute(select(func.count()).select_from(contacts)
                                  .where(contacts.c.person_id.in_(gone))).scalar_one()
    assert their_rows > 0
    n_persons = _count(warehouse, persons)

    (tmp_path / "d2").mkdir()
    day2 = _load(_with_do_not_contact(people, tmp_path / "d2" / people.name, set(leaving),
                                      "true"), settings, warehouse)
    assert day2.persons_withdrawn == len(gone)
    with warehouse.connect() as conn:
        for table in (persons, contacts, donations, identifier_links):
            left = conn.execute(select(func.count()).select_from(table)
                                .where(table.c.person_id.in_(gone))).scalar_one()
            assert left == 0, table.name
        assert conn.execute(select(func.count()).select_from(objections)).scalar_one() >= 100
    assert _count(warehouse, persons) == n_persons - len(gone)

    # a third export still lists them (now without the flag), with their contacts again
    (tmp_path / "d3").mkdir()
    listed = _with_do_not_contact(people, tmp_path / "listed.csv", set(leaving), "false")
    day3 = _load(reexport(listed, tmp_path / "d3" / people.name, seed=6), settings, warehouse)
    history = _load(reexport(campaign / "van_contact_history.txt",
                             tmp_path / "d3" / "van_contact_history.txt", seed=5),
                    settings, warehouse)
    assert day3.persons_new == 0 and history.persons_new == 0
    assert _persons_of(warehouse, RING, leaving) == set()
    assert _count(warehouse, persons) == n_persons - len(gone)
    assert day3.rows_excluded >= len(leaving)  # excluded as objections, and only counted
    assert history.rows_excluded > 0


def test_key_rotation_keeps_every_human_one_person(campaign: Path, settings: Settings,
                                                   warehouse: Engine, tmp_path: Path) -> None:
    names = ("nationbuilder_people.csv", "van_contact_history.txt", "porte_a_porte.csv",
             "donations.csv")
    k1 = secrets.token_bytes(32)
    old = Keyring.from_bytes({1: k1})
    for name in names:
        _load(campaign / name, settings, warehouse, old)
    before = {t.name: _count(warehouse, t) for t in (persons, contacts, donations)}
    with warehouse.connect() as conn:
        person_ids = set(conn.execute(select(persons.c.person_id)).scalars())

    rotated = Keyring.from_bytes({1: k1, 2: secrets.token_bytes(32)})
    (tmp_path / "after").mkdir()
    results = [_load(reexport(campaign / n, tmp_path / "after" / n, seed=i), settings,
                     warehouse, rotated) for i, n in enumerate(names)]
    assert [r.persons_new for r in results] == [0, 0, 0, 0]
    assert {t.name: _count(warehouse, t) for t in (persons, contacts, donations)} == before
    with warehouse.connect() as conn:
        assert set(conn.execute(select(persons.c.person_id)).scalars()) == person_ids
        links = conn.execute(select(identifier_links.c.pseudonym)).scalars().all()
    assert links and all(p.startswith("k2:") for p in links)  # every link re-keyed


def test_an_older_export_arriving_late_does_not_roll_a_person_back(
        campaign: Path, settings: Settings, warehouse: Engine, tmp_path: Path) -> None:
    people = campaign / "nationbuilder_people.csv"
    header, rows = read_rows(people)
    at_level, at_updated = header.index("support_level"), header.index("updated_at")

    def export(dest: Path, level: str, updated: str) -> Path:
        edited = [[level if i == at_level else updated if i == at_updated else cell
                   for i, cell in enumerate(row)] for row in rows[:50]]
        return write_rows(dest, people, header, edited)

    monday, tuesday = tmp_path / "mon.csv", tmp_path / "tue.csv"
    export(monday, "2", "2026-03-02T09:00:00+01:00")
    export(tuesday, "5", "2026-03-03T09:00:00Z")
    _load(tuesday, settings, warehouse)
    late = _load(monday, settings, warehouse)  # Monday's export lands after Tuesday's
    assert late.rows_stale == late.rows_read - late.rows_excluded > 0
    with warehouse.connect() as conn:
        levels = set(conn.execute(select(persons.c.support_level)).scalars())
    assert levels == {5}


def test_cli_ingest_of_a_reexport_reports_unchanged_rows(campaign: Path, isoloir_home: Path,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("ISOLOIR_MASTER_KEY", key)
    runner = CliRunner()
    history = campaign / "van_contact_history.txt"
    first = runner.invoke(app, ["ingest", str(history), "--json"])
    assert first.exit_code == 0, first.output
    loaded = json.loads(first.stdout)["files"][0]["rows_loaded"]
    again = runner.invoke(app, ["ingest", str(reexport(history, tmp_path / history.name,
                                                       seed=9)), "--json"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)["files"][0]
    assert second["status"] == "loaded" and second["rows_loaded"] == 0
    assert second["rows_unchanged"] == loaded


def test_a_version_1_warehouse_is_migrated_in_place(warehouse: Engine) -> None:
    from sqlalchemy import inspect

    from tests.helpers.schema_v1 import downgrade_to_v1
    from warehouse.schema import SCHEMA_VERSION

    downgrade_to_v1(warehouse)  # make it look like a warehouse created by version 1
    assert ensure_schema(warehouse) == SCHEMA_VERSION == 3
    names = {t: {c["name"] for c in inspect(warehouse).get_columns(t)}
             for t in ("contacts", "donations")}
    assert all("fingerprint" in cols for cols in names.values())
    assert inspect(warehouse).has_table("people_rows")


@pytest.mark.parametrize("variant", ["french_excel", "utf16_tab", "iso_dates"])
def test_a_resaved_export_keys_the_same_events(campaign: Path, settings: Settings,
                                               warehouse: Engine, tmp_path: Path,
                                               variant: str) -> None:
    """Event keys come from normalized values: Excel's re-save of a loaded file adds nothing."""
    from tests.helpers.resave import resave
    from transforms.sources import BUILTIN_PROFILES

    for name, profile in (("van_contact_history.txt", "van_contacts"),
                          ("donations.csv", "donations")):
        first = _load(campaign / name, settings, warehouse)
        again = _load(resave(campaign / name, BUILTIN_PROFILES[profile], variant, tmp_path),
                      settings, warehouse)
        assert (again.rows_loaded, again.rows_unchanged) == (0, first.rows_loaded), name


def test_an_erasure_between_staging_and_load_wins(campaign: Path, settings: Settings,
                                                 warehouse: Engine) -> None:
    """`isoloir forget` may commit while a file waits between the DAG's two tasks."""
    from pipeline.ingest import load_prepared, prepare_file
    from warehouse import erasure as erasure_store

    people = campaign / "nationbuilder_people.csv"
    leaving = _nb_ids_with_activity(campaign, 3)
    prepared = prepare_file(people, settings, RING)  # the objection list is read here
    identity = RING.pseudonymizer("campaign", PURPOSE_IDENTITY)
    with warehouse.begin() as conn:  # ... and an objection lands before the load
        erasure_store.add_to_objection_list(
            conn, [identity.pseudonymize_one("source_id", f"nb:{i}") for i in leaving],
            "objection", datetime(2026, 3, 1, tzinfo=UTC))
    result = load_prepared(prepared, warehouse, RING)
    assert result.rows_excluded == prepared.rows_excluded_no_basis + 3
    assert result.rows_loaded == prepared.rows_staged - 3
    assert _persons_of(warehouse, RING, leaving) == set()


def test_an_objection_is_relisted_under_the_new_key(campaign: Path, settings: Settings,
                                                    warehouse: Engine, tmp_path: Path) -> None:
    """After a rotation, a listed person's next export puts their current pseudonyms on the list,
    so the old key version can be retired without letting them back in."""
    people = campaign / "nationbuilder_people.csv"
    k1 = secrets.token_bytes(32)
    old = Keyring.from_bytes({1: k1})
    leaving = _nb_ids_with_activity(campaign, 5)
    _load(_with_do_not_contact(people, tmp_path / "dnc.csv", set(leaving), "true"), settings,
          warehouse, old)
    with warehouse.connect() as conn:
        listed = conn.execute(select(objections.c.pseudonym)).scalars().all()
    assert listed and all(p.startswith("k1:") for p in listed)

    rotated = Keyring.from_bytes({1: k1, 2: secrets.token_bytes(32)})
    (tmp_path / "later").mkdir()
    later = _load(reexport(people, tmp_path / "later" / people.name, seed=8), settings,
                  warehouse, rotated)
    assert later.rows_excluded >= 5 and later.persons_new == 0
    current = rotated.pseudonymizer("campaign", PURPOSE_IDENTITY)
    with warehouse.connect() as conn:
        listed_now = set(conn.execute(select(objections.c.pseudonym)).scalars())
    assert {current.pseudonymize_one("source_id", f"nb:{i}") for i in leaving} <= listed_now
