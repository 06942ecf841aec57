"""The empirical privacy audit (issue 17): the real release path keeps ε, and broken glue fails.

CI version: every mechanism family at a few hundred trials, then three mutations of the
glue that the audit must catch (each switched on by monkeypatching the engine here, never
by anything the product's configuration can reach):

(a) bounding off: each person keeps every cell and up to 1,000 rows in each (on the 18
    régions of donations_count_by_region: in one cell OpenDP's own clip of each person-cell
    count to [0, R] would hide it; the cell bound is ours alone);
(b) a sensitivity doubled: the measurement carries half the noise its declared ρ needs
    (built for 4ρ, reporting ρ), as when the bound declared to OpenDP is half the real one;
(c) a larger ρ than charged: the engine is handed 8 × the ρ the ledger charged (the largest
    share of the default plan is 1/8 of a run: handing a query the run's ρ).

(b) is the hardest to see (ρ × 4 in effect): it needs ~10,000 trials per dataset to be caught
every time (measured on simulated Gaussians: margin 0.99 ± 0.34 nats at 10,000), so (b) and
(c) run on a one-cell donation count, the cheapest release. Each test
prints the audit's own time (visible with ``-s``, and always in the captured output on failure).
"""

from __future__ import annotations

import json
import math
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import privacy.engine as engine
from core.errors import InvariantViolation
from core.settings import load_settings
from core.vocabulary import CAP_PER_PARTY_YEAR_CENTS
from privacy import audit_dp
from privacy.accountant import epsilon_equivalent
from privacy.autobounds import excess_bounds, profile_bins
from privacy.bounding import bound_l2, bound_with_excess, l2_norms
from privacy.plan import Bounds, load_plan, parse_plan

FAMILY_TRIALS = 500
PLAN = load_plan()
QUERIES = {q.name: q for q in PLAN.releases}
#: One cell, the default plan's donation bound: the cheapest release (≈ 2.3 ms against 3.7 ms
#: for 18 régions), for the mutations that need 10,000 trials. The glue is the same.
ONE_CELL = parse_plan({
    "dataset_id": "audit", "privacy_unit": "person", "cap": {"epsilon": 8, "delta": "1e-7"},
    "per_run": {"rho": "1/250"}, "cadence": "audit", "period": ["2026-01-01", "2026-06-30"],
    "releases": [{"name": "donations_count", "title": "Donations", "title_fr": "Dons",
                  "measure": "count", "table": "donations",
                  "bounds": {"max_groups": 1, "max_rows_per_group": 6}, "share": 1}]})


def _say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[dp audit] {text}")


def _audit(family: str, trials: int, tmp_path: Path) -> audit_dp.FamilyResult:
    query = QUERIES[audit_dp.FAMILIES[family]]
    return audit_dp.audit_query(query, PLAN, trials=trials, scratch=tmp_path, family=family)


def _row(r: audit_dp.FamilyResult) -> str:
    lower = "none" if r.test_epsilon_lower is None else f"{r.test_epsilon_lower:.3f}"
    at_plan = "none" if r.epsilon_lower is None else f"{r.epsilon_lower:.3f}"
    return (f"{r.family:<14} {r.query:<26} trials {r.trials:>6}  ρ {r.rho}  "
            f"δ {r.test_delta:g}: ε declared {r.test_epsilon_declared:.3f}, lower bound {lower}"
            f" | δ {r.plan_delta:g}: declared {r.epsilon_declared:.3f}, lower bound {at_plan}"
            f"  ({r.seconds:.1f} s)")


# ----------------------------------------------------------------------------- the audit

