"""Release orchestration: charge before noise, idempotent reruns, crash safety, file format.

The DP engine is replaced by a stand-in that draws fresh random numbers on every call, so a
rerun that produced identical bytes provably did not draw again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import func, select

from core.settings import Settings, load_settings
from privacy.accountant import CapMismatch, InsufficientBudget
from privacy.audit import verify_settings
from privacy.plan import Plan, Query, parse_plan
from privacy.publish import ACCURACY_COLUMNS, CsvFormat, render_csv
from privacy.release import default_run_id, run_release
from privacy.signing import create_signing_key
from warehouse.db import make_engine
from warehouse.schema import ledger_entries, privacy_budgets

LOGICAL = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


def make_plan(cap_rho: str = "1/2", per_run: str = "1/10") -> Plan:
    return parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person", "cap": {"rho": cap_rho},
        "per_run": {"rho": per_run}, "cadence": "daily", "period": ["2026-01-01", "2026-06-30"],
        "releases": [
            {"name": "contacts_by_channel", "title": "Contacts by channel",
             "title_fr": "Contacts par canal", "measure": "count", "table": "contacts",
             "group_by": ["channel"], "bounds": {"max_groups": 2, "max_rows_per_group": 3},
             "share": "1/4"},
            {"name": "donations_total", "title": "Donations", "title_fr": "Dons",
             "measure": "sum", "table": "donations", "value": "amount_cents",
             "bounds": {"max_groups": 1, "max_rows_per_group": 2}, "share": "3/4"},
        ]})


@dataclass(frozen=True)
class FakeData:
    tables: dict[str, Path]
    snapshot_hash: str


@dataclass(frozen=True)
class FakeResult:
    query: Query
    rho: Fraction
    mechanism: str
    table: pl.DataFrame
    metadata: dict[str, Any]


@dataclass
class FakeEngine:
    """Stand-in for privacy.engine: fresh randomness on every query (like real noise)."""

    fail_on: str | None = None
    snapshots: int = 0
    queries: list[str] = field(default_factory=list)
    snapshot_dirs: list[Path] = field(default_factory=list)

    def snapshot(self, engine: Any, work_dir: Path) -> FakeData:
        self.snapshots += 1
        self.snapshot_dirs.append(work_dir)
        path = work_dir / "persons.parquet"
        pl.DataFrame({"x": [1, 2]}).write_parquet(path)
        return FakeData({"persons": path}, "ee" * 32)

    def mechanism(self, query: Query) -> str:
        return "gaussian (zCDP)"

    def run_query(self, query: Query, plan: Plan, data: FakeData, rho: Fraction) -> FakeResult:
        assert data.tables["persons"].exists()
        self.queries.append(query.name)
        if query.name == self.fail_on:
            raise RuntimeError("worker killed after the charge")
        rng = random.SystemRandom()
        keys = {"channel": ["door", "phone", "sms", "other"]}
        groups = {c: keys[c] for c in query.group_by}
        n = len(next(iter(groups.values()))) if groups else 1
        table = pl.DataFrame({**groups,
                              "estimate": [rng.uniform(-5, 500) for _ in range(n)],
                              "ci95_halfwidth": [12.5] * n, "noise_scale": [6.25] * n})
        return FakeResult(query, rho, "gaussian (zCDP)", table,
                          {"post_processing": ["rounded to integers"], "noise_scale": 6.25})

    def postprocess(self, result: FakeResult) -> pl.DataFrame:
        return result.table.with_columns(pl.col("estimate").round(0))


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    settings = load_settings()
    create_signing_key(settings.signing_key_file)
    return settings


def published_bytes(settings: Settings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(settings.published.iterdir())}


def spent(settings: Settings) -> tuple[Fraction, int]:
    with make_engine(settings.warehouse_url).connect() as conn:
        value = conn.execute(select(privacy_budgets.c.spent_rho)).scalar_one()
        entries = conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one()
    return Fraction(value), entries


def test_a_release_charges_publishes_and_verifies(settings: Settings) -> None:
    dp = FakeEngine()
    summary = run_release(settings, make_plan(), "run-1", logical_date=LOGICAL, dp_engine=dp)
    assert (summary.charged, summary.replayed) == (2, 0)
    assert summary.charged_rho == "1/10" and summary.spent_rho == "1/10"
    assert summary.remaining_rho == "2/5" and summary.snapshot_hash == "ee" * 32
    assert [r.ledger_seq for r in summary.releases] == [1, 2]
    assert spent(settings) == (Fraction(1, 10), 2)
    names = set(published_bytes(settings))
    assert len(names) == 6
    for released in summary.releases:
        assert {f"{released.query}--{released.release_id}.{ext}"
                for ext in ("csv", "parquet", "json")} <= names
    assert verify_settings(settings).ok
    # The snapshot is gone once the run is over.
    assert dp.snapshots == 1 and not dp.snapshot_dirs[0].exists()
    assert json.loads(json.dumps(summary.to_dict()))["charged"] == 2  # XCom-safe


def test_published_files_follow_the_format(settings: Settings) -> None:
    summary = run_release(settings, make_plan(), "run-1", logical_date=LOGICAL,
                          dp_engine=FakeEngine())
    first = summary.releases[0]
    stem = settings.published / f"{first.query}--{first.release_id}"
    table = pl.read_parquet(stem.with_suffix(".parquet"))
    assert table.columns == ["channel", *ACCURACY_COLUMNS]
    assert table["ledger_entry"].unique().to_list() == [first.release_id]
    assert table["budget_share"].unique().to_list() == [0.25]
    assert (table["ci95_high"] - table["ci95_low"] - 2 * table["ci95_halfwidth"]).abs().max() \
        < 1e-9
    raw = stem.with_suffix(".csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    header, *rows = raw.decode("utf-8-sig").splitlines()
    assert header.split(";") == table.columns and len(rows) == 4
    assert rows[0].split(";")[6] == "6,25"  # noise_scale with a decimal comma
    meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["release_id"] == first.release_id and meta["ledger_seq"] == 1
    assert meta["created_at"] == LOGICAL.isoformat()
    assert meta["rho"] == "1/40" and meta["budget_share"] == "1/4"
    assert meta["bounds"] == {"max_groups": 2, "max_rows_per_group": 3}
    assert meta["query"]["name"] == first.query and meta["title_fr"] == "Contacts par canal"
    assert meta["post_processing"] == ["rounded to integers"]
    for ext in ("csv", "parquet"):
        info = meta["files"][ext]
        digest = hashlib.sha256((settings.published / info["name"]).read_bytes()).hexdigest()
        assert info["sha256"] == digest
    donations = json.loads((settings.published / summary.releases[1].files[2]).read_text())
    assert donations["clipping"] == [0.0, 460000.0]  # the legal cap by default


def test_same_run_id_twice_gives_identical_files_and_one_charge(settings: Settings) -> None:
    dp = FakeEngine()
    first = run_release(settings, make_plan(), "run-1", logical_date=LOGICAL, dp_engine=dp)
    before = published_bytes(settings)
    for path in settings.published.iterdir():  # even from an empty folder
        path.unlink()
    again = run_release(settings, make_plan(), "run-1", logical_date=LOGICAL, dp_engine=dp)
    assert published_bytes(settings) == before
    assert (again.charged, again.replayed) == (0, 2)
    assert [r.release_id for r in again.releases] == [r.release_id for r in first.releases]
    assert dp.queries == ["contacts_by_channel", "donations_total"]  # no noise drawn again
    assert dp.snapshots == 1  # a full replay does not even read the warehouse
    assert spent(settings) == (Fraction(1, 10), 2)
    # Another run id is another release, charged.
    other = run_release(settings, make_plan(), "run-2", logical_date=LOGICAL, dp_engine=dp)
    assert other.charged == 2 and spent(settings) == (Fraction(1, 5), 4)


def test_a_kill_after_the_charge_leaves_the_budget_spent(settings: Settings) -> None:
    dp = FakeEngine(fail_on="donations_total")
    with pytest.raises(RuntimeError, match="killed"):
        run_release(settings, make_plan(), "run-1", logical_date=LOGICAL, dp_engine=dp)
    # Both queries were charged; only the first was recorded and published.
    assert spent(settings) == (Fraction(1, 10), 2)
    assert len(published_bytes(settings)) == 3
    assert verify_settings(settings).ok
    assert not dp.snapshot_dirs[0].exists()
    # A fresh attempt replays the first and charges the second again, under a new id.
    retry_dp = FakeEngine()
    retry = run_release(settings, make_plan(), "run-1", logical_date=LOGICAL,
                        dp_engine=retry_dp)
    statuses = {r.query: (r.status, r.lost_attempts) for r in retry.releases}
    assert statuses == {"contacts_by_channel": ("replayed", 0),
                        "donations_total": ("charged", 1)}
    assert retry_dp.queries == ["donations_total"]
    assert spent(settings) == (Fraction(1, 10) + Fraction(3, 40), 3)
    assert verify_settings(settings).ok
    assert len(published_bytes(settings)) == 6


def test_a_plan_beyond_the_remaining_budget_is_refused_before_reading(
        settings: Settings) -> None:
    dp = FakeEngine()
    run_release(settings, make_plan(cap_rho="3/20"), "run-1", logical_date=LOGICAL,
                dp_engine=dp)
    with pytest.raises(InsufficientBudget, match=r"asked ρ=1/10 .*remaining ρ=1/20") as err:
        run_release(settings, make_plan(cap_rho="3/20"), "run-2", logical_date=LOGICAL,
                    dp_engine=dp)
    assert err.value.exit_code == 3
    assert dp.snapshots == 1 and spent(settings) == (Fraction(1, 10), 2)


def test_a_plan_cannot_change_the_cap(settings: Settings) -> None:
    run_release(settings, make_plan(), "run-1", logical_date=LOGICAL, dp_engine=FakeEngine())
    with pytest.raises(CapMismatch, match="fixed at ρ=1/2"):
        run_release(settings, make_plan(cap_rho="1"), "run-2", logical_date=LOGICAL,
                    dp_engine=FakeEngine())


def test_a_logical_date_without_time_is_midnight_utc(settings: Settings) -> None:
    summary = run_release(settings, make_plan(), default_run_id(date(2026, 3, 2)),
                          logical_date=date(2026, 3, 2), dp_engine=FakeEngine())
    assert summary.run_id == "cli-2026-03-02"
    assert summary.logical_date == "2026-03-02T00:00:00+00:00"


def test_csv_is_formula_injection_safe_and_comma_selectable() -> None:
    frame = pl.DataFrame({"label": ["=SUM(A1)", "+33", "-x", "@me", "plain", "a;b"],
                          "estimate": [-1.5, 2.0, 3.25, 0.0, 1.0, 2.5]})
    text = render_csv(frame).decode("utf-8-sig")
    cells = [row[0] for row in csv.reader(io.StringIO(text), delimiter=";")][1:]
    assert cells == ["'=SUM(A1)", "'+33", "'-x", "'@me", "plain", "a;b"]
    assert text.splitlines()[1].endswith(";-1,5")  # numbers are never prefixed
    comma = render_csv(frame, CsvFormat(",")).decode("utf-8-sig")
    assert comma.splitlines()[1] == "'=SUM(A1),-1.5"
    read_back = pl.read_csv(io.StringIO(comma))
    assert read_back["estimate"].to_list() == frame["estimate"].to_list()


@pytest.mark.postgres
def test_release_replay_and_crash_on_postgresql(isoloir_home: Path, pg_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", pg_url)
    settings = load_settings()
    create_signing_key(settings.signing_key_file)
    with pytest.raises(RuntimeError, match="killed"):
        run_release(settings, make_plan(), "run-1", logical_date=LOGICAL,
                    dp_engine=FakeEngine(fail_on="donations_total"))
    assert spent(settings) == (Fraction(1, 10), 2) and verify_settings(settings).ok
    first = run_release(settings, make_plan(), "run-1", logical_date=LOGICAL,
                        dp_engine=FakeEngine())
    before = published_bytes(settings)
    again = run_release(settings, make_plan(), "run-1", logical_date=LOGICAL,
                        dp_engine=FakeEngine())
    assert (first.charged, first.replayed, again.charged, again.replayed) == (1, 1, 0, 2)
    assert published_bytes(settings) == before
    assert spent(settings) == (Fraction(1, 10) + Fraction(3, 40), 3)
    assert verify_settings(settings).ok


def _small_warehouse(settings: Settings, people: int = 200) -> None:
    """A few pseudonymized rows, as ingestion leaves them (codes only, no identifiers)."""
    from core.geography import load_geography
    from core.vocabulary import AGE_BANDS, CHANNELS, RESULTS
    from warehouse.db import ensure_schema
    from warehouse.schema import contacts, donations, persons

    geo = load_geography()
    communes = [geo.communes[c] for c in sorted(geo.communes)[:40]]
    rng = random.Random(5)
    rows: dict[str, list[dict[str, Any]]] = {"persons": [], "contacts": [], "donations": []}
    for i in range(people):
        place = rng.choice(communes)
        where = {"commune": place.code, "departement": place.departement,
                 "region": place.region}
        pid = f"k1:{i:048d}"
        rows["persons"].append(where | {
            "person_id": pid, "age_band": rng.choice(AGE_BANDS),
            "support_level": rng.randint(1, 5), "is_volunteer": rng.random() < 0.2,
            "is_donor": rng.random() < 0.3, "email_opt_in": rng.random() < 0.5,
            "mobile_opt_in": False, "created_month": "2026-01", "last_seen_month": "2026-02",
            "first_file": "f" * 64, "last_file": "f" * 64})
        for j in range(rng.randint(0, 3)):
            rows["contacts"].append(where | {
                "contact_id": f"c{i}-{j}", "person_id": pid, "canvasser_id": None,
                "source": "van", "week": f"2026-W{rng.randint(1, 20):02d}",
                "channel": rng.choice(CHANNELS), "result": rng.choice(RESULTS),
                "support_level": None, "file_sha256": "f" * 64})
        if rng.random() < 0.3:
            rows["donations"].append(where | {
                "donation_id": f"d{i}", "person_id": pid, "source": "donations",
                "amount_cents": rng.randint(500, 50_000), "month": f"2026-0{rng.randint(1, 6)}",
                "method": "card", "recurring": False, "file_sha256": "f" * 64})
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(persons.insert(), rows["persons"])
        conn.execute(contacts.insert(), rows["contacts"])
        conn.execute(donations.insert(), rows["donations"])


def test_real_engine_release_is_charged_once_and_replayed_byte_for_byte(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """With OpenDP's real noise: a replay is identical, another run id is not."""
    from privacy import engine as dp

    _small_warehouse(settings)
    plan = parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person", "cap": {"epsilon": 8, "delta": 1e-7},
        "per_run": {"rho": "1/250"}, "cadence": "daily",
        "period": ["2026-01-01", "2026-06-30"],
        "releases": [
            {"name": "supporters_by_region", "title": "Supporters by région",
             "title_fr": "Sympathisants par région", "measure": "count", "table": "persons",
             "group_by": ["region"], "bounds": {"max_groups": 1, "max_rows_per_group": 1},
             "share": "1/2"},
            {"name": "donations_total_by_month", "title": "Donations by month",
             "title_fr": "Dons par mois", "measure": "sum", "table": "donations",
             "group_by": ["month"], "value": "amount_cents", "clip": [0, 100000],
             "bounds": {"max_groups": 2, "max_rows_per_group": 1}, "share": "1/2"}]})
    calls: list[str] = []
    real_run = dp.run_query

    def spy(query: Query, *args: Any) -> Any:
        calls.append(query.name)
        return real_run(query, *args)

    monkeypatch.setattr(dp, "run_query", spy)
    first = run_release(settings, plan, "day-1", logical_date=LOGICAL)
    before = published_bytes(settings)
    again = run_release(settings, plan, "day-1", logical_date=LOGICAL)
    assert (first.charged, again.replayed) == (2, 2)
    assert published_bytes(settings) == before
    assert calls == ["supporters_by_region", "donations_total_by_month"]
    assert list(settings.work.iterdir()) == []  # the snapshot is deleted
    assert verify_settings(settings).ok
    with make_engine(settings.warehouse_url).connect() as conn:
        mechanisms = conn.execute(select(ledger_entries.c.mechanism)).scalars().all()
    assert mechanisms == [dp.mechanism_name(q) for q in plan.releases]
    region = pl.read_parquet(settings.published / first.releases[0].files[1])
    assert region.columns[:9] == ["region", *ACCURACY_COLUMNS]
    assert region["ledger_entry"].unique().to_list() == [first.releases[0].release_id]
    other = run_release(settings, plan, "day-2", logical_date=LOGICAL)
    fresh = pl.read_parquet(settings.published / other.releases[0].files[1])
    assert fresh["estimate"].to_list() != region["estimate"].to_list()  # new noise, new charge
    assert spent(settings) == (Fraction(2, 250), 4)


