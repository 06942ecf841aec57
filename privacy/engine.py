"""The DP release engine: one plan query → one OpenDP measurement → one noisy table.

How a query runs (:func:`run_query`), after the accountant has charged its ρ:

1. **Public cells.** The query's group columns are crossed into *cells*, one per
   combination of public keys (COG lists, vocabularies, the plan's ISO weeks and months;
   :func:`privacy.plan.public_keys`). A row whose group value is not a public key is dropped
   before anything else: its group could never be published. Keys never come from data.
2. **User-level bounding** (:mod:`privacy.bounding`): each person keeps at most
   ``max_groups`` cells and ``max_rows_per_group`` rows per cell; counts and sums are
   pre-aggregated to one row per (person, cell), values clipped.
3. **OpenDP.** The bounded frame (person keys dropped) is written to secure scratch Parquet
   and read lazily (``scan_parquet``). One measurement is built with
   ``make_private_lazyframe`` over the declared privacy unit
   ``[Bound(by=["cell"], per_group=P, num_groups=G), Bound(per_group=P·G)]``; OpenDP derives
   the sensitivity from that bound, and the noise scale is calibrated so that OpenDP's own
   privacy map is at most ``float(ρ)`` rounded *down* (never more than what was charged).
   Groups come from ``with_keys``-style left join on the public cells.
4. **Bias.** On tables where a person has many rows (contacts, donations) the rows the
   bounds cut are counted per cell by a second OpenDP count, bounded on its own
   (:func:`privacy.autobounds.excess_bounds`); the table gets ``rows_cut_*`` columns and,
   for counts, a *bias-aware* estimate and interval (count + rows cut, both noises), and
   the metadata says what share of rows the bounds cut and what is still not counted.
   A query with ``bounds: auto`` first chooses its bounds from DP histograms of the
   per-person contributions (:mod:`privacy.autobounds`). The query's ρ is split exactly
   between these measurements (:func:`privacy.autobounds.split_rho`).
   An **L2-ball** query (``bounds: {max_l2: d}``) instead cuts each person's vector of
   rows per cell to norm ≤ d (:func:`privacy.bounding.bound_l2`) and draws one OpenDP
   Gaussian over the vector of cell counts (``make_gaussian``, ``l2_distance``, d_in = d)
   with its whole ρ; weighted (``weights: last_release``), over the counts divided by the
   cell weights, the published count being the weight times that (:class:`_BallMeasurement`).
5. **Accuracy.** Each cell carries its 95 % CI half-width (``summarize_polars_measurement``)
   and its noise scale; ratios and quantiles get conservative intervals built from the DP
   outputs only (see :func:`_mean_table`, :func:`_quantile_table`).

No noise is drawn outside OpenDP, and nothing here uses ``numpy.random``.
:func:`postprocess` then rounds, clamps counts at 0, computes shares and rates from noisy
totals, and the steps are listed in ``metadata["post_processing"]``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import numpy as np
import opendp.prelude as dp
import polars as pl

from core.errors import InvariantViolation, PlanError
from core.vocabulary import CONTACT_MADE_RESULTS
from privacy.autobounds import (
    Choice,
    ProfileBins,
    choose_bounds,
    excess_bounds,
    profile,
    profile_bins,
    split_rho,
)
from privacy.bounding import (
    CELL,
    COUNT,
    PERSON,
    TOTAL,
    VALUE,
    Clipping,
    bound_counts,
    bound_l2,
    bound_with_excess,
)
from privacy.plan import Bounds, Plan, Query, public_keys
from warehouse.reader import ReleaseData, snapshot_warehouse

__all__ = ["ReleaseData", "QueryResult", "CompiledQuery", "snapshot_warehouse", "run_query",
           "compile_query", "prepare_query", "PreparedQuery", "postprocess", "mechanism_name",
           "float_rho_down", "CellKeys", "cell_keys", "load_rows", "measures_rows_cut",
           "choice_frame"]

log = logging.getLogger(__name__)

ALPHA = 0.05  # 95 % intervals
#: Public bound on rows per group declared to OpenDP's margin (used for overflow checks).
#: Deliberately far above any real group: OpenDP takes the per-person bound for sensitivity.
MAX_GROUP_ROWS = 2**31 - 1
#: Quantile candidates: this many evenly spaced values over the clipping range.
N_CANDIDATES = 201
#: A quantile's interval is bracketed by DP quantiles at q ± this window (a power of 2, so
#: OpenDP scores the level exactly).
QUANTILE_WINDOW = Fraction(1, 8)
_MAX_CALIBRATION_STEPS = 60


@dataclass(frozen=True)
class QueryResult:
    """The raw DP output of one query, before post-processing."""

    query: Query
    rho: Fraction
    mechanism: str
    table: pl.DataFrame
    metadata: Mapping[str, Any]


# ----------------------------------------------------------------------------- budget

def float_rho_down(rho: Fraction) -> float:
    """The largest float ≤ ``rho``: OpenDP takes floats, and must never spend more.

    >>> from fractions import Fraction
    >>> Fraction(float_rho_down(Fraction(1, 3))) <= Fraction(1, 3)
    True
    """
    if rho <= 0:
        raise InvariantViolation("a release needs a positive ρ")
    value = float(rho)
    while Fraction(value) > rho:
        value = math.nextafter(value, 0.0)
    return value


def mechanism_name(query: Query) -> str:
    """The mechanism a query uses, as recorded in the ledger before noise is drawn."""
    if query.ball_bounds is not None:
        return "gaussian (zCDP) over an L2 ball"
    name = "exponential+gaussian (zCDP)" if query.measure == "quantile" else "gaussian (zCDP)"
    if query.auto_bounds is not None or query.bounds == "auto":
        name += " + DP bounds"  # ledger mechanism names hold at most 40 characters
    return name


def measures_rows_cut(query: Query) -> bool:
    """Whether the release counts, under DP, the rows its bounds cut.

    Every table where one person may have several rows does; ``persons`` has one row per
    person (its bounds are 1 × 1), so nothing can be cut there and nothing is spent on it.
    An L2-ball query does not either: its whole ρ goes to the counts (the ball's gain is
    that it cuts few rows; its coverage is measured against the truth in tests/test_truth.py).
    """
    return query.table != "persons" and query.ball_bounds is None


# ----------------------------------------------------------------------------- cells

@dataclass(frozen=True)
class CellKeys:
    """The public cells of a query: one per combination of its group columns' public keys."""

    columns: tuple[str, ...]
    keys: tuple[tuple[Any, ...], ...]  # per column, its public keys in order
    labels: pl.DataFrame  # cell, then one column per group column

    @property
    def n_cells(self) -> int:
        return self.labels.height


