"""Rights to erasure and to object: `isoloir forget`, request files, key rotation, the log."""

from __future__ import annotations

import json
import logging
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from cli.main import app
from core.errors import InputFileError
from core.settings import Settings, load_settings
from pipeline.erasure import forget, forget_file, process_request_folder
from pipeline.ingest import ingest_file
from privacy.erasure import request_pseudonyms
from privacy.keys import Keyring, load_keyring, write_new_key_file
from tests.helpers import exports
from transforms.requests import parse_identifiers, read_request_file
from warehouse.db import ensure_schema, make_engine
from warehouse.erasure import monthly_summary
from warehouse.schema import (
    contacts,
    donations,
    erasure_log,
    identifier_links,
    objections,
    persons,
)

runner = CliRunner()
NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)
CANARY = exports.CANARIES[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, isoloir_home: Path,
           monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Engine, Keyring]:
    """The four hand-written exports (with the two canaries) loaded into a fresh warehouse."""
    if request.param == "postgresql":
        monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", request.getfixturevalue("pg_url"))
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    keyring = load_keyring(settings)
    for f in _exports(settings.landing):
        assert ingest_file(f, settings, engine, keyring).status == "loaded"
    return settings, engine, keyring


def _exports(folder: Path) -> list[Path]:
    return [exports.nationbuilder_people(folder / "nationbuilder_people.csv"),
            exports.van_contacts(folder / "van_contact_history.txt"),
            exports.fr_canvass(folder / "porte_a_porte.csv"),
            exports.donations(folder / "donations.csv")]


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (persons, contacts, donations, identifier_links, objections)}


def _person_of_email(engine: Engine, keyring: Keyring, email: str) -> str | None:
    pseudonyms = request_pseudonyms(keyring, "campaign", [("email", email.lower())])
    with engine.connect() as conn:
        return conn.execute(select(identifier_links.c.person_id)
                            .where(identifier_links.c.pseudonym.in_(pseudonyms))).scalar()


def test_forget_by_email_removes_the_whole_person_once(
        loaded: tuple[Settings, Engine, Keyring]) -> None:
    settings, engine, keyring = loaded
    before = _counts(engine)
    pid = _person_of_email(engine, keyring, CANARY.email)
    assert pid is not None
    with engine.connect() as conn:
        links = set(conn.execute(select(identifier_links.c.pseudonym)
                                 .where(identifier_links.c.person_id == pid)).scalars())
    assert len(links) == 5  # NationBuilder, VAN and French-app ids, e-mail, phone

    # the e-mail as a person would write it to the DPO: other case, stray spaces
    request = parse_identifiers(emails=[f"  {CANARY.email.upper()} "])
    first = forget([request], engine, keyring, now=NOW).total
    assert (first.requests, first.requests_unmatched, first.persons) == (1, 0, 1)
    assert (first.contacts, first.donations, first.identifier_links) == (3, 1, 5)
    after = _counts(engine)
    assert after["persons"] == before["persons"] - 1
    assert after["contacts"] == before["contacts"] - 3
    assert after["donations"] == before["donations"] - 1
    assert after["identifier_links"] == before["identifier_links"] - 5
    with engine.connect() as conn:
        for table in (persons, contacts, donations, identifier_links):
            assert conn.execute(select(func.count()).select_from(table)
                                .where(table.c.person_id == pid)).scalar_one() == 0
        listed = set(conn.execute(select(objections.c.pseudonym)).scalars())
        reasons = set(conn.execute(select(objections.c.reason)).scalars())
    assert links <= listed and reasons == {"erasure"}

    again = forget([request], engine, keyring, now=NOW).total
    assert (again.persons, again.rows, again.requests_unmatched) == (0, 0, 1)
    assert again.requests_already_forgotten == 1 and again.objections_added == 0
    assert _counts(engine) == after

    # a later export naming the person by another identifier (the VAN id, the +33 phone)
    # is excluded on ingest: every linked pseudonym went on the objection list
    later = exports.van_contacts(settings.landing / "van_later.txt", extra_rows=11)
    result = ingest_file(later, settings, engine, keyring)
    assert result.rows_excluded == 2
    assert _person_of_email(engine, keyring, CANARY.email) is None


