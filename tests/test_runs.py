"""Runs are admitted whole: the accountant, the audit's admission check, the schema migration,
`run_release` with a subset of queries, and `isoloir release --query` / `isoloir budget`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from cli.main import app
from core.settings import Settings, load_settings
from privacy.accountant import (
    Accountant,
    BudgetCap,
    ChargeRequest,
    InsufficientBudget,
    RunRequest,
)
from privacy.audit import verify, verify_settings
from privacy.ledger import read_entries, release_id, runs_of
from privacy.release import RunSelectionError, run_release
from privacy.signing import SigningKey, create_signing_key, load_signing_key
from tests.helpers.schema_v1 import downgrade_to_v1
from tests.test_cli_release import PLAN
from tests.test_release import LOGICAL, FakeEngine, make_plan, published_bytes, spent
from warehouse.db import ensure_schema, make_engine, schema_version
from warehouse.schema import SCHEMA_VERSION, ledger_entries, privacy_budgets

DATASET = "campaign"
PLAN_HASH = "ab" * 32
FIXED = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    return engine


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return load_signing_key(create_signing_key(tmp_path / "keys" / "ledger.key").path)


def charges(run: str, n: int, cost: Fraction) -> tuple[ChargeRequest, ...]:
    return tuple(ChargeRequest(DATASET, release_id(DATASET, run, f"q{i}", PLAN_HASH, attempt=0),
                               PLAN_HASH, f'{{"name":"q{i}"}}', "gaussian (zCDP)", cost,
                               "cd" * 32) for i in range(1, n + 1))


def test_a_run_is_admitted_in_one_block_of_chained_entries(engine: Engine,
                                                            key: SigningKey) -> None:
    acc = Accountant(engine, key, clock=lambda: FIXED)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    single = acc.charge(charges("solo", 1, Fraction(1, 10))[0]).entry
    admission = acc.admit_run(RunRequest(DATASET, "run-1", charges("run-1", 3, Fraction(1, 10))))
    assert admission.fresh and [e.seq for e in admission.entries] == [2, 3, 4]
    assert [(e.run_id, e.run_part, e.run_size) for e in admission.entries] == \
        [("run-1", 1, 3), ("run-1", 2, 3), ("run-1", 3, 3)]
    assert admission.entries[0].prev_hash == single.entry_hash
    assert (single.run_id, single.run_part, single.run_size) == (None, None, None)
    assert "run_id" not in single.hashed_fields()  # an entry outside a run hashes as before
    assert acc.budget(DATASET).spent == Fraction(2, 5)  # type: ignore[union-attr]
    (run,) = runs_of([single, *admission.entries])
    assert (run.run_id, run.queries, run.cost, run.admissions) == \
        ("run-1", ("q1", "q2", "q3"), Fraction(3, 10), 1)
    assert verify(engine, key.verify_key, Path("/nonexistent")).ok


def test_a_run_that_does_not_fit_charges_nothing_at_the_exact_boundary(
        engine: Engine, key: SigningKey) -> None:
    acc = Accountant(engine, key, clock=lambda: FIXED)
    acc.open_budget(DATASET, BudgetCap(Fraction(3, 10)))
    acc.charge(charges("solo", 1, Fraction(1, 10))[0])
    # Two queries of 1/10 each fit exactly; one more 1/10**12 does not, and nothing is charged.
    too_much = charges("big", 2, Fraction(1, 10)) + (ChargeRequest(
        DATASET, "r-" + "0" * 24, PLAN_HASH, '{"name":"q9"}', "gaussian (zCDP)",
        Fraction(1, 10**12), "cd" * 32),)
    with pytest.raises(InsufficientBudget) as err:
        acc.admit_run(RunRequest(DATASET, "big", too_much))
    assert err.value.exit_code == 3 and err.value.run_id == "big" and err.value.queries == 3
    assert str(err.value).startswith("budget exhausted: asked ρ=200000000001/1000000000000")
    assert "for run 'big' (3 queries)" in str(err.value)
    assert "remaining ρ=1/5" in str(err.value) and "nothing was charged" in str(err.value)
    with engine.connect() as conn:
        assert len(conn.execute(select(ledger_entries)).all()) == 1
        assert conn.execute(select(privacy_budgets.c.spent_rho)).scalar_one() == "1/10"
    fits = acc.admit_run(RunRequest(DATASET, "fits", charges("fits", 2, Fraction(1, 10))))
    assert fits.fresh and acc.budget(DATASET).remaining == 0  # type: ignore[union-attr]


def test_an_admission_meeting_a_charged_release_id_charges_nothing(engine: Engine,
                                                                   key: SigningKey) -> None:
    acc = Accountant(engine, key, clock=lambda: FIXED)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    first = acc.admit_run(RunRequest(DATASET, "run-1", charges("run-1", 2, Fraction(1, 10))))
    again = acc.admit_run(RunRequest(DATASET, "run-1", charges("run-1", 3, Fraction(1, 10))))
    assert not again.fresh and again.entries == first.entries
    assert acc.budget(DATASET).spent == Fraction(1, 5)  # type: ignore[union-attr]


def test_an_admission_cut_short_by_a_key_holder_is_named_by_the_audit(
        engine: Engine, key: SigningKey) -> None:
    """The chain and signatures hold (the writer had the key), yet the run was not whole."""
    acc = Accountant(engine, key, clock=lambda: FIXED)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    request = charges("run-1", 3, Fraction(1, 10))[0]
    entry = acc._signed_entry(request, 1, "0" * 64, "2025-03-01T06:00:00.000000Z",
                              run_id="run-1", run_part=1, run_size=3)
    with engine.begin() as conn:
        conn.execute(insert(ledger_entries).values(**entry.row()))
        conn.execute(update(privacy_budgets).values(spent_rho="1/10"))
    report = verify(engine, key.verify_key, Path("/nonexistent"))
    assert [(p.kind, p.seq) for p in report.problems] == [("run", 1)]
    assert "admission of run 'run-1' stops at part 1 of 3" in report.summary()
    # A second admission appended after it is whole and verifies; the cut one stays named.
    acc.admit_run(RunRequest(DATASET, "run-2", charges("run-2", 2, Fraction(1, 10))))
    report = verify(engine, key.verify_key, Path("/nonexistent"))
    assert [(p.kind, p.seq) for p in report.problems] == [("run", 1)]


def test_a_version_1_warehouse_is_migrated_and_its_old_entries_still_verify(
        engine: Engine, key: SigningKey) -> None:
    acc = Accountant(engine, key, clock=lambda: FIXED)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    acc.charge(charges("old", 1, Fraction(1, 10))[0])
    downgrade_to_v1(engine)  # back to what version 1 created
    assert schema_version(engine) == 1
    assert ensure_schema(engine) == SCHEMA_VERSION == schema_version(engine) == 3
    acc.admit_run(RunRequest(DATASET, "new", charges("new", 2, Fraction(1, 10))))
    report = verify(engine, key.verify_key, Path("/nonexistent"))
    assert report.ok and report.entries == 3, report.problems


# --------------------------------------------------------------------------- run_release

@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    settings = load_settings()
    create_signing_key(settings.signing_key_file)
    return settings


def test_a_run_beyond_what_is_left_publishes_nothing(settings: Settings) -> None:
    """The issue's case: a cap that fits 1.5 runs. The second run is refused whole."""
    dp = FakeEngine()
    run_release(settings, make_plan(cap_rho="3/20"), "run-1", logical_date=LOGICAL,
                dp_engine=dp)
    before = published_bytes(settings)
    with pytest.raises(InsufficientBudget, match=r"asked ρ=1/10 .*for run 'run-2' \(2 queries\)"
                       r".*remaining ρ=1/20"):
        run_release(settings, make_plan(cap_rho="3/20"), "run-2", logical_date=LOGICAL,
                    dp_engine=dp)
    assert spent(settings) == (Fraction(1, 10), 2) and published_bytes(settings) == before
    # Half of the plan still fits: as its own run, it is admitted.
    half = run_release(settings, make_plan(cap_rho="3/20"), "run-2-channels",
                       logical_date=LOGICAL, dp_engine=dp, queries=["contacts_by_channel"])
    assert [r.query for r in half.releases] == ["contacts_by_channel"]
    assert half.queries == ("contacts_by_channel",) and half.charged_rho == "1/40"
    assert verify_settings(settings).ok


