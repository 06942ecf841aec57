"""What a plan will publish, before it spends anything: ``isoloir plan check``.

Why: a query whose typical cell is smaller than its own interval publishes noise, and the
only time to fix that for free is before the run is charged. This check computes, from the
plan and the *sizes* of the tables (persons, contacts, donations rows, which the operator
already knows; nothing here is published and no noise is drawn, so nothing is charged),
for every query:

* the 95 % half-width each cell will carry (OpenDP's noise at the plan's bounds and ρ,
  with the query's ρ split as the engine splits it: :func:`privacy.autobounds.split_rho`;
  for ``bounds: auto`` the range over the candidates it may choose);
* the bias: zero where nothing can be cut (one row per person); otherwise, when the query
  was released before, the share of rows its bounds cut at its last release
  (``rows_cut.share_estimate`` of the published metadata: a DP output already paid for,
  so reusing it costs nothing; :func:`last_releases`), else unknown from sizes alone: the
  release measures it under DP;
* the typical cell: the table's size over its cells, times a planning share for ``where``
  filters (:data:`PLANNING_SHARES`, public assumptions, not data);
* a flag, ``trop incertain``, when the half-width is at least the typical cell.

>>> from privacy.plan import load_plan
>>> rows = check_plan(load_plan(), Sizes(persons=50_000, contacts=150_000, donations=10_000))
>>> [r.query for r in rows if r.too_uncertain]
[]
>>> [r.query for r in rows][:3]  # a hierarchical query: one row per table it publishes
['supporters_national', 'supporters_by_region', 'supporters_by_departement']
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import opendp.prelude as dp

from privacy.autobounds import combined_sigma, noise_sigma, split_rho
from privacy.plan import Bounds, Plan, Query, public_keys, query_cost

#: Planning shares of ``where`` filters (public assumptions about a campaign, not data).
PLANNING_SHARES: dict[str, float] = {
    "is_volunteer": 0.05, "is_donor": 0.25, "email_opt_in": 0.6, "mobile_opt_in": 0.4,
    "contact_made": 0.3, "recurring": 0.2,
}
_Z95 = 1.959963984540054

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sizes:
    """Rows of each table (persons = people)."""

    persons: int
    contacts: int
    donations: int

    def rows(self, table: str) -> int:
        return int(getattr(self, table))


@dataclass(frozen=True)
class QueryCheck:
    """One query's expected accuracy at these sizes."""

    query: str
    measure: str
    cells: int
    bounds: str
    typical_cell: float | None
    halfwidth: float | None  # published interval (bias-aware one for counts that have it)
    halfwidth_max: float | None  # auto bounds: the widest candidate
    bias: str
    too_uncertain: bool
    note: str
    #: share of rows cut at the query's last release (its published DP estimate), if any
    bias_share_last: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _halfwidth(sigma: float) -> float:
    return float(dp.gaussian_scale_to_accuracy(sigma, 0.05)) if sigma > 0 else 0.0


def _count_halfwidth(query: Query, bounds: Bounds, rho: Any, rho_rest: Any) -> float:
    if query.table == "persons":
        return _halfwidth(noise_sigma(bounds, rho_rest))
    return _halfwidth(combined_sigma(bounds, rho_rest))


def last_releases(published: Path, dataset_id: str) -> dict[str, Mapping[str, Any]]:
    """The metadata of each query's latest published release of ``dataset_id`` (by
    ``created_at``).

    Published files are DP outputs already charged: reading them again is free.
    Unreadable files are skipped (logged): the check then says the bias is unknown.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for path in sorted(published.glob("*.json")) if published.is_dir() else []:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("plan check: skipped unreadable %s (%s)", path.name, type(err).__name__)
            continue
        if not isinstance(document, dict) or document.get("dataset_id") != dataset_id:
            continue
        name = document.get("query_name")
        if not isinstance(name, str):
            continue
        if name not in latest or str(document.get("created_at", "")) >= str(
                latest[name].get("created_at", "")):
            latest[name] = document
    return latest


def _last_bias(document: Mapping[str, Any] | None) -> tuple[float | None, str | None]:
    """(share of rows cut, text) from a release's published metadata, if it has one."""
    if not document:
        return None, None
    cut = document.get("rows_cut") or {}
    share = cut.get("share_estimate") if isinstance(cut, Mapping) else None
    if not isinstance(share, int | float):
        return None, None
    bounds = document.get("bounds") or {}
    used = f"{bounds.get('max_groups')} × {bounds.get('max_rows_per_group')}"
    when = str(document.get("created_at", ""))[:10]
    return float(share), (f"≈ {share * 100:.0f} % of rows beyond the bounds at the last release "
                          f"({used}, {when}; its DP estimate, reused at no cost)")