def cell_keys(plan: Plan, query: Query) -> CellKeys:
    """Cross the public key sets of the query's group columns into numbered cells."""
    keys = tuple(tuple(public_keys(plan, column)) for column in query.group_by)
    combos = list(itertools.product(*keys)) if keys else [()]
    data: dict[str, Any] = {CELL: list(range(len(combos)))}
    schema: dict[str, Any] = {CELL: pl.Int64}
    for i, column in enumerate(query.group_by):
        data[column] = [combo[i] for combo in combos]
        schema[column] = pl.Int64 if column == "support_level" else pl.String
    return CellKeys(columns=query.group_by, keys=keys, labels=pl.DataFrame(data, schema=schema))


def _cell_expr(cells: CellKeys) -> pl.Expr:
    """Map a row's group values to its cell index (null when a value is not a public key)."""
    if not cells.columns:
        return pl.lit(0, dtype=pl.Int64)
    expr: pl.Expr | None = None
    for column, keys in zip(cells.columns, cells.keys, strict=True):
        texts = [str(k) for k in keys]
        code = (pl.col(column).cast(pl.String).cast(pl.Enum(texts), strict=False)
                .to_physical().cast(pl.Int64))
        expr = code if expr is None else expr * len(texts) + code
    assert expr is not None
    return expr


def _value_expr(query: Query) -> pl.Expr | None:
    if query.value is None:
        return None
    if query.value == "contact_made":
        return (pl.when(pl.col("result").is_null()).then(None)
                .otherwise(pl.col("result").is_in(sorted(CONTACT_MADE_RESULTS))).cast(pl.Int64))
    return pl.col(query.value).cast(pl.Int64)


def _filter_expr(column: str, wanted: Any) -> pl.Expr:
    if column == "contact_made":
        made = pl.col("result").is_in(sorted(CONTACT_MADE_RESULTS))
        return made if wanted else ~made
    if isinstance(wanted, bool):
        return pl.col(column) == wanted
    if column == "support_level":
        return pl.col(column).cast(pl.Int64) == int(wanted)
    return pl.col(column).cast(pl.String) == str(wanted)


def load_rows(query: Query, data: ReleaseData, cells: CellKeys) -> pl.DataFrame:
    """The query's rows as (person_key, cell[, value]): filtered, public cells only."""
    path = data.tables.get(query.table)
    if path is None:
        raise InvariantViolation(f"the snapshot has no {query.table} table")
    frame = pl.scan_parquet(path)
    for column, wanted in sorted(query.where.items()):
        frame = frame.filter(_filter_expr(column, wanted))
    selected = [pl.col(PERSON).cast(pl.Int64), _cell_expr(cells).alias(CELL)]
    value = _value_expr(query)
    if value is not None:
        selected.append(value.alias(VALUE))
    out = frame.select(selected).drop_nulls()  # unknown group key or missing value: left out
    return out.collect()


# ----------------------------------------------------------------------------- OpenDP

def _col(name: str) -> Any:
    """A column with OpenDP's ``.dp`` expression namespace (registered at runtime)."""
    return cast(Any, pl.col(name))


def _integer_clip(query: Query) -> tuple[int, int]:
    """Clipping bounds as integers (values are whole cents, flags, levels): rounded inward."""
    lower, upper = query.clip_bounds()
    lo, hi = math.ceil(lower), math.floor(upper)
    if lo > hi:
        raise PlanError(f"query {query.name}: clip {query.clip_bounds()} holds no whole value")
    return lo, hi


def _candidates(lower: int, upper: int) -> list[int]:
    """Evenly spaced integer candidates over [lower, upper] (at most N_CANDIDATES, distinct)."""
    steps = min(N_CANDIDATES - 1, upper - lower)
    if steps <= 0:
        return [lower]
    return sorted({lower + round(i * (upper - lower) / steps) for i in range(steps + 1)})


@dataclass(frozen=True)
class _Spec:
    """How a query becomes an OpenDP plan: frame shape, aggregates and the declared bound."""

    shape: str  # "aggregate" or "rows"
    clipping: Clipping | None
    aggregates: tuple[pl.Expr, ...]
    per_group: int  # frame rows of one person in one cell
    columns: tuple[str, ...]  # the bounded frame's columns OpenDP reads
    levels: tuple[tuple[str, Fraction], ...] = ()  # quantile aggregates: (column, level)
    candidates: tuple[int, ...] = ()


def _spec(query: Query) -> _Spec:
    if query.ball_bounds is not None:  # one OpenDP Gaussian over the vector of cell counts
        return _Spec("aggregate", None, (), 1, (CELL, COUNT))
    bounds = query.fixed_bounds()
    limit = bounds.max_rows_per_group
    if query.measure in ("count", "histogram"):
        return _Spec("aggregate", None, (_col(COUNT).dp.sum((0, limit)).alias("count"),), 1,
                     (CELL, COUNT))
    lo, hi = _integer_clip(query)
    if query.measure == "sum":
        return _Spec("aggregate", Clipping(lo, hi, "total"),
                     (_col(TOTAL).dp.sum((lo, hi)).alias("sum"),), 1, (CELL, TOTAL))
    if query.measure == "mean":
        numerator = (min(0, limit * lo), max(0, limit * hi))
        return _Spec("aggregate", Clipping(lo, hi, "row"),
                     (_col(TOTAL).dp.sum(numerator).alias("numerator"),
                      _col(COUNT).dp.sum((0, limit)).alias("denominator")), 1,
                     (CELL, TOTAL, COUNT))
    # quantile: each level q, bracketed by q ± window, plus a noisy row count per cell
    candidates = _candidates(lo, hi)
    levels: dict[Fraction, None] = {}
    for q in query.quantiles:
        level = Fraction(q)
        for bracket in (level - QUANTILE_WINDOW, level, level + QUANTILE_WINDOW):
            if 0 < bracket < 1:
                levels[bracket] = None
    named = tuple((f"q_{i}", level) for i, level in enumerate(sorted(levels)))
    aggregates = tuple(_col(VALUE).dp.quantile(float(level), candidates).alias(name)
                       for name, level in named)
    rows = dp.len(signed=True).alias("rows")  # noisy row count per cell, for the intervals
    return _Spec("rows", Clipping(lo, hi, "row"), (*aggregates, rows), limit, (CELL, VALUE),
                 named, tuple(candidates))


def _declared_bound(spec: _Spec, groups: int) -> list[Any]:
    return [dp.polars.Bound(by=[CELL], per_group=spec.per_group, num_groups=groups),
            dp.polars.Bound(per_group=spec.per_group * groups)]


def _count_spec(limit: int, alias: str) -> _Spec:
    """A per-cell count of pre-aggregated rows, at most ``limit`` per person and cell."""
    return _Spec("aggregate", None, (_col(COUNT).dp.sum((0, limit)).alias(alias),), 1,
                 (CELL, COUNT))


