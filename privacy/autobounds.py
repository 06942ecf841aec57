"""Contribution bounds chosen under DP, and the bias they leave, measured under DP.

Why: a bound is a bias/noise trade-off (architecture.md). Bounds too tight cut the rows of
prolific people and the published count is low by thousands (bias, which no interval
shows); bounds too wide multiply the noise. Amin, Kulesza, Muñoz Medina and Vassilvitskii
("Bounding User Contributions: A Bias-Variance Trade-off in Differential Privacy", ICML
2019) show the bound minimising expected error is where the rows one more unit of bound
would save stop paying for the noise it adds, and that this point can be found from a DP
estimate of the *contribution distribution*, cheaply, because what matters there are
counts of persons (sensitivity 1), not counts of rows.

This module holds the data side of that step and the arithmetic after it; the OpenDP
measurements live in :mod:`privacy.engine` (one path that draws noise):

* :func:`profile` turns a query's rows into one **contribution profile** per person: the
  number of cells they appear in, and the most rows they have in one cell, each put in a
  bin of a public grid (:func:`profile_bins`). The engine releases the two histograms of
  those bins with OpenDP (each person is in exactly one bin of each: L2 sensitivity √2),
  charged to the query's ``bounds.share``. Nothing else about the data is used.
* :func:`choose_bounds` is post-processing of those noisy histograms: for every candidate
  ``(max_groups G, max_rows_per_group R)`` of the plan's public grid it estimates the rows
  the bound would cut and the noise it would need (:func:`noise_sigma`), and keeps the
  candidate with the least expected absolute error per cell, ``cut/cells + σ·√(2/π)``.

The estimate of rows cut is a **model** (stated in the metadata): a person over R in their
fullest cell loses ``m − R`` rows there, and a person in ``k > G`` cells loses ``k − G``
cells of one row each (the cells dropped are their smallest). It steers the choice only;
the rows actually cut at the chosen bound are measured separately, under DP, by the bias
estimate below, and that is what the published intervals use.

**Bias estimate.** Whatever bounds are used (fixed or chosen), the rows they cut are
counted per cell with a DP count of their own (:func:`excess_bounds`: the next
``⌈R/2⌉`` cut rows in up to ``G`` cells per person), and the published *bias-aware*
interval is the count plus that estimate, with both noises. Rows beyond the excess bound
are not measured: the table says so.

>>> excess_bounds(Bounds(max_groups=8, max_rows_per_group=3))
Bounds(max_groups=8, max_rows_per_group=2)
>>> split_rho(Fraction(1, 10), auto_share=Fraction(1, 5), main=Bounds(max_groups=4,
...           max_rows_per_group=2))
(Fraction(1, 50), Fraction(4, 75), Fraction(2, 75))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import polars as pl

from privacy.bounding import person_cell_profile
from privacy.plan import AutoBounds, Bounds

#: Bins of the two histograms, in one frame: cells-per-person bins first, then
#: max-rows-per-cell bins, so that one grouped OpenDP count releases both.
BIN = "bin"
#: Bins whose noisy count is below this many noise scales count as empty: a histogram's
#: long, mostly empty tail would otherwise add its positive noise to every estimate.
EMPTY_BELOW_SCALES = 2.0
_HALF_NORMAL_MEAN = math.sqrt(2 / math.pi)


def excess_bounds(main: Bounds) -> Bounds:
    """The bound of the bias estimate: the next ⌈R/2⌉ cut rows in up to G cells.

    Half the row bound keeps its noise at about half the count's (its sensitivity is
    ⌈R/2⌉·√G against R·√G), while still reaching the rows just past the bound, which is
    where a well-chosen bound cuts.
    """
    return Bounds(max_groups=main.max_groups,
                  max_rows_per_group=max(1, math.ceil(main.max_rows_per_group / 2)))


def sensitivity(bounds: Bounds) -> float:
    """L2 sensitivity of a bounded per-cell count: R rows in each of G cells."""
    return bounds.max_rows_per_group * math.sqrt(bounds.max_groups)


def split_rho(rho: Fraction, *, auto_share: Fraction | None,
              main: Bounds | None) -> tuple[Fraction, Fraction, Fraction]:
    """(ρ to choose the bounds, ρ of the published measurement, ρ of the bias estimate).

    Exact and summing to ``rho``. The choice takes ``auto_share`` (0 for fixed bounds); the
    rest is split between the measurement and the bias estimate in proportion to their
    sensitivities, which minimises the noise of their sum (the bias-aware estimate). With
    ``main=None`` (nothing can be cut: one row per person) the measurement takes it all.
    """
    choose = rho * (auto_share or 0)
    rest = rho - choose
    if main is None:
        return choose, rest, Fraction(0)
    r1 = main.max_rows_per_group
    r2 = excess_bounds(main).max_rows_per_group
    # both sensitivities share the factor √G: the split is exact in R alone
    measure = rest * Fraction(r1, r1 + r2)
    return choose, measure, rest - measure


def noise_sigma(bounds: Bounds, rho: Fraction | float) -> float:
    """σ of a zCDP Gaussian count with these bounds: Δ₂/√(2ρ)."""
    return sensitivity(bounds) / math.sqrt(2 * float(rho))


def combined_sigma(main: Bounds, rho_rest: Fraction | float) -> float:
    """σ of count + bias estimate when ``rho_rest`` is split as :func:`split_rho` does.

    With the split proportional to the sensitivities Δ₁, Δ₂ the two noises add up to
    (Δ₁ + Δ₂)/√(2ρ): the bias-aware interval's noise.
    """
    total = sensitivity(main) + sensitivity(excess_bounds(main))
    return total / math.sqrt(2 * float(rho_rest))


# ----------------------------------------------------------------------------- profiles

@dataclass(frozen=True)
class ProfileBins:
    """The public grid of the two histograms (from the plan's candidates and cell count)."""

    groups_top: int  # cells-per-person bins 1..groups_top, the last one "≥ groups_top"
    rows_top: int  # max-rows bins 1..rows_top, the last one "≥ rows_top"

    @property
    def n_bins(self) -> int:
        return self.groups_top + self.rows_top


def profile_bins(rule: AutoBounds, n_cells: int) -> ProfileBins:
    """One bin per candidate value and one past the largest: what the choice needs."""
    groups = [g for g in rule.max_groups if g <= n_cells] or [1]
    groups_top = min(n_cells, groups[-1] + 1)
    return ProfileBins(groups_top=groups_top, rows_top=rule.max_rows_per_group[-1] + 1)


def profile(rows: pl.DataFrame, bins: ProfileBins) -> pl.DataFrame:
    """Two rows per person: the bin of their cell count, the bin of their fullest cell.

    Exact and internal: only OpenDP's noisy counts of these bins leave the engine.
    """
    k, m = person_cell_profile(rows)
    k_bin = np.clip(k, 1, bins.groups_top) - 1
    m_bin = np.clip(m, 1, bins.rows_top) - 1 + bins.groups_top
    return pl.DataFrame({BIN: np.concatenate([k_bin, m_bin]).astype(np.int64)},
                        schema={BIN: pl.Int64})


# ----------------------------------------------------------------------------- choice

@dataclass(frozen=True)
class Candidate:
    """One candidate bound and what the DP histograms predict for it."""

    bounds: Bounds
    rows_cut: float  # modelled rows cut over the whole table
    sigma: float  # noise of the bias-aware estimate per cell
    error: float  # expected absolute error per cell: rows_cut / cells + σ·√(2/π)

    def to_json(self) -> dict[str, Any]:
        return {"max_groups": self.bounds.max_groups,
                "max_rows_per_group": self.bounds.max_rows_per_group,
                "rows_cut_model": round(self.rows_cut), "sigma": round(self.sigma, 2),
                "expected_error_per_cell": round(self.error, 2)}


@dataclass(frozen=True)
class Choice:
    """The bounds chosen, the candidates compared, and the DP histograms they came from."""

    bounds: Bounds
    candidates: tuple[Candidate, ...]
    cells_histogram: tuple[float, ...]  # noisy persons per cell count 1..groups_top
    rows_histogram: tuple[float, ...]  # noisy persons per fullest-cell rows 1..rows_top
    histogram_scale: float

    def to_json(self) -> dict[str, Any]:
        return {"chosen": {"max_groups": self.bounds.max_groups,
                           "max_rows_per_group": self.bounds.max_rows_per_group},
                "candidates": [c.to_json() for c in self.candidates],
                "persons_by_cells": [round(v) for v in self.cells_histogram],
                "persons_by_fullest_cell_rows": [round(v) for v in self.rows_histogram],
                "histogram_noise_scale": self.histogram_scale,
                "model": "rows cut ≈ Σ persons max(0, m − R) + Σ persons max(0, k − G) "
                         "(m: rows in the person's fullest cell, k: cells; the top bin "
                         "counts as its lower edge); error per cell = rows cut / cells + "
                         "σ·√(2/π), σ the noise of count + bias estimate; histogram "
                         "bins below 2 noise scales count as empty"}


def choose_bounds(noisy: np.ndarray, scale: float, *, rule: AutoBounds, bins: ProfileBins,
                  n_cells: int, rho_rest: Fraction) -> Choice:
    """Pick the candidate with the least expected error from the noisy histograms.

    Post-processing only: ``noisy`` is OpenDP's release of the :func:`profile` bins
    (nulls as 0), ``scale`` its noise scale, ``rho_rest`` what the count and its bias
    estimate will share. Ties go to the smaller bound (less noise for the same error).
    """
    counts = np.where(noisy >= EMPTY_BELOW_SCALES * scale, noisy, 0.0)
    by_cells = counts[:bins.groups_top]
    by_rows = counts[bins.groups_top:bins.groups_top + bins.rows_top]
    k = np.arange(1, bins.groups_top + 1, dtype=np.float64)
    m = np.arange(1, bins.rows_top + 1, dtype=np.float64)
    groups = sorted({min(g, n_cells) for g in rule.max_groups})
    candidates = []
    for g in groups:
        for r in rule.max_rows_per_group:
            bounds = Bounds(max_groups=g, max_rows_per_group=r)
            cut = float(np.sum(by_rows * np.maximum(0.0, m - r))
                        + np.sum(by_cells * np.maximum(0.0, k - g)))
            sigma = combined_sigma(bounds, rho_rest)
            candidates.append(Candidate(bounds, cut, sigma,
                                        cut / n_cells + _HALF_NORMAL_MEAN * sigma))
    best = min(candidates, key=lambda c: (c.error, sensitivity(c.bounds)))
    return Choice(bounds=best.bounds, candidates=tuple(candidates),
                  cells_histogram=tuple(float(v) for v in noisy[:bins.groups_top]),
                  rows_histogram=tuple(float(v) for v in noisy[bins.groups_top:]),
                  histogram_scale=scale)
