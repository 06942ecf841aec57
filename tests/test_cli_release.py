"""`isoloir release`, `isoloir budget`, `isoloir audit verify` through the real Typer app."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update
from typer.testing import CliRunner

from cli.main import app
from core.settings import load_settings
from privacy.signing import create_signing_key
from tests.test_release import FakeEngine
from warehouse.db import make_engine
from warehouse.schema import ledger_entries

runner = CliRunner()

PLAN = {
    "dataset_id": "campaign", "privacy_unit": "person", "cap": {"epsilon": 1, "delta": 1e-7},
    "per_run": {"rho": "1/100"}, "cadence": "daily", "period": ["2026-01-01", "2026-06-30"],
    "releases": [
        {"name": "contacts_by_channel", "title": "Contacts by channel",
         "title_fr": "Contacts par canal", "measure": "count", "table": "contacts",
         "group_by": ["channel"], "bounds": {"max_groups": 2, "max_rows_per_group": 3},
         "share": "1/2"},
        {"name": "contacts_total", "title": "Contacts", "title_fr": "Contacts",
         "measure": "count", "table": "contacts",
         "bounds": {"max_groups": 1, "max_rows_per_group": 3}, "share": "1/2"},
    ]}


@pytest.fixture
def plan_file(isoloir_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    create_signing_key(load_settings().signing_key_file)
    monkeypatch.setattr("privacy.release.OpenDPEngine", FakeEngine)
    path = isoloir_home / "plan.yaml"
    path.write_text(yaml.safe_dump(PLAN), encoding="utf-8")
    return path


def test_release_then_budget_then_audit(plan_file: Path) -> None:
    result = runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "run-1"])
    assert result.exit_code == 0, result.output
    assert "contacts_by_channel" in result.output and "charged" in result.output
    assert "remaining ρ=" in result.output

    again = runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "run-1",
                                "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["ok"] and (summary["charged"], summary["replayed"]) == (0, 2)
    assert summary["spent_rho"] == "1/100"

    budget = runner.invoke(app, ["budget", "--json"])
    assert budget.exit_code == 0, budget.output
    (dataset,) = json.loads(budget.stdout)["datasets"]
    cap = Fraction(dataset["cap"])
    assert dataset["spent"] == "1/100" and Fraction(dataset["remaining"]) == cap - Fraction(1, 100)
    assert dataset["releases"] == 2 and dataset["declared_cap"] == {"epsilon": "1",
                                                                     "delta": "1E-7"}
    assert dataset["decimal"]["spent"] == "0.01"
    assert float(dataset["epsilon"]["cap"]) <= 1.0  # the ρ cap implies the declared ε
    shown = runner.invoke(app, ["budget"])
    assert shown.exit_code == 0 and "campaign" in shown.output

    audit = runner.invoke(app, ["audit", "verify", "--json"])
    assert audit.exit_code == 0, audit.output
    report = json.loads(audit.stdout)
    assert report["ok"] and report["entries"] == 2 and report["files_checked"] == 6
    plain = runner.invoke(app, ["audit", "verify"])
    assert plain.exit_code == 0 and "ledger verified" in plain.output


def test_default_run_id_is_today(plan_file: Path) -> None:
    result = runner.invoke(app, ["release", "--plan", str(plan_file), "--json"])
    assert result.exit_code == 0, result.output
    today = datetime.now(UTC).date().isoformat()
    summary = json.loads(result.stdout)
    assert summary["run_id"] == f"cli-{today}" and summary["logical_date"].startswith(today)


def test_budget_exhausted_exits_3_saying_asked_and_remaining(plan_file: Path) -> None:
    tight = dict(PLAN, cap={"rho": "3/200"})
    plan_file.write_text(yaml.safe_dump(tight), encoding="utf-8")
    assert runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "a"]).exit_code \
        == 0
    result = runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "b"])
    assert result.exit_code == 3
    shown = " ".join(result.output.split())  # rich wraps long lines
    assert "budget exhausted: asked ρ=1/100 (0.01) for run 'b' (2 queries)" in shown
    assert "remaining ρ=1/200" in shown and "nothing was charged and nothing published" in shown
    as_json = runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "b",
                                  "--json"])
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)["exit_code"] == 3


def test_bad_input_exits_2(plan_file: Path) -> None:
    missing = runner.invoke(app, ["release", "--plan", str(plan_file.with_name("nope.yaml"))])
    assert missing.exit_code == 2
    broken = dict(PLAN, releases=[dict(PLAN["releases"][0], bounds={"max_groups": 0,  # type: ignore[arg-type]
                                                                      "max_rows_per_group": 1})])
    plan_file.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = runner.invoke(app, ["release", "--plan", str(plan_file)])
    assert result.exit_code == 2 and "releases[0].bounds" in result.output
    sep = runner.invoke(app, ["release", "--plan", str(plan_file), "--csv-sep", "|"])
    assert sep.exit_code == 2


def test_audit_verify_exits_4_naming_the_entry(plan_file: Path) -> None:
    assert runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "r"]).exit_code \
        == 0
    with make_engine(load_settings().warehouse_url).begin() as conn:
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == 2)
                     .values(cost_rho="1/1000"))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 4
    assert "first broken: entry seq 2" in result.output
    as_json = runner.invoke(app, ["audit", "verify", "--json"])
    assert as_json.exit_code == 4
    assert json.loads(as_json.stdout)["first_broken"]["seq"] == 2


def test_audit_verify_without_public_key_exits_4(isoloir_home: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", "--json"])
    assert result.exit_code == 4
    assert "public signing key" in json.loads(result.stdout)["message"]
