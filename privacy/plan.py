"""Release plans: which DP aggregates a campaign publishes, with which bounds and budget.

A plan is a YAML file loaded into frozen, validated models. Everything that decides how
much privacy a release spends is in the plan, so it is hashed (:func:`plan_hash`) and the
hash goes into every ledger entry. Validation happens here, before any row is read: a
bad bound, a group key that is not a public key set, or shares that exceed the per-run
budget are refused with the key path (``releases[3].bounds: max_groups must be ≥ 1``).

Budgets are exact: ``Fraction`` for ρ (zero-concentrated DP), ``Decimal`` for a declared
(ε, δ). The (ε, δ) → ρ conversion (:mod:`privacy.conversion`, the tight one by default) rounds
*down*, so a ρ total within the cap always implies the declared (ε, δ).

**Cadence.** Each query declares how often it is released: ``daily`` (the default),
``weekly`` (once per ISO week) or ``monthly`` (once per calendar month). Its ``share`` is a
fraction of ``per_run``, the ρ of *one day* of the plan on average, and is charged whenever
the query is released: a weekly query may take up to 7 shares, and the plan's per-day average
(:func:`daily_spend`, each share divided by its period's length in days) must fit in
``per_run``. So a small-count table released weekly gets seven times the ρ of a daily one
(noise √7 ≈ 2.6 times smaller) for the same lifetime budget.

**Hierarchies.** A count or histogram on ``persons`` may declare ``hierarchy:``, its levels
coarsest first (``national``, ``region``, ``departement``, then possibly a column split below,
like ``support_level``), each with its share of the query's ρ and, above the last, the name
and titles of the table it publishes. The levels are released together under the query's
one charge and made to agree exactly (:mod:`privacy.hierarchy`); :meth:`Query.level_queries`
gives each level as a query of its own.

>>> plan = load_plan()
>>> [q.name for q in plan.releases[0].level_queries()]
['supporters_national', 'supporters_by_region', 'supporters_by_departement']
>>> plan.dataset_id, plan.privacy_unit
('campaign', 'person')
>>> daily_spend(plan) <= plan.per_run.cap_rho()
True
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from core.errors import PlanError
from core.vocabulary import (
    AGE_BANDS,
    CAP_PER_CANDIDATE_CENTS,
    CHANNELS,
    RESULTS,
    SUPPORT_LEVELS,
    iso_weeks,
    months,
)
from privacy.conversion import LOOSE, TIGHT, Conversion, cap_rho_for

#: Group-by columns that have a public key set (the only ones a plan may group by).
PUBLIC_KEY_SETS: tuple[str, ...] = (
    "region", "departement", "circonscription", "commune", "age_band", "support_level",
    "result", "channel", "week", "month",
)

#: Per table: columns a query may group by (a subset of PUBLIC_KEY_SETS present in the table).
GROUPABLE: Mapping[str, frozenset[str]] = {
    "persons": frozenset({"region", "departement", "commune", "age_band", "support_level"}),
    "contacts": frozenset({"region", "departement", "commune", "week", "channel", "result",
                           "support_level"}),
    "donations": frozenset({"region", "departement", "commune", "month"}),
}

#: Per table: columns a ``where`` filter may test (public key columns and flags, never ids).
FILTERABLE: Mapping[str, frozenset[str]] = {
    "persons": GROUPABLE["persons"] | {"is_volunteer", "is_donor", "email_opt_in",
                                       "mobile_opt_in"},
    "contacts": GROUPABLE["contacts"] | {"contact_made"},
    "donations": GROUPABLE["donations"] | {"recurring", "method"},
}

#: Per table: columns a sum, mean or quantile may aggregate. ``contact_made`` is derived
#: from the result code (core.vocabulary.CONTACT_MADE_RESULTS); flags count as 0/1.
VALUE_COLUMNS: Mapping[str, frozenset[str]] = {
    "persons": frozenset({"email_opt_in", "mobile_opt_in", "is_volunteer", "is_donor",
                          "support_level"}),
    "contacts": frozenset({"contact_made", "support_level"}),
    "donations": frozenset({"amount_cents", "recurring"}),
}

#: Default clipping when a query does not say: donations at the legal cap per person.
DEFAULT_CLIP: Mapping[str, tuple[float, float]] = {
    "amount_cents": (0.0, float(CAP_PER_CANDIDATE_CENTS)),
    "email_opt_in": (0.0, 1.0), "mobile_opt_in": (0.0, 1.0), "is_volunteer": (0.0, 1.0),
    "is_donor": (0.0, 1.0), "contact_made": (0.0, 1.0), "recurring": (0.0, 1.0),
    "support_level": (1.0, 5.0),
}

#: Quantile levels must be exact binary fractions: OpenDP approximates others coarsely.
MAX_QUANTILE_DENOMINATOR = 1024

_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

Cadence = Literal["daily", "weekly", "monthly"]
CADENCES: tuple[str, ...] = get_args(Cadence)
#: Days in one period of each cadence (a month: 365.25 / 12 days on average), exactly.
PERIOD_DAYS: Mapping[str, Fraction] = {"daily": Fraction(1), "weekly": Fraction(7),
                                       "monthly": Fraction(1461, 48)}
#: Fields added after plans were first hashed: left out of the canonical JSON (so of the plan
#: hash and the release ids) while they hold their default, so an older plan hashes the same.
_OMITTED_AT_DEFAULT: Mapping[str, Any] = {"cadence": "daily", "hierarchy": ()}
#: L2-ball fields left out of the canonical JSON at their default (hashes stay short).
_BALL_DEFAULTS: Mapping[str, Any] = {"weights": "uniform", "cell_weights": None}


def _to_fraction(value: Any) -> Any:
    """Read an exact rational: int, "p/q", decimal text; floats through their repr."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int | Decimal):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return Fraction(repr(value))
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(f"{value!r} is not an exact number (use 3/250 or 0.012)") from err
    raise ValueError("must be a number or a fraction written as text")


