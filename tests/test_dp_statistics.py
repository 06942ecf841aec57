"""Statistical check of the mechanism: the published intervals and scales tell the truth.

On fixed synthetic data, one grouped count (contact attempts by ISO week, bounded per
person) is released 2,000 times. Its measurement is compiled once (bounding and calibration
are deterministic); every release draws fresh noise from OpenDP. Over the 2,000 × 27 cells:

* the published 95 % intervals (estimate ± ci95_halfwidth) cover the true bounded count
  between 93 % and 97 % of the time;
* the mean absolute error is within 10 % of what the stated noise scale predicts
  (σ·√(2/π) for Gaussian noise).

The count's measurement gets its part of ρ (``metadata["rho_split"]``): the rest counts the
rows the bounds cut. A second test does the same with ``bounds: auto`` against the *truth*
(every row, nothing cut), through the bias-aware interval.
A third does it for the L2 balls, plain and weighted, cell by cell (a weighted ball
states a different scale in every cell).
"""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.vocabulary import RESULTS, iso_weeks
from privacy.engine import ReleaseData, compile_query
from privacy.plan import parse_plan

RELEASES = 2_000


def _snapshot(directory: Path) -> ReleaseData:
    rng = np.random.default_rng(2026)  # synthetic data only; the noise comes from OpenDP
    weeks = iso_weeks(date(2026, 1, 1), date(2026, 6, 30))
    persons = 5_000
    per_person = rng.integers(1, 12, persons)
    owner = np.repeat(np.arange(persons), per_person)
    frame = pl.DataFrame({
        "person_key": owner.astype(np.int64),
        "week": pl.Series(weeks).gather(rng.integers(0, len(weeks), len(owner))),
        "result": pl.Series(RESULTS).gather(rng.integers(0, len(RESULTS), len(owner))),
        "channel": ["door"] * len(owner), "region": ["11"] * len(owner),
        "departement": ["75"] * len(owner)})
    path = directory / "contacts.parquet"
    frame.write_parquet(path)
    return ReleaseData(tables={"contacts": path}, snapshot_hash="statistics")


def test_intervals_cover_and_errors_match_the_stated_scale(tmp_path: Path) -> None:
    plan = parse_plan({
        "dataset_id": "stats", "privacy_unit": "person", "cap": {"rho": "10"},
        "per_run": {"rho": "1/100"}, "cadence": "test", "period": ["2026-01-01", "2026-06-30"],
        "releases": [{"name": "attempts_by_week", "title": "t", "title_fr": "t",
                      "measure": "count", "table": "contacts", "group_by": ["week"],
                      "bounds": {"max_groups": 4, "max_rows_per_group": 2}, "share": 1}]})
    query = plan.releases[0]
    compiled = compile_query(query, plan, _snapshot(tmp_path), Fraction(1, 100))
    truth = (compiled.cells.labels.join(compiled.frame.group_by("cell").agg(pl.col("n").sum()),
                                        on="cell", how="left")
             .sort("cell")["n"].fill_null(0).cast(pl.Float64).to_numpy())

    results = compiled.release(RELEASES)

    estimates = np.stack([r.table["estimate"].to_numpy() for r in results])
    halfwidth = results[0].table["ci95_halfwidth"][0]
    scale = results[0].table["noise_scale"][0]
    errors = estimates - truth
    assert errors.shape == (RELEASES, 27)
    measured = float(Fraction(results[0].metadata["rho_split"]["measurement"]))
    assert measured == pytest.approx(0.01 * 2 / 3)  # R = 2 against the rows-cut bound's 1
    assert scale == pytest.approx(math.sqrt(4) * 2 / math.sqrt(2 * measured))  # √G·R/√(2ρ)
    coverage = float(np.mean(np.abs(errors) <= halfwidth))
    assert 0.93 <= coverage <= 0.97, coverage
    predicted = scale * math.sqrt(2 / math.pi)
    observed = float(np.mean(np.abs(errors)))
    assert abs(observed - predicted) <= 0.10 * predicted, (observed, predicted)
    assert abs(float(np.mean(errors))) < 0.05 * scale  # unbiased around the bounded count


