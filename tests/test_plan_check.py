"""`isoloir plan check`: expected half-widths from public sizes, before any budget is spent."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from privacy.plan import Plan, load_plan, parse_plan
from privacy.plan_check import Sizes, check_plan

DEFAULT = Path(__file__).resolve().parents[1] / "privacy" / "plans" / "default.yaml"


def _flagged(persons: int, plan: Plan | None = None) -> list[str]:
    sizes = Sizes(persons=persons, contacts=3 * persons, donations=persons // 5)
    return [c.query for c in check_plan(plan or load_plan(), sizes) if c.too_uncertain]


def _daily_volunteers() -> Plan:
    """The default plan with volunteers by département released daily (1/24 a day)."""
    doc = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    for query in doc["releases"]:
        if query["name"] == "volunteers_by_departement":
            query |= {"cadence": "daily", "share": "1/24"}
    return parse_plan(doc)


def test_volunteers_by_departement_daily_is_flagged_at_50k_and_not_at_2m() -> None:
    """Issue 14: a daily release drowns a few dozen volunteers per département."""
    daily = _daily_volunteers()
    assert "volunteers_by_departement" in _flagged(50_000, daily)
    assert "volunteers_by_departement" not in _flagged(2_000_000, daily)
    assert _flagged(2_000_000) == []


def test_the_default_plan_passes_plan_check_at_50k() -> None:
    """Issue 16: what the default plan publishes at 50,000 people (volunteers monthly and
    consistent with the région and national levels, donations by région weekly) is never
    'trop incertain' for a typical cell."""
    assert _flagged(50_000) == []


def test_a_hierarchical_query_is_checked_table_by_table_with_its_consistent_halfwidth() -> None:
    by_name = {c.query: c for c in check_plan(load_plan(), Sizes(50_000, 150_000, 10_000))}
    tables = [n for q in load_plan().releases for n in q.table_names()]
    assert list(by_name) == tables
    supporters = by_name["supporters_by_departement"]
    # σ = 1/√(2ρ), ρ = 0.004 · 3/24 · 16/24: ± 76 released alone; the région and national
    # levels bring it down (WLS variance in closed form)
    assert supporters.halfwidth is not None and 68 <= supporters.halfwidth <= 74
    assert "± 76" in supporters.note
    region = by_name["supporters_by_region"]
    assert region.halfwidth is not None and region.halfwidth < 108  # ± 108 released alone
    assert supporters.bias.startswith("0")
    week = by_name["contacts_by_week"]  # an L2 ball: σ = max_l2 / √(2ρ) in every cell
    assert week.bounds == "L2 ≤ 11.27" and week.halfwidth_max is None
    rho = 0.004 * 2 / 24
    assert week.halfwidth == round(NormalDist().inv_cdf(0.975) * 11.27 / math.sqrt(2 * rho))
    result = by_name["contacts_by_result"]  # weekly, weighted: the mean half-width
    assert result.bounds == "L2 ≤ 17.3, weighted" and result.halfwidth_max is None
    rho = 0.004 * 7 / 24
    assert result.halfwidth == round(NormalDist().inv_cdf(0.975) * 17.3 / math.sqrt(2 * rho))


def test_a_weighted_ball_shows_its_widest_cell_from_the_last_release(tmp_path: Path) -> None:
    published = tmp_path / "published"
    published.mkdir()
    document = {"query_name": "contacts_by_result", "created_at": "2026-03-02T06:00:00+00:00",
                "dataset_id": "campaign",
                "bounds": {"max_l2": 18.3, "weights": "last_release",
                           "cell_weights": [0.5, 3.0, 0.5]}}
    (published / "r.json").write_text(json.dumps(document), encoding="utf-8")
    from privacy.plan_check import last_releases

    last = last_releases(published, "campaign")
    by_name = {c.query: c for c in check_plan(load_plan(), Sizes(50_000, 150_000, 10_000),
                                              last)}
    result = by_name["contacts_by_result"]
    assert result.halfwidth is not None and result.halfwidth_max is not None
    assert result.halfwidth_max == pytest.approx(3.0 * result.halfwidth, abs=2)


def test_cli_plan_check_json_costs_nothing(isoloir_home: Path) -> None:
    out = CliRunner().invoke(app, ["plan", "check", "--persons", "50000", "--contacts",
                                   "150000", "--donations", "10000", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["cost_rho"] == "0"
    assert doc["too_uncertain"] == []
    assert len(doc["queries"]) == sum(len(q.table_names()) for q in load_plan().releases)


def _published(directory: Path, name: str, created_at: str, share: float | None,
               dataset_id: str = "campaign") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    document = {"query_name": name, "created_at": created_at, "dataset_id": dataset_id,
                "bounds": {"max_groups": 12, "max_rows_per_group": 2},
                "rows_cut": None if share is None else {"share_estimate": share}}
    (directory / f"{name}--{dataset_id}-{created_at[:10]}.json").write_text(
        json.dumps(document), encoding="utf-8")


def test_bias_is_the_last_published_rows_cut_share(tmp_path: Path) -> None:
    """A query released before gets its bias as a number: the rows-cut share its latest
    release published (a DP output already charged), not an older one."""
    from privacy.plan_check import last_releases

    published = tmp_path / "published"
    _published(published, "contact_rate_by_week", "2026-03-01T06:00:00+00:00", 0.2)
    _published(published, "contact_rate_by_week", "2026-03-02T06:00:00+00:00", 0.0612)
    _published(published, "contact_rate_by_week", "2026-03-09T06:00:00+00:00", 0.5, "other")
    _published(published, "supporters_by_departement", "2026-03-02T06:00:00+00:00", None)
    (published / "broken.json").write_text("{", encoding="utf-8")
    last = last_releases(published, load_plan().dataset_id)
    by_name = {c.query: c for c in check_plan(load_plan(), Sizes(50_000, 150_000, 10_000),
                                              last)}
    week = by_name["contact_rate_by_week"]
    assert week.bias_share_last == 0.0612
    assert "6 %" in week.bias and "12 × 2" in week.bias and "2026-03-02" in week.bias
    assert by_name["donations_count_by_region"].bias_share_last is None  # never released
    assert by_name["donations_count_by_region"].bias == "measured at release"
    assert by_name["supporters_by_departement"].bias.startswith("0")
    assert last_releases(tmp_path / "nowhere", "campaign") == {}