def test_forget_by_phone_on_the_command_line(loaded: tuple[Settings, Engine, Keyring]) -> None:
    _, engine, keyring = loaded
    pid = _person_of_email(engine, keyring, CANARY.email)
    before = _counts(engine)
    result = runner.invoke(app, ["forget", "--phone", "+33 6 71 82 93 04", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["total"]["persons"] == 1 and payload["total"]["rows"] == 10
    assert payload["request_file"] is None
    assert exports.find_canaries(result.output) == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(persons)
                            .where(persons.c.person_id == pid)).scalar_one() == 0
    assert _counts(engine)["persons"] == before["persons"] - 1

    again = runner.invoke(app, ["forget", "--phone", "06.71.82.93.04"])
    assert again.exit_code == 0, again.output
    assert "removed 0 person(s)" in again.output and "matched nobody" in again.output
    assert "already forgotten" in again.output and exports.find_canaries(again.output) == []


def test_forget_by_source_id_and_objection_reason(
        loaded: tuple[Settings, Engine, Keyring]) -> None:
    _, engine, keyring = loaded
    other = exports.CANARIES[1]
    pid = _person_of_email(engine, keyring, other.email)
    assert pid is not None
    before = _counts(engine)
    result = runner.invoke(app, ["forget", "--source-id", "van:51", "--reason", "objection"])
    assert result.exit_code == 0, result.output
    assert "removed 1 person(s)" in result.output
    assert _person_of_email(engine, keyring, other.email) is None
    with engine.connect() as conn:
        assert set(conn.execute(select(objections.c.reason)).scalars()) == {"objection"}
        [month] = monthly_summary(conn)
    after = _counts(engine)
    removed = sum(before[t] - after[t] for t in ("persons", "contacts", "donations",
                                                 "identifier_links"))
    assert removed == 7  # person, NationBuilder id, VAN id, e-mail, two VAN attempts, a gift
    assert (month.requests, month.persons_erased, month.rows_erased) == (1, 1, removed)
    # a built-in profile name stands for its namespace
    again = runner.invoke(app, ["forget", "--source-id", "van_contacts:51", "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["total"]["requests_already_forgotten"] == 1


def test_a_request_that_matches_nobody_says_so_and_exits_0(
        loaded: tuple[Settings, Engine, Keyring]) -> None:
    _, engine, _ = loaded
    before = _counts(engine)
    result = runner.invoke(app, ["forget", "--email", "nobody.at.all@example.org"])
    assert result.exit_code == 0, result.output
    assert "removed 0 person(s)" in result.output
    assert "1 request(s) matched nobody" in result.output
    assert "already forgotten" not in result.output
    after = _counts(engine)
    # nothing removed, but the request's pseudonyms (one per key version) are now listed
    assert {k: v for k, v in after.items() if k != "objections"} == \
        {k: v for k, v in before.items() if k != "objections"}
    assert after["objections"] == before["objections"] + 1


def _request_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(["email;phone;source_id;reason", *lines]) + "\n", encoding="utf-8")
    return path


def test_request_file_is_deleted_once_processed_or_kept_on_request(
        loaded: tuple[Settings, Engine, Keyring], tmp_path: Path) -> None:
    _, engine, keyring = loaded
    kept = _request_file(tmp_path / "requests-kept.csv",
                         [";;van:51;objection"])
    result = runner.invoke(app, ["forget", "--from-file", str(kept), "--keep-file", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["request_file"] == "kept" and kept.exists()
    assert payload["by_reason"]["objection"]["persons"] == 1

    deleted = _request_file(tmp_path / "requests.csv",
                            [f"{CANARY.email};;;", ";;nb:999999;erasure"])
    result = runner.invoke(app, ["forget", "--from-file", str(deleted)])
    assert result.exit_code == 0, result.output
    assert not deleted.exists()
    assert "2 request(s): removed 1 person(s)" in result.output
    assert "1 request(s) matched nobody" in result.output and "request file deleted" in result.output
    assert exports.find_canaries(result.output) == []
    assert _person_of_email(engine, keyring, CANARY.email) is None
    with engine.connect() as conn:
        log_rows = conn.execute(select(erasure_log)).all()
    assert sorted((r.reason, r.requests, r.persons) for r in log_rows) == \
        [("erasure", 2, 1), ("objection", 1, 1)]
    assert exports.find_canaries(repr(log_rows)) == []


@pytest.mark.parametrize(("lines", "row", "rule"), [
    (["zephyrine.quatrebarbes@canary-mail;;;"], 2, "email_format"),
    ([";;;erasure", "a@b.fr;;;"], 2, "empty_request"),
    (["a@b.fr;;;", ";07 11 22;;"], 3, "phone_format"),
    (["a@b.fr;;;forget-me"], 2, "reason_value"),
    (["a@b.fr;;;;Zephyrine"], 2, "field_count"),
    ([";;Quatrebarbes;"], 2, "source_id_format"),
])
def test_a_malformed_request_file_exits_2_naming_file_row_rule_never_the_value(
        isoloir_home: Path, tmp_path: Path, lines: list[str], row: int, rule: str) -> None:
    bad = _request_file(tmp_path / "demandes.csv", lines)
    result = runner.invoke(app, ["forget", "--from-file", str(bad)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "demandes.csv" in text and f"row {row}" in text and rule in text
    assert exports.find_canaries(result.output) == [] and "forget-me" not in result.output
    assert bad.exists()  # nothing processed: the file stays for the engineer to fix
    with pytest.raises(InputFileError) as caught:
        read_request_file(bad)
    assert caught.value.rule == rule and caught.value.row == row


def test_request_file_header_is_checked_without_echoing_a_value(isoloir_home: Path,
                                                                tmp_path: Path) -> None:
    headless = tmp_path / "r.csv"
    headless.write_text(f"{CANARY.email},{CANARY.phone_national}\n", encoding="utf-8")
    result = runner.invoke(app, ["forget", "--from-file", str(headless), "--json"])
    assert result.exit_code == 2
    assert "header" in result.stdout and exports.find_canaries(result.stdout) == []
    named = tmp_path / "s.csv"
    named.write_text("email,name\na@b.fr,Zephyrine\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="column 'name'"):
        read_request_file(named)


def test_bad_options_exit_2(isoloir_home: Path, tmp_path: Path) -> None:
    for args in (["forget"], ["forget", "--email", "a@b.fr", "--reason", "delete"],
                 ["forget", "--email", "not-an-email"],
                 ["forget", "--email", "a@b.fr", "--from-file", str(tmp_path / "r.csv")],
                 ["forget", "--from-file", str(tmp_path / "missing.csv")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "not-an-email" not in result.output


def test_forget_after_key_rotation_finds_a_person_loaded_under_k1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isoloir_home: Path) -> None:
    key_file = tmp_path / "keys" / "master.key"
    write_new_key_file(key_file)
    monkeypatch.delenv("ISOLOIR_MASTER_KEY")
    monkeypatch.setenv("ISOLOIR_KEY_FILE", str(key_file))
    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    for f in _exports(settings.landing):
        ingest_file(f, settings, engine, load_keyring(settings))
    with engine.connect() as conn:
        assert set(p[:3] for p in conn.execute(select(identifier_links.c.pseudonym)).scalars()) \
            == {"k1:"}
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    keyring = load_keyring(settings)
    assert keyring.key_ids == ("k1", "k2")

    result = runner.invoke(app, ["forget", "--email", CANARY.email, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"]["persons"] == 1
    email_under = {v: keyring.pseudonymizer("campaign", "identity", v)
                   .pseudonymize_one("email", CANARY.email.lower()) for v in (1, 2)}
    with engine.connect() as conn:
        listed = set(conn.execute(select(objections.c.pseudonym)).scalars())
        assert conn.execute(select(func.count()).select_from(identifier_links)
                            .where(identifier_links.c.pseudonym == email_under[1])
                            ).scalar_one() == 0
    assert set(email_under.values()) <= listed  # both key versions are refused from now on


def test_request_folder_quarantines_a_bad_file_under_a_neutral_name(
        loaded: tuple[Settings, Engine, Keyring], caplog: pytest.LogCaptureFixture) -> None:
    settings, engine, keyring = loaded
    assert stat.S_IMODE(settings.requests.stat().st_mode) == 0o700  # a private zone
    caplog.set_level(logging.DEBUG)
    good = _request_file(settings.requests / "zephyrine-quatrebarbes.csv", [f"{CANARY.email};;;"])
    bad = _request_file(settings.requests / "anselme-brindacier.csv",
                        [f"{exports.CANARIES[1].email};;;forget-me"])
    result = process_request_folder(settings, engine, keyring, now=NOW)
    assert (result.files_processed, result.files_rejected) == (1, 1)
    assert result.forget.total.persons == 1
    assert not good.exists() and not bad.exists() and not list(settings.requests.iterdir())
    quarantined = sorted(p.name for p in settings.quarantine.iterdir())
    assert quarantined == ["erasure-request-20260402T093000Z-1.csv",
                           "erasure-request-20260402T093000Z-1.csv.report.json"]
    report = json.loads((settings.quarantine / quarantined[1]).read_text())
    assert report["results"][0]["rule"] == "reason_value" and report["results"][0]["first_rows"] == [2]
    assert exports.find_canaries(json.dumps(report)) == []
    assert exports.find_canaries(caplog.text) == [] and "brindacier" not in caplog.text.lower()
    with engine.connect() as conn:
        [month] = monthly_summary(conn)
    assert month.request_files_rejected == 1 and month.requests == 1


def test_forget_file_rejects_before_removing_anything(
        loaded: tuple[Settings, Engine, Keyring], tmp_path: Path) -> None:
    _, engine, keyring = loaded
    before = _counts(engine)
    bad = _request_file(tmp_path / "r.csv", [f"{CANARY.email};;;", "x;;;"])
    with pytest.raises(InputFileError):
        forget_file(bad, engine, keyring, now=NOW)
    assert _counts(engine) == before and bad.exists()
