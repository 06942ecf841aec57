"""Release plans: validation with key paths, exact budgets, the packaged default plan."""

from __future__ import annotations

import copy
import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import PlanError
from core.geography import load_geography
from core.vocabulary import CAP_PER_CANDIDATE_CENTS
from privacy.plan import (
    PERIOD_DAYS,
    Bounds,
    Cap,
    canonical_query,
    daily_spend,
    load_plan,
    parse_plan,
    plan_hash,
    public_keys,
)

DEFAULT = Path(__file__).resolve().parents[1] / "privacy" / "plans" / "default.yaml"


def _document() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))


def _refused(doc: dict[str, Any]) -> str:
    with pytest.raises(PlanError) as info:
        parse_plan(doc, "test.yaml")
    return str(info.value)


def test_default_plan_loads_and_spends_exactly_its_per_run_budget() -> None:
    plan = load_plan()
    assert plan.dataset_id == "campaign"
    assert plan.cap.epsilon == Decimal(8) and plan.cap.delta == Decimal("1e-7")
    # At the plan's cadences, a day costs per_run on average (weekly queries take 7 shares).
    assert daily_spend(plan) == plan.per_run.cap_rho() == Fraction(1, 250)
    assert any(q.cadence == "weekly" for q in plan.releases)
    # The stated cadence holds: daily for six months fits under the lifetime cap.
    assert plan.cap.cap_rho() / plan.per_run.cap_rho() >= 180
    assert "180" in plan.cadence


def test_default_plan_covers_what_strategists_read() -> None:
    plan = load_plan()
    published = [level for q in plan.releases for level in q.level_queries()]
    shapes = {(q.measure, q.table, q.group_by, tuple(sorted(q.where))) for q in published}
    assert ("count", "persons", ("departement",), ()) in shapes
    assert ("count", "persons", ("region",), ()) in shapes
    assert ("count", "persons", (), ()) in shapes  # national, consistent with both
    # the published tables keep their names (a hierarchy's levels are tables of their own)
    assert {"supporters_by_departement", "supporters_by_region", "volunteers_by_departement",
            "support_level_by_departement"} <= {q.name for q in published}
    assert ("histogram", "persons", ("departement", "support_level"), ()) in shapes
    assert ("histogram", "persons", ("age_band", "support_level"), ()) in shapes
    assert ("count", "contacts", ("week",), ()) in shapes
    assert ("histogram", "contacts", ("result",), ()) in shapes
    assert ("mean", "contacts", ("week",), ()) in shapes
    assert ("count", "persons", ("departement",), ("is_volunteer",)) in shapes
    for by in (("region",), ("month",)):
        for measure in ("count", "sum", "quantile"):
            assert (measure, "donations", by, ()) in shapes
    assert any(q.value == "email_opt_in" and q.measure == "mean" for q in plan.releases)
    for query in plan.releases:
        assert query.min_group_size_note, query.name


def test_default_plan_loaded_by_path_is_the_packaged_one() -> None:
    assert plan_hash(load_plan(DEFAULT)) == plan_hash(load_plan())


def test_plan_hash_is_stable_and_sensitive_to_any_change() -> None:
    doc = _document()
    first = plan_hash(parse_plan(doc))
    assert plan_hash(parse_plan(copy.deepcopy(doc))) == first
    doc["releases"][0]["bounds"]["max_groups"] = 1
    doc["releases"][0]["share"] = "1/24"
    assert plan_hash(parse_plan(doc)) != first


