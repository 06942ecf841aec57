"""Property tests of the glue the DP audit relies on (issue 17), with Hypothesis.

1. For random persons and random bounds, no person's bounded contribution exceeds what the
   engine declares to OpenDP: cells ≤ num_groups, frame rows per cell ≤ per_group, counted
   rows ≤ R, values and totals inside the clip that OpenDP's sums are declared with. The
   bounded frame is :func:`privacy.bounding.bound_contributions` run as the engine runs it,
   checked equal to the frame the real :func:`privacy.engine.compile_query` hands to OpenDP.
2. The published metadata never carries a number computed from the data outside DP: every
   number in the JSON file :mod:`privacy.publish` writes for a real release (real engine,
   real accountant and ledger) on random small data is a plan constant, a count of public
   keys, the ledger position, an accuracy figure of the OpenDP measurement (which depends on
   the plan and ρ only: the same on other data), or a DP output in the published table.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import secrets
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import opendp.mod
import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import privacy.engine as engine
from core.settings import load_settings
from core.vocabulary import months
from privacy.autobounds import choose_bounds, excess_bounds, profile_bins
from privacy.bounding import bound_l2, bound_with_excess, expand_counts, l2_norms
from privacy.plan import Bounds, Plan, _jsonable, parse_plan, query_cost
from warehouse.reader import SNAPSHOT_SCHEMAS

PERIOD = ("2026-01-01", "2026-06-30")
MONTHS = months(*(datetime.fromisoformat(d).date() for d in PERIOD))
REGIONS = ("11", "24", "84", "93")


def _plan(measure: str, groups: int, limit: int, clip_hi: int, group_by: list[str],
          auto: bool = False, ball: float | None = None) -> Plan:
    """One query on donations; ``auto``: bounds chosen under DP among 1..groups × 1..limit;
    ``ball``: each person's vector of cell counts cut to that L2 norm."""
    bounds: dict[str, Any] = {"max_groups": groups if group_by else 1,
                              "max_rows_per_group": limit}
    if ball is not None:
        bounds = {"max_l2": ball}
    if auto:
        bounds = {"auto": True, "share": "1/5",
                  "max_groups": list(range(1, (groups if group_by else 1) + 1)),
                  "max_rows_per_group": list(range(1, limit + 1))}
    query: dict[str, Any] = {
        "name": "q", "title": "t", "title_fr": "t", "measure": measure, "table": "donations",
        "group_by": group_by, "share": 1, "bounds": bounds}
    if measure in ("sum", "mean", "quantile"):
        query |= {"value": "amount_cents", "clip": [0, clip_hi]}
    if measure == "quantile":
        query["quantiles"] = [0.5]
    return parse_plan({"dataset_id": "props", "privacy_unit": "person",
                       "cap": {"epsilon": 8, "delta": "1e-7"}, "per_run": {"rho": "1/2"},
                       "cadence": "test", "period": list(PERIOD), "releases": [query]})


def _donations(persons: list[list[tuple[int, int, int]]]) -> pl.DataFrame:
    """Snapshot rows person by person: (month index, région index, amount)."""
    rows = [{"person_key": key, "amount_cents": amount, "month": MONTHS[m % len(MONTHS)],
             "method": "card", "recurring": False, "region": REGIONS[r % len(REGIONS)],
             "departement": "75", "commune": None}
            for key, gifts in enumerate(persons) for m, r, amount in gifts]
    return pl.DataFrame(rows, schema=dict(SNAPSHOT_SCHEMAS["donations"]))


def _snapshot(directory: Path, frame: pl.DataFrame) -> engine.ReleaseData:
    directory.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(directory / "donations.parquet")
    return engine.ReleaseData(tables={"donations": directory / "donations.parquet"},
                              snapshot_hash="props")


gift = st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(-500, 900_000))
persons_strategy = st.lists(st.lists(gift, min_size=0, max_size=25), min_size=1, max_size=12)
measures = st.sampled_from(["count", "histogram", "sum", "mean", "quantile"])


@settings(max_examples=40, deadline=None)
@given(persons=persons_strategy, measure=measures, groups=st.integers(1, 4),
       limit=st.integers(1, 4), clip_hi=st.integers(1, 60_000),
       group_by=st.sampled_from([["month"], ["region"], ["region", "month"], []]),
       auto=st.booleans())