def test_every_family_stays_within_the_epsilon_the_ledger_declares(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    report = audit_dp.run_audit(PLAN, trials=FAMILY_TRIALS, scratch=tmp_path)
    seconds = time.perf_counter() - started
    _say(capsys, f"families, CI version: {seconds:.1f} s")
    for r in report.results:
        _say(capsys, _row(r))
    assert [r.family for r in report.results] == list(audit_dp.FAMILIES)
    assert report.ok
    for r in report.results:
        assert r.trials == FAMILY_TRIALS and r.rho == "1/1"
        assert r.epsilon_declared == pytest.approx(epsilon_equivalent(Fraction(1), 1e-7))
        assert r.test.n == FAMILY_TRIALS - int(FAMILY_TRIALS * audit_dp.SELECTION_SHARE)
        for check in r.checks:
            assert check.epsilon_declared == pytest.approx(epsilon_equivalent(Fraction(1),
                                                                              check.delta))
            assert check.epsilon_lower is None or check.epsilon_lower <= check.epsilon_declared


# ----------------------------------------------------------------------------- mutations

def _no_bounding(real: Any) -> Any:
    def unbounded(rows: pl.DataFrame, *, bounds: Bounds, n_cells: int, shape: Any,
                  clipping: Any = None) -> tuple[pl.DataFrame, pl.DataFrame]:
        return real(rows, bounds=Bounds(max_groups=n_cells, max_rows_per_group=1000),
                    n_cells=n_cells, shape=shape, clipping=clipping)
    return unbounded


def test_mutation_a_bounding_off_makes_the_audit_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The engine bounds (and splits off the rows cut) with bound_with_excess: switched off
    # there, the count keeps everything and the rows-cut count sees nothing cut.
    monkeypatch.setattr(engine, "bound_with_excess", _no_bounding(engine.bound_with_excess))
    r = _audit("bounded_count", 1_200, tmp_path)
    _say(capsys, "mutation (a) bounding off: " + _row(r))
    assert not r.passed
    assert r.margin is not None and r.margin > 0
    assert r.test_epsilon_lower is not None and r.test_epsilon_lower > r.test_epsilon_declared


@pytest.mark.parametrize("family", ["l2_ball_count", "weighted_l2_histogram"])
def test_mutation_a_ball_off_makes_the_l2_ball_audit_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], family: str) -> None:
    """The L2 ball (plain or weighted) with its water-fill switched off (a radius 100 times
    the declared one): the newcomer's attempts in every cell pass into the counts, and the
    audit sees it."""
    real = engine.bound_l2

    def unbounded(rows: pl.DataFrame, *, max_l2: float, n_cells: int,
                  weights: Any = None) -> tuple[pl.DataFrame, pl.DataFrame]:
        return real(rows, max_l2=100 * max_l2, n_cells=n_cells, weights=weights)

    monkeypatch.setattr(engine, "bound_l2", unbounded)
    r = _audit(family, 1_200, tmp_path)
    _say(capsys, f"mutation (a) {family} off: " + _row(r))
    assert not r.passed
    assert r.test_epsilon_lower is not None and r.test_epsilon_lower > r.test_epsilon_declared


def test_mutation_b_half_the_noise_makes_the_audit_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = engine._measurement

    def half_noise(spec: Any, query: Any, schema: Any, n_cells: int, rho: float,
                   groups: int | None = None) -> tuple[Any, list[Any], float]:
        measurement, d_in, spent = real(spec, query, schema, n_cells, 4 * rho, groups)
        return measurement, d_in, spent / 4  # claims ρ, adds the noise of 4ρ (σ / 2)

    monkeypatch.setattr(engine, "_measurement", half_noise)
    r = audit_dp.audit_query(ONE_CELL.releases[0], ONE_CELL, trials=10_000, scratch=tmp_path,
                             family="bounded_count")
    _say(capsys, "mutation (b) sensitivity doubled: " + _row(r))
    assert not r.passed
    assert r.margin is not None and r.margin > 0


def test_mutation_c_a_larger_rho_than_charged_makes_the_audit_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = engine.compile_query
    monkeypatch.setattr(engine, "compile_query",
                        lambda query, plan, data, rho: real(query, plan, data, 8 * rho))
    r = audit_dp.audit_query(ONE_CELL.releases[0], ONE_CELL, trials=1_500, scratch=tmp_path,
                             family="bounded_count")
    _say(capsys, "mutation (c) ρ × 8 in the engine: " + _row(r))
    assert r.rho == "1/1"  # what the ledger charged; the engine spent 8
    assert not r.passed
    assert r.margin is not None and r.margin > 0