def _measurement(spec: _Spec, query: Query, frame_schema: Mapping[str, Any], n_cells: int,
                 rho: float, groups: int | None = None) -> tuple[Any, list[Any], float]:
    """Build the measurement and calibrate its scale so that OpenDP's map is ≤ ``rho``."""
    dp.enable_features("contrib")
    domain = dp.lazyframe_domain([dp.series_domain(name, dp.atom_domain(T="i64"))
                                  for name in frame_schema])
    domain = dp.with_margin(domain, dp.polars.Margin(by=[CELL], max_length=MAX_GROUP_ROWS))
    d_in = _declared_bound(spec, query.fixed_bounds().max_groups if groups is None else groups)
    metric, _ = dp.unit_of(contributions=d_in)
    grouped = pl.LazyFrame(schema=dict(frame_schema)).group_by(CELL).agg(*spec.aggregates)
    keys = pl.LazyFrame({CELL: list(range(n_cells))}, schema={CELL: pl.Int64})
    plan = keys.join(grouped, how="left", on=[CELL], nulls_equal=True)  # public keys only

    def make(scale: float) -> Any:
        return dp.m.make_private_lazyframe(domain, metric, dp.zero_concentrated_divergence(),
                                           plan, global_scale=scale)

    unit = make(1.0).map(d_in)
    scale = math.sqrt(unit / rho)  # ρ scales as 1/scale² for Gaussian and Gumbel noise
    for _ in range(_MAX_CALIBRATION_STEPS):
        measurement = make(scale)
        spent = measurement.map(d_in)
        if spent <= rho:
            return measurement, d_in, float(spent)
        scale *= 1 + 1e-12 + (spent / rho - 1)
    raise InvariantViolation(f"query {query.name}: could not calibrate the noise to ρ={rho}")


@contextlib.contextmanager
def _scratch_parquet(frame: pl.DataFrame, directory: Path) -> Iterator[pl.LazyFrame]:
    """Write the bounded frame to secure scratch and scan it; the file is removed after."""
    path = directory / f".bounded-{uuid.uuid4().hex}.parquet"
    try:
        frame.write_parquet(path, compression="lz4", statistics=False)
        yield pl.scan_parquet(path)
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class CompiledQuery:
    """A query ready to release: its bounded frame and its calibrated OpenDP measurement.

    Compiling reads the data and builds the measurement but draws no noise. Each call of
    :meth:`release` draws fresh noise from OpenDP and so spends ``rho`` once more: only the
    release orchestration, after the accountant's charge, calls it for real (once); tests
    and benchmarks call it many times on synthetic data to check the mechanism.
    """

    query: Query  # with its bounds fixed: an auto query's chosen bounds
    plan: Plan
    rho: Fraction
    cells: CellKeys
    frame: pl.DataFrame  # bounded rows as OpenDP sees them (no person key)
    measurement: Any
    declared: tuple[Any, ...]  # the privacy unit's bounds, as declared to OpenDP
    spent: float  # OpenDP's own privacy map of all the query's measurements: ≤ rho
    scratch: Path
    cut: _CutMeasurement | None = None  # the bias estimate (tables with several rows each)
    choice: Choice | None = None  # how an auto query's bounds were chosen (DP outputs)
    rho_parts: tuple[Fraction, Fraction, Fraction] = (Fraction(0), Fraction(0), Fraction(0))
    ball: _BallMeasurement | None = None  # an L2-ball query's vector measurement

    def release(self, times: int = 1, *,
                choices: Sequence[Choice] | None = None) -> list[QueryResult]:
        """Draw the noise ``times`` times (each draw spends the measurement's and the bias
        estimate's ρ; an auto query's choice was drawn once, at compile) and build tables.

        ``choices`` (the DP audit): one draw per choice, each result carrying its own
        choice, all of which chose this query's bounds (so the measurements are these).
        """
        if choices is not None:
            if self.choice is None or any(c.bounds != self.query.bounds for c in choices):
                raise InvariantViolation(f"query {self.query.name}: choices of other bounds")
            times = len(choices)
        if self.ball is not None:
            return [self._result(self.ball.draw(), self.ball.aggregates(), _spec(self.query),
                                 None, None) for _ in range(times)]
        aggregates = _aggregates(self.measurement)
        cut_aggregates = None if self.cut is None else _aggregates(self.cut.measurement)
        spec = _spec(self.query)
        results: list[QueryResult] = []
        with contextlib.ExitStack() as stack:
            scanned = stack.enter_context(_scratch_parquet(self.frame, self.scratch))
            cut_scan = None if self.cut is None else stack.enter_context(
                _scratch_parquet(self.cut.frame, self.scratch))
            for _ in range(times):
                released = self.measurement(scanned).collect()  # noise is drawn here only
                if self.cut is not None:
                    released = released.join(self.cut.measurement(cut_scan).collect(),
                                             on=CELL, how="full", coalesce=True)
                choice = self.choice if choices is None else choices[len(results)]
                results.append(self._result(released, aggregates, spec, cut_aggregates,
                                            choice))
        return results

    def _result(self, released: pl.DataFrame, aggregates: Mapping[str, _Aggregate],
                spec: _Spec, cut_aggregates: Mapping[str, _Aggregate] | None,
                choice: Choice | None) -> QueryResult:
        query, cells = self.query, self.cells
        released = cells.labels.join(released, on=CELL, how="left").sort(CELL)
        if query.measure == "mean":
            table, notes = _mean_table(query, cells, released, aggregates)
        elif query.measure == "quantile":
            table, notes = _quantile_table(query, cells, released, aggregates, spec)
        else:
            table, notes = _total_table(query, cells, released, aggregates)
            if self.ball is not None:
                table = self.ball.per_cell(table)
        rows_cut: dict[str, Any] = {"measured": False, "why": "one row per person: the "
                                    "bounds cut nothing"}
        if self.ball is not None:
            rows_cut = self.ball.rows_cut_note()
        if self.cut is not None and cut_aggregates is not None:
            table, rows_cut = _cut_columns(query, table, released, aggregates,
                                           cut_aggregates, self.cut)
        if choice is not None:
            rows_cut["bounds_choice"] = choice.to_json()
        metadata = _metadata(query, self.plan, spec, cells, aggregates, rho=self.rho,
                             spent=self.spent, d_in=self.declared, notes=notes)
        if self.ball is not None:
            metadata.update(self.ball.describe())
        metadata["rows_cut"] = rows_cut
        metadata["rho_split"] = {"choose_bounds": _frac(self.rho_parts[0]),
                                 "measurement": _frac(self.rho_parts[1]),
                                 "rows_cut": _frac(self.rho_parts[2])}
        if choice is not None:
            metadata["bounds"]["chosen_under_dp"] = True
        mechanism = mechanism_name(query)
        if choice is not None:  # the plan's query said auto: name it as the ledger did
            mechanism = mechanism_name(query.model_copy(update={"bounds": "auto"}))
        return QueryResult(query=query, rho=self.rho, mechanism=mechanism,
                           table=table, metadata=metadata)