def _to_decimal(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation as err:
        raise ValueError(f"{value!r} is not a decimal number") from err


ExactFraction = Annotated[Fraction, BeforeValidator(_to_fraction)]
ExactDecimal = Annotated[Decimal | None, BeforeValidator(_to_decimal)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Cap(_Frozen):
    """A privacy budget: either (ε, δ) or ρ (zCDP). Accounting always runs in exact ρ."""

    epsilon: ExactDecimal = None
    delta: ExactDecimal = None
    rho: Annotated[Fraction | None, BeforeValidator(lambda v: None if v is None else
                                                     _to_fraction(v))] = None

    @model_validator(mode="after")
    def _check(self) -> Cap:
        if self.rho is not None:
            if self.epsilon is not None or self.delta is not None:
                raise ValueError("give either rho or epsilon and delta, not both")
            if self.rho <= 0:
                raise ValueError("rho must be > 0")
            return self
        if self.epsilon is None or self.delta is None:
            raise ValueError("give rho, or both epsilon and delta")
        if not self.epsilon > 0:
            raise ValueError("epsilon must be > 0")
        if not Decimal(0) < self.delta < Decimal(1):
            raise ValueError("delta must be strictly between 0 and 1 (zCDP needs δ > 0)")
        if self.cap_rho(LOOSE) <= 0:
            raise ValueError("epsilon is too small for this delta: the ρ cap rounds to 0")
        return self

    def cap_rho(self, conversion: Conversion = TIGHT) -> Fraction:
        """The exact ρ-zCDP budget; (ε, δ) is converted conservatively (rounded down).

        ``conversion`` is ``"cks-2020"`` (the default: the tight Rényi-DP conversion of
        Canonne, Kamath & Steinke 2020, as OpenDP's ``make_zCDP_to_approxDP``) or
        ``"bun-steinke-2016"`` (ρ + 2·√(ρ·ln(1/δ)) = ε, the loose one used by datasets opened
        before the tight one existed). Both are floored to a multiple of 10⁻¹², never above
        the true bound (see :mod:`privacy.conversion`).

        >>> Cap(rho="1/100").cap_rho()
        Fraction(1, 100)
        >>> float(Cap(epsilon=8, delta="1e-7").cap_rho())
        0.919228804127
        >>> float(Cap(epsilon=8, delta="1e-7").cap_rho("bun-steinke-2016"))
        0.803323152561
        """
        if self.rho is not None:
            return self.rho
        assert self.epsilon is not None and self.delta is not None  # checked at construction
        return cap_rho_for(self.epsilon, self.delta, conversion)

    def loose_cap_rho(self) -> Fraction:
        """The cap under the loose (Bun–Steinke 2016) conversion (ρ itself when declared so)."""
        return self.cap_rho(LOOSE)


class Bounds(_Frozen):
    """How much one person may contribute to one query: the DP guarantee depends on it."""

    max_groups: int
    max_rows_per_group: int

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError("must be a mapping {max_groups: G, max_rows_per_group: R}")
        for key in ("max_groups", "max_rows_per_group"):
            value = data.get(key)
            if value is None:
                raise ValueError(f"{key} is required")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be a whole number")
            if value < 1:
                raise ValueError(f"{key} must be ≥ 1")
        return data


#: Candidate rows per person and cell for ``bounds: auto`` (public: never from data).
AUTO_ROWS_GRID: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)
#: Candidate cells per person for ``bounds: auto`` (capped at the query's number of cells).
AUTO_GROUPS_GRID: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32, 48, 64, 128)


