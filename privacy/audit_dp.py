"""Empirical privacy audit: run the real release path on neighbouring datasets, bound ε from below.

Why. The DP guarantee of a published table rests on OpenDP *and* on our glue: the
user-level bounding, the bound declared to OpenDP, the ρ → float rounding, the
post-processing. Studies of DP libraries (DP-Sniper, Delta-Siege, Google's DP stochastic
tester) found their bugs in exactly that glue. A proof on paper does not catch a mistyped
bound; a statistical test of the shipped code does, in the style of those tools.

What runs. For each audited query (one per mechanism family of the plan: bounded count,
L2-ball count (a person's vector of cell counts cut to a Euclidean norm),
grouped count with cell bounds, clipped sum, mean as a ratio of noisy sums, quantile by the
exponential mechanism, histogram over a weighted L2 ball (fixed uneven cell weights,
:func:`audit_weights`); :data:`FAMILIES`; or every query of the plan), we build
a small snapshot ``D`` and its neighbour ``D′ = D`` plus one person whose contributions go
past every declared bound: rows in *every* public cell of the query, more than
``max_rows_per_group`` in each (at least 500 contacts, at least 50 donations), each donation
at the French legal cap (7,500 €, far above the plan's clip), flags and levels at the top of
their range; the newcomer is inserted in the middle of the person ranks, so every later
person key shifts, as in a real snapshot. For ``bounds: auto`` "every declared bound" is
the largest public candidate, and on tables where a person has several rows the newcomer
also goes past the bound of the rows-cut count beyond it (:func:`rows_past_every_bound`).
Then the **real path** runs on both: :func:`privacy.engine.compile_query` (public cells,
bounding, the bound declared to OpenDP, ρ rounded down, calibration) and, ``trials`` times,
:meth:`CompiledQuery.release` (OpenDP draws the noise: the only randomness here),
:func:`privacy.engine.postprocess` and :func:`privacy.publish.published_table`: the numbers
a strategist downloads. Compiling once and releasing many times is the release path for
fixed bounds: compiling is deterministic and draws nothing. Each release draws every
measurement of the query: the count (or sum, mean, quantile) *and* the DP count of the rows
its bounds cut. An auto-bounded query draws a third one before them, the DP histograms its
bounds are chosen from: the audit draws it again in every trial
(:meth:`privacy.engine.PreparedQuery.choose`) and releases with the bounds that draw chose,
as a run does (the deterministic compilation for each candidate is reused).

The test. The published numbers of each trial (every numeric column of every cell, and
every number of the engine's metadata, which the published JSON carries: rows-cut totals
and shares, an auto query's noisy histograms, candidates and chosen bounds) are
reduced to one statistic, a diagonal linear discriminant whose weights are fit on the first
part of the trials (30 %); on that same part a rejection region ``S`` (a threshold and a side),
an ordering of (D, D′) and a δ are chosen. On the other trials only, Clopper–Pearson bounds
give, with confidence 0.95 (0.975 for each of the two tails, union bound),
``p̂₀ ≥ P[M(D′) ∈ S]`` from below and ``p̂₁ ≤ P[M(D) ∈ S]`` from above, and

    ε_lb(δ) = ln((p̂₀_lower − δ) / p̂₁_upper).

The ledger charges ρ and ρ-zCDP implies (ε(δ), δ)-DP with ε(δ) = ρ + 2√(ρ ln(1/δ)) for
*every* δ in (0, 1) (:func:`privacy.accountant.epsilon_equivalent`, the accountant's
conversion). So if the two Clopper–Pearson bounds hold, ε_lb(δ) ≤ ε(δ) for all δ at once:
the audit checks a grid of δ (the plan's δ first) on one (S, ordering) pair, and fails when
any ε_lb(δ) exceeds its ε(δ). That is an honest 0.95-level test: the region was chosen on
trials the estimate never sees, and one pair of tail probabilities covers all δ.

Why a large ρ (:data:`AUDIT_RHO` = 1 per audited release, ε ≈ 9 at δ = 1e-7). A sample of
a few thousand trials sees tail probabilities down to ~10⁻³, not the 10⁻⁷ of the plan's δ,
and at small ρ a mechanism with half its noise is indistinguishable from a correct one with
so few trials. At ρ = 1 the worst-case neighbour moves the released statistic by √2 noise
standard deviations, where halving the noise or multiplying ρ by 4 becomes visible (tests
prove it). This does not weaken the claim: ρ enters the engine as one number that scales
the noise; the glue under audit (cells, bounding, declared bound, rounding, clamping,
shares and ratios) is the same code at every ρ, and a mistake in it shows at any ρ.

What it cannot see. A lower bound is evidence, not proof: passing means no violation was
detected at this power. Mistakes smaller than the test's resolution (ρ off by one float
ulp) are out of reach; :func:`privacy.engine.compile_query`'s own guard covers those.

No noise is drawn here: every random number comes from OpenDP's measurement. The base
population is laid out by fixed arithmetic (no random generator), so ``D`` is the same on
every run.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from core.errors import InvariantViolation, PlanError
from core.vocabulary import (
    AGE_BANDS,
    CAP_PER_PARTY_YEAR_CENTS,
    CHANNELS,
    DONATION_METHODS,
    RESULTS,
    SUPPORT_LEVELS,
    iso_weeks,
    months,
)
from privacy import engine
from privacy.accountant import epsilon_equivalent
from privacy.autobounds import Choice, excess_bounds
from privacy.cell_weights import weights_from_counts
from privacy.plan import Bounds, Plan, Query
from privacy.publish import jsonable, published_table
from warehouse.reader import PERSON_KEY, SNAPSHOT_SCHEMAS

log = logging.getLogger(__name__)

#: One audited query per mechanism family the engine has (names from the default plan).
FAMILIES: Mapping[str, str] = {
    "bounded_count": "donations_count_by_region",  # ≤ 6 gifts, one région
    "grouped_count": "donations_count_by_month",  # 6 months × 2 gifts
    "l2_ball_count": "contacts_by_week",  # each person's weekly counts cut to L2 norm ≤ d
    "clipped_sum": "donations_total_by_month",  # per person-month total clipped to 500 €
    "mean": "contact_rate_by_week",  # noisy conversations / noisy attempts
    "quantile": "donations_median_by_month",  # exponential mechanism over 201 candidates
    # counts over result codes, then shares: weighted L2 ball (σ_i ∝ w_i; AUDIT_WEIGHTS)
    "weighted_l2_histogram": "contacts_by_result",
}
#: ρ of each audited release (see the module docstring for why it is this large).
AUDIT_RHO = Fraction(1)
#: The confidence of each lower bound (two one-sided Clopper–Pearson bounds at 1 − α/2).
CONFIDENCE = 0.95
#: δ values checked besides the plan's own (ρ-zCDP implies (ε(δ), δ)-DP for all of them).
DELTA_GRID: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
#: The newcomer's minimum row counts ("a person with 500 contacts, 50 donations").
MIN_EXTRA_ROWS: Mapping[str, int] = {"persons": 1, "contacts": 500, "donations": 50}
#: Share of the trials that choose the statistic and the region; the rest estimate.
#: Choosing needs fewer trials than estimating tail probabilities (measured: at 10,000
#: trials, a 30/70 split finds a noise-halving bug with a wider margin than 50/50).
SELECTION_SHARE = 0.3
#: Persons in the base snapshot D.
BASE_PERSONS = 300
#: Trials released per OpenDP call batch (memory stays flat whatever ``trials``).
_BATCH = 250
#: Thresholds tried on the selection trials (quantiles of the pooled statistic).
_THRESHOLDS = 400
_AUDIT_FILE = Path("audit") / "dp_audit.json"

def record_path(home: Path) -> Path:
    """Where the last audit's results are kept: ``$ISOLOIR_HOME/audit/dp_audit.json``."""
    return home / _AUDIT_FILE


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True)
class TailTest:
    """The outcome of the threshold test on the estimation trials."""

    ordering: Literal["D'|D", "D|D'"]  # whose tail probability is p₀ (then p₁)
    side: Literal["above", "below"]  # S = {statistic > t} or {statistic ≤ t}
    threshold: float
    hits0: int  # trials of p₀'s dataset in S (estimation trials)
    hits1: int
    n: int  # trials per dataset in the estimation trials
    p0_lower: float
    p1_upper: float

    def epsilon_lower(self, delta: float) -> float | None:
        """ε_lb(δ) = ln((p̂₀_lower − δ) / p̂₁_upper); ``None`` when p̂₀_lower ≤ δ (no evidence)."""
        if self.p0_lower <= delta:
            return None
        return math.log((self.p0_lower - delta) / self.p1_upper)