@dataclass(frozen=True)
class _BallMeasurement:
    """An L2-ball query: one OpenDP Gaussian over the vector of its cell counts.

    Each person's vector of per-cell counts was cut to norm ≤ ``max_l2``
    (:func:`privacy.bounding.bound_l2`), so adding or removing a person moves the vector
    by at most ``max_l2`` in L2 distance: that is the ``d_in`` of the measurement
    (``make_gaussian`` over ``vector_domain(atom_domain(int))`` with ``l2_distance(float)``,
    OpenDP's discrete Gaussian), and its privacy map at ``d_in`` is what the ledger's
    charge is checked against.
    """

    max_l2: float
    counts: tuple[int, ...]  # kept rows per cell (exact, internal: only noisy ones leave)
    measurement: Any
    scale: float  # σ of the vector's Gaussian (of v / w when weighted)
    spent: float
    weights: tuple[float, ...] | None = None  # per-cell weights w (σ_i = w_i · scale)
    weights_rule: str = "uniform"

    def draw(self) -> pl.DataFrame:
        """One noisy vector (OpenDP draws it), as (cell, count): with weights, OpenDP adds
        its noise to v / w and the count is w × that (post-processing)."""
        if self.weights is None:
            noisy = self.measurement(list(self.counts))
            return pl.DataFrame({CELL: list(range(len(noisy))), "count": noisy},
                                schema={CELL: pl.Int64, "count": pl.Int64})
        scaled = [c / w for c, w in zip(self.counts, self.weights, strict=True)]
        noisy = self.measurement(scaled)
        return pl.DataFrame({CELL: list(range(len(noisy))),
                             "count": [w * x for w, x in zip(self.weights, noisy, strict=True)]},
                            schema={CELL: pl.Int64, "count": pl.Float64})

    def aggregates(self) -> dict[str, _Aggregate]:
        kind = "Integer Gaussian" if self.weights is None else "Float Gaussian"
        return {"count": _Aggregate("count", "Vector Sum", kind, self.scale)}

    def per_cell(self, table: pl.DataFrame) -> pl.DataFrame:
        """Weighted: each cell's noise scale and half-width are w_i times the vector's."""
        if self.weights is None:
            return table
        w = pl.Series("w", self.weights, dtype=pl.Float64)
        return table.with_columns((pl.col("ci95_halfwidth") * w).alias("ci95_halfwidth"),
                                  (pl.col("noise_scale") * w).alias("noise_scale"))

    def rows_cut_note(self) -> dict[str, Any]:
        return {"measured": False,
                "why": "L2 ball: the query's whole ρ goes to the cell counts; the rows cut "
                       "are not counted under DP, so the interval is the noise's only. The "
                       "ball cuts few rows (about 1 % of attempts at 50,000 supporters, "
                       "README 'Rows the bounds cut'), and the interval's coverage of the "
                       "truth is measured in tests/test_truth.py"}

    def describe(self) -> dict[str, Any]:
        weights: dict[str, Any] = {"weights": self.weights_rule, "cell_weights": None}
        if self.weights_rule == "last_release":
            weights |= {"cell_weights": None if self.weights is None else list(self.weights),
                        "weights_note":
                        "no earlier release of this query: uniform weights this time"
                        if self.weights is None else
                        "cell i's noise is cell_weights[i] × the vector's scale; weights = "
                        "√max(1, top of the 95 % interval) of the query's last published "
                        "release (DP, already charged), normalised to mean 1; the ball is "
                        "Σ (v_i / w_i)² ≤ max_l2²"}
        return {"bounds": {"max_l2": self.max_l2, **weights,
                           "applied": "per person, before OpenDP: the vector of the person's "
                                      "rows per cell cut to Euclidean norm ≤ max_l2 (fullest "
                                      "cells lowered first to a common whole level; weighted: "
                                      "each cell i keeps ⌊L·w_i⌋ rows at most)"},
                "declared_to_opendp": [{"metric": "l2_distance", "d_in": self.max_l2,
                                        "measurement": "make_gaussian over the vector of "
                                                       "cell counts" + (
                                                           "" if self.weights is None else
                                                           ", each divided by its weight")}]}


def _ball_measurement(query: Query, rows: pl.DataFrame, n_cells: int,
                      rho: Fraction) -> tuple[_BallMeasurement, pl.DataFrame]:
    """Bound every person into the ball and build the calibrated vector Gaussian."""
    ball = query.ball_bounds
    assert ball is not None
    weights = ball.cell_weights
    if weights is not None and len(weights) != n_cells:
        raise InvariantViolation(f"query {query.name}: {len(weights)} weights for "
                                 f"{n_cells} cells")
    bounded, _ = bound_l2(rows, max_l2=ball.max_l2, n_cells=n_cells,
                          weights=None if weights is None else np.asarray(weights))
    frame = bounded.select(CELL, COUNT)
    counts = (pl.DataFrame({CELL: list(range(n_cells))}, schema={CELL: pl.Int64})
              .join(frame.group_by(CELL).agg(pl.col(COUNT).sum()), on=CELL, how="left")
              .sort(CELL)[COUNT].fill_null(0).to_list())
    dp.enable_features("contrib")
    domain = (dp.vector_domain(dp.atom_domain(T=int), size=n_cells) if weights is None else
              dp.vector_domain(dp.atom_domain(T=float, nan=False), size=n_cells))
    metric = dp.l2_distance(T=float)
    target = float_rho_down(rho)

    def make(scale: float) -> Any:
        return dp.m.make_gaussian(domain, metric, scale)

    scale = math.sqrt(make(1.0).map(ball.max_l2) / target)
    for _ in range(_MAX_CALIBRATION_STEPS):
        measurement = make(scale)
        spent = measurement.map(ball.max_l2)
        if spent <= target:
            return _BallMeasurement(max_l2=ball.max_l2, counts=tuple(int(c) for c in counts),
                                    measurement=measurement, scale=scale, spent=float(spent),
                                    weights=weights, weights_rule=ball.weights), frame
        scale *= 1 + 1e-12 + (spent / target - 1)
    raise InvariantViolation(f"query {query.name}: could not calibrate the noise to ρ={rho}")


@dataclass(frozen=True)
class _CutMeasurement:
    """The bias estimate: a DP count per cell of the rows the bounds cut."""

    bounds: Bounds  # its own bound (excess_bounds of the query's)
    frame: pl.DataFrame
    measurement: Any
    declared: tuple[Any, ...]
    spent: float  # OpenDP's privacy map of the measurement at the declared bound