class AutoBounds(_Frozen):
    """``bounds: auto``: the engine chooses the bounds each run from DP estimates.

    ``share`` of the query's ρ pays for the DP histograms of per-person contributions
    (:mod:`privacy.autobounds`); the candidates are public grids, so the choice depends on
    the data only through those charged DP outputs. The rule is part of the query (and so
    of its ledger entry); the bounds it chose are in the signed result and its metadata.
    """

    auto: Literal[True] = True
    share: ExactFraction = Fraction(1, 5)
    max_rows_per_group: tuple[int, ...] = AUTO_ROWS_GRID
    max_groups: tuple[int, ...] = AUTO_GROUPS_GRID

    @model_validator(mode="after")
    def _check(self) -> AutoBounds:
        if not 0 < self.share < 1:
            raise ValueError("share must be > 0 and < 1 (a fraction of the query's ρ)")
        for name, grid in (("max_rows_per_group", self.max_rows_per_group),
                           ("max_groups", self.max_groups)):
            if not grid or any(isinstance(v, bool) or v < 1 for v in grid):
                raise ValueError(f"{name} candidates must be whole numbers ≥ 1")
            if list(grid) != sorted(set(grid)):
                raise ValueError(f"{name} candidates must be increasing")
        return self


#: The largest L2 bound a plan may declare (a person's whole vector of cell counts).
MAX_L2 = 1000.0


class BallBounds(_Frozen):
    """``bounds: {max_l2: d}``: each person's vector of per-cell row counts is cut to
    Euclidean norm ≤ d (:func:`privacy.bounding.bound_l2`), and OpenDP's Gaussian over the
    vector of cell counts is declared that L2 distance.

    Why: a rectangle (G cells × R rows) charges every person for the worst corner, G·R²
    in squared norm, although nobody fills it; a ball charges the norm a person really
    has, so a person with many rows in a few cells and one with a few rows in many cells
    both keep most of them at the same noise (issue #14, README "Rows the bounds cut").
    Counts and histograms of contacts or donations only.
    """

    max_l2: float
    #: ``uniform``: the same noise in every cell. ``last_release``: cell i's noise σ_i ∝ w_i,
    #: w_i = √max(1, c_i) for c_i the cell's count in the query's last published release
    #: (a DP output already charged: free to reuse), normalised to mean 1 over the cells, so
    #: the mean half-width is the uniform one; each person then keeps Σ (v_i / w_i)² ≤ d².
    #: Large cells get more rows and wider intervals. No release yet: uniform weights.
    weights: Literal["uniform", "last_release"] = "uniform"
    #: The weights a run resolved (engine and signed result; never written in a plan).
    cell_weights: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> BallBounds:
        if isinstance(self.max_l2, bool) or not math.isfinite(self.max_l2):
            raise ValueError("max_l2 must be a finite number")
        if not 1 <= self.max_l2 <= MAX_L2:
            raise ValueError(f"max_l2 must be ≥ 1 and ≤ {MAX_L2:g}")
        if self.cell_weights is not None and not all(
                math.isfinite(w) and w > 0 for w in self.cell_weights):
            raise ValueError("cell_weights must be positive numbers")
        return self


