"""The DP engine end to end: warehouse snapshot → bounded OpenDP measurements → tables.

Runs the packaged default plan on a small SQLite warehouse of fake pseudonymized rows and
checks what a strategist will read: every group key comes from a public list, every cell
has its interval, mechanism and noise scale, OpenDP never spends more than was charged.
"""

from __future__ import annotations

import json
import math
import random
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, update

from core.errors import InvariantViolation, PlanError
from core.geography import load_geography
from core.vocabulary import AGE_BANDS, CHANNELS, RESULTS, SUPPORT_LEVELS, iso_weeks, months
from privacy.bounding import bound_l2, l2_norms
from privacy.engine import (
    QueryResult,
    compile_query,
    float_rho_down,
    load_rows,
    mechanism_name,
    postprocess,
    run_query,
    snapshot_warehouse,
)
from privacy.plan import Query, load_plan, parse_plan, public_keys, query_cost
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import contacts, donations, persons

PERIOD = (date(2026, 1, 1), date(2026, 6, 30))


def _pid(i: int) -> str:
    return f"p1:{i * 7919:064x}"[:67]


def _warehouse(path: Path, *, persons_n: int = 400, seed: int = 3) -> Engine:
    """A small warehouse of fake pseudonymized rows, with a few non-public codes mixed in."""
    rng = random.Random(seed)
    geo = load_geography()
    deps = sorted(geo.departements)
    weeks = iso_weeks(*PERIOD)
    month_keys = months(*PERIOD)
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    people, visits, gifts = [], [], []
    for i in range(persons_n):
        dep = rng.choice(deps)
        people.append({
            "person_id": _pid(i), "commune": None, "departement": dep,
            "region": geo.departement_region[dep], "age_band": rng.choice(AGE_BANDS),
            "support_level": rng.choice(SUPPORT_LEVELS), "is_volunteer": rng.random() < 0.2,
            "is_donor": rng.random() < 0.3, "email_opt_in": rng.random() < 0.6,
            "mobile_opt_in": rng.random() < 0.4, "created_month": "2026-01",
            "last_seen_month": "2026-03", "first_file": "f" * 64, "last_file": "f" * 64})
        for j in range(rng.randint(0, 6)):
            visits.append({
                "contact_id": f"c1:{i:06d}{j:03d}", "person_id": _pid(i), "canvasser_id": None,
                "source": "van", "week": rng.choice(weeks), "channel": rng.choice(CHANNELS),
                "result": rng.choice(RESULTS), "support_level": rng.choice(SUPPORT_LEVELS),
                "commune": None, "departement": dep, "region": geo.departement_region[dep],
                "file_sha256": "a" * 64})
        if rng.random() < 0.3:
            for j in range(rng.randint(1, 3)):
                gifts.append({
                    "donation_id": f"d1:{i:06d}{j:03d}", "person_id": _pid(i), "source": "nb",
                    "amount_cents": rng.choice([500, 1000, 2000, 5000, 15000, 700000]),
                    "month": rng.choice(month_keys), "method": "card", "recurring": False,
                    "commune": None, "departement": dep,
                    "region": geo.departement_region[dep], "file_sha256": "b" * 64})
    # Codes that are not public keys: outside the period, unknown département, odd result.
    visits.append({**visits[0], "contact_id": "c1:odd1", "week": "2025-W50"})
    visits.append({**visits[0], "contact_id": "c1:odd2", "result": "secret_code"})
    people.append({**people[0], "person_id": _pid(10**6), "departement": "ZZ", "region": "99",
                   "age_band": "12-17"})
    with engine.begin() as conn:
        conn.execute(insert(persons), people)
        conn.execute(insert(contacts), visits)
        conn.execute(insert(donations), gifts)
    return engine


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Any]:
    root = tmp_path_factory.mktemp("engine")
    engine = _warehouse(root / "warehouse.db")
    return engine, snapshot_warehouse(engine, root / "work")


# ----------------------------------------------------------------------------- snapshot

def test_snapshot_exports_only_what_the_engine_needs_and_no_pseudonym(small: Any) -> None:
    _, data = small
    assert set(data.tables) == {"persons", "contacts", "donations"}
    for name, path in data.tables.items():
        frame = pl.read_parquet(path)
        assert "person_id" not in frame.columns and frame.columns[0] == "person_key"
        assert not any(c.endswith("_id") or c in ("file_sha256", "source", "first_file")
                       for c in frame.columns), name
        text = path.read_bytes()
        assert b"p1:" not in text  # no pseudonym anywhere in the scratch files
    people = pl.read_parquet(data.tables["persons"])
    assert people["person_key"].to_list() == list(range(people.height))