def _frac(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def compile_query(query: Query, plan: Plan, data: ReleaseData, rho: Fraction) -> CompiledQuery:
    """Bound the query's rows and build its OpenDP measurements for ``rho``.

    No noise is drawn for the published numbers. An auto-bounded query draws one thing
    here: the DP histograms its bounds are chosen from (their share of ``rho``), so
    compile such a query only after the charge. This is :func:`prepare_query`, then
    :meth:`PreparedQuery.choose` (auto bounds only), then :meth:`PreparedQuery.compile`.
    """
    prepared = prepare_query(query, plan, data, rho)
    choice = None if prepared.choice_measurement is None else prepared.choose(1)[0]
    return prepared.compile(choice)


@dataclass(frozen=True)
class _ChoiceMeasurement:
    """The DP histograms an auto query's bounds are chosen from (built, not yet drawn)."""

    bins: ProfileBins
    frame: pl.DataFrame  # two rows per person: their bins (no person key)
    measurement: Any
    declared: tuple[Any, ...]
    scale: float
    spent: float


@dataclass(frozen=True)
class PreparedQuery:
    """A query's rows and ρ split, before its bounds are fixed: what every release of it
    starts from. For an auto query, :meth:`choose` draws the bounds choice (each call spends
    the choice's ρ again) and :meth:`compile` builds the measurements for the bounds chosen;
    for fixed bounds, :meth:`compile` alone. Compiling draws no noise."""

    query: Query  # as the plan wrote it (bounds may be auto)
    plan: Plan
    rho: Fraction
    cells: CellKeys
    rows: pl.DataFrame
    scratch: Path
    choose_rho: Fraction
    choice_measurement: _ChoiceMeasurement | None

    def choose(self, times: int = 1) -> list[Choice]:
        """Draw the contribution histograms ``times`` times under DP; one choice per draw."""
        built = self.choice_measurement
        rule = self.query.auto_bounds
        if built is None or rule is None:
            raise PlanError(f"query {self.query.name}: its bounds are fixed; nothing to choose")
        choices = []
        with _scratch_parquet(built.frame, self.scratch) as scanned:
            for _ in range(times):
                released = built.measurement(scanned).collect()  # the choice's noise
                noisy = (pl.DataFrame({CELL: list(range(built.bins.n_bins))},
                                      schema={CELL: pl.Int64})
                         .join(released, on=CELL, how="left").sort(CELL)["persons"]
                         .fill_null(0).cast(pl.Float64).to_numpy())
                choice = choose_bounds(noisy, built.scale, rule=rule, bins=built.bins,
                                       n_cells=self.cells.n_cells,
                                       rho_rest=self.rho - self.choose_rho)
                log.info("query %s: bounds chosen under DP: %d cells × %d rows",
                         self.query.name, choice.bounds.max_groups,
                         choice.bounds.max_rows_per_group)
                choices.append(choice)
        return choices

    def compile(self, choice: Choice | None) -> CompiledQuery:
        """Bound the rows to the plan's bounds (or the ``choice``) and build the count's and
        the bias estimate's measurements, calibrated to their parts of ρ."""
        query, rule, rho, cells = self.query, self.query.auto_bounds, self.rho, self.cells
        if (rule is None) != (choice is None):
            raise InvariantViolation(f"query {query.name}: a choice goes with auto bounds only")
        if query.ball_bounds is not None:
            ball, frame = _ball_measurement(query, self.rows, cells.n_cells, rho)
            if Fraction(ball.spent) > rho:
                raise InvariantViolation(f"OpenDP would spend {ball.spent} > charged {rho}")
            return CompiledQuery(query=query, plan=self.plan, rho=rho, cells=cells, frame=frame,
                                 measurement=ball.measurement, declared=(ball.max_l2,),
                                 spent=ball.spent, scratch=self.scratch, ball=ball,
                                 rho_parts=(Fraction(0), rho, Fraction(0)))
        spent = Fraction(0)  # exact: each part is OpenDP's map, at most its floored share
        if choice is not None and self.choice_measurement is not None:
            spent += Fraction(self.choice_measurement.spent)
            query = query.with_bounds(choice.bounds)
            _, main_rho, cut_rho = split_rho(rho - self.choose_rho, auto_share=None,
                                             main=query.fixed_bounds())
        else:
            _, main_rho, cut_rho = split_rho(
                rho, auto_share=None,
                main=query.fixed_bounds() if measures_rows_cut(query) else None)
        spec = _spec(query)
        bounded, excess = bound_with_excess(self.rows, bounds=query.fixed_bounds(),
                                            n_cells=cells.n_cells,
                                            shape="rows" if spec.shape == "rows" else "aggregate",
                                            clipping=spec.clipping)
        frame = bounded.select(spec.columns)  # the person key never reaches OpenDP
        del bounded
        if frame.height >= MAX_GROUP_ROWS:
            raise InvariantViolation("the bounded frame exceeds the row bound declared to OpenDP")
        measurement, d_in, main_spent = _measurement(spec, query, frame.schema, cells.n_cells,
                                                     float_rho_down(main_rho))
        spent += Fraction(main_spent)
        cut = None
        if cut_rho > 0:
            cut = _cut_measurement(query, excess, cells.n_cells, cut_rho)
            spent += Fraction(cut.spent)
        del excess
        if spent > rho:
            raise InvariantViolation(f"OpenDP would spend {float(spent)} > charged {rho}")
        return CompiledQuery(query=query, plan=self.plan, rho=rho, cells=cells, frame=frame,
                             measurement=measurement, declared=tuple(d_in),
                             spent=float_rho_down(spent), scratch=self.scratch, cut=cut,
                             choice=choice, rho_parts=(self.choose_rho, main_rho, cut_rho))


def prepare_query(query: Query, plan: Plan, data: ReleaseData, rho: Fraction) -> PreparedQuery:
    """Read the query's rows (public cells only), split ``rho`` and, for ``bounds: auto``,
    build (not draw) the DP histograms of per-person contributions. Draws no noise."""
    planned = query.with_cell_weights(None) if query.ball_bounds is not None else query
    if planned not in plan.releases and not any(planned in q.level_queries()
                                                for q in plan.releases if q.hierarchy):
        raise PlanError(f"query {query.name} is not part of plan {plan.dataset_id}")
    dp.enable_features("contrib")
    cells = cell_keys(plan, query)
    scratch = next(iter(data.tables.values())).parent
    rows = load_rows(query, data, cells)
    rule = query.auto_bounds
    choose_rho = Fraction(0)
    built = None
    if rule is not None:
        choose_rho, _, _ = split_rho(rho, auto_share=rule.share, main=None)
        built = _choice_measurement(query, rows, cells.n_cells, choose_rho)
    return PreparedQuery(query=query, plan=plan, rho=rho, cells=cells, rows=rows,
                         scratch=scratch, choose_rho=choose_rho, choice_measurement=built)


def _cut_measurement(query: Query, excess: pl.DataFrame, n_cells: int,
                     rho: Fraction) -> _CutMeasurement:
    """Bound the cut rows with their own bound and build their per-cell DP count."""
    bounds = excess_bounds(query.fixed_bounds())
    frame = bound_counts(excess, bounds=bounds, n_cells=n_cells).select(CELL, COUNT)
    spec = _count_spec(bounds.max_rows_per_group, "rows_cut")
    measurement, d_in, spent = _measurement(spec, query, frame.schema, n_cells,
                                            float_rho_down(rho), groups=bounds.max_groups)
    return _CutMeasurement(bounds=bounds, frame=frame, measurement=measurement,
                           declared=tuple(d_in), spent=spent)


def choice_frame(rows: pl.DataFrame, bins: ProfileBins) -> pl.DataFrame:
    """What the choice's OpenDP count reads: one row per (person, histogram bin), n = 1."""
    return profile(rows, bins).rename({"bin": CELL}).with_columns(
        pl.lit(1, dtype=pl.Int64).alias(COUNT))


def _choice_measurement(query: Query, rows: pl.DataFrame, n_cells: int,
                        rho: Fraction) -> _ChoiceMeasurement:
    """Build the DP histograms of the contribution profile (each person is in exactly one
    bin of each histogram: two cells of one row each, declared so to OpenDP)."""
    rule = query.auto_bounds
    assert rule is not None
    bins = profile_bins(rule, n_cells)
    frame = choice_frame(rows, bins)
    spec = _count_spec(1, "persons")
    measurement, d_in, spent = _measurement(spec, query, frame.schema, bins.n_bins,
                                            float_rho_down(rho), groups=2)
    scale = _aggregates(measurement)["persons"].scale
    return _ChoiceMeasurement(bins=bins, frame=frame, measurement=measurement,
                              declared=tuple(d_in), scale=scale, spent=float(spent))


def _cut_columns(query: Query, table: pl.DataFrame, released: pl.DataFrame,
                 aggregates: Mapping[str, _Aggregate], cut_aggregates: Mapping[str, _Aggregate],
                 cut: _CutMeasurement) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Add the rows-cut estimate per cell and, for counts, the bias-aware interval."""
    cut_scale, cut_half = _accuracy(cut_aggregates, "rows_cut")
    per_cell = (released.select(CELL, "rows_cut").unique(CELL).sort(CELL)["rows_cut"]
                .fill_null(0).cast(pl.Float64))
    total_cut = float(per_cell.sum())
    if query.measure == "quantile":  # the table is level by level, each in cell order
        per_cell = pl.concat([per_cell] * len(query.quantiles))
    table = table.with_columns(per_cell.alias("rows_cut_estimate"),
                               pl.lit(cut_half, pl.Float64).alias("rows_cut_ci95_halfwidth"),
                               pl.lit(cut_scale, pl.Float64).alias("rows_cut_noise_scale"))
    n_cells = released.height
    total_half = _combined_halfwidth([cut_scale] * n_cells)
    kept: float | None = None
    if query.measure in ("count", "histogram"):
        scale = aggregates["count"].scale
        half = _combined_halfwidth([scale, cut_scale])
        table = table.with_columns(
            (pl.col("estimate") + pl.col("rows_cut_estimate")).alias("bias_aware_estimate"),
            pl.lit(half, pl.Float64).alias("bias_aware_ci95_halfwidth"))
        kept = float(released["count"].fill_null(0).sum())
    elif query.measure == "mean":
        kept = float(released["denominator"].fill_null(0).sum())
    elif query.measure == "quantile":
        kept = float(released["rows"].fill_null(0).sum())
    share = None
    if kept is not None and kept + max(total_cut, 0.0) > 0:
        share = max(total_cut, 0.0) / (kept + max(total_cut, 0.0))
    bounds = query.fixed_bounds()
    return table, {
        "measured": True,
        "estimate": total_cut, "ci95_halfwidth": total_half,
        "share_estimate": share,
        "bound": {"max_groups": cut.bounds.max_groups,
                  "max_rows_per_group": cut.bounds.max_rows_per_group},
        "noise_scale": cut_scale,
        "counts": "rows the bounds cut (per cell, DP count), at most "
                  f"{cut.bounds.max_rows_per_group} more row(s) in each of at most "
                  f"{cut.bounds.max_groups} cell(s) per person beyond the "
                  f"{bounds.max_rows_per_group} × {bounds.max_groups} counted",
        "not_measured": "rows beyond the count's bounds and the rows-cut bound together are "
                        "counted nowhere; the bias-aware interval covers the rest",
        "share_basis": None if share is None else
        "rows cut / (rows cut + rows counted), both DP estimates summed over the cells",
    }


def _combined_halfwidth(scales: Sequence[float]) -> float:
    """95 % half-width of a sum of independent Gaussian noises (rounded up, + 1 unit for
    the discrete Gaussian's lattice: conservative)."""
    sigma = math.sqrt(sum(s * s for s in scales))
    return float(math.ceil(dp.gaussian_scale_to_accuracy(sigma, ALPHA)) + 1)


def run_query(query: Query, plan: Plan, data: ReleaseData, rho: Fraction) -> QueryResult:
    """Run one query: bound, build the OpenDP measurement for ``rho``, draw the noise once."""
    (result,) = compile_query(query, plan, data, rho).release(1)
    log.info("query %s released over %d public cells", query.name, result.table.height)
    return result


# ----------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class _Aggregate:
    column: str
    aggregate: str
    distribution: str
    scale: float


def _aggregates(measurement: Any) -> dict[str, _Aggregate]:
    """The noise of each released aggregate, as OpenDP's measurement states it."""
    from opendp.accuracy import summarize_polars_measurement

    summary = summarize_polars_measurement(measurement)  # scales only: cheap
    return {r["column"]: _Aggregate(r["column"], r["aggregate"], r["distribution"],
                                    float(r["scale"])) for r in summary.iter_rows(named=True)}


#: Above this scale the discrete Gaussian's exact tail costs seconds; the continuous one,
#: rounded up plus one unit, is then a conservative stand-in (they differ by < 1 unit).
_EXACT_TAIL_MAX_SCALE = 1e4


def ci_halfwidth(aggregate: _Aggregate, alpha: float) -> float:
    """Half-width of the (1 − alpha) interval of one aggregate's noise (OpenDP's formulas)."""
    if "Gaussian" not in aggregate.distribution:
        return math.nan  # quantiles: their error is stated in ranks
    if aggregate.distribution.startswith("Integer"):
        if aggregate.scale <= _EXACT_TAIL_MAX_SCALE:
            return float(dp.discrete_gaussian_scale_to_accuracy(aggregate.scale, alpha))
        return float(math.ceil(dp.gaussian_scale_to_accuracy(aggregate.scale, alpha)) + 1)
    return float(dp.gaussian_scale_to_accuracy(aggregate.scale, alpha))


def _accuracy(aggregates: Mapping[str, _Aggregate], column: str,
              alpha: float = ALPHA) -> tuple[float, float]:
    aggregate = aggregates.get(column)
    if aggregate is None:
        raise InvariantViolation(f"OpenDP's measurement has no aggregate {column}")
    return aggregate.scale, ci_halfwidth(aggregate, alpha)


def _total_table(query: Query, cells: CellKeys, released: pl.DataFrame,
                 aggregates: Mapping[str, _Aggregate]) -> tuple[pl.DataFrame, list[str]]:
    column = "sum" if query.measure == "sum" else "count"
    scale, halfwidth = _accuracy(aggregates, column)
    table = released.select(
        *cells.columns,
        pl.col(column).cast(pl.Float64).alias("estimate"),
        pl.lit(halfwidth, pl.Float64).alias("ci95_halfwidth"),
        pl.lit(scale, pl.Float64).alias("noise_scale"),
    )
    return table, []


def _mean_table(query: Query, cells: CellKeys, released: pl.DataFrame,
                aggregates: Mapping[str, _Aggregate]) -> tuple[pl.DataFrame, list[str]]:
    """Ratio of two noisy sums; its interval combines the two 97.5 % intervals (Bonferroni)."""
    num_scale, num_half = _accuracy(aggregates, "numerator", ALPHA / 2)
    den_scale, den_half = _accuracy(aggregates, "denominator", ALPHA / 2)
    lo, hi = _integer_clip(query)
    num = pl.col("numerator").cast(pl.Float64)
    den = pl.col("denominator").cast(pl.Float64)
    corners = [(num + a) / (den + b) for a in (-num_half, num_half) for b in (-den_half, den_half)]
    bounded = (den - den_half) > 0
    low = pl.when(bounded).then(pl.min_horizontal(*corners).clip(lo, hi)).otherwise(float(lo))
    high = pl.when(bounded).then(pl.max_horizontal(*corners).clip(lo, hi)).otherwise(float(hi))
    table = released.select(
        *cells.columns,
        pl.when(den > 0).then(num / den).otherwise(None).alias("estimate"),
        low.alias("ci95_low"), high.alias("ci95_high"),
        pl.lit(num_scale, pl.Float64).alias("noise_scale"),
        num.alias("numerator"), den.alias("denominator"),
        pl.lit(num_half, pl.Float64).alias("numerator_ci975_halfwidth"),
        pl.lit(den_half, pl.Float64).alias("denominator_ci975_halfwidth"),
        pl.lit(den_scale, pl.Float64).alias("denominator_noise_scale"),
    ).with_columns(
        pl.max_horizontal(pl.col("estimate").fill_null((lo + hi) / 2) - pl.col("ci95_low"),
                          pl.col("ci95_high") - pl.col("estimate").fill_null((lo + hi) / 2),
                          pl.lit(0.0)).alias("ci95_halfwidth"))
    notes = ["mean = noisy numerator / noisy denominator (both OpenDP Gaussian sums); its "
             "95 % interval spans the ratios of the two 97.5 % intervals' ends (Bonferroni), "
             "clipped to the value range, and is the whole range when the denominator's "
             "interval reaches 0"]
    return table, notes


def _quantile_table(query: Query, cells: CellKeys, released: pl.DataFrame,
                    aggregates: Mapping[str, _Aggregate], spec: _Spec
                    ) -> tuple[pl.DataFrame, list[str]]:
    """Quantiles from OpenDP's exponential mechanism, with intervals from bracketing quantiles.

    The interval of the q-quantile is [Q̂(q − w), Q̂(q + w)] (w = QUANTILE_WINDOW) when the
    DP row count shows the bracketing quantiles' rank error (from their Gumbel scale) is
    below w·n; otherwise that side widens to the clipping bound. The failure probability is
    split in three (count, lower, upper), so the interval holds with ≥ 95 % probability.
    """
    lo, hi = _integer_clip(query)
    beta = ALPHA / 3
    rows_scale, rows_margin = _accuracy(aggregates, "rows", 2 * beta)  # one-sided β
    rows_low = pl.col("rows").cast(pl.Float64) - rows_margin  # n ≥ this w.p. ≥ 1 − β
    k = len(spec.candidates)
    by_level = dict((level, name) for name, level in spec.levels)
    frames = []
    for q in query.quantiles:
        level = Fraction(q)
        name = by_level[level]
        scale = aggregates[name].scale
        rank_error = scale * math.log(max(k - 1, 1) / beta) / level.denominator
        low: pl.Expr = pl.lit(float(lo))
        high: pl.Expr = pl.lit(float(hi))
        for side, bracket in (("low", level - QUANTILE_WINDOW), ("high", level + QUANTILE_WINDOW)):
            if bracket not in by_level:
                continue
            b_scale = aggregates[by_level[bracket]].scale
            b_error = b_scale * math.log(max(k - 1, 1) / beta) / bracket.denominator
            valid = rows_low * float(QUANTILE_WINDOW) >= b_error
            value = pl.col(by_level[bracket]).cast(pl.Float64)
            if side == "low":
                low = pl.when(valid).then(value).otherwise(float(lo))
            else:
                high = pl.when(valid).then(value).otherwise(float(hi))
        estimate = pl.col(name).cast(pl.Float64)
        frames.append(released.select(
            *cells.columns,
            pl.lit(float(q), pl.Float64).alias("quantile"),
            estimate.alias("estimate"),
            pl.min_horizontal(low, estimate).alias("ci95_low"),
            pl.max_horizontal(high, estimate).alias("ci95_high"),
            pl.lit(scale, pl.Float64).alias("noise_scale"),
            pl.lit(rank_error, pl.Float64).alias("rank_error95"),
            pl.col("rows").cast(pl.Float64).alias("rows_estimate"),
            pl.lit(rows_scale, pl.Float64).alias("rows_noise_scale"),
        ).with_columns(pl.max_horizontal(pl.col("estimate") - pl.col("ci95_low"),
                                         pl.col("ci95_high") - pl.col("estimate"))
                       .alias("ci95_halfwidth")))
    notes = [f"quantile = OpenDP exponential mechanism (Gumbel) over {k} evenly spaced "
             f"candidates in [{lo}, {hi}]; noise_scale is in score units and rank_error95 in "
             "rows; the 95 % interval is bracketed by DP quantiles at q ± "
             f"{QUANTILE_WINDOW} when the DP row count (rows_estimate) shows they are reliable, "
             "else it widens to the clipping bound"]
    return pl.concat(frames), notes


def _metadata(query: Query, plan: Plan, spec: _Spec, cells: CellKeys,
              aggregates: Mapping[str, _Aggregate], *, rho: Fraction, spent: float,
              d_in: Sequence[Any], notes: list[str]) -> dict[str, Any]:
    import opendp

    described = []
    for agg in aggregates.values():
        half = ci_halfwidth(agg, ALPHA)
        described.append({"column": agg.column, "aggregate": agg.aggregate,
                          "distribution": agg.distribution, "scale": agg.scale,
                          "ci95_halfwidth": None if math.isnan(half) else half})
    ball = query.ball_bounds
    bounds = None if ball is not None else query.fixed_bounds()
    return {
        "engine": f"opendp {getattr(opendp, '__version__', '0.16')}",
        "mechanism": mechanism_name(query),
        "measure": query.measure,
        "privacy_unit": plan.privacy_unit,
        "rho_charged": f"{rho.numerator}/{rho.denominator}",
        "rho_opendp": spent,
        "bounds": {} if bounds is None else {
            "max_groups": bounds.max_groups, "max_rows_per_group": bounds.max_rows_per_group,
            "applied": "per person, before OpenDP: at most max_groups cells (fullest "
                       "first) and the first max_rows_per_group rows in each"},
        "declared_to_opendp": [] if bounds is None else [
            {"by": list(b.by), "per_group": b.per_group, "num_groups": b.num_groups}
            for b in d_in],
        "clipping": None if spec.clipping is None else {
            "lower": spec.clipping.lower, "upper": spec.clipping.upper,
            "per": "person and group total" if spec.clipping.per == "total" else "row"},
        "public_keys": {column: _key_source(column, plan) for column in query.group_by},
        "cells": cells.n_cells,
        "aggregates": described,
        "alpha": ALPHA,
        "reading_note": query.min_group_size_note,
        "accuracy_notes": notes,
        "post_processing": _post_processing_notes(query),
    }


def _key_source(column: str, plan: Plan) -> str:
    if column in ("region", "departement", "commune", "circonscription"):
        from core.geography import load_geography

        return f"INSEE COG {load_geography().year} ({column})"
    if column == "week":
        return f"ISO weeks of the declared period {plan.period[0]}..{plan.period[1]}"
    if column == "month":
        return f"months of the declared period {plan.period[0]}..{plan.period[1]}"
    return f"core.vocabulary ({column})"


# ----------------------------------------------------------------------------- post-processing

def _post_processing_notes(query: Query) -> list[str]:
    notes = ["applied after release to the DP outputs only (no access to the data)"]
    if query.measure in ("count", "histogram"):
        notes += ["counts rounded to whole numbers and clamped at 0",
                  "95 % interval = raw noisy count ± ci95_halfwidth, clamped at 0"]
    if query.measure == "histogram":
        lead = list(query.group_by[:-1])
        within = f"within each {', '.join(lead)}" if lead else "over the whole table"
        notes.append(f"share = clamped count / sum of clamped counts {within} "
                     f"(by {query.group_by[-1]}), rounded to 4 decimals")
    if query.measure == "sum":
        notes += ["sums rounded to whole units; clamped at 0 (values are non-negative)"]
    if query.measure == "mean":
        notes += ["numerator and denominator clamped at 0 before the ratio",
                  "rate clamped to the value range; a cell whose noisy denominator is ≤ 0 "
                  "shows the middle of the range with the whole range as its interval",
                  "rates and intervals rounded to 4 decimals"]
    if query.measure == "quantile":
        notes += ["quantiles are candidates of the released grid: no rounding needed"]
    return notes


def _cut_postprocess(table: pl.DataFrame) -> list[pl.Expr]:
    """Rows cut: rounded and clamped at 0; the bias-aware count = raw count + raw rows cut,
    its interval ± the combined half-width, clamped at 0 (from the raw sums, not the
    clamped parts, so that clamping adds no bias)."""
    if "rows_cut_estimate" not in table.columns:
        return []
    cut = pl.col("rows_cut_estimate")
    exprs = [cut.clip(lower_bound=0.0).round(0).alias("rows_cut_estimate")]
    if "bias_aware_estimate" in table.columns:
        raw = pl.col("bias_aware_estimate")
        half = pl.col("bias_aware_ci95_halfwidth")
        exprs += [raw.clip(lower_bound=0.0).round(0).alias("bias_aware_estimate"),
                  (raw - half).clip(lower_bound=0.0).round(0).alias("bias_aware_ci95_low"),
                  (raw + half).clip(lower_bound=0.0).round(0).alias("bias_aware_ci95_high")]
    return exprs


def postprocess(result: QueryResult) -> pl.DataFrame:
    """Round, clamp and derive shares/rates from the noisy outputs (documented in metadata)."""
    query = result.query
    table = result.table
    columns = list(query.group_by)
    if query.measure in ("count", "histogram", "sum"):
        raw = pl.col("estimate")
        nonneg = query.measure != "sum" or query.clip_bounds()[0] >= 0
        floor = 0.0 if nonneg else None
        out = table.with_columns(
            raw.clip(lower_bound=floor).round(0).alias("estimate"),
            (raw - pl.col("ci95_halfwidth")).clip(lower_bound=floor).round(0).alias("ci95_low"),
            (raw + pl.col("ci95_halfwidth")).clip(lower_bound=floor).round(0).alias("ci95_high"),
            *_cut_postprocess(table),
        )
        if query.measure == "histogram":
            lead = columns[:-1]
            total = pl.col("estimate").sum().over(lead) if lead else pl.col("estimate").sum()
            out = out.with_columns(
                pl.when(total > 0).then(pl.col("estimate") / total).otherwise(0.0)
                .round(4).alias("share"))
        return out.sort(columns) if columns else out
    if query.measure == "mean":
        lo, hi = _integer_clip(query)
        num = pl.col("numerator").clip(lower_bound=0.0)
        den = pl.col("denominator").clip(lower_bound=0.0)
        middle = (lo + hi) / 2
        rate = pl.when(den > 0).then((num / den).clip(lo, hi)).otherwise(middle)
        out = table.with_columns(*_cut_postprocess(table), rate.round(4).alias("estimate"),
                                 num.round(0).alias("numerator"),
                                 den.round(0).alias("denominator"),
                                 pl.col("ci95_low").round(4), pl.col("ci95_high").round(4))
        out = out.with_columns(
            pl.max_horizontal(pl.col("estimate") - pl.col("ci95_low"),
                              pl.col("ci95_high") - pl.col("estimate"), pl.lit(0.0))
            .round(4).alias("ci95_halfwidth"))
        return out.sort(columns) if columns else out
    order = [*columns, "quantile"]
    return table.with_columns(pl.col("rows_estimate").clip(lower_bound=0.0).round(0),
                              *_cut_postprocess(table)).sort(order)