def _bounds_input(value: Any) -> Any:
    """``auto`` (or a mapping with ``auto:``) → :class:`AutoBounds`; else :class:`Bounds`.

    Errors of the inner model are re-raised as plain messages so that they read
    ``releases[3].bounds: max_groups must be ≥ 1`` like every other plan error.
    """
    if isinstance(value, Bounds | AutoBounds | BallBounds):
        return value
    model: type[_Frozen] = Bounds
    if value == "auto":
        value, model = {"auto": True}, AutoBounds
    elif isinstance(value, Mapping) and "auto" in value:
        model = AutoBounds
    elif isinstance(value, Mapping) and "max_l2" in value:
        model = BallBounds
        if "cell_weights" in value:
            raise ValueError("cell_weights is resolved by each run (weights: last_release), "
                             "not written in a plan")
    try:
        return model.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        field = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            message = f"{field} is not a known key"
        elif field and not message.startswith(field):
            message = f"{field}: {message}"
        raise ValueError(message) from None

#: Geographic levels of a hierarchical query, coarsest first, with what each groups by.
GEO_LEVELS: Mapping[str, tuple[str, ...]] = {"national": (), "region": ("region",),
                                             "departement": ("departement",)}


class Level(_Frozen):
    """One level of a hierarchical query (``hierarchy:``): released with the others and
    post-processed to agree with them (:mod:`privacy.hierarchy`).

    ``level`` is ``national``, ``region`` or ``departement`` (coarsest first), or, last only,
    a non-geographic column split below the level above it (``support_level``: the cells
    département × level). ``share`` is its part of the query's ρ (the levels' shares sum to
    1). Every level but the last is published as its own table, ``name`` with its titles;
    the last one is the query itself.
    """

    level: str
    share: ExactFraction
    name: str | None = None
    title: str | None = None
    title_fr: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Level:
        if not 0 < self.share <= 1:
            raise ValueError("share must be > 0 and ≤ 1 (a fraction of the query's ρ)")
        if self.name is not None and not _SLUG.match(self.name):
            raise ValueError("name must be a lowercase slug (a-z, 0-9, _), at most 63 chars")
        return self


def level_group_by(levels: tuple[Level, ...]) -> tuple[tuple[str, ...], ...]:
    """What each level groups by: a geographic level its column, a last non-geographic
    level the level above's columns plus its own.

    >>> level_group_by((Level(level="national", share=1), Level(level="region", share=1)))
    ((), ('region',))
    >>> level_group_by((Level(level="departement", share=1),
    ...                 Level(level="support_level", share=1)))
    (('departement',), ('departement', 'support_level'))
    """
    out: list[tuple[str, ...]] = []
    for level in levels:
        if level.level in GEO_LEVELS:
            out.append(GEO_LEVELS[level.level])
        else:
            out.append((*(out[-1] if out else ()), level.level))
    return tuple(out)