def test_no_person_exceeds_what_is_declared_to_opendp(
        persons: list[list[tuple[int, int, int]]], measure: str, groups: int, limit: int,
        clip_hi: int, group_by: list[str], auto: bool) -> None:
    """Every OpenDP measurement of a release: the count (or sum, mean, quantile), the count
    of the rows its bounds cut, and for ``bounds: auto`` the contribution histograms."""
    if measure == "histogram" and not group_by:
        group_by = ["month"]
    frame = _donations(persons)
    if frame.height == 0:
        return
    plan = _plan(measure, groups, limit, clip_hi, group_by, auto)
    planned = plan.releases[0]
    with tempfile.TemporaryDirectory() as directory:
        data = _snapshot(Path(directory), frame)
        prepared = engine.prepare_query(planned, plan, data, query_cost(plan, planned))
        compiled = engine.compile_query(planned, plan, data, query_cost(plan, planned))
        query = compiled.query  # an auto query's bounds as the DP choice drew them
        cells = engine.cell_keys(plan, query)
        spec = engine._spec(query)
        rows = engine.load_rows(query, data, cells)
        bounded, excess = bound_with_excess(
            rows, bounds=query.fixed_bounds(), n_cells=cells.n_cells,
            shape="rows" if spec.shape == "rows" else "aggregate", clipping=spec.clipping)
    if auto:  # the histograms: each person in exactly one bin of each (two cells, one row)
        choice = prepared.choice_measurement
        assert choice is not None and compiled.choice is not None
        assert query.fixed_bounds() in [Bounds(max_groups=g, max_rows_per_group=r)
                                        for g in range(1, groups + 1)
                                        for r in range(1, limit + 1)]
        per_person = rows.group_by("person_key").len().height
        assert choice.frame.sort("cell").equals(  # person order is group_by's: not fixed
            engine.choice_frame(rows, choice.bins).sort("cell"))
        bins = choice.frame["cell"].to_list()
        assert len(bins) == 2 * per_person and (choice.frame["n"] == 1).all()
        assert all(b < choice.bins.groups_top for b in bins[:per_person])  # cells per person
        assert all(choice.bins.groups_top <= b < choice.bins.n_bins for b in bins[per_person:])
        hist_cell, hist_all = choice.declared
        assert (hist_cell.per_group, hist_cell.num_groups, hist_all.per_group) == (1, 2, 2)
    else:
        assert prepared.choice_measurement is None and compiled.choice is None
    # The rows the bounds cut: their own count, bounded by excess_bounds, declared so.
    assert compiled.cut is not None  # donations: one person may have many rows
    cut_bounds = excess_bounds(query.fixed_bounds())
    cut_frame = bound_with_excess(expand_counts(excess), bounds=cut_bounds,
                                  n_cells=cells.n_cells, shape="aggregate")[0]
    assert cut_frame.select("cell", "n").equals(compiled.cut.frame)
    cut_cell, cut_all = compiled.cut.declared
    assert (cut_cell.per_group, cut_cell.num_groups) == (1, cut_bounds.max_groups)
    assert cut_all.per_group == cut_bounds.max_groups
    if cut_frame.height:
        assert int(cut_frame.group_by("person_key").len()["len"].max()) <= cut_bounds.max_groups  # type: ignore[arg-type]
        assert cut_frame["n"].is_between(1, cut_bounds.max_rows_per_group).all()
    # What this test inspects is exactly what OpenDP received (person key aside).
    assert bounded.select(spec.columns).equals(compiled.frame)
    by_cell, overall = compiled.declared
    assert list(by_cell.by) == ["cell"] and not list(overall.by)
    assert by_cell.num_groups == query.fixed_bounds().max_groups
    assert overall.per_group == by_cell.per_group * by_cell.num_groups
    limit = query.fixed_bounds().max_rows_per_group
    if bounded.height == 0:
        return
    per_cell = bounded.group_by("person_key", "cell").len()
    per_person = bounded.group_by("person_key").agg(cells=pl.col("cell").n_unique(),
                                                    rows=pl.len())
    assert int(per_person["cells"].max()) <= by_cell.num_groups  # type: ignore[arg-type]
    assert int(per_cell["len"].max()) <= by_cell.per_group  # type: ignore[arg-type]
    assert int(per_person["rows"].max()) <= overall.per_group  # type: ignore[arg-type]
    lo, hi = 0, clip_hi
    if spec.shape == "rows":  # quantile: each row is one value, clipped to [lo, hi]
        assert by_cell.per_group == limit
        assert bounded["value"].is_between(lo, hi).all()
        return
    assert by_cell.per_group == 1
    assert bounded["n"].is_between(1, limit).all()  # the count OpenDP sums over (0, R)
    if measure == "sum":
        assert bounded["total"].is_between(lo, hi).all()
    elif measure == "mean":  # numerator declared as (R·lo, R·hi), rows clipped one by one
        assert bounded["total"].is_between(limit * lo, limit * hi).all()
        assert (bounded["total"] <= bounded["n"] * hi).all()