def test_canonical_query_is_sorted_json_with_exact_share() -> None:
    query = load_plan().releases[0]
    text = canonical_query(query)
    assert text.startswith('{"bounds":{"max_groups":1,"max_rows_per_group":1}')
    assert '"share":"1/8"' in text and '"hierarchy":[' in text
    assert canonical_query(query) == text


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["releases"][3]["bounds"].update(max_groups=0),
     "test.yaml: releases[3].bounds: max_groups must be ≥ 1"),
    (lambda d: d["releases"][2]["bounds"].pop("max_rows_per_group"),
     "test.yaml: releases[2].bounds: max_rows_per_group is required"),
    (lambda d: d["releases"][1].update(group_by=["person_id"]),
     "test.yaml: releases[1].group_by: column 'person_id' has no public key set"),
    (lambda d: d["releases"][1].update(group_by=["week"]),
     "test.yaml: releases[1].group_by: table persons has no column 'week'"),
    (lambda d: d["releases"][0].update(where={"person_id": "p1:00"}),
     "test.yaml: releases[0].where: column 'person_id' cannot be filtered on"),
    (lambda d: d["releases"][0].update(measure="sum"),
     "test.yaml: releases[0].value: a sum needs a value column"),
    (lambda d: d["releases"][9].update(clip=[5, 1]),
     "test.yaml: releases[9].clip: lower bound must be below upper bound"),
    (lambda d: d["releases"][10].update(quantiles=[1.5]),
     "test.yaml: releases[10].quantiles: each must be strictly between 0 and 1"),
    (lambda d: d["releases"][0].update(share="one tenth"),
     "test.yaml: releases[0].share: 'one tenth' is not an exact number"),
    (lambda d: d["releases"][0].update(colour="red"),
     "test.yaml: releases[0].colour: is not a known key"),
    (lambda d: d["releases"][4].update(name=d["releases"][3]["name"]),
     "test.yaml: releases[4].name: 'volunteers_by_departement' is used twice"),
    (lambda d: d.update(cap={"epsilon": 8}),
     "test.yaml: cap: give rho, or both epsilon and delta"),
    (lambda d: d.update(cap={"epsilon": 8, "delta": 0}),
     "test.yaml: cap: delta must be strictly between 0 and 1"),
    (lambda d: d.update(per_run={"rho": "2"}),
     "test.yaml: per_run: ρ 2 exceeds the lifetime cap"),
    (lambda d: d.update(privacy_unit="household"),
     "test.yaml: privacy_unit: Input should be 'person'"),
    (lambda d: d.update(period=["2026-06-01", "2026-01-01"]),
     "test.yaml: period: start is after end"),
    (lambda d: d["releases"][0].update(bounds={"max_l2": 5}),
     "test.yaml: releases[0].bounds: max_l2 is for counts and histograms of contacts or "
     "donations"),
    (lambda d: d["releases"][7].update(bounds={"max_l2": 5}),
     "test.yaml: releases[7].bounds: max_l2 is for counts and histograms"),
    (lambda d: d["releases"][5].update(bounds={"max_l2": 0.5}),
     "test.yaml: releases[5].bounds: max_l2 must be ≥ 1 and ≤ 1000"),
    (lambda d: d["releases"][5].update(bounds={"max_l2": 5, "cell_weights": [1.0]}),
     "test.yaml: releases[5].bounds: cell_weights is resolved by each run"),
    (lambda d: d["releases"][5].update(bounds={"max_l2": 5, "weights": "magic"}),
     "test.yaml: releases[5].bounds.weights: Input should be 'uniform' or 'last_release'"),
])
def test_plan_errors_name_the_key_path_and_why(mutate: Any, expected: str) -> None:
    doc = _document()
    mutate(doc)
    assert _refused(doc).startswith(expected)


def test_an_l2_ball_is_part_of_the_plan_hash_and_its_run_weights_are_not() -> None:
    plan = load_plan()
    query = next(q for q in plan.releases if q.name == "contacts_by_result")
    assert query.ball_bounds is not None and query.ball_bounds.weights == "last_release"
    text = canonical_query(query)
    assert '"bounds":{"max_l2":17.3,"weights":"last_release"}' in text
    week = next(q for q in plan.releases if q.name == "contacts_by_week")
    assert '"bounds":{"max_l2":11.27}' in canonical_query(week)  # defaults left out
    resolved = query.with_cell_weights((0.5, 1.5))
    assert resolved.ball_bounds is not None and resolved.ball_bounds.cell_weights == (0.5, 1.5)
    assert resolved.with_cell_weights(None) == query
    doc = _document()
    doc["releases"][6]["bounds"]["max_l2"] = 17.4
    assert plan_hash(parse_plan(doc)) != plan_hash(plan)
    with pytest.raises(PlanError, match="only an L2-ball query"):
        week.model_copy(update={"bounds": Bounds(max_groups=1, max_rows_per_group=1)}
                        ).with_cell_weights((1.0,))


def test_shares_exceeding_the_per_run_budget_are_refused_at_load() -> None:
    doc = _document()
    doc["releases"][0]["share"] = "4/24"  # one 24th too many
    message = _refused(doc)
    assert message == "test.yaml: releases: shares sum to 25/24 > 1, more than the per_run budget"


