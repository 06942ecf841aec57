"""Cadence in one budget: weekly queries charged once a week over daily runs, the forecast of
the cap's end, and `isoloir budget recompute-cap` (a cap change recorded in the ledger)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from cli.main import app
from core.settings import Settings, load_settings
from privacy.accountant import (
    Accountant,
    BudgetCap,
    CapMismatch,
    ChargeRequest,
    PeriodAlreadyReleased,
    RunRequest,
)
from privacy.audit import verify, verify_settings
from privacy.cadence import forecast, forecast_exhaustion, period_of, stamp_period
from privacy.conversion import loose_rho, tight_rho
from privacy.ledger import CAP_CHANGE_MECHANISM, read_entries, release_id
from privacy.plan import Plan, canonical_query, parse_plan
from privacy.release import run_release
from privacy.signing import SigningKey, create_signing_key, load_signing_key
from tests.test_release import FakeEngine
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import privacy_budgets

runner = CliRunner()
MONDAY = date(2026, 3, 2)  # ISO week 2026-W10


def cadence_plan(cap: dict[str, object] | None = None) -> Plan:
    """A daily query (1/4 of per_run) and a weekly one (7/4: 1/4 a day): ρ 1/20 a day."""
    return parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person", "cap": cap or {"rho": "1"},
        "per_run": {"rho": "1/10"}, "cadence": "daily runs", "period": ["2026-01-01",
                                                                         "2026-06-30"],
        "releases": [
            {"name": "contacts_by_channel", "title": "Contacts by channel",
             "title_fr": "Contacts par canal", "measure": "count", "table": "contacts",
             "group_by": ["channel"], "bounds": {"max_groups": 2, "max_rows_per_group": 3},
             "share": "1/4"},
            {"name": "donations_total", "title": "Donations", "title_fr": "Dons",
             "measure": "sum", "table": "donations", "value": "amount_cents",
             "bounds": {"max_groups": 1, "max_rows_per_group": 2}, "share": "7/4",
             "cadence": "weekly"},
        ]})


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    settings = load_settings()
    create_signing_key(settings.signing_key_file)
    return settings


def test_periods_of_each_cadence() -> None:
    assert period_of("daily", MONDAY) == "2026-03-02"
    assert {period_of("weekly", MONDAY + timedelta(days=d)) for d in range(7)} == {"2026-W10"}
    assert period_of("weekly", MONDAY + timedelta(days=7)) == "2026-W11"
    assert period_of("weekly", date(2027, 1, 1)) == "2026-W53"  # ISO year, not calendar year
    assert period_of("monthly", date(2026, 2, 28)) == "2026-02"
    with pytest.raises(ValueError, match="unknown cadence"):
        period_of("hourly", MONDAY)


def test_daily_runs_over_eight_days_charge_the_weekly_query_once_a_week(
        settings: Settings) -> None:
    """Two DAG runs a day (the schedule and an ingest) over 8 days from a Monday: the daily
    query is charged once a day, the weekly one once in week 10 and once in week 11."""
    plan, dp = cadence_plan(), FakeEngine()
    for offset in range(8):
        day = MONDAY + timedelta(days=offset)
        moment = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
        first = run_release(settings, plan, f"scheduled__{day}", logical_date=moment,
                            dp_engine=dp, only_due=True)
        expected = {"contacts_by_channel"} | ({"donations_total"} if offset in (0, 7) else set())
        assert {r.query for r in first.releases if r.status == "charged"} == expected
        if offset not in (0, 7):
            assert first.skipped == {"donations_total": period_of("weekly", day)}
        again = run_release(settings, plan, f"asset_triggered__{day}",
                            logical_date=moment + timedelta(hours=3), dp_engine=dp,
                            only_due=True)
        assert again.releases == () and again.charged_rho == "0/1"
        assert set(again.skipped) == {"contacts_by_channel", "donations_total"}
    with make_engine(settings.warehouse_url).connect() as conn:
        entries = read_entries(conn)
    periods = [(e.query_name, json.loads(e.query)["period"]) for e in entries]
    weekly = [p for name, p in periods if name == "donations_total"]
    assert weekly == ["2026-W10", "2026-W11"]  # one weekly charge per ISO week
    assert len([p for name, p in periods if name == "contacts_by_channel"]) == 8
    # 8 daily charges of 1/40 and 2 weekly charges of 7/40.
    assert sum((e.cost for e in entries), Fraction(0)) == Fraction(8, 40) + Fraction(14, 40)
    assert verify_settings(settings).ok
    # The same run id again replays (nothing charged), even though nothing is due.
    replay = run_release(settings, plan, f"scheduled__{MONDAY}",
                         logical_date=datetime(2026, 3, 2, 6, tzinfo=UTC), dp_engine=dp,
                         only_due=True)
    assert {r.status for r in replay.releases} == {"replayed"} and len(replay.releases) == 2


def test_a_weekly_period_already_charged_by_another_run_is_refused_in_the_transaction(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    ensure_schema(engine)
    key = load_signing_key(create_signing_key(tmp_path / "k" / "ledger.key").path)
    acc = Accountant(engine, key)
    acc.open_budget("campaign", BudgetCap(Fraction(1)))
    weekly = cadence_plan().releases[1]

    def charge(run: str) -> RunRequest:
        return RunRequest("campaign", run, (ChargeRequest(
            "campaign", release_id("campaign", run, weekly.name, "ab" * 32, attempt=0),
            "ab" * 32, stamp_period(canonical_query(weekly), "2026-W10"), "gaussian (zCDP)",
            Fraction(7, 40), "cd" * 32),))

    acc.admit_run(charge("run-a"), only_due=True)
    with pytest.raises(PeriodAlreadyReleased, match=r"donations_total \(2026-W10\)"):
        acc.admit_run(charge("run-b"), only_due=True)
    assert acc.budget("campaign").spent == Fraction(7, 40)  # type: ignore[union-attr]


def test_forecast_with_a_fixed_cadence_and_cap_gives_the_exhaustion_date() -> None:
    plan = cadence_plan()  # ρ 1/20 a day at its cadences, cap ρ = 1
    fresh = forecast(plan, Fraction(1), MONDAY)
    assert (fresh.per_day_rho, fresh.days_left, fresh.exhausted_on) == ("1/20", 20, "2026-03-22")
    assert fresh.cadences == {"daily": ["contacts_by_channel"], "weekly": ["donations_total"]}
    # After the 8 days above (ρ 22/40 spent), 9 days are left from the ninth day.
    later = forecast(plan, Fraction(1) - Fraction(22, 40), MONDAY + timedelta(days=8))
    assert (later.days_left, later.exhausted_on) == (9, "2026-03-19")
    assert forecast_exhaustion(Fraction(1, 21), Fraction(1, 20), MONDAY) == MONDAY
    assert forecast_exhaustion(Fraction(1), Fraction(0), MONDAY) is None


def test_budget_json_shows_the_forecast_and_the_conversion(settings: Settings,
                                                           tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(json.dumps({
        **json.loads(json.dumps(cadence_plan().model_dump(mode="json"))),
        "cap": {"epsilon": "8", "delta": "1e-7"}, "per_run": {"rho": "1/10"}}),
        encoding="utf-8")
    plan = cadence_plan({"epsilon": "8", "delta": "1e-7"})
    run_release(settings, plan, "r1", logical_date=datetime(2026, 3, 2, tzinfo=UTC),
                dp_engine=FakeEngine(), only_due=True)
    shown = runner.invoke(app, ["budget", "--json", "--plan", str(plan_path)])
    assert shown.exit_code == 0, shown.output
    (dataset,) = json.loads(shown.stdout)["datasets"]
    assert dataset["conversion"]["code"] == "cks-2020"
    assert dataset["cap"] == "919228804127/1000000000000"
    fc = dataset["forecast"]
    remaining = tight_rho(Decimal(8), Decimal("1e-7")) - Fraction(8, 40)
    assert fc["per_day_rho"] == "1/20" and fc["days_left"] == int(remaining // Fraction(1, 20))
    assert date.fromisoformat(fc["exhausted_on"]) == date.fromisoformat(fc["as_of"]) + timedelta(
        days=fc["days_left"])
    text = runner.invoke(app, ["budget", "--plan", str(plan_path)])
    assert "runs out on" in text.output and "Canonne" in text.output


def test_an_existing_loose_cap_is_kept_until_recompute_cap_records_the_change(
        settings: Settings) -> None:
    eps, delta = Decimal(8), Decimal("1e-7")
    engine: Engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    key: SigningKey = load_signing_key(settings.signing_key_file)
    acc = Accountant(engine, key)
    # A dataset opened before the tight conversion: its recorded cap is the loose ρ.
    acc.open_budget("campaign", BudgetCap(loose_rho(eps, delta), eps, delta))
    plan = cadence_plan({"epsilon": "8", "delta": "1e-7"})
    run_release(settings, plan, "r1", logical_date=datetime(2026, 3, 2, tzinfo=UTC),
                dp_engine=FakeEngine())
    assert acc.budget("campaign").cap.rho == loose_rho(eps, delta)  # type: ignore[union-attr]
    # Another declared cap is still refused.
    with pytest.raises(CapMismatch):
        acc.open_budget("campaign", BudgetCap(tight_rho(Decimal(9), delta), Decimal(9), delta))

    done = runner.invoke(app, ["budget", "recompute-cap", "--dataset", "campaign", "--json"])
    assert done.exit_code == 0, done.output
    (change,) = json.loads(done.stdout)["changes"]
    assert change["changed"] and change["from_conversion"] == "bun-steinke-2016"
    assert change["to_conversion"] == "cks-2020"
    assert change["to_rho"] == "919228804127/1000000000000"
    with engine.connect() as conn:
        entries = read_entries(conn)
    last = entries[-1]
    assert (last.seq, last.mechanism, last.cost) == (change["ledger_seq"], CAP_CHANGE_MECHANISM,
                                                     0)
    assert json.loads(last.query)["from_rho"] == "803323152561/1000000000000"
    assert acc.budget("campaign").cap.rho == tight_rho(eps, delta)  # type: ignore[union-attr]
    assert verify_settings(settings).ok
    # Run again: nothing changes, nothing is written.
    again = runner.invoke(app, ["budget", "recompute-cap", "--json"])
    assert json.loads(again.stdout)["changes"][0]["changed"] is False
    with engine.connect() as conn:
        assert len(read_entries(conn)) == len(entries)
    # The cap edited back in the database, without a recorded change, is named by the audit.
    with engine.begin() as conn:
        conn.execute(update(privacy_budgets).values(cap_rho="803323152561/1000000000000"))
    report = verify(engine, key.verify_key, settings.published)
    assert not report.ok
    assert any("last recorded cap change" in p.detail for p in report.problems)


def test_recompute_cap_refuses_a_cap_declared_in_rho(settings: Settings) -> None:
    run_release(settings, cadence_plan(), "r1", logical_date=datetime(2026, 3, 2, tzinfo=UTC),
                dp_engine=FakeEngine())
    refused = runner.invoke(app, ["budget", "recompute-cap", "--dataset", "campaign"])
    assert refused.exit_code == 2 and "declared its cap in ρ" in refused.output
    unknown = runner.invoke(app, ["budget", "recompute-cap", "--dataset", "nope"])
    assert unknown.exit_code == 2 and "no dataset 'nope'" in unknown.output