@settings(max_examples=40, deadline=None)
@given(persons=persons_strategy, measure=st.sampled_from(["count", "histogram"]),
       ball=st.sampled_from([1.0, 1.5, 2.0, 3.7, 6.0]),
       group_by=st.sampled_from([["month"], ["region"], ["region", "month"]]),
       weighted=st.booleans(), spread=st.floats(0.05, 20.0))
def test_no_person_leaves_the_l2_ball_declared_to_opendp(
        persons: list[list[tuple[int, int, int]]], measure: str, ball: float,
        group_by: list[str], weighted: bool, spread: float) -> None:
    """An L2-ball query: OpenDP's vector Gaussian is declared d_in = max_l2; every person's
    vector of counted rows per cell has norm ≤ max_l2 (weighted: Σ (n_i / w_i)² ≤ max_l2²,
    the vector OpenDP receives being n_i / w_i); the counts OpenDP receives are the sums of
    that bounded frame; the spend is OpenDP's map at d_in, within the charge."""
    frame = _donations(persons)
    if frame.height == 0:
        return
    plan = _plan(measure, 1, 1, 1, group_by, ball=ball)
    query = plan.releases[0]
    cost = query_cost(plan, query)
    n_cells = engine.cell_keys(plan, query).n_cells
    weights = None
    if weighted:  # any positive public weights, uneven by up to `spread`
        weights = tuple(1 + (spread - 1) * i / max(n_cells - 1, 1) for i in range(n_cells))
        query = query.with_cell_weights(weights)
    with tempfile.TemporaryDirectory() as directory:
        data = _snapshot(Path(directory), frame)
        compiled = engine.compile_query(query, plan, data, cost)
        cells = engine.cell_keys(plan, query)
        rows = engine.load_rows(query, data, cells)
    w = None if weights is None else np.asarray(weights)
    bounded, _ = bound_l2(rows, max_l2=ball, n_cells=cells.n_cells, weights=w)
    assert compiled.declared == (ball,) and compiled.ball is not None
    assert compiled.ball.weights == weights
    assert compiled.cut is None and compiled.choice is None
    assert bounded.select("cell", "n").equals(compiled.frame)
    assert float(l2_norms(bounded, w).max(initial=0.0)) <= ball
    counts = [0] * cells.n_cells
    for cell, n in bounded.select("cell", "n").iter_rows():
        counts[cell] += n
    assert list(compiled.ball.counts) == counts
    assert compiled.spent == compiled.measurement.map(ball) and Fraction(compiled.spent) <= cost


# ----------------------------------------------------------------------------- metadata

def _numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every JSON number (not bool) with its key path."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int | float):
        yield path, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")


def _plan_numbers(plan: Plan) -> set[float]:
    found = {v for _, v in _numbers(_jsonable(plan))}

    def fractions(value: Any) -> Iterator[float]:  # shares and ρ are "p/q" text in the plan
        if isinstance(value, str) and "/" in value:
            try:
                yield float(Fraction(value))
            except (ValueError, ZeroDivisionError):
                return
        elif isinstance(value, dict):
            for item in value.values():
                yield from fractions(item)
        elif isinstance(value, list):
            for item in value:
                yield from fractions(item)

    found |= set(fractions(_jsonable(plan)))
    query = plan.releases[0]
    found |= {float(query_cost(plan, query)), float(plan.per_run.cap_rho())}
    found |= {float(b) for b in query.clip_bounds()} if query.value else set()
    return found