def test_a_weighted_ball_takes_its_weights_from_its_last_published_release(
        settings: Settings) -> None:
    """Week 1 has uniform weights (the metadata says so); week 2 takes its cell weights
    from week 1's published table (√ of each cell's interval top, mean 1), records them and
    the release they came from in the signed metadata, and each cell's noise is its
    weight times the vector's scale."""
    from privacy.cell_weights import weights_from_table

    _small_warehouse(settings)
    plan = parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person", "cap": {"epsilon": 8, "delta": 1e-7},
        "per_run": {"rho": "1/250"}, "cadence": "daily",
        "period": ["2026-01-01", "2026-06-30"],
        "releases": [
            {"name": "contacts_by_result", "title": "Contacts by result",
             "title_fr": "Contacts par résultat", "measure": "histogram", "table": "contacts",
             "group_by": ["result"], "bounds": {"max_l2": 3, "weights": "last_release"},
             "cadence": "weekly", "share": "7"}]})
    query = plan.releases[0]
    first = run_release(settings, plan, "w1", logical_date=datetime(2026, 3, 2, tzinfo=UTC))
    second = run_release(settings, plan, "w2", logical_date=datetime(2026, 3, 9, tzinfo=UTC))
    (week1,), (week2,) = first.releases, second.releases
    meta1 = json.loads((settings.published / week1.files[2]).read_text(encoding="utf-8"))
    meta2 = json.loads((settings.published / week2.files[2]).read_text(encoding="utf-8"))
    assert meta1["bounds"]["cell_weights"] is None
    assert "uniform" in meta1["engine"]["bounds"]["weights_note"]
    table1 = pl.read_parquet(settings.published / week1.files[1])
    assert table1["noise_scale"].n_unique() == 1
    expected = weights_from_table(plan, query, table1)
    assert meta2["bounds"]["cell_weights"] == pytest.approx(list(expected))
    assert meta2["bounds"]["weights_from_release"] == week1.release_id
    assert sum(expected) / len(expected) == pytest.approx(1.0)
    table2 = pl.read_parquet(settings.published / week2.files[1])
    scale = meta2["engine"]["aggregates"][0]["scale"]
    by_result = dict(zip(table2["result"], table2["noise_scale"], strict=True))
    cells = [str(r) for r in dp_cell_labels(plan, query)]
    assert [by_result[c] for c in cells] == pytest.approx([w * scale for w in expected])
    assert json.loads(meta2["query_canonical"])["bounds"] == {"max_l2": 3,
                                                              "weights": "last_release"}
    assert verify_settings(settings).ok


def dp_cell_labels(plan: Plan, query: Query) -> list[Any]:
    from privacy.engine import cell_keys

    return cell_keys(plan, query).labels["result"].to_list()
