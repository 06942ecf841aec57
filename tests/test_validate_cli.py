"""`isoloir validate FILE`: a readable summary, exit 2 on a blocking failure, --json, no values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.test_expectations_raw import donation_rows, van_rows, write_export

runner = CliRunner()


@pytest.fixture
def landing(isoloir_home: Path) -> Path:
    folder = isoloir_home / "landing"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_clean_file_passes_with_a_summary_and_data_docs(landing: Path,
                                                        isoloir_home: Path) -> None:
    path = write_export(landing, "van_contacts", van_rows(20))
    result = runner.invoke(app, ["validate", str(path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "suite raw.van_contacts (van_contacts), 20 rows" in result.output
    for rule in ("required_columns", "email_well_formed", "postcode_valid", "date_parses",
                 "result_in_vocabulary"):
        assert rule in result.output
    assert "PASS" in result.output and "Data Docs: reports/data_docs/index.html" in result.output
    assert (isoloir_home / "reports" / "data_docs" / "index.html").is_file()
    assert path.exists()  # a check never moves the file


def test_blocking_failure_exits_2_naming_rule_column_and_rows(landing: Path) -> None:
    rows = donation_rows(10)
    rows[3] = rows[3] | {"amount": "-45.00"}
    rows[6] = rows[6] | {"amount": "-1.00"}
    path = write_export(landing, "donations", rows)
    result = runner.invoke(app, ["validate", str(path), "--no-gx"], env={"COLUMNS": "160"})
    assert result.exit_code == 2
    assert ("FAIL: donations.csv: amount_non_negative on 'amount': 2 of 10 failing (20.00 %); "
            "first rows 5, 8") in result.output
    assert "-45.00" not in result.output and "-1.00" not in result.output
    assert path.exists()


def test_json_output(landing: Path) -> None:
    rows = van_rows(10)
    rows[2] = rows[2] | {"ContactType": "Carrier pigeon"}  # warn-only
    path = write_export(landing, "van_contacts", rows)
    result = runner.invoke(app, ["validate", str(path), "--source", "van_contacts", "--json",
                                 "--no-gx"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["profile"] == "van_contacts"
    assert (payload["blocking_failures"], payload["warnings"], payload["gx_result"]) == (0, 2, None)
    warned = [r for r in payload["results"] if not r["success"]]
    # every DateCanvassed is like 03/02/2026: no value decides the order, mm/dd is assumed
    assert [(r["rule"], r["column"], r["first_rows"]) for r in warned] == \
        [("channel_in_vocabulary", "ContactType", [4]), ("date_order_assumed", "DateCanvassed", [])]
    assert "mm/dd assumed" in warned[1]["detail"]
    assert payload["dialect"] == {"encoding": "utf-8", "delimiter": "tab", "decimal": ".",
                                  "bom": False, "line_ending": "LF"}
    assert payload["reading"]["date_orders"] == {"DateCanvassed": {"order": "mm/dd",
                                                                   "assumed": True}}
    assert "pigeon" not in result.stdout


def test_email_threshold_option(landing: Path) -> None:
    rows = van_rows(20)
    rows[0] = rows[0] | {"Email": "nobody-at-example"}  # 1 of 20 malformed: 95 % well formed
    path = write_export(landing, "van_contacts", rows)
    strict = runner.invoke(app, ["validate", str(path), "--no-gx", "--json"])
    lenient = runner.invoke(app, ["validate", str(path), "--no-gx", "--json",
                                  "--email-threshold", "0.9"])
    assert (strict.exit_code, lenient.exit_code) == (2, 0)


def test_structurally_broken_file_exits_2_with_the_reader_rule(landing: Path) -> None:
    path = landing / "van_contact_history.txt"
    path.write_text("VanID\tDateCanvassed\tContactType\tResultShortName\n1\t03/02/2026\tWalk\t"
                    "Canvassed\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path), "--source", "van_contacts", "--json"])
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and "missing_column" in payload["message"]
    assert "Zip5" in payload["message"]
