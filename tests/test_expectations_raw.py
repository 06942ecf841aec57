"""Raw suites: clean exports of every profile pass; each expectation broken alone by its own file
gives one specific error (rule, raw column, line) and quarantines the file.

Files are written in each tool's dialect and read back with the real reader
(``transforms.read``), so the frames are exactly what the pipeline validates. GX runs on the
whole frame in these tests, so every verdict is also GX's (a disagreement would raise).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from core.settings import Settings, load_settings
from expectations import patterns
from expectations.suites import raw_suite
from expectations.validate import ValidationFailed, enforce, validate_raw
from transforms.sources import (
    DONATIONS,
    FR_CANVASS,
    NATIONBUILDER_PEOPLE,
    VAN_CONTACTS,
    SourceProfile,
)

Rows = list[dict[str, str]]


def nb_rows(n: int = 50) -> Rows:
    return [{"nationbuilder_id": str(1000 + i), "first_name": f"Prenom{i}",
             "email": f"person{i}@example.org", "phone_number": "'01 23 45 67 89",
             "mobile_number": "+33 6 12 34 56 78", "primary_zip": ["75011", "'02160", "20090",
                                                                   "97110"][i % 4],
             "born_at": "04/23/1961", "support_level": str(1 + i % 5), "is_volunteer": "true",
             "email_opt_in": "false", "created_at": "01/15/2026", "do_not_contact": "false",
             "note": "free text never read"} for i in range(n)]


def van_rows(n: int = 50) -> Rows:
    return [{"VanID": str(50 + i // 2), "DateCanvassed": "03/02/2026",
             "ContactType": ["Walk", "Phone", "SMS"][i % 3],
             "ResultShortName": ["Canvassed", "Not Home", "refused", "LEFT MESSAGE"][i % 4],
             "Zip5": "69003", "Email": f"  VOTER{i}@EXAMPLE.ORG ", "Phone": "0612345678",
             "SurveyResponseName": ["1 - Strong Support", "3 - Undecided", ""][i % 3],
             "CanvassedBy": "Jean Militant"} for i in range(n)]


def fr_rows(n: int = 50) -> Rows:
    return [{"id_contact": f"P{i}", "date_passage": "10/02/2026", "code_postal": "97100",
             "résultat": ["Contacté", "Absent", "Refus", "Déménagé"][i % 4],
             "intention": str(1 + i % 5), "email": "", "téléphone": "06.12.34.56.78",
             "militant": "Hélène Militante", "commentaire": "sonner deux fois"}
            for i in range(n)]


def donation_rows(n: int = 50) -> Rows:
    return [{"donor_id": str(1000 + i % 10), "amount": ["50.00", "20", "1,234.50", "7.5"][i % 4],
             "date": "2026-02-14", "method": "card", "email": f"donor{i}@example.org",
             "zip": "13001", "recurring": "false"} for i in range(n)]


DIALECTS: dict[str, tuple[Callable[[int], Rows], str, str, bool, str]] = {
    # profile -> (rows, encoding, delimiter, BOM, file name)
    "nationbuilder_people": (nb_rows, "utf-8", ",", True, "nationbuilder_people.csv"),
    "van_contacts": (van_rows, "utf-8", "\t", False, "van_contact_history.txt"),
    "fr_canvass": (fr_rows, "cp1252", ";", False, "porte_a_porte.csv"),
    "donations": (donation_rows, "utf-8", ",", False, "donations.csv"),
}
PROFILES = {p.name: p for p in (NATIONBUILDER_PEOPLE, VAN_CONTACTS, FR_CANVASS, DONATIONS)}


def write_export(folder: Path, profile: str, rows: Rows, name: str | None = None) -> Path:
    """Write rows the way the tool writes its export (encoding, delimiter, BOM)."""
    _, encoding, delimiter, bom, default_name = DIALECTS[profile]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter,
                            lineterminator="\r\n" if delimiter == ";" else "\n")
    writer.writeheader()
    writer.writerows(rows)
    path = folder / (name or default_name)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode(encoding))
    return path


def read_export(path: Path, source: str = "auto") -> tuple[pd.DataFrame, list[str], SourceProfile]:
    """What the pipeline hands the raw suite: the whole file, header and profile."""
    from transforms.read import (
        detect_profile,
        header_columns,
        read_chunks,
        sniff_dialect,
        validate_whole_file,
    )

    profile = detect_profile(path, source)
    dialect = sniff_dialect(path, profile)
    validate_whole_file(path, profile, dialect)
    frame = pd.concat(list(read_chunks(path, profile, dialect)), ignore_index=True)
    return frame, header_columns(path, dialect), profile


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    s = load_settings()
    s.ensure_dirs()
    return s


@pytest.mark.parametrize("profile", sorted(DIALECTS))
def test_clean_export_of_every_profile_passes_fast_path_and_gx(profile: str,
                                                               settings: Settings) -> None:
    rows_of = DIALECTS[profile][0]
    path = write_export(settings.landing, profile, rows_of(50))
    frame, header, detected = read_export(path)
    assert detected.name == profile
    outcome = validate_raw(frame, header, detected, path.name, settings)
    assert outcome.success, outcome.first_failure_message()
    assert outcome.blocking_failures() == () and outcome.warnings() == ()
    assert outcome.rows == 50 and outcome.gx_rows == 50  # GX saw all rows and agreed
    assert outcome.gx_result and (settings.home / outcome.gx_result).is_file()
    assert enforce(outcome, settings, path) is outcome and path.exists()


def _set(rows: Rows, index: int, column: str, value: str) -> Rows:
    rows[index] = rows[index] | {column: value}
    return rows


# (case, profile, mutation, expected rule, expected raw column, expected line)
CORPUS: list[tuple[str, str, Callable[[Rows], Rows], str, str, int]] = [
    ("missing source id", "van_contacts", lambda r: _set(r, 3, "VanID", ""),
     "source_id_present", "VanID", 5),
    ("duplicate person", "nationbuilder_people", lambda r: _set(r, 7, "nationbuilder_id", "1002"),
     "source_id_unique", "nationbuilder_id", 4),
    ("malformed emails", "nationbuilder_people",
     lambda r: [_set(r, i, "email", f"person{i}.example.org") for i in (10, 11)][-1],
     "email_well_formed", "email", 12),
    ("postcode of no département", "fr_canvass", lambda r: _set(r, 9, "code_postal", "96100"),
     "postcode_valid", "code_postal", 11),
    ("postcode with 4 digits", "donations", lambda r: _set(r, 0, "zip", "1300"),
     "postcode_valid", "zip", 2),
    ("date in the wrong format", "van_contacts",
     lambda r: _set(r, 12, "DateCanvassed", "2 mars 2026"), "date_parses", "DateCanvassed", 14),
    ("impossible birth date", "nationbuilder_people", lambda r: _set(r, 20, "born_at", "02/30/1961"),
     "date_parses", "born_at", 22),
    ("amount that is not a number", "donations", lambda r: _set(r, 5, "amount", "douze euros"),
     "amount_parses", "amount", 7),
    ("amount with a French decimal comma in a dot file", "donations",
     lambda r: _set(r, 6, "amount", "50,00"), "amount_parses", "amount", 8),
    ("negative donation", "donations", lambda r: _set(r, 8, "amount", "-20.00"),
     "amount_non_negative", "amount", 10),
    ("support level 7", "fr_canvass", lambda r: _set(r, 2, "intention", "7"),
     "support_level_1_to_5", "intention", 4),
    ("survey answer without a level", "van_contacts",
     lambda r: _set(r, 0, "SurveyResponseName", "Strong Support"), "support_level_1_to_5",
     "SurveyResponseName", 2),
    ("unknown result code", "van_contacts", lambda r: _set(r, 30, "ResultShortName", "Abducted"),
     "result_in_vocabulary", "ResultShortName", 32),
    ("unknown French result", "fr_canvass", lambda r: _set(r, 4, "résultat", "Parti en vacances"),
     "result_in_vocabulary", "résultat", 6),
]


@pytest.mark.parametrize(("case", "profile", "mutate", "rule", "column", "line"), CORPUS,
                         ids=[c[0] for c in CORPUS])
def test_each_expectation_broken_alone_quarantines_with_one_specific_error(
        case: str, profile: str, mutate: Callable[[Rows], Rows], rule: str, column: str,
        line: int, settings: Settings) -> None:
    path = write_export(settings.landing, profile, mutate(DIALECTS[profile][0](50)))
    frame, header, detected = read_export(path)
    outcome = validate_raw(frame, header, detected, path.name, settings)

    broken = [(r.rule, r.column) for r in outcome.blocking_failures()]
    assert broken == [(rule, column)], f"{case}: expected only {rule} on {column}, got {broken}"
    with pytest.raises(ValidationFailed) as caught:
        enforce(outcome, settings, path)
    err = caught.value
    assert (err.file, err.rule, err.column, err.row) == (path.name, rule, column, line)
    assert str(err).startswith(f"{path.name}, row {line}, column {column!r}: rule {rule!r} broken")
    assert not path.exists()
    quarantined = settings.quarantine / path.name
    assert quarantined.is_file() and err.quarantined == path.name
    report = json.loads((settings.quarantine / f"{path.name}.report.json").read_text("utf-8"))
    assert [r["rule"] for r in report["blocking_failures"]] == [rule]
    assert report["blocking_failures"][0]["first_rows"][0] == line


def test_five_percent_malformed_emails_fail_a_two_percent_threshold(settings: Settings) -> None:
    rows = nb_rows(100)
    for i in range(0, 100, 20):  # rows 0, 20, 40, 60, 80: 5 %
        rows[i] = rows[i] | {"email": f"person{i}@@example"}
    path = write_export(settings.landing, "nationbuilder_people", rows)
    frame, header, profile = read_export(path)

    strict = validate_raw(frame, header, profile, path.name, settings, email_threshold=0.98)
    (failure,) = strict.blocking_failures()
    assert (failure.rule, failure.unexpected_count, failure.element_count) == \
        ("email_well_formed", 5, 100)
    assert failure.unexpected_percent == pytest.approx(5.0)
    assert failure.first_rows == (2, 22, 42, 62, 82)

    lenient = validate_raw(frame, header, profile, path.name, settings, email_threshold=0.95,
                           gx=False)
    assert lenient.success  # 95 % well formed meets a 95 % threshold exactly


def test_warn_only_failures_load_and_are_reported(settings: Settings) -> None:
    rows = _set(van_rows(), 4, "ContactType", "Carrier pigeon")
    rows = _set(rows, 5, "Phone", "call me maybe")
    path = write_export(settings.landing, "van_contacts", rows)
    frame, header, profile = read_export(path)
    outcome = validate_raw(frame, header, profile, path.name, settings)
    assert outcome.success
    assert {(w.rule, w.column) for w in outcome.warnings()} == \
        {("channel_in_vocabulary", "ContactType"), ("phone_plausible", "Phone")}
    assert enforce(outcome, settings, path) is outcome
    assert path.exists()  # warnings never quarantine


def test_rows_and_columns_rules_checked_on_the_frame_and_header(settings: Settings) -> None:
    """The reader rejects header-only files and missing columns first; the suite checks too."""
    frame, header, profile = read_export(write_export(settings.landing, "van_contacts",
                                                      van_rows(3)))
    empty = validate_raw(frame.iloc[0:0], header, profile, "empty.txt", settings, gx=False)
    assert [r.rule for r in empty.blocking_failures()] == ["at_least_one_row"]

    no_zip = [c for c in header if c != "Zip5"]
    outcome = validate_raw(frame, no_zip, profile, "nozip.txt", settings)
    (failure,) = outcome.blocking_failures()
    assert (failure.rule, failure.detail) == ("required_columns", "missing: Zip5")
    assert "postcode_valid" not in {r.rule for r in outcome.results}  # nothing asked of it


def test_postcode_pattern_follows_the_cog() -> None:
    import re

    regex = re.compile(patterns.postcode_pattern())
    valid = ["01000", "20000", "20090", "20200", "75011", "95000", "97100", "97200", "97300",
             "97400", "97600", "'06440", " 69003 "]
    invalid = ["00100", "96100", "97500", "97700", "98000", "99999", "2A004", "7500", "750011",
               "75 011", "F-75011", ""]
    assert [v for v in valid if not regex.search(v)] == []
    assert [v for v in invalid if regex.search(v)] == []


def test_generic_profile_gets_a_suite_from_its_declaration(settings: Settings) -> None:
    """A profile declared in YAML (here: Action Network) gets the same rules by field."""
    action_network = SourceProfile(
        name="action_network", kind="people", namespace="an", delimiter=",",
        fields={"source_id": "uuid", "email": "email", "postcode": "zip_code",
                "created_at": "created_date"},
        required=("uuid", "email"), id_column="uuid", date_format="%Y-%m-%d")
    header = ["uuid", "email", "zip_code", "created_date", "can2_user_tags"]
    suite = raw_suite(action_network, header)
    assert suite.name == "raw.action_network"
    assert [(r.name, r.column) for r in suite.rules] == [
        ("at_least_one_row", None), ("required_columns", None), ("source_id_present", "uuid"),
        ("source_id_unique", "uuid"), ("email_well_formed", "email"),
        ("postcode_valid", "zip_code"), ("date_parses", "created_date")]
    frame = pd.DataFrame({"source_id": ["a1", "a2"], "email": ["x@y.fr", "z@y.fr"],
                          "postcode": ["33000", "33000"], "created_at": ["2026-01-01", "bad"],
                          "row_number": [2, 3]})
    outcome = validate_raw(frame, header, action_network, "an.csv", settings)
    assert [(r.rule, r.column, r.first_rows) for r in outcome.blocking_failures()] == \
        [("date_parses", "created_date", (3,))]


def test_contacts_and_donations_may_repeat_a_source_id() -> None:
    for profile in (VAN_CONTACTS, FR_CANVASS, DONATIONS):
        suite = raw_suite(profile, list(profile.fields.values()))
        assert "source_id_unique" not in {r.name for r in suite.rules}
    suite = raw_suite(NATIONBUILDER_PEOPLE, list(NATIONBUILDER_PEOPLE.fields.values()))
    assert suite.rule("source_id_unique:nationbuilder_id").blocking