class Query(_Frozen):
    """One published table: a measure over one table, grouped by public key sets only."""

    name: str
    title: str
    title_fr: str
    measure: Literal["count", "sum", "mean", "quantile", "histogram"]
    table: Literal["persons", "contacts", "donations"]
    group_by: tuple[str, ...] = ()
    where: Mapping[str, Any] = {}
    value: str | None = None
    clip: tuple[float, float] | None = None
    quantiles: tuple[float, ...] = ()
    bounds: Annotated[Bounds | AutoBounds | BallBounds, BeforeValidator(_bounds_input)]
    share: ExactFraction
    min_group_size_note: str = ""
    cadence: Cadence = "daily"
    hierarchy: tuple[Level, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Query:
        if not _SLUG.match(self.name):
            raise ValueError("name: must be a lowercase slug (a-z, 0-9, _), at most 63 chars")
        if self.share <= 0 or self.share > PERIOD_DAYS[self.cadence]:
            if self.cadence == "daily":
                raise ValueError("share: must be > 0 and ≤ 1 (a fraction of the per-run budget)")
            raise ValueError(f"share: must be > 0 and ≤ {PERIOD_DAYS[self.cadence]} for a "
                             f"{self.cadence} query (days in its period)")
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by: lists a column twice")
        for column in self.group_by:
            if column not in PUBLIC_KEY_SETS:
                raise ValueError(f"group_by: column {column!r} has no public key set; allowed: "
                                 f"{', '.join(PUBLIC_KEY_SETS)}")
            if column not in GROUPABLE[self.table]:
                raise ValueError(f"group_by: table {self.table} has no column {column!r}")
        for column, wanted in self.where.items():
            if column not in FILTERABLE[self.table]:
                raise ValueError(f"where: column {column!r} cannot be filtered on in "
                                 f"{self.table} (allowed: {', '.join(sorted(FILTERABLE[self.table]))})")
            if not isinstance(wanted, bool | int | str):
                raise ValueError(f"where: {column} must equal a boolean, number or code")
        if isinstance(self.bounds, AutoBounds):
            if self.table == "persons":
                raise ValueError("bounds: the persons table has one row per person; give "
                                 "{max_groups: 1, max_rows_per_group: 1}, not auto")
        elif isinstance(self.bounds, BallBounds):
            if self.table == "persons" or self.measure not in ("count", "histogram"):
                raise ValueError("bounds: max_l2 is for counts and histograms of contacts or "
                                 "donations (rows per person in several cells)")
        elif not self.group_by and self.bounds.max_groups != 1:
            raise ValueError("bounds: max_groups must be 1 for an ungrouped query")
        self._check_measure()
        if self.hierarchy:
            self._check_hierarchy()
        return self

    def _check_hierarchy(self) -> None:
        levels = self.hierarchy
        if self.table != "persons":
            raise ValueError("hierarchy: only on the persons table (one row per person: every "
                             "level counts the same persons and its bounds cut nothing)")
        if self.measure not in ("count", "histogram"):
            raise ValueError("hierarchy: only counts and histograms add up across levels")
        if len(levels) < 2:
            raise ValueError("hierarchy: give at least two levels, coarsest first")
        geo = [lv.level for lv in levels if lv.level in GEO_LEVELS]
        order = list(GEO_LEVELS)
        if [order.index(g) for g in geo] != sorted({order.index(g) for g in geo}) or not geo:
            raise ValueError("hierarchy: geographic levels go from coarsest to finest "
                             f"({', '.join(GEO_LEVELS)}), each once")
        for index, level in enumerate(levels):
            last = index == len(levels) - 1
            if level.level not in GEO_LEVELS and (not last or level.level not in
                                                  GROUPABLE[self.table] or index == 0):
                raise ValueError(f"hierarchy[{index}].level: {level.level!r} is not a level "
                                 f"({', '.join(GEO_LEVELS)}, or last a column of "
                                 f"{self.table} split below the level above)")
            if last and (level.name or level.title or level.title_fr):
                raise ValueError(f"hierarchy[{index}]: the last level is the query itself "
                                 "(its name and titles)")
            if not last and not (level.name and level.title and level.title_fr):
                raise ValueError(f"hierarchy[{index}]: a level above the last is published "
                                 "as its own table: give name, title and title_fr")
            if not last and level.name == self.name:
                raise ValueError(f"hierarchy[{index}].name: {level.name!r} is the query's")
        if level_group_by(levels)[-1] != self.group_by:
            raise ValueError(f"hierarchy: the last level groups by "
                             f"{list(level_group_by(levels)[-1])}, the query by "
                             f"{list(self.group_by)}")
        if sum((lv.share for lv in levels), Fraction(0)) != 1:
            raise ValueError("hierarchy: the levels' shares of the query's ρ must sum to 1")

    def level_queries(self) -> tuple[Query, ...]:
        """The query of each level, coarsest first (the query alone when not hierarchical).

        A level's query counts the same rows grouped by its level, under its own table
        name and titles; its share is the query's times the level's, so its cost
        (:func:`query_cost`) is its part of the query's ρ, and the parts sum to it exactly.
        """
        if not self.hierarchy:
            return (self,)
        out = []
        for level, group_by in zip(self.hierarchy, level_group_by(self.hierarchy),
                                   strict=True):
            leaf = level is self.hierarchy[-1]
            out.append(self.model_copy(update={
                "name": self.name if leaf else level.name,
                "title": self.title if leaf else level.title,
                "title_fr": self.title_fr if leaf else level.title_fr,
                "measure": self.measure if leaf else "count", "group_by": group_by,
                "share": self.share * level.share, "hierarchy": (),
                "min_group_size_note": self.min_group_size_note if leaf else ""}))
        return tuple(out)

    def table_names(self) -> tuple[str, ...]:
        """The tables this query publishes: one per level (the query's own name last)."""
        return tuple(q.name for q in self.level_queries())

    def _check_measure(self) -> None:
        needs_value = self.measure in ("sum", "mean", "quantile")
        if needs_value:
            if self.value is None:
                raise ValueError(f"value: a {self.measure} needs a value column")
            if self.value not in VALUE_COLUMNS[self.table]:
                raise ValueError(f"value: {self.value!r} cannot be aggregated in {self.table} "
                                 f"(allowed: {', '.join(sorted(VALUE_COLUMNS[self.table]))})")
        elif self.value is not None or self.clip is not None:
            raise ValueError(f"value: a {self.measure} counts rows and takes no value or clip")
        if self.clip is not None and not self.clip[0] < self.clip[1]:
            raise ValueError("clip: lower bound must be below upper bound")
        if self.clip is not None and not all(math.isfinite(b) for b in self.clip):
            raise ValueError("clip: bounds must be finite")
        if self.measure == "quantile":
            if not self.quantiles:
                raise ValueError("quantiles: a quantile query lists at least one, e.g. [0.5]")
            if any(not 0 < q < 1 for q in self.quantiles):
                raise ValueError("quantiles: each must be strictly between 0 and 1")
            if any(Fraction(q).denominator > MAX_QUANTILE_DENOMINATOR for q in self.quantiles):
                raise ValueError("quantiles: use levels that are multiples of 1/1024 (0.5, "
                                 "0.25, 0.75, 0.125...): OpenDP scores them exactly")
        elif self.quantiles:
            raise ValueError(f"quantiles: only for a quantile measure, not {self.measure}")
        if self.measure == "histogram" and not self.group_by:
            raise ValueError("group_by: a histogram needs at least one group column")

    @property
    def auto_bounds(self) -> AutoBounds | None:
        """The auto-bounds rule, or None when the plan fixes the bounds."""
        return self.bounds if isinstance(self.bounds, AutoBounds) else None

    @property
    def ball_bounds(self) -> BallBounds | None:
        """The L2 bound on a person's vector of cell counts, or None for other bounds."""
        return self.bounds if isinstance(self.bounds, BallBounds) else None

    def with_cell_weights(self, weights: tuple[float, ...] | None) -> Query:
        """This L2-ball query with the weights one run resolved (None: as the plan wrote it)."""
        ball = self.ball_bounds
        if ball is None:
            raise PlanError(f"query {self.name}: only an L2-ball query takes cell weights")
        return self.model_copy(update={"bounds": ball.model_copy(
            update={"cell_weights": weights})})

    def fixed_bounds(self) -> Bounds:
        """The plan's fixed bounds (an auto query is resolved by the engine first)."""
        if isinstance(self.bounds, AutoBounds):
            raise PlanError(f"query {self.name}: bounds are auto; the engine chooses them")
        if isinstance(self.bounds, BallBounds):
            raise PlanError(f"query {self.name}: bounds are an L2 ball, not cells × rows")
        return self.bounds

    def with_bounds(self, bounds: Bounds) -> Query:
        """This query with bounds fixed (what an auto query resolves to in one run)."""
        return self.model_copy(update={"bounds": bounds})

    def clip_bounds(self) -> tuple[float, float]:
        """The clipping bounds in force: the plan's, else the column's default (legal cap)."""
        if self.clip is not None:
            return self.clip
        if self.value is None:
            raise PlanError(f"query {self.name}: a {self.measure} has no clipping bounds")
        return DEFAULT_CLIP[self.value]


class Plan(_Frozen):
    """A whole release plan: dataset, lifetime cap, per-run budget and the queries."""

    dataset_id: str
    privacy_unit: Literal["person"]
    cap: Cap
    per_run: Cap
    cadence: str
    period: tuple[date, date]
    releases: tuple[Query, ...]

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if not _SLUG.match(self.dataset_id):
            raise ValueError("dataset_id: must be a lowercase slug (a-z, 0-9, _)")
        if not self.cadence.strip():
            raise ValueError("cadence: say how often the plan runs (it sizes per_run)")
        if self.period[0] > self.period[1]:
            raise ValueError("period: start is after end")
        if not self.releases:
            raise ValueError("releases: the plan publishes nothing")
        if self.per_run.cap_rho() > self.cap.cap_rho():
            raise ValueError(f"per_run: ρ {self.per_run.cap_rho()} exceeds the lifetime cap "
                             f"ρ {self.cap.cap_rho()}")
        names = [q.name for q in self.releases]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"releases[{index}].name: {name!r} is used twice")
        tables = [name for q in self.releases for name in q.table_names()]
        for name in tables:
            if tables.count(name) > 1:
                raise ValueError(f"releases: the table name {name!r} is published twice")
        total = sum((q.share / PERIOD_DAYS[q.cadence] for q in self.releases), Fraction(0))
        if total > 1:
            raise ValueError(f"releases: shares sum to {total} > 1, more than the per_run budget")
        return self