def test_snapshot_keys_one_person_the_same_way_in_every_table(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    ensure_schema(engine)
    base = {"first_file": "f" * 64, "last_file": "f" * 64}
    contact = {"source": "van", "file_sha256": "a" * 64, "week": "2026-W02"}
    with engine.begin() as conn:
        conn.execute(insert(persons), [{"person_id": "p1:bb", **base},
                                       {"person_id": "p1:aa", **base}])
        conn.execute(insert(contacts), [
            {"contact_id": "c1", "person_id": "p1:bb", **contact},
            {"contact_id": "c2", "person_id": "p1:zz", **contact},  # no persons row
            {"contact_id": "c3", "person_id": "p1:aa", **contact}])
        conn.execute(insert(donations), [{"donation_id": "d1", "person_id": "p1:zz",
                                          "source": "nb", "amount_cents": 100,
                                          "file_sha256": "b" * 64}])
    data = snapshot_warehouse(engine, tmp_path / "work")
    assert pl.read_parquet(data.tables["persons"])["person_key"].to_list() == [0, 1]  # aa, bb
    assert pl.read_parquet(data.tables["contacts"])["person_key"].to_list() == [0, 1, 2]
    assert pl.read_parquet(data.tables["donations"])["person_key"].to_list() == [2]


def test_snapshot_hash_is_deterministic_and_follows_the_content(small: Any,
                                                                 tmp_path: Path) -> None:
    engine, first = small
    again = snapshot_warehouse(engine, tmp_path / "again")
    assert again.snapshot_hash == first.snapshot_hash
    for name in first.tables:
        assert pl.read_parquet(first.tables[name]).equals(pl.read_parquet(again.tables[name]))
    copy = _warehouse(tmp_path / "copy.db")
    with copy.begin() as conn:
        conn.execute(update(donations).where(donations.c.donation_id ==
                                             conn.execute(donations.select()).first().donation_id)
                     .values(amount_cents=1))
    assert snapshot_warehouse(copy, tmp_path / "changed").snapshot_hash != first.snapshot_hash


def test_snapshot_reads_postgresql_in_one_repeatable_read(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(persons), [{"person_id": _pid(i), "first_file": "f" * 64,
                                        "last_file": "f" * 64, "departement": "75",
                                        "region": "11"} for i in range(5)])
    data = snapshot_warehouse(engine, tmp_path / "work")
    assert pl.read_parquet(data.tables["persons"]).height == 5
    assert pl.read_parquet(data.tables["contacts"]).height == 0
    assert len(data.snapshot_hash) == 64


# ----------------------------------------------------------------------------- the default plan

def test_default_plan_runs_end_to_end_with_public_keys_and_accuracy(small: Any) -> None:
    _, data = small
    plan = load_plan()
    for query in plan.releases:
        cost = query_cost(plan, query)
        result = run_query(query, plan, data, cost)
        assert result.rho == cost and result.mechanism == mechanism_name(query)
        assert Fraction(result.metadata["rho_opendp"]) <= cost  # never more than charged
        assert result.metadata["rho_opendp"] > float(cost) * (1 - 1e-9)  # and not wasted
        table = postprocess(result)
        expected_rows = math.prod(len(public_keys(plan, c)) for c in query.group_by)
        expected_rows *= max(1, len(query.quantiles))
        assert table.height == expected_rows, query.name
        for column in query.group_by:  # every group key comes from the public lists
            assert set(table[column].to_list()) <= set(public_keys(plan, column)), column
        for column in ("estimate", "ci95_halfwidth", "ci95_low", "ci95_high", "noise_scale"):
            values = table[column]
            assert values.null_count() == 0 and values.is_finite().all(), (query.name, column)
        assert (table["ci95_halfwidth"] >= 0).all() and (table["noise_scale"] > 0).all()
        assert (table["ci95_low"] <= table["estimate"]).all()
        assert (table["estimate"] <= table["ci95_high"]).all()
        if query.measure in ("count", "histogram"):
            assert (table["estimate"] >= 0).all()
            assert (table["estimate"] == table["estimate"].round(0)).all()
        if query.measure == "histogram":
            assert (table["share"] >= 0).all() and (table["share"] <= 1).all()
        if query.measure == "mean":
            assert table["estimate"].is_between(*query.clip_bounds()).all()
        notes = result.metadata["post_processing"]
        assert notes and all(isinstance(n, str) for n in notes)
        json.dumps(result.metadata)  # the metadata is published as JSON


def test_non_public_codes_in_the_data_never_become_groups(small: Any) -> None:
    _, data = small
    plan = load_plan()
    seen: dict[str, set[Any]] = {}
    for query in plan.releases:
        table = run_query(query, plan, data, query_cost(plan, query)).table
        for column in query.group_by:
            seen.setdefault(column, set()).update(table[column].to_list())
    assert "2025-W50" not in seen["week"] and "secret_code" not in seen["result"]
    assert "ZZ" not in seen["departement"] and "99" not in seen["region"]
    assert "12-17" not in seen["age_band"]


def test_noise_scale_is_what_the_declared_bound_implies(small: Any) -> None:
    _, data = small
    plan = load_plan()
    for name in ("donations_count_by_month", "supporters_by_departement",
                 "donations_total_by_month"):
        query = next(q for q in plan.releases if q.name == name)
        cost = query_cost(plan, query)
        result = run_query(query, plan, data, cost)
        bounds = result.query.fixed_bounds()  # an auto query's chosen bounds
        g, r = bounds.max_groups, bounds.max_rows_per_group
        per_cell = r if query.measure == "count" else query.clip_bounds()[1]
        sensitivity = math.sqrt(g) * per_cell  # L2 over the cells one person can touch
        # the measurement's own part of the charge (the rest chose bounds, counted rows cut)
        measured = Fraction(result.metadata["rho_split"]["measurement"])
        assert measured <= cost
        assert sum(Fraction(v) for v in result.metadata["rho_split"].values()) == cost
        expected = sensitivity / math.sqrt(2 * float(measured))
        assert result.table["noise_scale"][0] == pytest.approx(expected, rel=1e-6), name
        assert result.metadata["declared_to_opendp"][0] == {
            "by": ["cell"], "per_group": 1, "num_groups": g}


def test_an_l2_ball_query_spends_its_whole_rho_on_one_gaussian_over_the_cells(
        small: Any) -> None:
    """σ = max_l2 / √(2ρ) in every cell; OpenDP's own map at d_in = max_l2 is the spend,
    never above the charge; the metadata declares the ball, and every person's kept
    vector is inside it."""
    _, data = small
    plan = load_plan()
    query = next(q for q in plan.releases if q.name == "contacts_by_week")
    assert query.ball_bounds is not None
    d = query.ball_bounds.max_l2
    cost = query_cost(plan, query)
    compiled = compile_query(query, plan, data, cost)
    assert compiled.spent == compiled.measurement.map(d) and Fraction(compiled.spent) <= cost
    assert compiled.spent == pytest.approx(float(cost), rel=1e-9)  # the whole ρ, no cut count
    (result,) = compiled.release(1)
    assert result.table["noise_scale"].to_list() == pytest.approx(
        [d / math.sqrt(2 * float(cost))] * result.table.height, rel=1e-6)
    assert result.metadata["bounds"]["max_l2"] == d
    assert result.metadata["declared_to_opendp"][0]["d_in"] == d
    assert result.metadata["rows_cut"]["measured"] is False
    assert result.mechanism == mechanism_name(query)
    assert "bias_aware_estimate" not in result.table.columns
    rows = load_rows(query, data, compiled.cells)
    kept, cut = bound_l2(rows, max_l2=d, n_cells=compiled.cells.n_cells)
    assert float(l2_norms(kept).max()) <= d
    per_cell = np.bincount(kept["cell"].to_numpy(), kept["n"].to_numpy(),
                           minlength=compiled.cells.n_cells)
    assert compiled.ball is not None and list(compiled.ball.counts) == per_cell.tolist()


def test_each_release_draws_fresh_opendp_noise(small: Any) -> None:
    _, data = small
    plan = load_plan()
    query = plan.releases[0]
    draws = compile_query(query, plan, data, query_cost(plan, query)).release(3)
    estimates = [tuple(r.table["estimate"].to_list()) for r in draws]
    assert len(set(estimates)) == 3


@settings(max_examples=300, deadline=None)
@given(st.fractions(min_value=Fraction(1, 10**15), max_value=Fraction(10)))
def test_float_rho_never_exceeds_the_exact_charge(rho: Fraction) -> None:
    value = float_rho_down(rho)
    assert Fraction(value) <= rho
    assert Fraction(math.nextafter(value, math.inf)) > rho  # the largest such float


def test_float_rho_rounds_down_where_plain_float_rounds_up() -> None:
    rho = Fraction(1, 2000)  # a default-plan share: float(1/2000) is above 1/2000
    assert Fraction(float(rho)) > rho
    assert Fraction(float_rho_down(rho)) < rho
    with pytest.raises(InvariantViolation):
        float_rho_down(Fraction(0))


def test_a_query_outside_the_plan_is_refused_before_reading_data(tmp_path: Path) -> None:
    plan = load_plan()
    stranger = Query.model_validate({**plan.releases[0].model_dump(), "name": "stranger"})
    missing = type("Data", (), {"tables": {}, "snapshot_hash": "x"})()
    with pytest.raises(PlanError, match="not part of plan"):
        run_query(stranger, plan, missing, Fraction(1, 1000))


def test_postprocess_clamps_counts_and_computes_shares_from_noisy_counts() -> None:
    plan = load_plan()
    query = next(q for q in plan.releases if q.name == "age_band_by_support_level")
    labels = [(a, s) for a in AGE_BANDS[:1] for s in SUPPORT_LEVELS]
    raw = pl.DataFrame({"age_band": [a for a, _ in labels], "support_level": [s for _, s in labels],
                        "estimate": [-12.4, 30.6, 10.0, 0.2, 59.2],
                        "ci95_halfwidth": [20.0] * 5, "noise_scale": [10.0] * 5})
    result = QueryResult(query=query, rho=Fraction(1, 10), mechanism="gaussian (zCDP)",
                         table=raw, metadata={})
    out = postprocess(result)
    assert out["estimate"].to_list() == [0.0, 31.0, 10.0, 0.0, 59.0]
    assert out["ci95_low"].to_list() == [0.0, 11.0, 0.0, 0.0, 39.0]
    assert out["share"].to_list() == [0.0, 0.31, 0.1, 0.0, 0.59]


def test_ungrouped_mean_and_a_plan_of_one_query(small: Any) -> None:
    _, data = small
    doc = {"dataset_id": "t", "privacy_unit": "person", "cap": {"rho": "1"},
           "per_run": {"rho": "1/2"}, "cadence": "once", "period": ["2026-01-01", "2026-06-30"],
           "releases": [{"name": "opt_in", "title": "t", "title_fr": "t", "measure": "mean",
                         "table": "persons", "value": "email_opt_in",
                         "bounds": {"max_groups": 1, "max_rows_per_group": 1}, "share": 1}]}
    plan = parse_plan(doc)
    result = run_query(plan.releases[0], plan, data, Fraction(1, 2))
    out = postprocess(result)
    assert out.height == 1 and 0.4 < out["estimate"][0] < 0.8  # ~60 % opted in, big budget
    assert out["ci95_low"][0] <= out["estimate"][0] <= out["ci95_high"][0]


def _donations_snapshot(directory: Path, amounts: list[int]) -> Any:
    from privacy.engine import ReleaseData

    frame = pl.DataFrame({"person_key": list(range(len(amounts))), "amount_cents": amounts,
                          "month": ["2026-02"] * len(amounts), "method": ["card"] * len(amounts),
                          "recurring": [False] * len(amounts), "region": ["11"] * len(amounts),
                          "departement": ["75"] * len(amounts),
                          "commune": pl.Series([None] * len(amounts), dtype=pl.String)})
    directory.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(directory / "donations.parquet")
    return ReleaseData(tables={"donations": directory / "donations.parquet"}, snapshot_hash="q")


def _median_plan(rho: str) -> Any:
    return parse_plan({
        "dataset_id": "q", "privacy_unit": "person", "cap": {"rho": "100"},
        "per_run": {"rho": rho}, "cadence": "test", "period": ["2026-01-01", "2026-06-30"],
        "releases": [{"name": "median_gift", "title": "t", "title_fr": "t",
                      "measure": "quantile", "table": "donations", "value": "amount_cents",
                      "quantiles": [0.5], "clip": [0, 20000], "group_by": ["month"],
                      "bounds": {"max_groups": 1, "max_rows_per_group": 1}, "share": 1}]})


def test_median_interval_brackets_the_true_median_when_the_data_allow(tmp_path: Path) -> None:
    amounts = [100 * (i % 200) for i in range(40_000)]  # 0 € to 199 €, true median 100 €
    plan = _median_plan("10")  # generous budget: rank errors are a few rows
    result = run_query(plan.releases[0], plan, _donations_snapshot(tmp_path, amounts),
                       Fraction(10))
    row = postprocess(result).filter(pl.col("month") == "2026-02").row(0, named=True)
    assert abs(row["estimate"] - 10_000) <= 200  # a candidate next to the true median
    assert row["ci95_low"] <= 10_000 <= row["ci95_high"]
    assert row["ci95_high"] - row["ci95_low"] < 20_000  # bracketed, not the whole range
    assert row["rank_error95"] < 40_000 / 8  # reliable: the window covers the rank error


def test_median_interval_widens_to_the_clip_range_on_thin_data(tmp_path: Path) -> None:
    plan = _median_plan("1/1000")
    result = run_query(plan.releases[0], plan, _donations_snapshot(tmp_path, [500] * 30),
                       Fraction(1, 1000))
    for row in postprocess(result).iter_rows(named=True):
        assert (row["ci95_low"], row["ci95_high"]) == (0.0, 20_000.0)
        assert row["ci95_halfwidth"] > 0