def test_shares_exactly_filling_the_budget_are_accepted() -> None:
    doc = _document()
    doc["releases"][0]["share"] = "2/24"  # now 23/24
    assert sum(q.share / PERIOD_DAYS[q.cadence]
               for q in parse_plan(doc).releases) == Fraction(23, 24)


def test_cadence_defaults_to_daily_and_lets_weekly_and_monthly_queries_take_more_shares() -> None:
    doc = _document()
    doc["releases"][0].pop("cadence", None)
    doc["releases"][0]["share"] = "2/24"
    plan = parse_plan(doc)
    assert plan.releases[0].cadence == "daily"
    # A daily query's cadence stays out of the canonical JSON: older plans keep their hash.
    assert "cadence" not in canonical_query(plan.releases[0])
    weekly = next(q for q in plan.releases if q.cadence == "weekly")
    assert json.loads(canonical_query(weekly))["cadence"] == "weekly"
    # Monthly: up to 1461/48 shares (days in an average month); 1/24 a day is 1461/1152.
    doc["releases"][0] |= {"cadence": "monthly", "share": "1461/1152"}
    assert daily_spend(parse_plan(doc)) == Fraction(22, 24) * Fraction(1, 250)


@pytest.mark.parametrize(("cadence", "share", "message"), [
    ("hourly", "1/24", "releases[0].cadence: Input should be 'daily', 'weekly' or 'monthly'"),
    ("weekly", "8", "releases[0].share: must be > 0 and ≤ 7 for a weekly query"),
    ("daily", "2", "releases[0].share: must be > 0 and ≤ 1"),
    ("weekly", "14/24", "releases: shares sum to 25/24 > 1"),  # 2/24 a day instead of 1/24
])
def test_cadences_and_their_shares_are_checked(cadence: str, share: str, message: str) -> None:
    doc = _document()
    index = next(i for i, q in enumerate(doc["releases"])
                 if q["name"] == "volunteers_by_departement")
    doc["releases"][index] |= {"cadence": cadence, "share": share}
    if index:
        doc["releases"].insert(0, doc["releases"].pop(index))
    assert message in _refused(doc)


def test_load_plan_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read the plan"):
        load_plan(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("releases: [\n", encoding="utf-8")
    with pytest.raises(PlanError, match=r"bad.yaml: not valid YAML at line \d"):
        load_plan(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(PlanError, match="a plan is a YAML mapping"):
        load_plan(bad)


def test_loose_cap_rho_from_epsilon_delta_is_rounded_down_and_implies_the_declared_guarantee(
        ) -> None:
    for eps, delta in [(8, "1e-7"), (1, "1e-6"), ("0.5", "1e-9"), (20, "1e-5")]:
        cap = Cap(epsilon=eps, delta=delta)
        rho = cap.cap_rho("bun-steinke-2016")
        assert cap.loose_cap_rho() == rho
        # ρ-zCDP ⇒ (ρ + 2√(ρ ln 1/δ), δ)-DP: the converted ρ must not exceed the declared ε...
        log_inv = math.log(1 / float(delta))
        assert float(rho) + 2 * math.sqrt(float(rho) * log_inv) <= float(eps)
        # ...and it is tight up to the 10⁻¹² flooring.
        bigger = float(rho) + 2e-12
        assert bigger + 2 * math.sqrt(bigger * log_inv) > float(eps)
        assert rho.denominator <= 10**12


def test_cap_rho_is_exact_when_declared_as_rho() -> None:
    assert Cap(rho="3/250").cap_rho() == Fraction(3, 250)
    assert Cap(rho="0.004").cap_rho() == Fraction(1, 250)
    assert Cap(rho=0.1).cap_rho() == Fraction(1, 10)  # a float is read through its repr


def test_public_keys_come_from_official_lists_and_the_declared_period() -> None:
    plan = load_plan()
    geo = load_geography()
    assert set(public_keys(plan, "departement")) == set(geo.departements)
    assert len(public_keys(plan, "region")) == 18
    weeks = public_keys(plan, "week")
    assert weeks[0] == "2026-W01" and weeks[-1] == "2026-W27"
    assert public_keys(plan, "month") == tuple(f"2026-{m:02d}" for m in range(1, 7))


def test_donation_clip_defaults_to_the_legal_cap() -> None:
    doc = _document()
    query = doc["releases"][10]
    assert query["value"] == "amount_cents"
    del query["clip"]
    assert parse_plan(doc).releases[10].clip_bounds() == (0.0, float(CAP_PER_CANDIDATE_CENTS))
