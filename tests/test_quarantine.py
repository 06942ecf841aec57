"""Quarantine and the canary test: a file full of personal data fails several expectations; its
quarantine reports, the GX validation results and the Data Docs must hold none of it.
"""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from expectations.outcome import RuleResult, ValidationOutcome
from expectations.quarantine import quarantine_file, report_paths
from expectations.validate import ValidationFailed, build_data_docs, enforce, validate_raw
from tests.test_expectations_raw import nb_rows, read_export, write_export

CANARY_PEOPLE = [
    # first, last, email, phone, street, note
    ("Zephyrine", "Quatrebarbes", "Zephyrine.Quatrebarbes@Canary-Mail.fr", "06 71 82 93 04",
     "17 rue du Canari Jaune", "canari note Xylophone-Orange"),
    ("Anselme", "Brindacier", "anselme.brindacier@canary-mail.fr", "07 11 22 33 44",
     "3 impasse des Merles Bleus", "canari note Quokka-Violet"),
]
#: The values that break rules: the ones a careless result format would quote.
BAD_VALUES = {"email": "Quatrebarbes-Zephyrine-at-canary-mail", "primary_zip": "Canari69",
              "born_at": "Canari-1961-04-23", "support_level": "Canari-Strong",
              "nationbuilder_id": "CANARYID4242"}


def canary_strings() -> list[str]:
    out = list(BAD_VALUES.values())
    for first, last, email, phone, street, note in CANARY_PEOPLE:
        out += [first, last, email, email.lower(), phone.replace(" ", ""), street, note,
                "Canari SARL", "Canary-Mail"]
    return out


def find_canaries(text: str) -> list[str]:
    folded = "".join(text.lower().split())
    return [c for c in canary_strings() if "".join(c.lower().split()) in folded]


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    s = load_settings()
    s.ensure_dirs()
    return s


def canary_export(folder: Path) -> Path:
    rows = nb_rows(40)
    for i, (first, _last, email, phone, street, note) in enumerate(CANARY_PEOPLE * 10):
        rows[i] = rows[i] | {"first_name": first, "email": email, "phone_number": phone,
                             "mobile_number": phone, "note": f"{note}, {street}, Canari SARL"}
    for i in range(0, 40, 4):  # 10 of 40 rows break five rules with canary values
        rows[i] = rows[i] | BAD_VALUES
    return write_export(folder, "nationbuilder_people", rows, name="canary_people.csv")


def test_canary_file_leaves_no_trace_in_reports_gx_results_or_data_docs(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = canary_export(settings.landing)
    assert find_canaries(path.read_text("utf-8-sig"))  # the test file really holds canaries
    frame, header, profile = read_export(path)

    outcome = validate_raw(frame, header, profile, path.name, settings)
    broken = {r.rule for r in outcome.blocking_failures()}
    assert broken == {"source_id_unique", "email_well_formed", "postcode_valid", "date_parses",
                      "support_level_1_to_5"}
    with pytest.raises(ValidationFailed) as caught:
        enforce(outcome, settings, path)
    build_data_docs(settings)

    quarantined = settings.quarantine / path.name
    json_report, html_report = report_paths(quarantined)
    gx_results = list((settings.gx_home / "validations").rglob("*.json"))
    docs = list((settings.reports / "data_docs").rglob("*.html"))
    assert quarantined.is_file() and json_report.is_file() and html_report.is_file()
    assert len(gx_results) == 1 and len(docs) >= 3  # index, suite page, validation page
    stored = json.loads(gx_results[0].read_text("utf-8"))
    assert {r["expectation_config"]["meta"]["isoloir_rule"].split(":")[0]
            for r in stored["results"] if not r["success"]} == broken
    assert "pandas_data_fingerprint" not in json.dumps(stored)  # no unkeyed hash of the data

    leaks = {}
    for file in settings.home.rglob("*"):
        if file.is_file() and file != quarantined:
            found = find_canaries(file.read_bytes().decode("utf-8", "replace"))
            if found:
                leaks[str(file.relative_to(settings.home))] = found
    assert leaks == {}
    assert find_canaries(str(caught.value)) == []
    assert find_canaries(caplog.text) == []


def test_quarantine_moves_the_file_and_writes_value_free_reports(settings: Settings) -> None:
    path = settings.landing / "export.csv"
    path.write_text("secret,content\n", encoding="utf-8")
    outcome = ValidationOutcome(
        suite="raw.van_contacts", file_name="export.csv", success=False, rows=200,
        results=(RuleResult("postcode_valid", "Zip5", True, False, 3, 200, 1.5, (4, 9, 12)),
                 RuleResult("phone_plausible", "Phone", False, False, 1, 150, 0.6667, (7,)),
                 RuleResult("at_least_one_row", None, True, True, 0, 1, 0.0)))
    target = quarantine_file(path, outcome, settings)

    assert target == settings.quarantine / "export.csv" and not path.exists()
    assert target.read_text("utf-8") == "secret,content\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.quarantine.stat().st_mode) == 0o700
    json_report, html_report = report_paths(target)
    report = json.loads(json_report.read_text("utf-8"))
    assert report["message"] == ("export.csv: postcode_valid on 'Zip5': 3 of 200 failing "
                                 "(1.50 %); first rows 4, 9, 12")
    assert [r["rule"] for r in report["blocking_failures"]] == ["postcode_valid"]
    assert [r["rule"] for r in report["warnings"]] == ["phone_plausible"]
    assert report["blocking_failures"][0]["first_rows"] == [4, 9, 12]
    html = html_report.read_text("utf-8")
    assert "postcode_valid" in html and "Zip5" in html and "4, 9, 12" in html
    assert "secret" not in json_report.read_text("utf-8") + html

    again = settings.landing / "export.csv"
    again.write_text("second,drop\n", encoding="utf-8")
    second = quarantine_file(again, outcome, settings)
    assert second.name == "export.1.csv" and target.read_text("utf-8") == "secret,content\n"
    assert report_paths(second)[0].is_file()


def test_report_html_escapes_names(settings: Settings) -> None:
    path = settings.landing / "<b>x&y.csv"
    path.write_text("a\n", encoding="utf-8")
    outcome = ValidationOutcome(
        suite="raw.x", file_name=path.name, success=False,
        results=(RuleResult("required_columns", None, True, False, 1, 2, 50.0, (),
                            "missing: <script>"),))
    html = report_paths(quarantine_file(path, outcome, settings))[1].read_text("utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>x" not in html
    assert "&lt;b&gt;x&amp;y.csv" in html


def test_validation_failed_names_file_rule_column_and_row_only() -> None:
    outcome = ValidationOutcome(
        suite="raw.donations", file_name="dons.csv", success=False,
        results=(RuleResult("amount_non_negative", "amount", True, False, 2, 10, 20.0, (5, 8)),
                 RuleResult("date_parses", "date", True, False, 1, 10, 10.0, (3,))))
    err = ValidationFailed.from_outcome(outcome, quarantined="dons.csv")
    assert (err.file, err.rule, err.column, err.row, err.exit_code) == \
        ("dons.csv", "amount_non_negative", "amount", 5, 2)
    assert str(err) == ("dons.csv, row 5, column 'amount': rule 'amount_non_negative' broken: "
                        "2 of 10 failing (20.00 %); 1 more blocking rule broken; file "
                        "quarantined as dons.csv")
    with pytest.raises(ValueError):
        ValidationFailed.from_outcome(ValidationOutcome("s", "f", True, ()))
