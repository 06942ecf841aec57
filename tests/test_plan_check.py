"""`isoloir plan check`: expected half-widths from public sizes, before any budget is spent."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from privacy.plan import load_plan
from privacy.plan_check import Sizes, check_plan


def _flagged(persons: int) -> list[str]:
    sizes = Sizes(persons=persons, contacts=3 * persons, donations=persons // 5)
    return [c.query for c in check_plan(load_plan(), sizes) if c.too_uncertain]


def test_volunteers_by_departement_is_flagged_at_50k_and_not_at_2m() -> None:
    assert "volunteers_by_departement" in _flagged(50_000)
    assert "volunteers_by_departement" not in _flagged(2_000_000)
    assert _flagged(2_000_000) == []


def test_halfwidths_match_the_engine_noise_for_a_persons_count() -> None:
    by_name = {c.query: c for c in check_plan(load_plan(), Sizes(50_000, 150_000, 10_000))}
    supporters = by_name["supporters_by_departement"]
    # σ = 1/√(2ρ), ρ = 0.004 · 2/24: the default plan's own note says ± 76
    assert supporters.halfwidth is not None and 74 <= supporters.halfwidth <= 78
    assert supporters.bias.startswith("0")
    assert by_name["contacts_by_week"].bounds == "auto"
    assert by_name["contacts_by_week"].halfwidth_max is not None


def test_cli_plan_check_json_costs_nothing(isoloir_home: Path) -> None:
    out = CliRunner().invoke(app, ["plan", "check", "--persons", "50000", "--contacts",
                                   "150000", "--donations", "10000", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["cost_rho"] == "0"
    assert "volunteers_by_departement" in doc["too_uncertain"]
    assert len(doc["queries"]) == len(load_plan().releases)