def test_auto_bounds_bias_aware_intervals_cover_the_truth(tmp_path: Path) -> None:
    plan = parse_plan({
        "dataset_id": "stats", "privacy_unit": "person", "cap": {"rho": "10"},
        "per_run": {"rho": "1/100"}, "cadence": "test", "period": ["2026-01-01", "2026-06-30"],
        "releases": [{"name": "attempts_by_week", "title": "t", "title_fr": "t",
                      "measure": "count", "table": "contacts", "group_by": ["week"],
                      "bounds": "auto", "share": 1}]})
    query = plan.releases[0]
    data = _snapshot(tmp_path)
    compiled = compile_query(query, plan, data, Fraction(1, 100))  # draws the choice once
    rows = pl.read_parquet(data.tables["contacts"])
    truth = (compiled.cells.labels.join(rows.group_by("week").len(), on="week", how="left")
             .sort("cell")["len"].fill_null(0).cast(pl.Float64).to_numpy())

    results = compiled.release(RELEASES)

    aware = np.stack([r.table["bias_aware_estimate"].to_numpy() for r in results])
    halfwidth = results[0].table["bias_aware_ci95_halfwidth"][0]
    coverage = float(np.mean(np.abs(aware - truth) <= halfwidth))
    assert 0.90 <= coverage <= 0.99, (coverage, compiled.query.bounds)
    plain = np.stack([r.table["estimate"].to_numpy() for r in results])
    # the bounded count is low (bias); the bias-aware estimate is centred far closer to the
    # truth (what it still misses: rows beyond both bounds)
    assert abs(float(np.mean(aware - truth))) < 0.5 * abs(float(np.mean(plain - truth)))
    assert abs(float(np.mean(aware - truth))) < 0.25 * halfwidth


@pytest.mark.parametrize("weighted", [False, True], ids=["ball", "weighted_ball"])
def test_l2_ball_intervals_cover_and_errors_match_the_stated_scale(
        tmp_path: Path, weighted: bool) -> None:
    """The L2 balls (issue #14) state a noise scale per cell (weighted: w_i × the vector's);
    over 2,000 releases the published intervals cover the bounded count 93–97 % of the time
    and the error matches the stated scale, cell by cell."""
    bounds: dict[str, object] = {"max_l2": 4.0}
    if weighted:
        bounds["weights"] = "last_release"
    plan = parse_plan({
        "dataset_id": "stats", "privacy_unit": "person", "cap": {"rho": "10"},
        "per_run": {"rho": "1/100"}, "cadence": "test", "period": ["2026-01-01", "2026-06-30"],
        "releases": [{"name": "attempts_by_week", "title": "t", "title_fr": "t",
                      "measure": "count", "table": "contacts", "group_by": ["week"],
                      "bounds": bounds, "share": 1}]})
    query = plan.releases[0]
    weights = np.linspace(0.5, 2.0, 27) / np.linspace(0.5, 2.0, 27).mean() if weighted else None
    if weights is not None:  # as a run resolves them from its last published release
        query = query.with_cell_weights(tuple(float(w) for w in weights))
    compiled = compile_query(query, plan, _snapshot(tmp_path), Fraction(1, 100))
    assert compiled.ball is not None
    truth = np.array(compiled.ball.counts, dtype=float)  # what the ball kept, per cell
    assert 0 < truth.sum() < pl.read_parquet(tmp_path / "contacts.parquet").height  # it cut

    results = compiled.release(RELEASES)

    estimates = np.stack([r.table["estimate"].to_numpy() for r in results])
    halfwidth = results[0].table["ci95_halfwidth"].to_numpy()
    scale = results[0].table["noise_scale"].to_numpy()
    expected = compiled.ball.scale * (np.ones(27) if weights is None else weights)
    assert scale == pytest.approx(expected)
    assert compiled.ball.scale == pytest.approx(4.0 / math.sqrt(2 * 0.01), rel=1e-6)
    errors = estimates - truth
    coverage = float(np.mean(np.abs(errors) <= halfwidth))
    assert 0.93 <= coverage <= 0.97, coverage
    observed = np.mean(np.abs(errors), axis=0)
    predicted = scale * math.sqrt(2 / math.pi)
    assert float(np.mean(observed / predicted)) == pytest.approx(1.0, abs=0.05)
    if weights is not None:  # the widest-weighted cells really are the noisiest
        assert observed[-3:].mean() > 2.5 * observed[:3].mean()