def test_rho_rounded_up_inside_the_engine_is_refused_before_any_noise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other half of (c): a float ρ one part in 10⁹ above the charge is too small for any
    statistical test to see, so the engine's own guard must refuse it, and does."""
    monkeypatch.setattr(engine, "float_rho_down", lambda rho: float(rho) * (1 + 1e-9))
    query = QUERIES[audit_dp.FAMILIES["bounded_count"]]
    data, _, _ = audit_dp.neighbours(query, PLAN, tmp_path)
    with pytest.raises(InvariantViolation, match="would spend"):
        engine.compile_query(query, PLAN, data, Fraction(1, 3))


# ----------------------------------------------------------------------------- the parts

def test_the_newcomer_goes_past_every_bound_in_every_cell(tmp_path: Path) -> None:
    for family, name in audit_dp.FAMILIES.items():
        query = QUERIES[name]
        data, neighbour, extra = audit_dp.neighbours(query, PLAN, tmp_path / family)
        d = pl.read_parquet(data.tables[query.table])
        dp_ = pl.read_parquet(neighbour.tables[query.table])
        key = audit_dp.BASE_PERSONS // 2
        newcomer = dp_.filter(pl.col("person_key") == key)
        assert newcomer.height == extra == dp_.height - d.height
        assert extra >= audit_dp.MIN_EXTRA_ROWS[query.table]
        cells = engine.cell_keys(PLAN, query)
        per_cell = newcomer.group_by(list(query.group_by)).len()
        assert per_cell.height == cells.n_cells  # present in every public cell
        if query.ball_bounds is not None:  # every cell alone past the ball's radius
            d = query.ball_bounds.max_l2
            weights = None  # a weighted ball: the audit's fixed uneven weights
            if query.ball_bounds.weights == "last_release":
                weights = np.asarray(audit_dp.audit_weights(cells.n_cells))
            assert int(per_cell["len"].min()) > d
            rows = engine.load_rows(query, neighbour, cells)
            mine = rows.filter(pl.col("person_key") == key).group_by("cell").agg(n=pl.len())
            assert float(l2_norms(mine.with_columns(person_key=pl.lit(key)), weights)[0]) > d
            kept, _ = bound_l2(rows, max_l2=d, n_cells=cells.n_cells, weights=weights)
            mine = kept.filter(pl.col("person_key") == key)
            assert 0 < float(l2_norms(mine, weights)[0]) <= d
            continue
        # Past the largest bound the query may apply (for bounds: auto, the largest public
        # candidate, whichever the DP choice draws) and past the rows-cut count's bound too.
        largest = audit_dp.largest_bounds(query)
        if query.auto_bounds is not None:
            assert largest.max_rows_per_group == max(query.auto_bounds.max_rows_per_group)
            assert largest.max_groups >= cells.n_cells  # every cell: more than any G can keep
        beyond = largest.max_rows_per_group + excess_bounds(largest).max_rows_per_group
        assert int(per_cell["len"].min()) > beyond
        if query.value == "amount_cents":
            assert newcomer["amount_cents"].unique().to_list() == [CAP_PER_PARTY_YEAR_CENTS]
        if query.value == "contact_made":
            assert newcomer["result"].unique().to_list() == ["contacted"]
        # Everyone else is untouched; keys after the newcomer shift by one (a real snapshot).
        others = dp_.filter(pl.col("person_key") != key).with_columns(
            pl.when(pl.col("person_key") > key).then(pl.col("person_key") - 1)
            .otherwise(pl.col("person_key")).alias("person_key"))
        assert others.equals(d)
        # The real bounding cuts the newcomer back to the declaration, for every bound the
        # query may apply (an auto query's every candidate), and the rows-cut count's bound
        # cuts them again.
        rows = engine.load_rows(query, neighbour, cells)
        rule = query.auto_bounds
        candidates = [query.fixed_bounds()] if rule is None else [
            Bounds(max_groups=g, max_rows_per_group=r)
            for g in sorted({min(g, cells.n_cells) for g in rule.max_groups})
            for r in rule.max_rows_per_group]
        for bounds in candidates:
            fixed = query.with_bounds(bounds)
            spec = engine._spec(fixed)
            bounded, excess = bound_with_excess(
                rows, bounds=bounds, n_cells=cells.n_cells,
                shape="rows" if spec.shape == "rows" else "aggregate", clipping=spec.clipping)
            mine = bounded.filter(pl.col("person_key") == key)
            assert mine["cell"].n_unique() == bounds.max_groups
            if engine.measures_rows_cut(query):
                cut = excess.filter(pl.col("person_key") == key)
                assert cut.height == cells.n_cells and int(cut["n"].min()) > excess_bounds(
                    bounds).max_rows_per_group
        if rule is not None:  # the newcomer is in the top bin of both histograms
            bins = profile_bins(rule, cells.n_cells)
            top = sorted(engine.choice_frame(rows.filter(pl.col("person_key") == key),
                                             bins)["cell"].to_list())
            assert top == [bins.groups_top - 1, bins.n_bins - 1]