def _allowed(plan: Plan, accuracy: set[float], table: pl.DataFrame, seq: int,
             released: list[pl.DataFrame] | None = None) -> set[float]:
    query = plan.releases[0]
    keys = {float(len(engine.public_keys(plan, c))) for c in query.group_by}
    cells = float(engine.cell_keys(plan, query).n_cells)
    published = {float(v) for column, dtype in table.schema.items() if dtype.is_numeric()
                 for v in table[column].drop_nulls().to_list()}
    constants = {engine.ALPHA, float(engine.N_CANDIDATES), float(engine.QUANTILE_WINDOW)}
    return (_plan_numbers(plan) | keys | {cells, float(table.height), float(seq)} | constants
            | _public_bounds(plan) | accuracy | published
            | _dp_derived(plan, released or [], accuracy))


def _public_bounds(plan: Plan) -> set[float]:
    """Every bound the query may apply (an auto query's candidates) and the rows-cut
    count's bound beyond each: functions of the plan alone."""
    query = plan.releases[0]
    if query.ball_bounds is not None:
        return {query.ball_bounds.max_l2}
    rule = query.auto_bounds
    n_cells = engine.cell_keys(plan, query).n_cells
    candidates = [query.fixed_bounds()] if rule is None else [
        Bounds(max_groups=min(g, n_cells), max_rows_per_group=r)
        for g in rule.max_groups for r in rule.max_rows_per_group]
    # a quantile's frame keeps one row per contribution, so its declared bound across cells
    # is rows per cell x cells (engine._declared_bound): a product of plan numbers
    return {float(v) for b in candidates for e in (b, excess_bounds(b))
            for v in (e.max_groups, e.max_rows_per_group,
                      e.max_groups * e.max_rows_per_group)}


