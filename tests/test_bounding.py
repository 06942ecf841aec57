"""User-level bounding: no person ever exceeds the declared bounds, whatever the data.

The headline proof (issue 5, "Bounding"): a person with 500 canvass contacts changes any
released count by at most the declared bound, compared on the bounded data before noise,
with and without that person.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvariantViolation, PlanError
from core.vocabulary import RESULTS, iso_weeks
from privacy.bounding import (
    _ROTATION,
    Clipping,
    bound_contributions,
    bound_counts,
    bound_l2,
    bound_with_excess,
    expand_counts,
    l2_norms,
    max_contribution,
    person_cell_profile,
)
from privacy.engine import ReleaseData, cell_keys, load_rows
from privacy.plan import Bounds, load_plan

WEEKS = iso_weeks(date(2026, 1, 1), date(2026, 6, 30))


def _reference(rows: list[tuple[int, int, int]], groups: int, limit: int, n_cells: int,
               clipping: Clipping | None) -> dict[tuple[int, int], tuple[int, int]]:
    """A slow, obvious implementation of the documented rule: {(person, cell): (n, total)}."""
    per_cell: dict[tuple[int, int], list[int]] = defaultdict(list)
    for person, cell, value in rows:
        if clipping is not None and clipping.per == "row":
            value = min(max(value, clipping.lower), clipping.upper)
        per_cell[(person, cell)].append(value)
    by_person: dict[int, list[int]] = defaultdict(list)
    for person, cell in per_cell:
        by_person[person].append(cell)
    out = {}
    for person, cells in by_person.items():
        offset = sum(((c + 1) * _ROTATION) % n_cells for c in cells) % n_cells

        def priority(cell: int, person: int = person, offset: int = offset) -> tuple[int, int]:
            counted = min(len(per_cell[(person, cell)]), limit)
            return (-counted, (cell - offset) % n_cells)

        for cell in sorted(cells, key=priority)[:groups]:
            values = per_cell[(person, cell)][:limit]
            total = sum(values)
            if clipping is not None and clipping.per == "total":
                total = min(max(total, clipping.lower), clipping.upper)
            out[(person, cell)] = (len(values), total)
    return out


def _frame(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"person_key": pl.Int64, "cell": pl.Int64,
                                      "value": pl.Int64}, orient="row")


rows_strategy = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(-20, 50)),
                         min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, groups=st.integers(1, 7), limit=st.integers(1, 4),
       per=st.sampled_from([None, "row", "total"]), shuffle=st.booleans())
def test_bounding_matches_the_documented_rule_and_never_exceeds_the_bound(
        rows: list[tuple[int, int, int]], groups: int, limit: int, per: str | None,
        shuffle: bool) -> None:
    if not shuffle:  # the snapshot's person-by-person order, and an arbitrary one
        rows = sorted(rows, key=lambda r: r[0])
    clipping = None if per is None else Clipping(0, 30, per)  # type: ignore[arg-type]
    bounds = Bounds(max_groups=groups, max_rows_per_group=limit)
    out = bound_contributions(_frame(rows), bounds=bounds, n_cells=6, shape="aggregate",
                              clipping=clipping)
    got = {(r["person_key"], r["cell"]): (r["n"], r["total"]) for r in out.iter_rows(named=True)}
    assert got == _reference(rows, groups, limit, 6, clipping)
    worst = max_contribution(out)
    assert worst.cells <= groups
    assert worst.frame_rows_per_cell == 1
    assert worst.counted_rows_per_cell <= limit


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, groups=st.integers(1, 7), limit=st.integers(1, 4))
def test_row_shape_keeps_the_first_rows_of_the_kept_cells(
        rows: list[tuple[int, int, int]], groups: int, limit: int) -> None:
    bounds = Bounds(max_groups=groups, max_rows_per_group=limit)
    out = bound_contributions(_frame(rows), bounds=bounds, n_cells=6, shape="rows",
                              clipping=Clipping(-5, 40, "row"))
    expected = _reference(rows, groups, limit, 6, Clipping(-5, 40, "row"))
    kept: dict[tuple[int, int], list[int]] = defaultdict(list)
    for r in out.iter_rows(named=True):
        kept[(r["person_key"], r["cell"])].append(r["value"])
    assert {k: (len(v), sum(v)) for k, v in kept.items()} == expected
    worst = max_contribution(out)
    assert worst.cells <= groups and worst.frame_rows_per_cell <= limit


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, groups=st.integers(1, 4), limit=st.integers(1, 3),
       newcomer=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), min_size=1,
                         max_size=30),
       at=st.integers(0, 7))
def test_what_one_person_keeps_does_not_depend_on_anyone_else(
        rows: list[tuple[int, int, int]], groups: int, limit: int,
        newcomer: list[tuple[int, int]], at: int) -> None:
    """Neighbouring datasets: add one person, renumbering everyone after them (as the
    snapshot's rank keys do); every other person's bounded rows must stay identical."""
    bounds = Bounds(max_groups=groups, max_rows_per_group=limit)
    before = bound_contributions(_frame(sorted(rows, key=lambda r: r[0])), bounds=bounds,
                                 n_cells=6, shape="aggregate")
    shifted = [(p + 1 if p >= at else p, c, v) for p, c, v in rows]
    shifted += [(at, c, v) for c, v in newcomer]
    after = bound_contributions(_frame(sorted(shifted, key=lambda r: r[0])), bounds=bounds,
                                n_cells=6, shape="aggregate")
    renumbered = (after.filter(pl.col("person_key") != at)
                  .with_columns(pl.when(pl.col("person_key") > at).then(pl.col("person_key") - 1)
                                .otherwise(pl.col("person_key")).alias("person_key")))
    key = ["person_key", "cell"]
    assert renumbered.sort(key).equals(before.sort(key))
    assert max_contribution(after.filter(pl.col("person_key") == at)).cells <= groups


def test_fullest_cells_are_kept_and_excess_rows_counted_once() -> None:
    rows = [(1, 0, 1)] * 5 + [(1, 1, 1)] + [(1, 2, 1)] * 2 + [(2, 3, 1)]
    out = bound_contributions(_frame(rows), bounds=Bounds(max_groups=2, max_rows_per_group=3),
                              n_cells=4, shape="aggregate")
    person1 = out.filter(pl.col("person_key") == 1).sort("cell")
    assert person1["cell"].to_list() == [0, 2]  # 5 rows (counted 3) and 2 rows beat 1 row
    assert person1["n"].to_list() == [3, 2]
    assert out.filter(pl.col("person_key") == 2)["n"].to_list() == [1]


def test_ties_are_spread_over_cells_instead_of_always_cutting_the_same_ones() -> None:
    rng = np.random.default_rng(11)
    persons = 4_000
    rows = [(p, int(c), 1) for p in range(persons)
            for c in sorted(rng.choice(10, size=5, replace=False))]  # 5 of 10 cells each
    out = bound_contributions(_frame(rows), bounds=Bounds(max_groups=2, max_rows_per_group=1),
                              n_cells=10, shape="aggregate")
    kept_per_cell = out.group_by("cell").len().sort("cell")["len"].to_list()
    assert len(kept_per_cell) == 10
    expected = persons * 2 / 10
    assert all(abs(k - expected) < 0.2 * expected for k in kept_per_cell), kept_per_cell


def test_totals_are_clipped_per_person_and_cell() -> None:
    rows = [(1, 0, 300_000), (1, 0, 300_000), (2, 0, 50)]
    out = bound_contributions(_frame(rows), bounds=Bounds(max_groups=1, max_rows_per_group=6),
                              n_cells=1, shape="aggregate",
                              clipping=Clipping(0, 460_000, "total"))
    assert sorted(out["total"].to_list()) == [50, 460_000]


def test_keys_outside_the_sortable_range_are_a_bug_not_data() -> None:
    bounds = Bounds(max_groups=1, max_rows_per_group=1)
    with pytest.raises(InvariantViolation):
        bound_contributions(_frame([(1, 7, 0)]), bounds=bounds, n_cells=3, shape="aggregate")
    with pytest.raises(InvariantViolation):
        bound_contributions(_frame([(-1, 0, 0)]), bounds=bounds, n_cells=3, shape="aggregate")
    with pytest.raises(PlanError):
        bound_contributions(_frame([(1, 0, 0)]), bounds=Bounds(max_groups=1,
                            max_rows_per_group=10**9), n_cells=10**6, shape="aggregate")


def test_empty_input_gives_an_empty_bounded_frame() -> None:
    out = bound_contributions(_frame([]), bounds=Bounds(max_groups=1, max_rows_per_group=1),
                              n_cells=2, shape="aggregate")
    assert out.height == 0 and out.columns == ["person_key", "cell", "n", "total"]


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, groups=st.integers(1, 4), limit=st.integers(1, 3),
       cut_groups=st.integers(1, 4), cut_limit=st.integers(1, 3))
def test_bounding_the_cut_counts_is_bounding_the_cut_rows(
        rows: list[tuple[int, int, int]], groups: int, limit: int, cut_groups: int,
        cut_limit: int) -> None:
    """The bias estimate bounds the runs of cut rows without expanding them into rows: the
    same frame as expanding them and bounding the rows (the slow path it replaced)."""
    frame = _frame(sorted(rows, key=lambda r: r[0])).drop("value")
    _, excess = bound_with_excess(frame, bounds=Bounds(max_groups=groups,
                                                       max_rows_per_group=limit),
                                  n_cells=6, shape="aggregate")
    cut_bounds = Bounds(max_groups=cut_groups, max_rows_per_group=cut_limit)
    fast = bound_counts(excess, bounds=cut_bounds, n_cells=6)
    slow = bound_contributions(expand_counts(excess), bounds=cut_bounds, n_cells=6,
                               shape="aggregate")
    assert fast.sort("person_key", "cell").equals(slow.sort("person_key", "cell"))


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy)
def test_contribution_profile_counts_cells_and_the_fullest_cell(
        rows: list[tuple[int, int, int]]) -> None:
    frame = _frame(sorted(rows, key=lambda r: r[0]))
    cells, fullest = person_cell_profile(frame)
    per_cell: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for person, cell, _ in rows:
        per_cell[person][cell] += 1
    persons = sorted(per_cell)
    assert cells.tolist() == [len(per_cell[p]) for p in persons]
    assert fullest.tolist() == [max(per_cell[p].values()) for p in persons]


# ----------------------------------------------------------------------------- the 500-contact canvassee

def _contacts_snapshot(directory: Path, *, with_heavy: bool) -> ReleaseData:
    """Many ordinary people (1 to 4 contacts), plus person 0 with 500 contacts if asked."""
    rng = np.random.default_rng(5)
    rows: list[dict[str, Any]] = []
    if with_heavy:
        for i in range(500):  # 500 door knocks over every week and every result code
            rows.append({"person_key": 0, "week": WEEKS[i % len(WEEKS)],
                         "result": RESULTS[(i * 7) % len(RESULTS)]})
    for person in range(1, 3_000):
        for _ in range(int(rng.integers(1, 5))):
            rows.append({"person_key": person, "week": WEEKS[int(rng.integers(0, len(WEEKS)))],
                         "result": RESULTS[int(rng.integers(0, len(RESULTS)))]})
    frame = pl.DataFrame(rows).with_columns(
        channel=pl.lit("door"), support_level=pl.lit(None, pl.Int16),
        region=pl.lit("11"), departement=pl.lit("75"), commune=pl.lit(None, pl.String))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "contacts.parquet"
    frame.write_parquet(path)
    return ReleaseData(tables={"contacts": path}, snapshot_hash="test")


def _released_columns(query: Any, plan: Any, data: ReleaseData) -> dict[str, dict[int, int]]:
    """Per released aggregate column, the exact per-cell value OpenDP would add noise to."""
    from privacy.engine import _spec

    cells = cell_keys(plan, query)
    spec = _spec(query)
    bounded = bound_contributions(load_rows(query, data, cells), bounds=query.bounds,
                                  n_cells=cells.n_cells, shape="aggregate",
                                  clipping=spec.clipping)
    sums = bounded.group_by("cell").agg(pl.col("n").sum(), pl.col("total").sum())
    return {"n": dict(zip(sums["cell"], sums["n"], strict=True)),
            "total": dict(zip(sums["cell"], sums["total"], strict=True))}


@pytest.mark.parametrize("name", ["contacts_by_week", "contacts_by_result", "contact_rate_by_week"])
def test_a_person_with_500_contacts_moves_any_count_by_at_most_the_declared_bound(
        tmp_path: Path, name: str) -> None:
    plan = load_plan()
    query = next(q for q in plan.releases if q.name == name)
    if not isinstance(query.bounds, Bounds):  # auto or ball: a rectangle must hold the same way
        query = query.with_bounds(Bounds(max_groups=12, max_rows_per_group=3))
    with_heavy = _released_columns(query, plan, _contacts_snapshot(tmp_path / "a", with_heavy=True))
    without = _released_columns(query, plan, _contacts_snapshot(tmp_path / "b", with_heavy=False))
    limit, groups = query.bounds.max_rows_per_group, query.bounds.max_groups
    for column in ("n", "total"):
        cells = set(with_heavy[column]) | set(without[column])
        deltas = [abs(with_heavy[column].get(c, 0) - without[column].get(c, 0)) for c in cells]
        assert max(deltas) <= limit  # per cell: at most R rows (values are 0/1)
        assert sum(1 for d in deltas if d) <= groups  # at most G cells move
        assert math.sqrt(sum(d * d for d in deltas)) <= math.sqrt(groups) * limit  # L2 bound
    # ...and the heavy person really was cut: 500 contacts, at most G × R counted.
    moved = sum(with_heavy["n"].values()) - sum(without["n"].values())
    assert 0 < moved <= groups * limit


# ----------------------------------------------------------------------------- the L2 ball

def _ball_reference(counts: dict[int, int], d: float) -> dict[int, int]:
    """The documented water-fill, the obvious way: the largest whole level L with
    Σ min(n, L)² ≤ d², then one more row in the first cells (cell order) above L while
    the squared norm stays ≤ d²."""
    budget = math.floor(d * d + 1e-9)  # the d values below have exact squares
    level = 0
    while sum(min(n, level + 1) ** 2 for n in counts.values()) <= budget and level < budget:
        level += 1
    kept = {c: min(n, level) for c, n in counts.items()}
    for cell in sorted(counts):
        if counts[cell] > level and sum(v * v for v in kept.values()) + 2 * level + 1 <= budget:
            kept[cell] += 1
    return kept


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, d=st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.5, 7.0]),
       shuffle=st.booleans())
def test_l2_ball_matches_the_water_fill_and_never_exceeds_the_norm(
        rows: list[tuple[int, int, int]], d: float, shuffle: bool) -> None:
    ordered = rows if shuffle else sorted(rows, key=lambda r: r[0])
    kept, cut = bound_l2(_frame(ordered).select("person_key", "cell"), max_l2=d, n_cells=6)
    per_person: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for person, cell, _ in rows:
        per_person[person][cell] += 1
    expected = {(p, c): n for p, counts in per_person.items()
                for c, n in _ball_reference(dict(counts), d).items() if n}
    got = {(p, c): n for p, c, n in kept.select("person_key", "cell", "n").iter_rows()}
    assert got == expected
    assert float(l2_norms(kept).max(initial=0.0)) <= d
    assert int(kept["n"].sum()) + int(cut["n"].sum()) == len(rows)


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, newcomer=st.lists(st.integers(0, 5), min_size=1, max_size=60),
       at=st.integers(0, 7), weighted=st.booleans())
def test_what_one_person_keeps_in_the_ball_does_not_depend_on_anyone_else(
        rows: list[tuple[int, int, int]], newcomer: list[int], at: int, weighted: bool) -> None:
    weights = np.array([1.0, 2.5, 0.7, 1.3, 4.0, 1.0]) if weighted else None
    frame = _frame(sorted(rows, key=lambda r: r[0])).select("person_key", "cell")
    before, _ = bound_l2(frame, max_l2=3.0, n_cells=6, weights=weights)
    shifted = [(p + 1 if p >= at else p, c, v) for p, c, v in rows] + [(at, c, 0) for c in newcomer]
    after, _ = bound_l2(_frame(sorted(shifted, key=lambda r: r[0])).select("person_key", "cell"),
                        max_l2=3.0, n_cells=6, weights=weights)
    renumbered = (after.filter(pl.col("person_key") != at)
                  .with_columns(pl.when(pl.col("person_key") > at).then(pl.col("person_key") - 1)
                                .otherwise(pl.col("person_key")).alias("person_key")))
    key = ["person_key", "cell"]
    assert renumbered.sort(key).equals(before.sort(key))
    assert float(l2_norms(after, weights).max()) <= 3.0


def test_a_person_with_500_contacts_moves_the_ball_counts_by_at_most_max_l2(
        tmp_path: Path) -> None:
    plan = load_plan()
    query = next(q for q in plan.releases if q.name == "contacts_by_week")
    assert query.ball_bounds is not None
    d = query.ball_bounds.max_l2
    vectors = []
    for name, heavy in (("a", True), ("b", False)):
        data = _contacts_snapshot(tmp_path / name, with_heavy=heavy)
        cells = cell_keys(plan, query)
        kept, _ = bound_l2(load_rows(query, data, cells), max_l2=d, n_cells=cells.n_cells)
        vectors.append(np.bincount(kept["cell"].to_numpy(), kept["n"].to_numpy(),
                                   minlength=cells.n_cells))
    moved = vectors[0] - vectors[1]
    assert 0 < float(np.sqrt((moved * moved).sum())) <= d  # counted, within the ball
    assert moved.sum() < 500  # ...and cut: 500 contacts over 26 weeks do not fit in it


def test_weighted_ball_keeps_floor_of_level_times_weight() -> None:
    """Weights 1 and 4, d = 2: at L = 1.75 the cells would keep ⌊L⌋ = 1 and ⌊4L⌋ = 7 rows,
    norm √(1 + (7/4)²) ≈ 2.02 > 2; so L < 1.75, and the person keeps 1 and 6 (√3.25 ≤ 2)."""
    rows = pl.DataFrame({"person_key": [0] * 30, "cell": [0] * 10 + [1] * 20})
    kept, cut = bound_l2(rows, max_l2=2.0, n_cells=2, weights=np.array([1.0, 4.0]))
    assert kept.sort("cell")["n"].to_list() == [1, 6]
    assert int(cut["n"].sum()) == 23
    with pytest.raises(InvariantViolation):
        bound_l2(rows, max_l2=2.0, n_cells=2, weights=np.array([1.0, 0.0]))