def test_base_snapshot_is_fixed_and_needs_no_random_generator() -> None:
    for table in ("persons", "contacts", "donations"):
        assert audit_dp.base_table(table, PLAN).equals(audit_dp.base_table(table, PLAN))


def test_docstring_examples_run() -> None:
    import doctest

    result = doctest.testmod(audit_dp)
    assert result.attempted > 0 and result.failed == 0


def test_clopper_pearson_matches_the_exact_binomial_tails() -> None:
    from scipy.stats import binom

    lower, upper = audit_dp.clopper_pearson(30, 1000, 0.025)
    assert binom.sf(29, 1000, lower) == pytest.approx(0.025, rel=1e-6)  # P[X ≥ 30 | lower]
    assert binom.cdf(30, 1000, upper) == pytest.approx(0.025, rel=1e-6)  # P[X ≤ 30 | upper]
    assert audit_dp.clopper_pearson(0, 50, 0.025)[0] == 0.0
    assert audit_dp.clopper_pearson(50, 50, 0.025)[1] == 1.0
    with pytest.raises(InvariantViolation):
        audit_dp.clopper_pearson(51, 50, 0.025)


def test_lower_bound_is_the_documented_formula_on_separable_outputs() -> None:
    x0 = np.zeros((1000, 3), dtype=np.float32)
    x1 = np.zeros((1000, 3), dtype=np.float32)
    x0[:, 1] = np.arange(1000) % 7  # varies, identical on both sides: no weight
    x1[:, 1] = np.arange(1000) % 7
    x1[:, 0] = 1.0
    x0[::100, 0] = 0.5  # so the first feature has a variance on both sides
    x1[::100, 0] = 0.5
    test, _, checks = audit_dp.lower_bounds(x0, x1, rho=Fraction(1), plan_delta=1e-7)
    n = 1000 - int(1000 * audit_dp.SELECTION_SHARE)
    assert test.n == n
    p0_lower, _ = audit_dp.clopper_pearson(test.hits0, n, 0.025)
    _, p1_upper = audit_dp.clopper_pearson(test.hits1, n, 0.025)
    assert (test.p0_lower, test.p1_upper) == (p0_lower, p1_upper)
    for check in checks:
        expected = math.log((p0_lower - check.delta) / p1_upper)
        assert check.epsilon_lower == pytest.approx(expected)
    assert test.hits0 >= n - n // 100 - 1 and test.hits1 <= n // 100 + 1  # it separates them


def test_identical_outputs_give_no_evidence_against_the_ledger() -> None:
    x = np.tile((np.arange(2000) % 97).astype(np.float32)[:, None], (1, 2))
    _, _, checks = audit_dp.lower_bounds(x, x.copy(), rho=Fraction(1, 100), plan_delta=1e-7)
    assert all(not c.violated for c in checks)
    assert all(c.epsilon_lower is None or c.epsilon_lower <= 0.05 for c in checks)