def public_keys(plan: Plan, column: str) -> tuple[Any, ...]:
    """The public key set of a group-by column: official lists, vocabularies, the period."""
    from core.geography import load_geography

    geo = load_geography()
    if column == "region":
        return tuple(sorted(geo.regions))
    if column == "departement":
        return tuple(sorted(geo.departements))
    if column == "commune":
        return tuple(sorted(geo.communes))
    if column == "circonscription":
        return tuple(geo.circonscriptions)
    if column == "age_band":
        return AGE_BANDS
    if column == "support_level":
        return SUPPORT_LEVELS
    if column == "result":
        return RESULTS
    if column == "channel":
        return CHANNELS
    if column == "week":
        return iso_weeks(*plan.period)
    if column == "month":
        return months(*plan.period)
    raise PlanError(f"group_by column {column!r} has no public key set")


def query_cost(plan: Plan, query: Query) -> Fraction:
    """The exact ρ charged for ``query``: its share of the plan's per-run budget."""
    return plan.per_run.cap_rho() * query.share


def daily_spend(plan: Plan) -> Fraction:
    """The plan's average ρ per day at its cadences: each query's cost over its period's days.

    >>> daily_spend(load_plan()) == load_plan().per_run.cap_rho()
    True
    """
    return sum((query_cost(plan, q) / PERIOD_DAYS[q.cadence] for q in plan.releases),
               Fraction(0))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _jsonable(v) for k, v in value.__dict__.items()
                if not (isinstance(value, Query) and k in _OMITTED_AT_DEFAULT
                        and v == _OMITTED_AT_DEFAULT[k])
                and not (isinstance(value, BallBounds) and k in _BALL_DEFAULTS
                         and v == _BALL_DEFAULTS[k])}
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_query(query: Query) -> str:
    """The query as canonical JSON (sorted keys, exact fractions as "p/q"): stored in the ledger."""
    return _canonical(query)


