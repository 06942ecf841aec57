"""Task bodies called directly, without Airflow: they pass only small, PII-free metadata."""

from __future__ import annotations

import json
from pathlib import Path

from core.settings import load_settings
from pipeline import tasks
from tests.helpers import exports


def test_a_good_file_goes_all_the_way_and_only_metadata_travels(isoloir_home: Path) -> None:
    settings = tasks.task_settings()
    exports.van_contacts(settings.landing / "van_contact_history.txt")
    (settings.landing / ".partial.csv").write_text("x")
    [path] = tasks.list_landing_files(settings)
    checked = tasks.validate_raw_file(path, settings)
    assert checked["status"] == "valid" and checked["source"] == "van_contacts"
    prepared = tasks.pseudonymize_file(checked, settings)
    staged = tasks.validate_staged_file(prepared, settings)
    loaded = tasks.load_file(staged, settings)
    removed = tasks.remove_raw_file(loaded, settings)
    assert removed["status"] == "loaded" and removed["raw"] == "deleted"
    assert not Path(path).exists()
    summary = tasks.summarize_ingest([removed])
    assert summary["files_loaded"] == 1 and summary["rows_loaded"] == loaded["rows_loaded"]
    xcom = json.dumps([checked, prepared, staged, loaded, removed, summary])
    assert exports.find_canaries(xcom) == []
    # a second pass over the same file is a no-op
    again = tasks.validate_raw_file(str(exports.van_contacts(settings.landing / "again.txt")),
                                    settings)
    assert again["status"] == "already_loaded"


def test_unparseable_and_failing_files_are_quarantined_never_overwritten(isoloir_home: Path) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    statuses = []
    for _ in range(2):
        bad = settings.landing / "donations.csv"
        bad.write_text("donor_id,amount,date,method\n1,-5.00,2026-01-02,card\n", encoding="utf-8")
        statuses.append(tasks.validate_raw_file(str(bad), settings))
    assert [s["status"] for s in statuses] == ["quarantined", "quarantined"]
    assert "amount" in statuses[0]["rule"] and "-5" not in statuses[0]["rule"]
    empty = settings.landing / "people.csv"
    empty.write_bytes(b"")
    result = tasks.validate_raw_file(str(empty), settings)
    assert result["status"] == "quarantined" and "empty_file" in result["rule"]
    names = sorted(p.name for p in settings.quarantine.iterdir())
    assert "donations.csv" in names and "donations.1.csv" in names
    assert "people.csv.report.json" in names
    report = json.loads((settings.quarantine / "people.csv.report.json").read_text())
    assert report["results"][0]["rule"] == "empty_file"


def test_an_empty_landing_run_summarizes_to_nothing() -> None:
    assert tasks.summarize_ingest(None)["files_loaded"] == 0
    assert tasks.summarize_ingest([None, {"status": "loaded", "rows_loaded": 3}])["rows_loaded"] == 3  # type: ignore[list-item]


def test_summary_counts_quarantined_files_by_name_only() -> None:
    checked = [[{"file": "a.csv", "status": "valid"}, {"file": "b.xlsx", "status": "quarantined",
                                                        "rule": "b.xlsx: rule 'x' broken"},
                {"file": "c.csv", "status": "valid"}],
               {"file_name": "c.csv", "status": "quarantined"}]
    summary = tasks.summarize_ingest([{"status": "loaded", "rows_loaded": 2}], checked=checked)
    assert summary["files_total"] == 3 and summary["files_quarantined"] == 2
    assert summary["quarantined"] == ["b.xlsx", "c.csv"]
    assert summary["quarantine_message"] == "2 of 3 files quarantined: see quarantine/"
    assert "quarantine_message" not in tasks.summarize_ingest([], checked=[None])