def check_query(plan: Plan, query: Query, sizes: Sizes,
                last: Mapping[str, Any] | None = None) -> QueryCheck:
    """Expected half-width, bias and flag of one query (no data read, nothing charged).

    ``last``: the published metadata of the query's last release, whose DP estimate of
    the rows cut gives the bias a number.
    """
    cells = 1
    for column in query.group_by:
        cells *= len(public_keys(plan, column))
    rho = query_cost(plan, query)
    share = 1.0
    for column, wanted in query.where.items():
        if column in PLANNING_SHARES:
            share *= PLANNING_SHARES[column] if wanted else 1 - PLANNING_SHARES[column]
    typical = sizes.rows(query.table) * share / cells
    rule = query.auto_bounds
    if query.ball_bounds is not None:
        return _check_ball(query, cells, typical, rho, last)
    choose, _, _ = split_rho(rho, auto_share=None if rule is None else rule.share, main=None)
    rest = rho - choose
    if rule is None:
        candidates = [query.fixed_bounds()]
        label = f"{candidates[0].max_groups} × {candidates[0].max_rows_per_group}"
    else:
        candidates = [Bounds(max_groups=min(g, cells), max_rows_per_group=r)
                      for g in rule.max_groups for r in rule.max_rows_per_group]
        label = "auto"
    bias = "0 (one row per person)" if query.table == "persons" else "measured at release"
    bias_share, last_text = (None, None) if query.table == "persons" else _last_bias(last)
    if last_text is not None:
        bias = last_text
    note = ""
    if query.measure in ("count", "histogram"):
        widths = [_count_halfwidth(query, b, rho, rest) for b in candidates]
    elif query.measure == "mean":
        # rate ≈ numerator / denominator: relative half-width of the count, as a rate
        widths = [_count_halfwidth(query, b, rho, rest) / max(typical, 1.0) for b in candidates]
        typical = 1.0
        note = "rate: half-width relative to a rate of 1"
    else:
        widths = []
        note = ("sums and quantiles: their half-width depends on the values; see the "
                "published ci95_halfwidth")
    half = min(widths) if widths else None
    if rule is not None and widths:
        # the engine picks the least expected error, not the least noise: show the range
        half = sorted(widths)[len(widths) // 4]
    widest = max(widths) if widths and rule is not None else None
    flagged = half is not None and half >= typical
    return QueryCheck(query=query.name, measure=query.measure, cells=cells, bounds=label,
                      typical_cell=None if query.measure in ("sum", "quantile") else typical,
                      halfwidth=None if half is None else round(half, 4 if typical <= 1 else 0),
                      halfwidth_max=None if widest is None else round(widest, 1),
                      bias=bias, too_uncertain=flagged, note=note,
                      bias_share_last=None if bias_share is None else round(bias_share, 4))


def _check_ball(query: Query, cells: int, typical: float, rho: Any,
                last: Mapping[str, Any] | None) -> QueryCheck:
    """An L2-ball count: σ = max_l2 / √(2ρ) in every cell (the whole ρ, no rows-cut count).

    Weighted (``weights: last_release``): cell i's σ is w_i times that, the weights of mean
    1, so the mean half-width over the cells is the same; the widest cell's comes from the
    weights the last release published (when there is one)."""
    ball = query.ball_bounds
    assert ball is not None
    half = _halfwidth(ball.max_l2 / math.sqrt(2 * float(rho)))
    widest = None
    note = "one Gaussian over the vector of cell counts"
    label = f"L2 ≤ {ball.max_l2:g}"
    if ball.weights == "last_release":
        label += ", weighted"
        note += "; noise weighted per cell by the last release: mean half-width shown"
        weights = ((last or {}).get("bounds") or {}).get("cell_weights")
        if isinstance(weights, list) and weights:
            widest = round(half * max(float(w) for w in weights), 1)
    return QueryCheck(query=query.name, measure=query.measure, cells=cells,
                      bounds=label, typical_cell=typical,
                      halfwidth=round(half), halfwidth_max=widest,
                      bias="rows cut not measured (L2 ball; few rows cut)",
                      too_uncertain=half >= typical, note=note, bias_share_last=None)


def check_hierarchy(plan: Plan, query: Query, sizes: Sizes) -> list[QueryCheck]:
    """One row per table of a hierarchical query (coarsest first): the half-width of the
    consistent estimate, from the WLS variances in closed form (root mean square over the
    level's cells; :func:`privacy.hierarchy.level_variances`), against the level's typical
    cell."""
    from privacy.hierarchy import level_variances

    variances = level_variances(plan, query)
    rows = []
    for level, variance in zip(query.level_queries(), variances, strict=True):
        direct = check_query(plan, level, sizes)
        half = _halfwidth(float(variance.mean()) ** 0.5)
        typical = direct.typical_cell
        rows.append(replace(direct, halfwidth=float(round(half)), too_uncertain=(
            typical is not None and half >= typical), note=(
            f"consistent with {', '.join(n for n in query.table_names() if n != level.name)} "
            f"(released alone at this level's ρ: ± {direct.halfwidth:.0f})")))
    return rows


def check_plan(plan: Plan, sizes: Sizes,
               last: Mapping[str, Mapping[str, Any]] | None = None) -> list[QueryCheck]:
    """:func:`check_query` for every query of the plan, in plan order; a hierarchical query
    gives one row per table it publishes (:func:`check_hierarchy`); ``last``: each query's
    last published metadata (:func:`last_releases`), for the bias."""
    last = last or {}
    return [row for q in plan.releases for row in (
        check_hierarchy(plan, q, sizes) if q.hierarchy
        else [check_query(plan, q, sizes, last.get(q.name))])]