def plan_hash(plan: Plan) -> str:
    """SHA-256 (hex) of the plan's canonical JSON: the same plan always hashes the same."""
    return hashlib.sha256(_canonical(plan).encode("utf-8")).hexdigest()


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "lax-", "union", "tuple[")) or part in (
                "function-before[_check()]",):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


_FIELD_PREFIX = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)?: ")


def _plan_error(source: str, err: ValidationError) -> PlanError:
    """Translate pydantic's first error into ``source: releases[3].bounds: why``."""
    first = err.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        message = "is not a known key"
    path = _key_path(tuple(first["loc"]))
    if _FIELD_PREFIX.match(message):  # the validator named the field: "group_by: ..."
        where = f"{path}.{message}" if path else message
    else:
        where = f"{path}: {message}" if path else message
    return PlanError(f"{source}: {where}")


def parse_plan(document: Mapping[str, Any], source: str = "plan") -> Plan:
    """Validate a plan already read from YAML; errors name the key path and why."""
    try:
        return Plan.model_validate(document)
    except ValidationError as err:
        raise _plan_error(source, err) from None


def load_plan(path: Path | None = None) -> Plan:
    """Load and validate a plan; ``None`` loads the packaged ``privacy/plans/default.yaml``."""
    if path is None:
        text = resources.files("privacy").joinpath("plans", "default.yaml").read_text("utf-8")
        source = "default.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise PlanError(f"{path}: cannot read the plan ({err.strerror})") from err
        source = Path(path).name
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PlanError(f"{source}: not valid YAML{where}") from None
    if not isinstance(document, Mapping):
        raise PlanError(f"{source}: a plan is a YAML mapping (dataset_id, cap, releases...)")
    return parse_plan(document, source)