class _OpenDPOutputs:
    """Records every frame OpenDP releases (``Measurement(...)``, then ``.collect()``):
    the DP outputs of a release, taken at OpenDP's boundary, not from the engine's word."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []

    @contextlib.contextmanager
    def recording(self) -> Iterator[_OpenDPOutputs]:
        real = opendp.mod.Measurement.__call__
        frames = self.frames

        class _Once:
            def __init__(self, once: Any) -> None:
                self.once = once

            def collect(self) -> pl.DataFrame:
                out: pl.DataFrame = self.once.collect()
                frames.append(out)
                return out

        def call(measurement: Any, arg: Any) -> Any:
            out = real(measurement, arg)
            return _Once(out) if hasattr(out, "collect") else out

        with mock.patch.object(opendp.mod.Measurement, "__call__", call):
            yield self


def _dp_derived(plan: Plan, released: list[pl.DataFrame], accuracy: set[float]) -> set[float]:
    """Numbers computed from OpenDP's outputs only: each value and its rounding, each
    aggregate's total over the cells, the share of rows cut from those totals, and an auto
    query's whole bounds choice, recomputed here by the engine's post-processing
    (:func:`privacy.autobounds.choose_bounds`) from the histogram OpenDP released."""
    out: set[float] = set()
    totals: dict[str, float] = {}
    query = plan.releases[0]
    for frame in released:
        for column in frame.columns:
            if column == "cell":
                continue
            values = [float(v) for v in frame[column].drop_nulls().to_list()]
            out |= set(values) | {float(round(v)) for v in values}
            totals[column] = float(frame[column].fill_null(0).sum())
        if "persons" in frame.columns and query.auto_bounds is not None:
            out |= _choice_numbers(plan, frame, accuracy)
    out |= set(totals.values())
    cut = max(totals.get("rows_cut", 0.0), 0.0)
    for kept in ("count", "denominator", "rows"):
        if kept in totals and totals[kept] + cut > 0:
            out.add(cut / (totals[kept] + cut))
    return out


def _choice_numbers(plan: Plan, frame: pl.DataFrame, accuracy: set[float]) -> set[float]:
    query = plan.releases[0]
    rule = query.auto_bounds
    assert rule is not None
    n_cells = engine.cell_keys(plan, query).n_cells
    bins = profile_bins(rule, n_cells)
    noisy = (pl.DataFrame({"cell": list(range(bins.n_bins))}, schema={"cell": pl.Int64})
             .join(frame, on="cell", how="left").sort("cell")["persons"]
             .fill_null(0).cast(pl.Float64).to_numpy())
    rho = query_cost(plan, query)
    found = set()
    for scale in accuracy:  # the histogram's scale is a figure of the measurement alone
        choice = choose_bounds(noisy, scale, rule=rule, bins=bins, n_cells=n_cells,
                               rho_rest=rho - rho * rule.share)
        found |= {v for _, v in _numbers(choice.to_json())}
    return found


def _contains(allowed: set[float], value: float) -> bool:
    return value in allowed or any(math.isclose(value, a, rel_tol=1e-12, abs_tol=1e-12)
                                   for a in allowed)


def _accuracy_elsewhere(plan: Plan, directory: Path) -> set[float]:
    """Accuracy figures of the same measurements compiled on *other* data (nothing shared):
    for an auto query, at every candidate bound (which one applies is a DP draw)."""
    from privacy.autobounds import Choice

    other = _donations([[(i % 6, i % 4, 1000 + 37 * i)] * (1 + i % 3) for i in range(50)])
    query = plan.releases[0]
    prepared = engine.prepare_query(query, plan, _snapshot(directory, other),
                                    query_cost(plan, query))
    if prepared.choice_measurement is None:
        compiled = [prepared.compile(None)]
        found: set[float] = set()
    else:
        scale = prepared.choice_measurement.scale
        found = {scale, float(prepared.choice_measurement.spent)}
        compiled = [prepared.compile(Choice(bounds=Bounds(max_groups=g, max_rows_per_group=r),
                                            candidates=(), cells_histogram=(),
                                            rows_histogram=(), histogram_scale=scale))
                    for g in {min(g, prepared.cells.n_cells)
                              for g in prepared.query.bounds.max_groups}  # type: ignore[union-attr]
                    for r in prepared.query.bounds.max_rows_per_group]  # type: ignore[union-attr]
    for c in compiled:
        (result,) = c.release(1)
        found |= {v for _, v in _numbers(_accuracy_figures(result.metadata))}
    return found


def _accuracy_figures(metadata: Any) -> Any:
    """The parts of the engine's metadata that describe OpenDP's measurements (scales, ρ
    spent, interval half-widths: from the bounds and ρ, the same on any data)."""
    from privacy.publish import jsonable

    doc = jsonable(metadata)
    cut = doc["rows_cut"]
    return {"aggregates": doc["aggregates"], "rho_opendp": doc["rho_opendp"],
            "rows_cut": {k: cut.get(k) for k in ("ci95_halfwidth", "noise_scale")}}


class _Engine:
    """A DPEngine for run_release: the real engine, on this test's snapshot."""

    def __init__(self, frame: pl.DataFrame, directory: Path) -> None:
        self.frame, self.directory = frame, directory

    def snapshot(self, db: Any, work_dir: Path) -> engine.ReleaseData:
        return _snapshot(work_dir / "snap", self.frame)

    def mechanism(self, query: Any) -> str:
        return engine.mechanism_name(query)

    def run_query(self, query: Any, plan: Plan, data: Any, rho: Fraction) -> Any:
        return engine.run_query(query, plan, data, rho)

    def postprocess(self, result: Any) -> pl.DataFrame:
        return engine.postprocess(result)


def _release(plan: Plan, frame: pl.DataFrame, home: Path
             ) -> tuple[dict[str, Any], pl.DataFrame, list[pl.DataFrame]]:
    from privacy.release import run_release
    from privacy.signing import create_signing_key

    env = {"ISOLOIR_HOME": str(home),
           "ISOLOIR_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
           "ISOLOIR_SIGNING_KEY_FILE": str(home / "keys" / "signing.key"),
           "PATH": os.environ.get("PATH", "")}
    config = load_settings(env)
    create_signing_key(config.signing_key_file)
    with _OpenDPOutputs().recording() as outputs:
        summary = run_release(config, plan, "props-run",
                              logical_date=datetime(2026, 3, 2, tzinfo=UTC),
                              dp_engine=_Engine(frame, home))
    (released,) = summary.releases
    files = {Path(name).suffix: config.published / name for name in released.files}
    return (json.loads(files[".json"].read_text(encoding="utf-8")),
            pl.read_parquet(files[".parquet"]), outputs.frames)


