"""Ingestion end to end through the library: canaries never leak, identities resolve, loads are atomic."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, select

from core.settings import load_settings
from pipeline.ingest import ingest_file
from privacy.keys import load_keyring
from tests.helpers import exports
from warehouse import erasure, store
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import contacts, donations, identifier_links, ingested_files, persons


def _export_set(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [exports.nationbuilder_people(folder / "nationbuilder_people.csv"),
            exports.van_contacts(folder / "van_contact_history.txt"),
            exports.fr_canvass(folder / "porte_a_porte.csv"),
            exports.donations(folder / "donations.csv")]


def _dump_all_tables(engine) -> str:  # type: ignore[no-untyped-def]
    md = MetaData()
    md.reflect(engine)
    out = []
    with engine.connect() as conn:
        for table in md.sorted_tables:
            for row in conn.execute(select(table)):
                out.append(repr(tuple(row)))
    return "\n".join(out)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest, isoloir_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{isoloir_home / 'warehouse.db'}"
    return request.getfixturevalue("pg_url")


def test_canaries_never_leave_landing(isoloir_home: Path, warehouse_url: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", warehouse_url)
    settings = load_settings()
    settings.ensure_dirs()
    files = _export_set(settings.landing)
    engine = make_engine(settings.warehouse_url)
    caplog.set_level(logging.DEBUG)
    keyring = load_keyring(settings)
    results = [ingest_file(f, settings, engine, keyring) for f in files]
    assert [r.status for r in results] == ["loaded"] * 4

    assert exports.find_canaries(_dump_all_tables(engine)) == []
    assert exports.find_canaries(caplog.text) == []
    for path in settings.home.rglob("*"):
        if path.is_file() and settings.landing not in path.parents and \
                settings.quarantine not in path.parents:
            assert exports.find_canaries(path.read_bytes()) == [], path
    assert exports.canary_strings()  # the checker itself finds what it must:
    assert exports.find_canaries(files[0].read_bytes())


def test_one_human_written_three_ways_is_one_person(isoloir_home: Path) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    keyring = load_keyring(settings)
    files = _export_set(settings.landing)
    for f in files:
        ingest_file(f, settings, engine, keyring)
    canary = exports.CANARIES[0]
    from privacy.pseudonymize import pseudonymize_identifiers

    email_p = pseudonymize_identifiers(keyring, "campaign", "email", [canary.email.lower()])[0]
    with engine.connect() as conn:
        pid = conn.execute(select(identifier_links.c.person_id)
                           .where(identifier_links.c.pseudonym == email_p)).scalar_one()
        linked = conn.execute(select(func.count()).select_from(identifier_links)
                              .where(identifier_links.c.person_id == pid)).scalar_one()
        # NationBuilder id, VAN id, French app id, email, phone: five identifiers, one human
        assert linked == 5
        n_contacts = conn.execute(select(func.count()).select_from(contacts)
                                  .where(contacts.c.person_id == pid)).scalar_one()
        assert n_contacts == 3  # two VAN attempts and one door knock
        assert conn.execute(select(func.count()).select_from(donations)
                            .where(donations.c.person_id == pid)).scalar_one() == 1
        row = conn.execute(select(persons).where(persons.c.person_id == pid)).one()
        assert row.departement == "69" and row.age_band == "55-64" and row.support_level == 2


def test_same_key_same_pseudonyms_across_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              isoloir_home: Path) -> None:
    dumps = []
    for run in ("a", "b"):
        home = tmp_path / run
        monkeypatch.setenv("ISOLOIR_HOME", str(home))
        settings = load_settings()
        settings.ensure_dirs()
        engine = make_engine(settings.warehouse_url)
        f = exports.nationbuilder_people(settings.landing / "nationbuilder_people.csv")
        ingest_file(f, settings, engine, load_keyring(settings))
        with engine.connect() as conn:
            dumps.append(sorted(conn.execute(select(identifier_links.c.pseudonym,
                                                    identifier_links.c.person_id)).all()))
    assert dumps[0] == dumps[1] and dumps[0]


def test_loading_twice_is_a_noop_that_says_so(isoloir_home: Path) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    keyring = load_keyring(settings)
    f = exports.van_contacts(settings.landing / "van_contact_history.txt")
    first = ingest_file(f, settings, engine, keyring)
    second = ingest_file(f, settings, engine, keyring)
    assert first.status == "loaded" and second.status == "already_loaded"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == first.rows_loaded
        assert conn.execute(select(func.count()).select_from(ingested_files)).scalar_one() == 1


def test_do_not_contact_and_objections_are_excluded_and_counted(isoloir_home: Path) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    keyring = load_keyring(settings)
    from privacy.pseudonymize import pseudonymize_identifiers

    objected = pseudonymize_identifiers(keyring, "campaign", "email", ["person3@example.org"])
    with engine.begin() as conn:
        erasure.add_to_objection_list(conn, objected, "objection",
                                      datetime(2026, 1, 1, tzinfo=UTC))
    f = exports.nationbuilder_people(settings.landing / "nb.csv", extra_rows=10,
                                     do_not_contact_ids=("2001", "2002"))
    result = ingest_file(f, settings, engine, keyring, source="nationbuilder_people")
    assert result.rows_read == 12
    assert result.rows_excluded == 3
    assert result.rows_loaded == 9
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(persons)).scalar_one() == 9


def test_failure_mid_load_leaves_nothing(isoloir_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    keyring = load_keyring(settings)
    f = exports.van_contacts(settings.landing / "van.txt")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "record_file", boom)
    with pytest.raises(RuntimeError):
        ingest_file(f, settings, engine, keyring)
    with engine.connect() as conn:
        counts = store.table_counts(conn)
    assert counts == {"persons": 0, "contacts": 0, "donations": 0, "identifier_links": 0,
                      "ingested_files": 0}
    assert not list((settings.work / "staged").glob("*"))