@dataclass(frozen=True)
class DeltaCheck:
    """One δ of the grid: the ledger's ε there and the audit's lower bound."""

    delta: float
    epsilon_declared: float
    epsilon_lower: float | None

    @property
    def violated(self) -> bool:
        return self.epsilon_lower is not None and self.epsilon_lower > self.epsilon_declared


@dataclass(frozen=True)
class FamilyResult:
    """The audit of one query: trials, the ledger's ε, the empirical lower bound."""

    family: str
    query: str
    measure: str
    trials: int  # releases per dataset (30 % choose the test, 70 % estimate it)
    rho: str  # the exact ρ charged for each release, "p/q"
    plan_delta: float
    epsilon_declared: float  # at the plan's δ
    epsilon_lower: float | None  # at the plan's δ
    test_delta: float  # the δ chosen on the selection trials
    test_epsilon_declared: float
    test_epsilon_lower: float | None
    checks: tuple[DeltaCheck, ...]
    test: TailTest
    newcomer_rows: int
    cells: int
    seconds: float

    @property
    def passed(self) -> bool:
        return not any(c.violated for c in self.checks)

    @property
    def margin(self) -> float | None:
        """max over δ of ε_lb(δ) − ε(δ): negative when the audit passes."""
        gaps = [c.epsilon_lower - c.epsilon_declared for c in self.checks
                if c.epsilon_lower is not None]
        return max(gaps) if gaps else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed, "margin": self.margin}