def leaked_numbers(metadata: dict[str, Any], allowed: set[float]) -> list[tuple[str, float]]:
    return [(path, value) for path, value in _numbers(metadata)
            if not _contains(allowed, value)]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(persons=st.lists(st.lists(gift, min_size=1, max_size=15), min_size=3, max_size=25),
       measure=measures, groups=st.integers(1, 3), limit=st.integers(1, 3),
       clip_hi=st.integers(100, 60_000), group_by=st.sampled_from([["month"], ["region"]]),
       auto=st.booleans())
# found by CI once: a quantile declares rows-per-cell x cells to OpenDP (a plan product)
@example(persons=[[(0, 0, 0)], [(0, 0, 0)], [(0, 0, 0)]], measure="quantile", groups=2,
         limit=2, clip_hi=100, group_by=["month"], auto=False)
def test_published_metadata_holds_no_number_computed_from_the_data_outside_dp(
        persons: list[list[tuple[int, int, int]]], measure: str, groups: int, limit: int,
        clip_hi: int, group_by: list[str], auto: bool) -> None:
    """The rows-cut estimates, an auto query's noisy contribution histograms, its candidates'
    modelled errors and the bounds it chose are DP outputs (or public functions of them):
    they are accepted as what OpenDP released and what the engine's post-processing makes of
    it, recomputed here from OpenDP's outputs; nothing else from the data is."""
    plan = _plan(measure, groups, limit, clip_hi, group_by, auto)
    frame = _donations(persons)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        metadata, table, released = _release(plan, frame, root / "home")
        accuracy = _accuracy_elsewhere(plan, root / "other")
    allowed = _allowed(plan, accuracy, table, metadata["ledger_seq"], released)
    assert leaked_numbers(metadata, allowed) == []
    # Teeth: the data's own exact figures would be flagged if they ever appeared.
    exact = {"rows": float(frame.height), "amount": float(frame["amount_cents"].sum()),
             **_exact_cut_figures(plan, frame)}
    for name, value in exact.items():
        if not _contains(allowed, value):
            assert leaked_numbers(metadata | {f"leak_{name}": value}, allowed) != []


def _exact_cut_figures(plan: Plan, frame: pl.DataFrame) -> dict[str, float]:
    """Exact figures of the kind the DP ones estimate: rows cut (at the plan's bounds, or
    1 × 1 for auto) and the contribution histogram."""
    query = plan.releases[0]
    rule = query.auto_bounds
    with tempfile.TemporaryDirectory() as directory:
        data = _snapshot(Path(directory), frame)
        cells = engine.cell_keys(plan, query)
        rows = engine.load_rows(query, data, cells)
    if query.ball_bounds is not None:
        kept, excess = bound_l2(rows, max_l2=query.ball_bounds.max_l2, n_cells=cells.n_cells)
        return {"rows_cut": float(excess["n"].sum()), "rows_kept": float(kept["n"].sum())}
    bounds = Bounds(max_groups=1, max_rows_per_group=1) if rule is not None else (
        query.fixed_bounds())
    _, excess = bound_with_excess(rows, bounds=bounds, n_cells=cells.n_cells,
                                  shape="aggregate")
    out = {"rows_cut": float(excess["n"].sum())}
    if rule is not None:
        bins = profile_bins(rule, cells.n_cells)
        hist = engine.choice_frame(rows, bins)["cell"].value_counts()
        out |= {f"persons_in_bin_{b}": float(n) for b, n in hist.iter_rows()}
    return out


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(persons=st.lists(st.lists(gift, min_size=1, max_size=15), min_size=3, max_size=25),
       ball=st.sampled_from([1.5, 3.0]), group_by=st.sampled_from([["month"], ["region"]]))
