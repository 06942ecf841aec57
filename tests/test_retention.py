"""Retention: inactive persons and old raw files are purged, with a fixed "now"; the DPO report."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select
from typer.testing import CliRunner

from cli.main import app
from core.errors import SettingsError
from core.settings import Settings, load_settings
from pipeline.maintenance import run_purge, run_report, run_requests
from pipeline.retention import purge
from tests.helpers import exports
from warehouse.db import ensure_schema, make_engine
from warehouse.erasure import activity_cutoffs, inactive_persons, monthly_summary
from warehouse.schema import (
    contacts,
    donations,
    erasure_log,
    identifier_links,
    ingested_files,
    persons,
)

runner = CliRunner()
#: With the default 1095 days, the last day still inside the limit is 2026-03-11
#: (month 2026-03, ISO week 2026-W11).
NOW = datetime(2029, 3, 10, 12, 0, tzinfo=UTC)
OLD_FILE, NEW_FILE = "a" * 64, "b" * 64


def _person(pid: str, *, created: str | None = None, seen: str | None = None,
            first_file: str = OLD_FILE) -> dict[str, object]:
    return {"person_id": pid, "created_month": created, "last_seen_month": seen,
            "first_file": first_file, "last_file": NEW_FILE}


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request: pytest.FixtureRequest, isoloir_home: Path,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Engine]:
    """Persons whose only dated activity is on one side or the other of the limit."""
    if request.param == "postgresql":
        monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", request.getfixturevalue("pg_url"))
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    rows = [
        _person("p:old", created="2022-01"),  # created long ago, contacted long ago
        _person("p:contact", created="2020-01"),  # old, but canvassed in week 11 of 2026
        _person("p:donation", created="2020-01"),  # old, but gave in March 2026
        _person("p:created", created="2026-03"),  # created in the cutoff's own month
        _person("p:seen", created="2019-05", seen="2026-04"),
        _person("p:month-before", created="2026-02"),
        _person("p:undated-old"),  # no date at all: counts from its first file's load
        _person("p:undated-new", first_file=NEW_FILE),
        _person("p:undated-contact"),  # an undated contact is not activity
    ]
    file_row = {"file_name": "x.csv", "source": "nationbuilder_people", "status": "loaded",
                "key_id": "k1"}
    with engine.begin() as conn:
        conn.execute(insert(ingested_files), [
            file_row | {"sha256": OLD_FILE, "loaded_at": "2024-01-05T10:00:00+00:00"},
            file_row | {"sha256": NEW_FILE, "loaded_at": "2026-03-20T10:00:00+00:00"}])
        conn.execute(insert(persons), rows)
        conn.execute(insert(contacts), [
            _contact("c1", "p:old", "2022-W05"), _contact("c2", "p:contact", "2026-W11"),
            _contact("c3", "p:contact", "2021-W01"), _contact("c4", "p:undated-contact", None),
            _contact("c5", "p:month-before", "2026-W10")])
        conn.execute(insert(donations), [
            _donation("d1", "p:donation", "2026-03"), _donation("d2", "p:old", "2022-02")])
        conn.execute(insert(identifier_links), [
            {"pseudonym": f"k1:{r['person_id']}", "kind": "source_id",
             "person_id": r["person_id"], "file_sha256": OLD_FILE} for r in rows])
    return settings, engine


def _contact(cid: str, pid: str, week: str | None) -> dict[str, object]:
    return {"contact_id": cid, "person_id": pid, "source": "van_contacts", "week": week,
            "file_sha256": OLD_FILE}


def _donation(did: str, pid: str, month: str) -> dict[str, object]:
    return {"donation_id": did, "person_id": pid, "source": "donations", "amount_cents": 1000,
            "month": month, "file_sha256": OLD_FILE}


PURGED = ["p:month-before", "p:old", "p:undated-contact", "p:undated-old"]


def test_activity_cutoffs_compare_as_text() -> None:
    assert activity_cutoffs(date(2026, 3, 11)) == ("2026-03", "2026-W11")
    assert "2026-W10" < "2026-W11" < "2026-W12" and "2026-02" < "2026-03"


def test_inactive_persons_follow_every_dated_activity(
        warehouse: tuple[Settings, Engine]) -> None:
    _, engine = warehouse
    with engine.connect() as conn:
        assert inactive_persons(conn, cutoff=date(2026, 3, 11)) == PURGED
        # a day later, nothing changes for months (they last to their end) ...
        assert inactive_persons(conn, cutoff=date(2026, 3, 12)) == PURGED
        # ... but once the cutoff passes into April, March activity has expired too
        assert "p:donation" in inactive_persons(conn, cutoff=date(2026, 4, 1))


def test_purge_removes_inactive_persons_everywhere_once(
        warehouse: tuple[Settings, Engine]) -> None:
    settings, engine = warehouse
    dry = purge(settings, engine, now=NOW, dry_run=True)
    assert dry.dry_run and dry.persons == 4 and dry.cutoff == "2026-03-11"
    assert (dry.contacts, dry.donations, dry.identifier_links) == (3, 1, 4)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(persons)).scalar_one() == 9
        assert conn.execute(select(func.count()).select_from(erasure_log)).scalar_one() == 0

    done = purge(settings, engine, now=NOW)
    assert (done.persons, done.contacts, done.donations, done.identifier_links) == (4, 3, 1, 4)
    assert done.rows == 12
    with engine.connect() as conn:
        left = sorted(conn.execute(select(persons.c.person_id)).scalars())
        assert left == ["p:contact", "p:created", "p:donation", "p:seen", "p:undated-new"]
        for table in (contacts, donations, identifier_links):
            held = set(conn.execute(select(table.c.person_id)).scalars())
            assert held <= set(left), table.name
        [month] = monthly_summary(conn)
    assert (month.month, month.persons_purged, month.rows_purged) == ("2029-03", 4, 12)
    again = purge(settings, engine, now=NOW)
    assert again.persons == 0 and again.rows == 0


def test_retention_days_is_a_setting(warehouse: tuple[Settings, Engine]) -> None:
    from dataclasses import replace

    settings, engine = warehouse
    shorter = replace(settings, retention_days=30)
    assert purge(shorter, engine, now=datetime(2026, 4, 30, tzinfo=UTC), dry_run=True).persons == 6
    with pytest.raises(SettingsError, match="ISOLOIR_RETENTION_DAYS"):
        load_settings({"ISOLOIR_HOME": str(settings.home), "ISOLOIR_RETENTION_DAYS": "3y"})
    with pytest.raises(SettingsError, match="ISOLOIR_RAW_RETENTION_DAYS"):
        load_settings({"ISOLOIR_HOME": str(settings.home), "ISOLOIR_RAW_RETENTION_DAYS": "0"})
    env = {"ISOLOIR_HOME": str(settings.home)}
    assert (load_settings(env).retention_days, load_settings(env).raw_retention_days) == (1095, 30)


def _file(path: Path, age_mark: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text("nationbuilder_id,email\n1000,zephyrine.quatrebarbes@canary-mail.fr\n")
    os.utime(path, (age_mark, age_mark))
    return path


def test_raw_files_older_than_the_limit_are_deleted_with_their_reports(
        isoloir_home: Path) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    # A file's age counts from its latest modification or status change, and the status
    # change of a file written now is now: so "now" here lies 40 days ahead of the clock.
    clock = time.time()
    now = datetime.fromtimestamp(clock, UTC) + timedelta(days=40)
    fresh = now.timestamp() - 86400  # one day before "now"
    old = clock - 100 * 86400
    expired = [_file(settings.processed / "nationbuilder_people.csv", old),
               _file(settings.quarantine / "donations_bad.csv", old)]
    reports = [_file(settings.quarantine / "donations_bad.csv.report.json", old),
               _file(settings.quarantine / "donations_bad.csv.report.html", old)]
    kept = [_file(settings.quarantine / "van_bad.txt", fresh),
            _file(settings.quarantine / "van_bad.txt.report.json", fresh),
            _file(settings.processed / "recent.csv", fresh)]
    dry = purge(settings, engine, now=now, dry_run=True)
    assert dry.raw_files == ["processed/nationbuilder_people.csv", "quarantine/donations_bad.csv"]
    assert all(p.exists() for p in expired + reports + kept)

    result = runner.invoke(app, ["purge", "--json"], env={"ISOLOIR_RAW_RETENTION_DAYS": "30"})
    assert result.exit_code == 0, result.output  # the CLI's own clock: nothing is 30 days old
    assert json.loads(result.stdout)["raw_files"] == 0

    done = purge(settings, engine, now=now)
    assert done.raw_files == dry.raw_files and done.report_files == 2
    assert not any(p.exists() for p in expired + reports)
    assert all(p.exists() for p in kept)
    with engine.connect() as conn:
        [month] = monthly_summary(conn)
    assert month.raw_files_deleted == 2


def test_purge_command_prints_counts_and_file_names_only(
        warehouse: tuple[Settings, Engine]) -> None:
    settings, engine = warehouse
    expected = purge(settings, engine, now=datetime.now(UTC), dry_run=True)
    result = runner.invoke(app, ["purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"would remove {expected.persons} person(s)" in result.output
    assert "raw file(s)" in result.output
    as_json = runner.invoke(app, ["purge", "--json"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["ok"] and payload["dry_run"] is False
    assert payload["persons"] == expected.persons and payload["rows"] == expected.rows
    assert set(payload) >= {"persons", "rows", "contacts", "donations", "identifier_links",
                            "raw_files", "raw_file_names", "cutoff"}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(persons)).scalar_one() == \
            9 - expected.persons


def test_maintenance_steps_leave_no_identifier_behind(
        isoloir_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Privacy sweep: canary values in a request file reach neither the erasure log, the
    request folder after processing, the maintenance report, the logs nor the step results."""
    from pipeline.ingest import ingest_file
    from privacy.keys import load_keyring

    caplog.set_level(logging.DEBUG)
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    keyring = load_keyring(settings)
    for f in (exports.nationbuilder_people(settings.landing / "nb.csv"),
              exports.van_contacts(settings.landing / "van.txt")):
        ingest_file(f, settings, engine, keyring)
    c0, c1 = exports.CANARIES
    request = settings.requests / f"{c0.first}-{c0.last}.csv"
    request.write_text("email,phone,source_id,reason\n"
                       f"{c0.email},{c0.phone_national},,erasure\n"
                       f"{c1.email.upper()},,nb:1001,objection\n", encoding="utf-8")
    assert exports.find_canaries(request.read_bytes())  # the sweep can see them
    now = datetime(2026, 4, 2, tzinfo=UTC)
    handled = run_requests(settings, now=now)
    purged = run_purge(settings, now=now)
    report = run_report(settings, now=now, steps={"requests": handled, "purge": purged})

    assert handled["files_processed"] == 1 and handled["persons"] == 2
    assert list(settings.requests.iterdir()) == []
    assert exports.find_canaries(json.dumps([handled, purged, report])) == []
    assert exports.find_canaries(caplog.text) == [] and c0.last.lower() not in caplog.text.lower()
    with engine.connect() as conn:
        log_rows = conn.execute(select(erasure_log)).all()
    assert log_rows and exports.find_canaries(repr(log_rows)) == []
    document = json.loads(Path(report["json"]).read_text())
    assert document["totals"]["requests"] == 2 and document["totals"]["persons_erased"] == 2
    assert document["months"][0]["month"] == "2026-04"
    html = Path(report["html"]).read_text()
    assert "Demandes reçues" in html and exports.find_canaries(html) == []
    for path in settings.home.rglob("*"):
        if path.is_file() and settings.landing not in path.parents:
            assert exports.find_canaries(path.read_bytes()) == [], path


def test_auditor_report_shows_erasure_counts_per_month(isoloir_home: Path) -> None:
    from reports.auditor import write_auditor_report
    from warehouse.erasure import record

    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        record(conn, at=datetime(2026, 2, 3, tzinfo=UTC), reason="erasure",
               counts={"requests": 3, "persons": 2, "contacts": 5, "identifier_links": 4})
        record(conn, at=datetime(2026, 3, 1, tzinfo=UTC), reason="inactivity",
               counts={"persons": 7, "contacts": 1})
    html = write_auditor_report(settings, lang="en").read_text()
    section = html[html.index('id="erasures"'):]
    assert "Erasures, objections and retention" in section
    assert "2026-02" in section and "2026-03" in section
    assert "<td class=num>11</td>" in section  # rows erased in February: 2 + 5 + 4
    assert "<td class=num>8</td>" in section  # rows purged in March: 7 + 1