@dataclass(frozen=True)
class DPAuditReport:
    """A whole audit run, as written to ``dp_audit.json`` and shown to the auditor."""

    started_at: str
    seconds: float
    confidence: float
    plan_hash: str
    results: tuple[FamilyResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "seconds": self.seconds,
                "confidence": self.confidence, "plan_hash": self.plan_hash, "ok": self.ok,
                "results": [r.to_dict() for r in self.results]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"


@dataclass(frozen=True)
class RecordedFamily:
    """One row of a recorded audit, as the auditor report reads it back."""

    family: str
    query: str
    trials: int
    rho: str
    plan_delta: float
    epsilon_declared: float
    epsilon_lower: float | None
    test_delta: float
    test_epsilon_declared: float
    test_epsilon_lower: float | None
    passed: bool


@dataclass(frozen=True)
class RecordedAudit:
    """The last recorded audit (``dp_audit.json``), or why it cannot be read."""

    started_at: str
    seconds: float
    ok: bool
    rows: tuple[RecordedFamily, ...]


def read_record(path: Path) -> RecordedAudit | None:
    """Read a recorded audit; ``None`` when there is none. A malformed file is an error."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = tuple(RecordedFamily(
            family=str(r["family"]), query=str(r["query"]), trials=int(r["trials"]),
            rho=str(r["rho"]), plan_delta=float(r["plan_delta"]),
            epsilon_declared=float(r["epsilon_declared"]),
            epsilon_lower=None if r["epsilon_lower"] is None else float(r["epsilon_lower"]),
            test_delta=float(r["test_delta"]),
            test_epsilon_declared=float(r["test_epsilon_declared"]),
            test_epsilon_lower=(None if r["test_epsilon_lower"] is None
                                else float(r["test_epsilon_lower"])),
            passed=bool(r["passed"])) for r in doc["results"])
        return RecordedAudit(started_at=str(doc["started_at"]), seconds=float(doc["seconds"]),
                             ok=bool(doc["ok"]), rows=rows)
    except (ValueError, KeyError, TypeError) as err:
        raise PlanError(f"{path}: not a DP audit record ({err})") from err


# ----------------------------------------------------------------------------- statistics

def clopper_pearson(hits: int, n: int, alpha: float) -> tuple[float, float]:
    """One-sided Clopper–Pearson bounds at level 1 − alpha each: (lower, upper).

    >>> lo, hi = clopper_pearson(0, 1000, 0.025)
    >>> lo, round(hi, 5)
    (0.0, 0.00368)
    """
    from scipy.stats import beta

    if not 0 <= hits <= n or n <= 0:
        raise InvariantViolation(f"{hits} hits out of {n} trials")
    lower = 0.0 if hits == 0 else float(beta.ppf(alpha, hits, n - hits + 1))
    upper = 1.0 if hits == n else float(beta.ppf(1 - alpha, hits + 1, n - hits))
    return lower, upper


def _discriminant(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Diagonal linear discriminant weights (mean difference / pooled variance per feature)."""
    diff = x1.mean(axis=0, dtype=np.float64) - x0.mean(axis=0, dtype=np.float64)
    var = (x0.var(axis=0, dtype=np.float64) + x1.var(axis=0, dtype=np.float64)) / 2
    weights = np.zeros_like(diff)
    np.divide(diff, var, out=weights, where=var > 0)
    return weights


def _hits(values: np.ndarray, thresholds: np.ndarray, side: str) -> np.ndarray:
    ordered = np.sort(values)
    below = np.searchsorted(ordered, thresholds, side="right")  # count ≤ t
    return below if side == "below" else len(values) - below


def tail_test(s0: np.ndarray, s1: np.ndarray, *, rho: Fraction, deltas: Sequence[float],
              alpha: float) -> tuple[TailTest, float]:
    """Choose (ordering, side, threshold, δ) maximizing the CP-corrected gap on the
    selection trials.

    ``s0`` are statistics of M(D), ``s1`` of M(D′), both from the *selection* trials. Returns
    the chosen test (its counts are the selection trials': the caller re-estimates them on
    the other trials) and the δ chosen.
    """
    from scipy.stats import beta

    pooled = np.concatenate([s0, s1])
    tails = np.geomspace(1e-4, 0.1, _THRESHOLDS // 4)  # the tails matter most: denser there
    levels = np.concatenate([np.linspace(0, 1, _THRESHOLDS + 1), tails, 1 - tails])
    thresholds = np.unique(np.quantile(pooled, np.clip(levels, 0, 1)))
    n = len(s0)
    declared = np.array([epsilon_equivalent(rho, d) for d in deltas])
    best: tuple[float, Any] | None = None
    for ordering, (first, second) in (("D'|D", (s1, s0)), ("D|D'", (s0, s1))):
        for side in ("above", "below"):
            k0 = _hits(first, thresholds, side)
            k1 = _hits(second, thresholds, side)
            lower = np.where(k0 > 0, beta.ppf(alpha, np.maximum(k0, 1), n - k0 + 1), 0.0)
            upper = np.where(k1 < n, beta.ppf(1 - alpha, k1 + 1, np.maximum(n - k1, 1)), 1.0)
            for j, delta in enumerate(deltas):
                usable = lower > delta
                if not usable.any():
                    continue
                gap = np.full(len(thresholds), -np.inf)
                gap[usable] = np.log((lower[usable] - delta) / upper[usable]) - declared[j]
                i = int(np.argmax(gap))
                if best is None or gap[i] > best[0]:
                    best = (float(gap[i]), (ordering, side, float(thresholds[i]),
                                            int(k0[i]), int(k1[i]), float(lower[i]),
                                            float(upper[i]), delta))
    if best is None:  # no region separates anything: report the trivial test
        return TailTest("D'|D", "above", float(pooled.max()), 0, 0, n, 0.0, 1.0), deltas[0]
    ordering, side, t, k0, k1, lo, hi, delta = best[1]
    return TailTest(ordering, side, t, k0, k1, n, lo, hi), delta


def estimate(chosen: TailTest, s0: np.ndarray, s1: np.ndarray, alpha: float) -> TailTest:
    """The chosen region's tail probabilities on the *estimation* trials, with CP bounds."""
    first, second = (s1, s0) if chosen.ordering == "D'|D" else (s0, s1)
    t = np.array([chosen.threshold])
    k0 = int(_hits(first, t, chosen.side)[0])
    k1 = int(_hits(second, t, chosen.side)[0])
    n = len(s0)
    lower, _ = clopper_pearson(k0, n, alpha)
    _, upper = clopper_pearson(k1, n, alpha)
    return TailTest(chosen.ordering, chosen.side, chosen.threshold, k0, k1, n, lower, upper)


def lower_bounds(x0: np.ndarray, x1: np.ndarray, *, rho: Fraction, plan_delta: float,
                 confidence: float = CONFIDENCE) -> tuple[TailTest, float, tuple[DeltaCheck, ...]]:
    """From published numbers of M(D) (``x0``) and M(D′) (``x1``), one row per trial: the
    test chosen on the first trials (:data:`SELECTION_SHARE`), estimated on the others
    (which it never saw), checked at every δ."""
    if x0.shape != x1.shape or x0.shape[0] < 4:
        raise InvariantViolation(f"need as many trials on D and D′ (≥ 4): {x0.shape} {x1.shape}")
    alpha = (1 - confidence) / 2
    cut = max(2, int(x0.shape[0] * SELECTION_SHARE))
    weights = _discriminant(x0[:cut], x1[:cut])
    s0, s1 = x0 @ weights, x1 @ weights
    deltas = (plan_delta, *[d for d in DELTA_GRID if d > plan_delta])
    chosen, test_delta = tail_test(s0[:cut], s1[:cut], rho=rho, deltas=deltas, alpha=alpha)
    held_out = estimate(chosen, s0[cut:], s1[cut:], alpha)
    checks = tuple(DeltaCheck(d, epsilon_equivalent(rho, d), held_out.epsilon_lower(d))
                   for d in deltas)
    return held_out, test_delta, checks


# ----------------------------------------------------------------------------- datasets

def _spread(i: np.ndarray, k: int, salt: int) -> np.ndarray:
    """A fixed, well-mixed index in [0, k) for each i (no random generator: D is fixed)."""
    return ((i * 2_654_435_761 + salt * 40_503) // 7 % k).astype(np.int64)


def base_table(table: str, plan: Plan, persons: int = BASE_PERSONS) -> pl.DataFrame:
    """The base snapshot D of one table: a small, fixed campaign, person by person."""
    from core.geography import load_geography

    geo = load_geography()
    deps = sorted(geo.departements)
    dep_region = geo.departement_region
    weeks, month_keys = iso_weeks(*plan.period), months(*plan.period)
    ids = np.arange(persons, dtype=np.int64)
    home = [deps[j] for j in _spread(ids, len(deps), 1)]
    if table == "persons":
        return _typed(table, {
            PERSON_KEY: ids, "region": [dep_region[d] for d in home], "departement": home,
            "commune": [None] * persons,
            "age_band": [AGE_BANDS[j] for j in _spread(ids, len(AGE_BANDS), 2)],
            "support_level": [SUPPORT_LEVELS[j] for j in _spread(ids, len(SUPPORT_LEVELS), 3)],
            "is_volunteer": _spread(ids, 5, 4) == 0, "is_donor": _spread(ids, 3, 5) == 0,
            "email_opt_in": _spread(ids, 5, 6) < 3, "mobile_opt_in": _spread(ids, 5, 7) < 2})
    if table == "contacts":
        per = 1 + _spread(ids, 9, 8)  # 1 to 9 attempts each
        owner = np.repeat(ids, per)
        j = np.arange(len(owner), dtype=np.int64)
        owner_home = [home[p] for p in owner]
        return _typed(table, {
            PERSON_KEY: owner, "week": [weeks[w] for w in _spread(j, len(weeks), 9)],
            "channel": [CHANNELS[c] for c in _spread(j, len(CHANNELS), 10)],
            "result": [RESULTS[r] for r in _spread(j, len(RESULTS), 11)],
            "support_level": [SUPPORT_LEVELS[s] for s in _spread(j, len(SUPPORT_LEVELS), 12)],
            "region": [dep_region[d] for d in owner_home], "departement": owner_home,
            "commune": [None] * len(owner)})
    if table == "donations":
        per = _spread(ids, 4, 13)  # 0 to 3 gifts
        owner = np.repeat(ids, per)
        j = np.arange(len(owner), dtype=np.int64)
        owner_home = [home[p] for p in owner]
        return _typed(table, {
            PERSON_KEY: owner, "amount_cents": 500 + 500 * _spread(j, 60, 14),
            "month": [month_keys[m] for m in _spread(j, len(month_keys), 15)],
            "method": [DONATION_METHODS[m] for m in _spread(j, len(DONATION_METHODS), 16)],
            "recurring": _spread(j, 4, 17) == 0,
            "region": [dep_region[d] for d in owner_home], "departement": owner_home,
            "commune": [None] * len(owner)})
    raise PlanError(f"no snapshot table {table!r}")


def _typed(table: str, columns: Mapping[str, Any]) -> pl.DataFrame:
    schema = SNAPSHOT_SCHEMAS[table]
    return pl.DataFrame({name: columns[name] for name in schema}, schema=dict(schema))


def _worst_value(query: Query) -> Any:
    """The newcomer's value: past the top of the clip (donations at the legal cap)."""
    if query.value is None:
        return None
    if query.value == "amount_cents":
        return max(CAP_PER_PARTY_YEAR_CENTS, math.ceil(query.clip_bounds()[1]))
    if query.value == "support_level":
        return max(SUPPORT_LEVELS)
    return True  # flags; contact_made is set through the result code


def largest_bounds(query: Query) -> Bounds:
    """The largest bounds the query may apply: the plan's, or for ``bounds: auto`` the
    largest public candidates (the choice is a DP draw: any candidate may come out)."""
    rule = query.auto_bounds
    if rule is None:
        return query.fixed_bounds()
    return Bounds(max_groups=max(rule.max_groups), max_rows_per_group=max(rule.max_rows_per_group))


def rows_past_every_bound(query: Query) -> int:
    """Rows per cell that go past the count's bound *and* the rows-cut count's bound
    beyond it (:func:`privacy.autobounds.excess_bounds`), for the largest bounds the query
    may apply: the newcomer is cut by both, and lands in the top bin of the contribution
    histograms an auto query chooses from."""
    ball = query.ball_bounds
    if ball is not None:  # rows in one cell alone past the ball's radius
        return math.floor(ball.max_l2) + 1
    bounds = largest_bounds(query)
    limit = bounds.max_rows_per_group
    if engine.measures_rows_cut(query):
        limit += excess_bounds(bounds).max_rows_per_group
    return limit + 1


def newcomer_rows(query: Query, plan: Plan, base: pl.DataFrame, key: int) -> pl.DataFrame:
    """The neighbour's extra person: more than the bound allows, in every public cell."""
    from core.geography import load_geography

    geo = load_geography()
    labels = engine.cell_keys(plan, query).labels
    n_cells = labels.height
    per_cell = max(rows_past_every_bound(query),
                   math.ceil(MIN_EXTRA_ROWS[query.table] / n_cells))
    template = dict(base.row(0, named=True))
    template[PERSON_KEY] = key
    if query.table == "contacts":
        template["result"] = "contacted"  # a conversation: the top of contact_made
    for column, wanted in query.where.items():
        if column == "contact_made":
            template["result"] = "contacted" if wanted else "not_home"
        else:
            template[column] = wanted
    if query.value is not None and query.value != "contact_made":
        template[query.value] = _worst_value(query)
    rows = []
    for cell in labels.iter_rows(named=True):
        row = dict(template)
        for column in query.group_by:
            row[column] = cell[column]
        if "departement" in query.group_by and "region" in row:
            row["region"] = geo.departement_region[row["departement"]]
        rows.extend([row] * per_cell)
    return pl.DataFrame(rows, schema=base.schema)


def neighbours(query: Query, plan: Plan, directory: Path,
               persons: int = BASE_PERSONS) -> tuple[engine.ReleaseData, engine.ReleaseData, int]:
    """Write D and D′ (D plus the newcomer at the middle rank, later keys shifted by one)."""
    base = base_table(query.table, plan, persons)
    key = persons // 2
    extra = newcomer_rows(query, plan, base, key)
    shifted = base.with_columns(pl.when(pl.col(PERSON_KEY) >= key).then(pl.col(PERSON_KEY) + 1)
                                .otherwise(pl.col(PERSON_KEY)).alias(PERSON_KEY))
    neighbour = pl.concat([shifted, extra]).sort(PERSON_KEY, maintain_order=True)
    out = []
    for name, frame in (("d", base), ("d_prime", neighbour)):
        folder = directory / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{query.table}.parquet"
        frame.write_parquet(path)
        out.append(engine.ReleaseData(tables={query.table: path}, snapshot_hash=f"audit-{name}"))
    return out[0], out[1], extra.height


# ----------------------------------------------------------------------------- releases

class _Features:
    """Column positions of the published numbers, shared by D and D′ (so a number has the
    same column on both sides): the table's numeric cells, then every number of the engine's
    metadata (the published JSON carries it whole) by its key path."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def row(self, table: pl.DataFrame, metadata: Mapping[str, Any]) -> np.ndarray:
        columns = [c for c, t in table.schema.items() if t.is_numeric()]
        values = table.select(pl.col(columns).cast(pl.Float64)).to_numpy()
        out: dict[int, float] = {}
        for j, column in enumerate(columns):
            for i in range(values.shape[0]):
                out[self._at(f"table[{i}].{column}")] = float(values[i, j])
        for path, value in _metadata_numbers(jsonable(metadata)):
            out[self._at(f"metadata.{path}")] = value
        row = np.zeros(len(self.index), dtype=np.float32)
        for k, value in out.items():
            row[k] = value
        return np.nan_to_num(row, nan=0.0)

    def _at(self, path: str) -> int:
        return self.index.setdefault(path, len(self.index))

    def stack(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """Rows padded to every column seen (a number missing from a release counts 0)."""
        out = np.zeros((len(rows), len(self.index)), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i, :len(row)] = row
        return out


def _metadata_numbers(value: Any, path: str = "") -> list[tuple[str, float]]:
    """Every number of a JSON document (None as NaN, booleans as 0/1) with its key path."""
    if value is None:
        return [(path, math.nan)]
    if isinstance(value, bool | int | float):
        return [(path, float(value))]
    if isinstance(value, Mapping):
        return [item for key, v in value.items()
                for item in _metadata_numbers(v, f"{path}.{key}" if path else str(key))]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _metadata_numbers(v, f"{path}[{i}]")]
    return []


def published_numbers(compiled: engine.CompiledQuery | engine.PreparedQuery, trials: int,
                      features: _Features | None = None) -> list[np.ndarray]:
    """Release ``trials`` times through the real path; one row of published numbers each.

    Each row holds every numeric column of every cell of the table a strategist would
    download (after :func:`~privacy.engine.postprocess` and
    :func:`~privacy.publish.published_table`) and every number of the engine's metadata
    (rows-cut estimates, an auto query's noisy contribution histograms and chosen bounds).

    A :class:`~privacy.engine.CompiledQuery` has fixed bounds: its measurements are drawn
    again each trial. A :class:`~privacy.engine.PreparedQuery` has ``bounds: auto``: each
    trial draws the choice's DP histograms again (:meth:`~privacy.engine.PreparedQuery.choose`)
    and releases with the bounds that draw chose, exactly as one run does; the compilation
    for each candidate bound is deterministic and reused.
    """
    features = features or _Features()
    rows: list[np.ndarray] = []
    done = 0
    compiled_for: dict[Bounds, engine.CompiledQuery] = {}
    while done < trials:
        batch = min(_BATCH, trials - done)
        if isinstance(compiled, engine.PreparedQuery):
            choices = compiled.choose(batch)  # OpenDP draws the choice's noise here
            by_bounds: dict[Bounds, list[int]] = {}
            for i, choice in enumerate(choices):
                by_bounds.setdefault(choice.bounds, []).append(i)
            results: list[engine.QueryResult | None] = [None] * batch
            for bounds, where in by_bounds.items():
                if bounds not in compiled_for:
                    compiled_for[bounds] = compiled.compile(choices[where[0]])
                picked: list[Choice] = [choices[i] for i in where]
                for i, result in zip(where, compiled_for[bounds].release(choices=picked),
                                     strict=True):
                    results[i] = result  # OpenDP draws the count's noise in release
            released = [r for r in results if r is not None]
        else:
            released = compiled.release(batch)  # OpenDP draws the noise here
        for result in released:
            table = published_table(engine.postprocess(result), result.query.group_by,
                                    release_id="audit", mechanism=result.mechanism,
                                    budget_share=float(result.query.share))
            rows.append(features.row(table, result.metadata))
        done += batch
    return rows


def audit_weights(n_cells: int) -> tuple[float, ...]:
    """Uneven public cell weights for an L2-ball query weighted by its last release: a run
    takes them from a published DP output (any weights are public there); the audit fixes
    a spread like the real one (√count over counts 1 to ~40× apart), the same on D and D′.

    >>> round(max(audit_weights(14)) / min(audit_weights(14)), 6)
    6.5
    """
    return weights_from_counts([(1 + i * 5.5 / max(n_cells - 1, 1)) ** 2 for i in range(n_cells)])


def _compiled(query: Query, plan: Plan, data: engine.ReleaseData,
              rho: Fraction) -> engine.CompiledQuery | engine.PreparedQuery:
    """Fixed bounds: the release path's :func:`~privacy.engine.compile_query`. Auto bounds:
    its first step, :func:`~privacy.engine.prepare_query` (the choice is drawn per trial)."""
    ball = query.ball_bounds
    if ball is not None and ball.weights == "last_release":
        n_cells = engine.cell_keys(plan, query).n_cells
        query = query.with_cell_weights(audit_weights(n_cells))
    if query.auto_bounds is None:
        return engine.compile_query(query, plan, data, rho)
    return engine.prepare_query(query, plan, data, rho)


def audit_query(query: Query, plan: Plan, *, trials: int, scratch: Path,
                rho: Fraction = AUDIT_RHO, family: str | None = None) -> FamilyResult:
    """Audit one query of ``plan``: ``trials`` releases on D and on D′, then the test."""
    if trials < 20:
        raise PlanError("the DP audit needs at least 20 trials per dataset")
    if plan.cap.delta is None:
        raise PlanError("the DP audit needs the plan's cap as (epsilon, delta): it checks ε at δ")
    plan_delta = float(plan.cap.delta)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dp-audit-", dir=scratch) as work:
        data, neighbour, extra = neighbours(query, plan, Path(work))
        features = _Features()
        rows0 = published_numbers(_compiled(query, plan, data, rho), trials, features)
        compiled = _compiled(query, plan, neighbour, rho)
        rows1 = published_numbers(compiled, trials, features)
        cells = compiled.cells.n_cells
        x0, x1 = features.stack(rows0), features.stack(rows1)
    test, test_delta, checks = lower_bounds(x0, x1, rho=rho, plan_delta=plan_delta)
    at = {c.delta: c for c in checks}
    result = FamilyResult(
        family=family or query.measure, query=query.name, measure=query.measure,
        trials=trials, rho=f"{rho.numerator}/{rho.denominator}", plan_delta=plan_delta,
        epsilon_declared=at[plan_delta].epsilon_declared,
        epsilon_lower=at[plan_delta].epsilon_lower, test_delta=test_delta,
        test_epsilon_declared=at[test_delta].epsilon_declared,
        test_epsilon_lower=at[test_delta].epsilon_lower, checks=checks, test=test,
        newcomer_rows=extra, cells=cells, seconds=round(time.perf_counter() - started, 2))
    log.info("DP audit %s (%s): %d trials, ε declared %.3f at δ=%g, lower bound %s; "
             "%.1f s", result.family, query.name, trials, result.test_epsilon_declared,
             test_delta, _shown(result.test_epsilon_lower), result.seconds)
    return result


def _shown(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


def select_audited(plan: Plan, scope: Literal["families", "all"]) -> tuple[tuple[str, Query], ...]:
    """(family, query) pairs: one query per mechanism family, or every query of the plan."""
    by_name = {q.name: q for q in plan.releases}
    if scope == "all":
        named = {v: k for k, v in FAMILIES.items()}
        return tuple((named.get(q.name, q.measure), q) for q in plan.releases)
    missing = [name for name in FAMILIES.values() if name not in by_name]
    if missing:
        raise PlanError(f"the plan has no query {', '.join(missing)}: audit it with "
                        "scope='all' (isoloir audit dp --all)")
    return tuple((family, by_name[name]) for family, name in FAMILIES.items())


def run_audit(plan: Plan, *, trials: int, scratch: Path,
              scope: Literal["families", "all"] = "families",
              rho: Fraction = AUDIT_RHO) -> DPAuditReport:
    """Audit the chosen queries of ``plan``; the report says, per query, whether ε held."""
    from privacy.plan import plan_hash

    started_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    clock = time.perf_counter()
    results = tuple(audit_query(query, plan, trials=trials, scratch=scratch, rho=rho,
                                family=family)
                    for family, query in select_audited(plan, scope))
    seconds = round(time.perf_counter() - clock, 1)
    log.info("DP audit of %d queries in %.1f s: %s", len(results), seconds,
             "passed" if all(r.passed for r in results) else "FAILED")
    return DPAuditReport(started_at=started_at, seconds=seconds, confidence=CONFIDENCE,
                         plan_hash=plan_hash(plan), results=results)