def test_an_l2_ball_release_publishes_no_number_computed_from_the_data_outside_dp(
        persons: list[list[tuple[int, int, int]]], ball: float, group_by: list[str]) -> None:
    plan = _plan("histogram", 1, 1, 1, group_by, ball=ball)
    frame = _donations(persons)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        metadata, table, released = _release(plan, frame, root / "home")
        accuracy = _accuracy_elsewhere(plan, root / "other")
    allowed = _allowed(plan, accuracy, table, metadata["ledger_seq"], released)
    assert leaked_numbers(metadata, allowed) == []
    for name, value in {"rows": float(frame.height), **_exact_cut_figures(plan, frame)}.items():
        if not _contains(allowed, value):
            assert leaked_numbers(metadata | {f"leak_{name}": value}, allowed) != []


def test_the_metadata_check_flags_an_exact_count(tmp_path: Path) -> None:
    """The check can fail: an exact row count slipped into the metadata is named, in the
    rows-cut figures and in an auto query's histograms too."""
    plan = _plan("count", 2, 2, 100, ["month"])
    frame = _donations([[(i % 6, 0, 500)] * (1 + i % 4) for i in range(41)])
    metadata, table, released = _release(plan, frame, tmp_path / "home")
    allowed = _allowed(plan, _accuracy_elsewhere(plan, tmp_path / "other"), table,
                       metadata["ledger_seq"], released)
    assert leaked_numbers(metadata, allowed) == []
    assert not _contains(allowed, float(frame.height))
    tampered = metadata | {"engine": metadata["engine"] | {"rows_in": frame.height}}
    assert leaked_numbers(tampered, allowed) == [("engine.rows_in", float(frame.height))]
    tampered = metadata | {"rows_cut": metadata["rows_cut"] | {"estimate": frame.height}}
    assert leaked_numbers(tampered, allowed) == [("rows_cut.estimate", float(frame.height))]
    # The same with bounds chosen under DP: the noisy histograms pass, an exact one does not.
    auto = _plan("count", 3, 3, 100, ["month"], auto=True)
    metadata, table, released = _release(auto, frame, tmp_path / "auto")
    allowed = _allowed(auto, _accuracy_elsewhere(auto, tmp_path / "auto-other"), table,
                       metadata["ledger_seq"], released)
    assert leaked_numbers(metadata, allowed) == []
    choice = metadata["rows_cut"]["bounds_choice"]
    assert metadata["bounds"]["chosen_under_dp"] is True and len(choice["candidates"]) == 9
    assert not _contains(allowed, float(frame.height))
    tampered = metadata | {"rows_cut": metadata["rows_cut"] | {"bounds_choice": choice | {
        "persons_by_cells": [frame.height, *choice["persons_by_cells"][1:]]}}}
    assert leaked_numbers(tampered, allowed) == [("rows_cut.bounds_choice.persons_by_cells[0]",
                                                  float(frame.height))]


def test_numbers_walks_nested_json() -> None:
    doc = {"a": [1, {"b": 2.5}], "c": True, "d": "3", "e": None}
    assert list(_numbers(doc)) == [("a[0]", 1.0), ("a[1].b", 2.5)]


# ----------------------------------------------------------------------------- hierarchies

DEPARTEMENTS = ("01", "03", "13", "75", "92", "971")


def _hier_plan() -> Plan:
    one = {"max_groups": 1, "max_rows_per_group": 1}
    return parse_plan({
        "dataset_id": "props", "privacy_unit": "person", "cap": {"epsilon": 8, "delta": "1e-7"},
        "per_run": {"rho": "1/2"}, "cadence": "test", "period": list(PERIOD),
        "releases": [{"name": "q", "title": "t", "title_fr": "t", "measure": "count",
                      "table": "persons", "group_by": ["departement"], "bounds": one,
                      "share": 1, "hierarchy": [
                          {"level": "national", "share": "1/8", "name": "q_national",
                           "title": "n", "title_fr": "n"},
                          {"level": "region", "share": "3/8", "name": "q_region",
                           "title": "r", "title_fr": "r"},
                          {"level": "departement", "share": "1/2"}]}]})