def test_record_round_trip(tmp_path: Path) -> None:
    test = audit_dp.TailTest("D'|D", "above", 1.5, 10, 2, 700, 0.01, 0.02)
    checks = (audit_dp.DeltaCheck(1e-7, 9.03, None), audit_dp.DeltaCheck(0.1, 4.03, 0.5))
    result = audit_dp.FamilyResult(
        family="bounded_count", query="q", measure="count", trials=1000, rho="1/1",
        plan_delta=1e-7, epsilon_declared=9.03, epsilon_lower=None, test_delta=0.1,
        test_epsilon_declared=4.03, test_epsilon_lower=0.5, checks=checks, test=test,
        newcomer_rows=126, cells=18, seconds=1.0)
    report = audit_dp.DPAuditReport(started_at="2026-03-01T00:00:00+00:00", seconds=2.0,
                                    confidence=0.95, plan_hash="h", results=(result,))
    path = audit_dp.record_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(report.to_json(), encoding="utf-8")
    read = audit_dp.read_record(path)
    assert read is not None and read.ok and read.rows[0].test_epsilon_lower == 0.5
    assert read.rows[0].epsilon_lower is None and read.rows[0].passed
    assert json.loads(path.read_text())["results"][0]["margin"] == pytest.approx(0.5 - 4.03)
    assert audit_dp.read_record(tmp_path / "missing.json") is None


# ----------------------------------------------------------------------------- command, report

def test_isoloir_audit_dp_records_the_results_and_the_auditor_report_shows_them(
        isoloir_home: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from reports.auditor import produce_auditor_report
    from reports.dp_audit import read_dp_audit

    outcome = CliRunner().invoke(app, ["audit", "dp", "--families", "--trials", "40", "--json"])
    assert outcome.exit_code == 0, outcome.output
    printed = json.loads(outcome.stdout)
    record = audit_dp.record_path(isoloir_home)
    assert printed["record"] == str(record) and printed["ok"] is True
    stored = json.loads(record.read_text(encoding="utf-8"))
    assert [r["family"] for r in stored["results"]] == list(audit_dp.FAMILIES)
    assert all(r["trials"] == 40 for r in stored["results"])
    read, error = read_dp_audit(isoloir_home)
    assert error is None and read is not None and read.ok and len(read.rows) == len(audit_dp.FAMILIES)
    written = produce_auditor_report(load_settings(), lang="en")
    page = written.path.read_text(encoding="utf-8")
    assert 'id="dp-audit" data-status="ok"' in page
    for row in read.rows:
        assert row.query in page


def test_a_failed_dp_audit_exits_4_and_is_shown_as_failed(
        isoloir_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import pipeline.dp_audit
    from cli.main import app
    from reports.auditor import produce_auditor_report

    def leaking(plan: Any, **kwargs: Any) -> audit_dp.DPAuditReport:
        test = audit_dp.TailTest("D'|D", "above", 1.0, 700, 0, 700, 0.99, 0.005)
        checks = (audit_dp.DeltaCheck(0.1, 4.03, 5.2),)
        bad = audit_dp.FamilyResult(
            family="bounded_count", query="donations_count_by_region", measure="count",
            trials=1000, rho="1/1", plan_delta=1e-7, epsilon_declared=9.03,
            epsilon_lower=5.3, test_delta=0.1, test_epsilon_declared=4.03,
            test_epsilon_lower=5.2, checks=checks, test=test, newcomer_rows=126, cells=18,
            seconds=1.0)
        return audit_dp.DPAuditReport("2026-03-01T00:00:00+00:00", 1.0, 0.95, "h", (bad,))

    monkeypatch.setattr(pipeline.dp_audit, "run_audit", leaking)
    outcome = CliRunner().invoke(app, ["audit", "dp", "--trials", "20"])
    assert outcome.exit_code == 4, outcome.output
    assert "lower bound exceeds the declared ε" in outcome.output
    page = produce_auditor_report(load_settings(), lang="fr").path.read_text(encoding="utf-8")
    assert 'id="dp-audit" data-status="failed"' in page and "fuite détectée" in page


def test_no_record_no_section_and_a_broken_record_is_said(isoloir_home: Path) -> None:
    from reports.dp_audit import dp_audit_section, read_dp_audit
    from reports.i18n import translator

    assert read_dp_audit(isoloir_home) == (None, None)
    assert str(dp_audit_section(None, None, translator("en"))) == ""
    record = audit_dp.record_path(isoloir_home)
    record.parent.mkdir(parents=True)
    record.write_text('{"results": [{"family": 1}]}', encoding="utf-8")
    read, error = read_dp_audit(isoloir_home)
    assert read is None and error is not None and "not a DP audit record" in error
    shown = str(dp_audit_section(read, error, translator("en")))
    assert 'data-status="unreadable"' in shown