def test_a_subset_run_and_an_unknown_query(settings: Settings) -> None:
    dp = FakeEngine()
    with pytest.raises(RunSelectionError, match="no query 'nope'.*contacts_by_channel") as err:
        run_release(settings, make_plan(), "r", logical_date=LOGICAL, dp_engine=dp,
                    queries=["nope", "contacts_by_channel"])
    assert err.value.exit_code == 2 and dp.snapshots == 0
    subset = run_release(settings, make_plan(), "r", logical_date=LOGICAL, dp_engine=dp,
                         queries=["donations_total"])
    assert dp.queries == ["donations_total"] and subset.charged_rho == "3/40"
    # The full plan under the same run id replays the subset and admits the rest.
    full = run_release(settings, make_plan(), "r", logical_date=LOGICAL, dp_engine=dp)
    assert {r.query: r.status for r in full.releases} == {"contacts_by_channel": "charged",
                                                          "donations_total": "replayed"}
    with make_engine(settings.warehouse_url).connect() as conn:
        (run,) = runs_of(read_entries(conn))
    assert (run.run_id, run.admissions, run.releases, run.cost) == ("r", 2, 2, Fraction(1, 10))
    assert verify_settings(settings).ok


# --------------------------------------------------------------------------- CLI

@pytest.fixture
def plan_file(isoloir_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    create_signing_key(load_settings().signing_key_file)
    monkeypatch.setattr("privacy.release.OpenDPEngine", FakeEngine)
    path = isoloir_home / "plan.yaml"
    path.write_text(yaml.safe_dump(PLAN), encoding="utf-8")
    return path


def test_release_query_subset_is_its_own_run_and_budget_lists_runs(plan_file: Path) -> None:
    subset = runner.invoke(app, ["release", "--plan", str(plan_file), "--query",
                                 "contacts_total", "--json"])
    assert subset.exit_code == 0, subset.output
    summary = json.loads(subset.stdout)
    today = datetime.now(UTC).date().isoformat()
    assert summary["run_id"] == f"cli-{today}+contacts_total"
    assert summary["queries"] == ["contacts_total"]
    assert [r["query"] for r in summary["releases"]] == ["contacts_total"]
    assert summary["charged_rho"] == "1/200"
    full = runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "day-1",
                               "--json"])
    assert full.exit_code == 0 and json.loads(full.stdout)["charged"] == 2
    unknown = runner.invoke(app, ["release", "--plan", str(plan_file), "--query", "nope"])
    assert unknown.exit_code == 2 and "no query 'nope'" in unknown.output

    budget = runner.invoke(app, ["budget", "--json"])
    assert budget.exit_code == 0, budget.output
    (dataset,) = json.loads(budget.stdout)["datasets"]
    runs = {r["run_id"]: r for r in dataset["runs"]}
    assert list(runs) == [f"cli-{today}+contacts_total", "day-1"]
    assert runs["day-1"]["queries"] == ["contacts_by_channel", "contacts_total"]
    assert (runs["day-1"]["rho"], runs["day-1"]["releases"], runs["day-1"]["admissions"]) == \
        ("1/100", 2, 1)
    assert runs[f"cli-{today}+contacts_total"]["rho"] == "1/200"
    assert runs["day-1"]["first_at"].startswith(today)
    assert float(runs["day-1"]["epsilon"]) > 0 and runs["day-1"]["rho_decimal"] == "0.01"
    shown = runner.invoke(app, ["budget"])
    assert shown.exit_code == 0
    assert "runs of campaign" in shown.output and "day-1" in shown.output


def test_a_retried_run_id_republishes_the_same_numbers_without_charge(plan_file: Path) -> None:
    first = runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "day-1"])
    assert first.exit_code == 0, first.output
    settings = load_settings()
    before = published_bytes(settings)
    for path in settings.published.iterdir():
        path.unlink()
    again = runner.invoke(app, ["release", "--plan", str(plan_file), "--run-id", "day-1",
                                "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["charged"], summary["replayed"], summary["charged_rho"]) == (0, 2, "0/1")
    assert published_bytes(settings) == before  # the FakeEngine would draw other numbers
    assert spent(settings) == (Fraction(1, 100), 2)
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