def _persons(places: list[int]) -> pl.DataFrame:
    from core.geography import load_geography

    regions = load_geography().departement_region
    schema = dict(SNAPSHOT_SCHEMAS["persons"])
    deps = [DEPARTEMENTS[p % len(DEPARTEMENTS)] for p in places]
    frame = pl.DataFrame({"person_key": list(range(len(places))), "departement": deps,
                          "region": [regions[d] for d in deps]})
    return frame.with_columns(*(pl.lit(None, dtype).alias(c) for c, dtype in schema.items()
                                if c not in frame.columns)).select(list(schema)).cast(
        schema)  # type: ignore[arg-type]


class _PersonsEngine(_Engine):
    def snapshot(self, db: Any, work_dir: Path) -> engine.ReleaseData:
        directory = work_dir / "snap"
        directory.mkdir(parents=True, exist_ok=True)
        self.frame.write_parquet(directory / "persons.parquet")
        return engine.ReleaseData(tables={"persons": directory / "persons.parquet"},
                                  snapshot_hash="props")


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(places=st.lists(st.integers(0, 50), min_size=1, max_size=40))
@example(places=list(range(37)))
def test_a_hierarchy_metadata_holds_no_number_computed_from_the_data_outside_dp(
        places: list[int]) -> None:
    """Every level's JSON: the consistent post-processing adds the levels' shares and ρ
    (plan), their cells (public keys), their OpenDP scales and half-widths (accuracy of the
    measurements, the same on other data) and nothing from the data; an exact count, a
    région's or the national one, is flagged."""
    from privacy.hierarchy import _halfwidth
    from privacy.release import run_release
    from privacy.signing import create_signing_key

    plan = _hier_plan()
    (query,) = plan.releases
    frame = _persons(places)
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory) / "home"
        config = load_settings({
            "ISOLOIR_HOME": str(home),
            "ISOLOIR_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "ISOLOIR_SIGNING_KEY_FILE": str(home / "keys" / "signing.key"),
            "PATH": os.environ.get("PATH", "")})
        create_signing_key(config.signing_key_file)
        with _OpenDPOutputs().recording() as outputs:
            summary = run_release(config, plan, "props-run",
                                  logical_date=datetime(2026, 3, 2, tzinfo=UTC),
                                  dp_engine=_PersonsEngine(frame, home))
        (released,) = summary.releases
        metas = [json.loads((config.published / n).read_text(encoding="utf-8"))
                 for n in released.files if n.endswith(".json")]
        tables = [pl.read_parquet(config.published / n) for n in released.files
                  if n.endswith(".parquet")]
        other = _persons([7 * i + 3 for i in range(30)])
        other_dir = Path(directory) / "other"
        other_dir.mkdir()
        other.write_parquet(other_dir / "persons.parquet")
        data = engine.ReleaseData(tables={"persons": other_dir / "persons.parquet"},
                                  snapshot_hash="other")
        accuracy: set[float] = set()
        for level in query.level_queries():
            (result,) = engine.compile_query(level, plan, data,
                                             query_cost(plan, level)).release(1)
            figures = {v for _, v in _numbers(_accuracy_figures(result.metadata))}
            accuracy |= figures | {_halfwidth(v) for v in figures}
    levels = query.level_queries()
    allowed = (_plan_numbers(plan) | {float(query_cost(plan, q)) for q in levels}
               | {float(engine.cell_keys(plan, q).n_cells) for q in levels}
               | {float(len(engine.public_keys(plan, c))) for q in levels for c in q.group_by}
               | {float(t.height) for t in tables} | {float(metas[0]["ledger_seq"])}
               | {engine.ALPHA} | accuracy
               | {float(v) for t in tables for c, dtype in t.schema.items() if dtype.is_numeric()
                  for v in t[c].drop_nulls().to_list()}
               | _dp_derived(plan, outputs.frames, accuracy))
    for meta in metas:
        assert meta["hierarchy"]["levels"][0]["table"] == "q_national"
        assert leaked_numbers(meta, allowed) == []
    # Teeth: the exact national and région counts would be flagged.
    exact = {float(frame.height)} | {float(n) for _, n in
                                     frame.group_by("region").len().iter_rows()}
    for value in exact - {v for v in allowed if any(math.isclose(v, e) for e in exact)}:
        assert leaked_numbers(metas[1] | {"leak": value}, allowed) == [("leak", value)]
