"""Consistent geography: national = Σ régions = Σ départements, by post-processing DP counts.

Why: counts of the same measure released separately at several levels (France, régions,
départements) do not add up, and the département table cannot borrow strength from the
région one. A hierarchical query (:class:`privacy.plan.Level`) measures every level at once,
each level with its own OpenDP Gaussian count and its own part of the query's ρ (a person
is in one cell per level, so the parts compose to the query's ρ). This module then
post-processes those DP outputs, with no access to the data, so it costs no budget:

1. **Weighted least squares over the tree** (Hay, Rastogi, Miklau & Suciu, "Boosting the
   accuracy of differentially private histograms through consistency", VLDB 2010). The
   closed form takes two passes. Bottom-up, each node's best estimate from its own subtree:
   its noisy count and the sum of its children's estimates, weighted by the inverse of their
   variances. Top-down, each parent's final value is shared out among its children in
   proportion to their subtree variances. Levels carry different noise scales, so every
   weight is a variance, never a level count. The result is the generalised least-squares
   estimate under the constraint that every parent equals the sum of its children:
   unbiased, never less accurate than the node's own count, and with a closed-form
   variance for every node (:attr:`Consistent.variances`). The 95 % intervals are built from
   that variance.
2. **Non-negativity and whole numbers, top-down** (the US Census TopDown idea, without a
   solver): the roots are rounded and clamped at 0; then each parent's whole value is
   shared among its children by the weighted projection of their WLS values onto
   {y ≥ 0, Σ y = parent} (clamp at 0 and take the difference from the others, in
   proportion to their variances), and those shares rounded by largest remainders so that
   they still sum to the parent exactly. Sums stay exact at every level; the price is a
   small bias near 0 (cells that noise pushed below 0 are lifted, their siblings lowered).

Everything is O(cells) with numpy (a loop over parents for the top-down pass): the tree is
the public key sets, whatever the number of persons.

>>> import numpy as np
>>> tree = Tree(sizes=(1, 2), parents=(np.array([0, 0]),))
>>> fit = wls(tree, [np.array([10.0]), np.array([4.0, 4.0])], [1.0, 1.0])
>>> [np.round(v, 4).tolist() for v in fit.values]  # 10 vs 4 + 4: the gap shared out
[[9.3333], [4.6667, 4.6667]]
>>> [v.tolist() for v in nonnegative_integers(tree, fit)]
[[9], [5, 4]]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np
import polars as pl
from numpy.typing import NDArray

from core.errors import InvariantViolation
from privacy.plan import Plan, Query, public_keys, query_cost

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Tree:
    """A forest of public cells by level, top → leaf.

    ``sizes[l]`` is the number of nodes of level ``l``; ``parents[l]`` gives, for each node
    of level ``l + 1``, the index of its parent in level ``l``. Every node above the leaf
    level has at least one child (a parent with none would be forced to 0).
    """

    sizes: tuple[int, ...]
    parents: tuple[IntArray, ...]

    def __post_init__(self) -> None:
        if not self.sizes or any(n < 1 for n in self.sizes):
            raise InvariantViolation("a tree needs at least one level of at least one node")
        if len(self.parents) != len(self.sizes) - 1:
            raise InvariantViolation("a tree needs one parent map per level below the top")
        for level, parent in enumerate(self.parents):
            if parent.shape != (self.sizes[level + 1],):
                raise InvariantViolation(f"level {level + 1}: one parent per node")
            if parent.size and (parent.min() < 0 or parent.max() >= self.sizes[level]):
                raise InvariantViolation(f"level {level + 1}: a parent index is out of range")
            if np.unique(parent).size != self.sizes[level]:
                raise InvariantViolation(f"level {level}: a node has no child")

    @property
    def depth(self) -> int:
        return len(self.sizes)


@dataclass(frozen=True)
class Consistent:
    """The WLS estimate of every node (real numbers) and the variance of its error."""

    values: tuple[FloatArray, ...]
    variances: tuple[FloatArray, ...]


def wls(tree: Tree, noisy: Sequence[FloatArray | None],
        variances: Sequence[float | None]) -> Consistent:
    """Weighted least squares over the tree (Hay et al. 2010, two passes; see the module doc).

    ``noisy[l]`` are level ``l``'s noisy counts (``None``: the level is not measured, it is
    only the sum of its children) and ``variances[l]`` their noise variance (σ² of the
    level's Gaussian). The leaf level must be measured.

    >>> import numpy as np
    >>> tree = Tree(sizes=(1, 3), parents=(np.array([0, 0, 0]),))
    >>> fit = wls(tree, [None, np.array([1.0, 2.0, 3.0])], [None, 4.0])
    >>> fit.values[0].tolist(), fit.variances[0].tolist()  # unmeasured: just the sum
    ([6.0], [12.0])
    """
    depth = tree.depth
    if len(noisy) != depth or len(variances) != depth:
        raise InvariantViolation("one noisy level and one variance per level of the tree")
    if noisy[-1] is None or variances[-1] is None:
        raise InvariantViolation("the leaf level must be measured")
    for level, (counts, variance) in enumerate(zip(noisy, variances, strict=True)):
        if (counts is None) != (variance is None):
            raise InvariantViolation(f"level {level}: counts and variance go together")
        if counts is not None and variance is not None:
            if counts.shape != (tree.sizes[level],):
                raise InvariantViolation(f"level {level}: one noisy count per node")
            if not variance > 0:
                raise InvariantViolation(f"level {level}: the noise variance must be > 0")
    # Bottom-up: z, V = each node's estimate from its own subtree and its variance;
    # S, VS = the sum of its children's z and the variance of that sum.
    z: list[FloatArray] = [np.empty(0)] * depth
    v: list[FloatArray] = [np.empty(0)] * depth
    child_sum: list[FloatArray] = [np.empty(0)] * depth
    child_var: list[FloatArray] = [np.empty(0)] * depth
    leaf = noisy[-1]
    assert leaf is not None
    z[-1] = np.asarray(leaf, dtype=np.float64)
    v[-1] = np.full(tree.sizes[-1], float(variances[-1] or 0.0))
    for level in range(depth - 2, -1, -1):
        parent = tree.parents[level]
        size = tree.sizes[level]
        child_sum[level] = np.bincount(parent, weights=z[level + 1],
                                       minlength=size).astype(np.float64)
        child_var[level] = np.bincount(parent, weights=v[level + 1],
                                       minlength=size).astype(np.float64)
        own, own_var = noisy[level], variances[level]
        if own is None or own_var is None:
            z[level], v[level] = child_sum[level], child_var[level]
        else:
            precision = 1.0 / own_var + 1.0 / child_var[level]
            v[level] = 1.0 / precision
            z[level] = v[level] * (np.asarray(own, dtype=np.float64) / own_var
                                   + child_sum[level] / child_var[level])
    # Top-down: the parent's final value minus its children's sum, shared in proportion
    # to the children's variances; the variance follows (Gaussian conditioning).
    values: list[FloatArray] = [z[0]]
    final_var: list[FloatArray] = [v[0]]
    for level in range(depth - 1):
        parent = tree.parents[level]
        ratio = v[level + 1] / child_var[level][parent]
        gap = values[level] - child_sum[level]
        values.append(z[level + 1] + ratio * gap[parent])
        final_var.append(v[level + 1] * (1.0 - ratio) + ratio * ratio * final_var[level][parent])
    return Consistent(values=tuple(values), variances=tuple(final_var))


def project_to_sum(values: FloatArray, weights: FloatArray, total: float) -> FloatArray:
    """The closest ``y ≥ 0`` with ``Σ y = total`` (in the metric Σ (y − values)² / weights).

    The solution is ``y = max(0, values − τ·weights)`` for the one τ that meets the total:
    cells below 0 are clamped and the difference taken from the others in proportion to
    their weights. Exact, by the breakpoints of the piecewise-linear sum.

    >>> import numpy as np
    >>> project_to_sum(np.array([-3.0, 5.0, 10.0]), np.ones(3), 12.0).tolist()
    [0.0, 3.5, 8.5]
    """
    if total < 0:
        raise InvariantViolation("a non-negative split needs a non-negative total")
    if values.size == 0:
        raise InvariantViolation("nothing to split")
    if total == 0:
        return np.zeros_like(values)
    if np.any(weights <= 0):
        raise InvariantViolation("projection weights must be > 0")
    breakpoints = values / weights
    order = np.argsort(-breakpoints)
    cum_values = np.cumsum(values[order])
    cum_weights = np.cumsum(weights[order])
    taus = (cum_values - total) / cum_weights  # τ if the top m cells are the positive ones
    sorted_breaks = breakpoints[order]
    following = np.append(sorted_breaks[1:], -np.inf)
    valid = (taus < sorted_breaks) & (taus >= following)
    tau = taus[int(np.argmax(valid))] if valid.any() else taus[-1]
    out = np.maximum(values - tau * weights, 0.0)
    return out * (total / out.sum()) if out.sum() > 0 else np.full_like(values,
                                                                        total / values.size)


def round_to_sum(values: FloatArray, total: int) -> IntArray:
    """Whole numbers ≥ 0 summing to ``total``: floors, then one more unit to the largest
    remainders (ties to the first cell). ``values`` are ≥ 0 and sum to ``total``.

    >>> import numpy as np
    >>> round_to_sum(np.array([0.4, 1.3, 2.3]), 4).tolist()
    [1, 1, 2]
    """
    floors = np.floor(values + 1e-9).astype(np.int64)
    floors = np.maximum(floors, 0)
    missing = int(total - floors.sum())
    if missing < 0:  # float dust: take units back from the smallest remainders
        order = np.argsort(values - floors, kind="stable")
        order = order[floors[order] > 0]
        floors[order[:-missing]] -= 1
        return floors
    order = np.argsort(-(values - floors), kind="stable")
    floors[order[:missing]] += 1
    return floors


def nonnegative_integers(tree: Tree, fit: Consistent) -> tuple[IntArray, ...]:
    """Whole, non-negative counts that still add up exactly at every level (top-down).

    Each root is its WLS value rounded and clamped at 0; each parent's whole value is split
    among its children by :func:`project_to_sum` (weighted by their WLS variances) and
    :func:`round_to_sum`.
    """
    levels: list[IntArray] = [np.maximum(np.rint(fit.values[0]), 0).astype(np.int64)]
    for level in range(tree.depth - 1):
        parent = tree.parents[level]
        children = fit.values[level + 1]
        weights = fit.variances[level + 1]
        out = np.zeros(tree.sizes[level + 1], dtype=np.int64)
        order = np.argsort(parent, kind="stable")
        bounds = np.searchsorted(parent[order], np.arange(tree.sizes[level] + 1))
        for node in range(tree.sizes[level]):
            members = order[bounds[node]:bounds[node + 1]]
            total = int(levels[level][node])
            shares = project_to_sum(children[members], weights[members], float(total))
            out[members] = round_to_sum(shares, total)
        levels.append(out)
    return tuple(levels)


# ----------------------------------------------------------------------------- public trees

def parent_map(parent_columns: Sequence[str], parent_keys: Sequence[tuple[Any, ...]],
               child_columns: Sequence[str], child_keys: Sequence[tuple[Any, ...]],
               departement_region: Mapping[str, str]) -> IntArray:
    """For each child cell, the index of its parent cell: a parent column the child has is
    copied, a région is the child's département's (the COG's public mapping)."""
    index = {tuple(str(v) for v in key): i for i, key in enumerate(parent_keys)}
    out = np.empty(len(child_keys), dtype=np.int64)
    for i, key in enumerate(child_keys):
        values = dict(zip(child_columns, key, strict=True))
        wanted = []
        for column in parent_columns:
            if column in values:
                wanted.append(str(values[column]))
            elif column == "region" and "departement" in values:
                wanted.append(departement_region[str(values["departement"])])
            else:
                raise InvariantViolation(f"no parent {column} for the cells "
                                         f"{', '.join(child_columns)}")
        parent = index.get(tuple(wanted))
        if parent is None:
            raise InvariantViolation(f"cell {key} has no parent cell {tuple(wanted)}")
        out[i] = parent
    return out


def key_tree(columns: Sequence[Sequence[str]], keys: Sequence[Sequence[tuple[Any, ...]]],
             departement_region: Mapping[str, str]) -> Tree:
    """The tree of public cells, level by level (each level's group columns and cell keys,
    in the order its table lists them)."""
    parents = tuple(parent_map(columns[level], keys[level], columns[level + 1],
                               keys[level + 1], departement_region)
                    for level in range(len(columns) - 1))
    return Tree(sizes=tuple(len(k) for k in keys), parents=parents)


def public_tree(plan: Plan, query: Query) -> Tree:
    """The tree of a hierarchical query's public cells (cells in the engine's order: the
    product of the group columns' public key sets)."""
    from core.geography import load_geography

    levels = query.level_queries()
    keys = [list(itertools.product(*(public_keys(plan, c) for c in q.group_by)))
            for q in levels]
    return key_tree([q.group_by for q in levels], keys,
                    load_geography().departement_region)


def level_variances(plan: Plan, query: Query) -> tuple[FloatArray, ...]:
    """The variance of every node's consistent estimate, from the plan alone (for
    ``isoloir plan check``): each level's noise σ² for a one-row-per-person count at its ρ
    (σ = 1/√(2ρ), before OpenDP's calibration rounds it up)."""
    tree = public_tree(plan, query)
    variances = [1.0 / (2.0 * float(query_cost(plan, q))) for q in query.level_queries()]
    zeros = [np.zeros(n) for n in tree.sizes]
    return wls(tree, list(zeros), list(variances)).variances


# ----------------------------------------------------------------------------- tables

#: Two-sided 95 % quantile of the standard normal.
Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class LevelTable:
    """One level's published table (post-processed) and what its metadata says of it."""

    query: Query
    table: pl.DataFrame
    hierarchy: Mapping[str, Any]


def consistent_tables(plan: Plan, query: Query,
                      released: Sequence[pl.DataFrame]) -> list[LevelTable]:
    """Post-process the levels' DP tables (the engine's raw ``estimate`` and
    ``noise_scale`` per cell, in :meth:`Query.level_queries` order) into consistent ones.

    Each table keeps its group columns; ``estimate`` is the consistent whole count,
    ``ci95_*`` and ``noise_scale`` are the WLS estimate's (recomputed, see the module doc),
    ``direct_estimate`` and ``direct_ci95_halfwidth`` are the level's own DP count (rounded,
    clamped at 0) and its interval; a histogram's last level has ``share`` within its parent.
    """
    from core.geography import load_geography

    levels = query.level_queries()
    if len(released) != len(levels):
        raise InvariantViolation(f"query {query.name}: one DP table per level")
    for level, frame in zip(levels, released, strict=True):
        if frame["estimate"].null_count() or frame["noise_scale"].null_count():
            raise InvariantViolation(f"level {level.name}: a public cell has no DP count")
    tree = key_tree([q.group_by for q in levels],
                    [list(f.select(q.group_by).iter_rows()) if q.group_by else [()]
                     for q, f in zip(levels, released, strict=True)],
                    load_geography().departement_region)
    noisy = [f["estimate"].cast(pl.Float64).to_numpy() for f in released]
    scales = [float(f["noise_scale"].cast(pl.Float64).max() or 0.0)  # type: ignore[arg-type]
              for f in released]
    fit = wls(tree, noisy, [s * s for s in scales])
    whole = nonnegative_integers(tree, fit)
    described = [{"level": lv.level, "table": q.name, "share": _frac(lv.share),
                  "rho": _frac(query_cost(plan, q)), "cells": tree.sizes[i],
                  "direct_noise_scale": scales[i],
                  "direct_ci95_halfwidth": _halfwidth(scales[i])}
                 for i, (lv, q) in enumerate(zip(query.hierarchy, levels, strict=True))]
    out = []
    for i, (level, frame) in enumerate(zip(levels, released, strict=True)):
        sigma = np.sqrt(fit.variances[i])
        half = np.ceil(Z95 * sigma * 10.0) / 10.0
        estimate = whole[i].astype(np.float64)
        low = np.minimum(np.maximum(np.floor(fit.values[i] - half), 0.0), estimate)
        high = np.maximum(np.ceil(fit.values[i] + half), estimate)
        raw = frame["estimate"].cast(pl.Float64)
        table = frame.select(*level.group_by).with_columns(
            pl.Series("estimate", estimate), pl.Series("ci95_low", low),
            pl.Series("ci95_high", high), pl.Series("ci95_halfwidth", half),
            pl.Series("noise_scale", sigma),
            raw.clip(lower_bound=0.0).round(0).alias("direct_estimate"),
            pl.lit(_halfwidth(scales[i]), pl.Float64).alias("direct_ci95_halfwidth"))
        if level.measure == "histogram" and i > 0:
            parents = whole[i - 1][tree.parents[i - 1]].astype(np.float64)
            share = np.where(parents > 0, estimate / np.maximum(parents, 1.0), 0.0)
            table = table.with_columns(pl.Series("share", np.round(share, 4)))
        if level.group_by:
            table = table.sort(list(level.group_by))
        out.append(LevelTable(query=level, table=table, hierarchy={
            "levels": described, "this_level": query.hierarchy[i].level,
            "method": METHOD, "intervals": INTERVALS,
            "consistency": "every cell equals the sum of its cells one level down, exactly, "
                           "in this release"}))
    return out


METHOD = ("weighted least squares over the tree of levels, two passes in closed form, each "
          "level weighted by its own noise variance (Hay, Rastogi, Miklau & Suciu, VLDB "
          "2010), then non-negative whole counts top-down: each parent's whole value shared "
          "among its children by the variance-weighted projection onto non-negative values "
          "with the parent's sum, rounded by largest remainders (after the US Census "
          "TopDown idea, no solver)")
INTERVALS = ("recomputed: 95 % interval = WLS value ± 1.96 × its closed-form standard "
             "deviation (noise_scale; σ² of each level's discrete Gaussian is an upper bound "
             "of its variance), clamped at 0 and widened, if needed, to hold the published "
             "whole non-negative estimate")


def _halfwidth(scale: float) -> float:
    return float(math.ceil(Z95 * scale * 10.0) / 10.0)


def _frac(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


class _Released(Protocol):
    mechanism: str
    table: pl.DataFrame
    metadata: Mapping[str, Any]


def release_levels(query: Query, plan: Plan, data: Any, rho: Fraction,
                   run_query: Callable[[Query, Plan, Any, Fraction], _Released]
                   ) -> list[tuple[LevelTable, _Released]]:
    """Release every level of a hierarchical ``query`` (``rho`` charged for it whole): each
    level's DP count through ``run_query`` (the engine) at its share of ``rho``, then
    :func:`consistent_tables`. The levels' parts sum to ``rho`` exactly."""
    levels = query.level_queries()
    results = [run_query(q, plan, data, rho * lv.share)
               for q, lv in zip(levels, query.hierarchy, strict=True)]
    tables = consistent_tables(plan, query, [r.table for r in results])
    return list(zip(tables, results, strict=True))
