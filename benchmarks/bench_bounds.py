"""Error against the truth, per query, with today's fixed bounds and with the plan's bounds.

    .venv/bin/python benchmarks/bench_bounds.py [--people 50000] [--seed 2026] [--candidates]

One synthetic campaign (``isoloir synth``) goes through ``isoloir ingest`` into a scratch
warehouse; one snapshot; then the default plan is released once as packaged (contacts by
week on an L2 ball, by result weekly on a weighted L2 ball, released twice so that the
second takes its weights from the first, as week 2 of a campaign does) and once with
those two queries on today's fixed bounds (8 weeks × 2 rows, 3 results × 2 rows). Each published cell is compared with
``ground_truth.json`` (contacts: ``contacts.counted``); printed per query: bounds used, mean truth, mean absolute error,
mean error (bias), mean half-width and the share of cells whose published 95 % interval
(the bias-aware one where the table has it) holds the truth.

``--candidates`` also prints, for contacts by week and by result, what *every* candidate
of the auto grid would give, computed from the exact bounded counts (no noise drawn; a
benchmark on synthetic data, never a release): the bias-aware estimate's expected mean
absolute error E|b + N(0, σ²)| per cell, its 95 % half-width and its expected share of cells
whose interval holds the truth, against the issue's targets (half-width ≤ 2× today's,
error ≤ ½ today's, coverage ≥ 90 %). It shows whether any bound could meet them all.

``--totals`` (issue #14, the L2 idea) evaluates another bound shape the same way: at most
``C`` rows per person over all cells and ``R`` in each (no limit on the cells), whose
per-person vector v has ‖v‖₂² ≤ max vᵢ · Σ vᵢ ≤ R·C, so an L2 sensitivity of √(R·C) (exactly
√(⌊C/R⌋R² + (C mod R)²)) instead of OpenDP's √G·R. Every (C, R) with √(R·C) ≤ 10 is
computed from the exact counts, with and without a rows-cut count of its own (a total C₂,
R₂ per cell, its noise added as the engine adds the rows-cut count's), at the query's whole
ρ (no choice share: an auto variant choosing (C, R) under DP can only do worse than the best
fixed one). It then prints a floor that holds for *every* bounding scheme at the target
half-width: the noise σ is Δ₂/√(2ρ), so a half-width ≤ the target means Δ₂ ≤ D, and no
person can then count more than D rows in one cell (vᶜ ≤ ‖v‖₂ ≤ D), count + rows-cut
included (their sum is one vector of norm ≤ Δ₁ + Δ₂, at the same σ). A cell whose truth
exceeds Σ_persons min(rows there, D) by b is then covered at most with probability
Φ(z − b/σ) − Φ(−z − b/σ): the mean over the cells bounds the coverage of any bound, of any
shape, that meets the half-width target with the same noise in every cell. Then the best
any scheme of L2 norm ≤ D can keep, a water-fill to ‖v‖₂ ≤ D (each person's cells cut to one
common level). Last, what the floor leaves open: noise *weighted* per cell (σ_c ∝ w_c, the
same mean half-width; w from the cells' counts, as a previous release's DP counts would give
them for free), each person's vector bounded in the weighted norm Σ(v_c/w_c)²: large cells
then get both more rows and wider intervals.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from privacy.plan import Bounds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRUTH = {"supporters_by_departement": (("people", "by_departement"), "departement"),
         "volunteers_by_departement": (("people", "volunteers_by_departement"), "departement"),
         "contacts_by_week": (("contacts", "counted", "by_iso_week"), "week"),
         "contacts_by_result": (("contacts", "counted", "by_result"), "result"),
         "donations_count_by_month": (("donations", "by_month"), "month")}
FIXED = {"contacts_by_week": {"max_groups": 8, "max_rows_per_group": 2},
         "contacts_by_result": {"max_groups": 3, "max_rows_per_group": 2}}


def campaign(root: Path, people: int, seed: int) -> tuple[object, dict]:
    env = dict(os.environ, ISOLOIR_HOME=str(root / "home"),
               ISOLOIR_MASTER_KEY=base64.b64encode(bytes([seed % 256]) * 32).decode(),
               ISOLOIR_SIGNING_KEY_FILE=str(root / "keys" / "signing.key"))
    env.pop("ISOLOIR_WAREHOUSE_URL", None)
    env.pop("ISOLOIR_KEY_FILE", None)
    isoloir = [sys.executable, "-m", "cli.main"]
    synth = root / "synth"
    subprocess.run([*isoloir, "synth", "--people", str(people), "--seed", str(seed), "--out",
                    str(synth)], env=env, check=True, capture_output=True, cwd=ROOT)
    files = [str(p) for p in sorted(synth.iterdir()) if p.name != "ground_truth.json"]
    subprocess.run([*isoloir, "ingest", *files, "--json"], env=env, check=True,
                   capture_output=True, cwd=ROOT)
    from warehouse.db import make_engine
    from warehouse.reader import snapshot_warehouse

    data = snapshot_warehouse(make_engine(f"sqlite:///{root}/home/warehouse.db"),
                              root / "snapshot")
    return data, json.loads((synth / "ground_truth.json").read_text(encoding="utf-8"))


def _at(document: dict, path: tuple[str, ...]) -> dict:
    """The truth at ``path``; contacts: ``contacts.counted`` (withdrawn people's attempts
    left out, as the pipeline must; see transforms/synth_truth.py)."""
    for key in path:
        document = document[key]
    return document


def measure(plan: object, data: object, truth: dict) -> dict[str, dict[str, float]]:

    from privacy.cell_weights import weights_from_table
    from privacy.engine import compile_query, postprocess
    from privacy.plan import query_cost

    out = {}
    for query in plan.releases:  # type: ignore[attr-defined]
        if query.name not in TRUTH:
            continue
        path, column = TRUTH[query.name]
        section, exact = path[0], _at(truth, path)
        rho = query_cost(plan, query)  # type: ignore[arg-type]
        ball = query.ball_bounds
        if ball is not None and ball.weights == "last_release":  # as week 2 runs: weights
            first = compile_query(query, plan, data, rho).release(1)[0]  # type: ignore[arg-type]
            query = query.with_cell_weights(weights_from_table(
                plan, query, postprocess(first)))  # type: ignore[arg-type]
        result = compile_query(query, plan, data, rho).release(1)[0]  # type: ignore[arg-type]
        table = postprocess(result)
        used = result.metadata["bounds"]
        for p, kind in (("", "plain"), ("bias_aware_", "aware")):
            if f"{p}estimate" in table.columns:
                label = (f"L2≤{used['max_l2']:g}" if "max_l2" in used
                         else f"{used['max_groups']}×{used['max_rows_per_group']}")
                out[f"{query.name}/{kind}"] = _errors(table, p, exact, section, column) | {
                    "bounds": label}
    return out


def _errors(table: object, p: str, exact: dict, section: str, column: str) -> dict[str, float]:
    import numpy as np

    if True:
        rows = [r for r in table.iter_rows(named=True)  # type: ignore[attr-defined]
                if str(r[column]) in exact and not (section == "contacts"
                                                    and exact[str(r[column])] == 0)]
        t = np.array([exact[str(r[column])] for r in rows], dtype=float)
        est = np.array([r[f"{p}estimate"] for r in rows], dtype=float)
        low = np.array([r[f"{p}ci95_low"] for r in rows], dtype=float)
        high = np.array([r[f"{p}ci95_high"] for r in rows], dtype=float)
        half = np.array([r[f"{p}ci95_halfwidth"] for r in rows], dtype=float)
        return {"cells": len(rows), "truth": float(t.mean()),
                "mae": float(np.abs(est - t).mean()), "bias": float((est - t).mean()),
                "half": float(half.mean()), "coverage": float(((low <= t) & (t <= high)).mean())}


def candidates(plan: object, data: object, truth: dict) -> None:
    """Expected figures of every auto candidate from the exact counts (see the docstring)."""
    import math
    from statistics import NormalDist

    import numpy as np
    import polars as pl

    from privacy.autobounds import excess_bounds, sensitivity
    from privacy.bounding import bound_counts, bound_with_excess
    from privacy.engine import cell_keys, load_rows
    from privacy.plan import Bounds, query_cost

    normal = NormalDist()
    z = normal.inv_cdf(0.975)

    def expected_abs(mu: float, sigma: float) -> float:
        return sigma * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sigma * sigma)) + (
            mu * (1 - 2 * normal.cdf(-mu / sigma)))

    for query in plan.releases:  # type: ignore[attr-defined]
        rule = query.auto_bounds
        if rule is None or query.name not in FIXED:
            continue
        path, column = TRUTH[query.name]
        cells = cell_keys(plan, query)  # type: ignore[arg-type]
        rows = load_rows(query, data, cells)  # type: ignore[arg-type]
        exact = _at(truth, path)
        t = np.array([exact.get(str(v), 0) for v in cells.labels[column].to_list()], float)
        inside = t > 0

        def per_cell(frame: pl.DataFrame, n_cells: int = cells.n_cells) -> np.ndarray:
            out = np.zeros(n_cells)
            summed = frame.group_by("cell").agg(pl.col("n").sum())
            out[summed["cell"].to_numpy()] = summed["n"].to_numpy()
            return out

        rho = float(query_cost(plan, query))  # type: ignore[arg-type]
        rest = rho * (1 - float(rule.share))
        today = Bounds(**FIXED[query.name])
        today_sigma = sensitivity(today) / math.sqrt(2 * rho)
        kept_today = per_cell(bound_with_excess(rows, bounds=today, n_cells=cells.n_cells,
                                                shape="aggregate")[0])
        today_mae = float(np.mean([expected_abs(b, today_sigma)
                                   for b in (t - kept_today)[inside]]))
        print(f"{query.name}: targets half-width ≤ {2 * z * today_sigma:.0f}, error ≤ "
              f"{today_mae / 2:.0f}, coverage ≥ 90 % (today {today.max_groups}×"
              f"{today.max_rows_per_group}: ± {z * today_sigma:.0f}, error {today_mae:.0f})")
        figures = []
        for groups in sorted({min(g, cells.n_cells) for g in rule.max_groups}):
            for limit in rule.max_rows_per_group:
                bounds = Bounds(max_groups=groups, max_rows_per_group=limit)
                kept, excess = bound_with_excess(rows, bounds=bounds, n_cells=cells.n_cells,
                                                 shape="aggregate")
                cut = excess_bounds(bounds)
                counted = per_cell(kept) + per_cell(bound_counts(excess, bounds=cut,
                                                                 n_cells=cells.n_cells))
                sigma = (sensitivity(bounds) + sensitivity(cut)) / math.sqrt(2 * rest)
                bias = (t - counted)[inside]
                figures.append((float(np.mean([expected_abs(b, sigma) for b in bias])),
                                f"{groups}×{limit}", z * sigma,
                                float(np.mean([normal.cdf(z - b / sigma)
                                               - normal.cdf(-z - b / sigma) for b in bias]))))
        for mae, label, half, cover in sorted(figures)[:8]:
            meets = (half <= 2 * z * today_sigma, mae <= today_mae / 2, cover >= 0.9)
            print(f"    {label:>6s}  error {mae:6.0f}  ± {half:6.0f}  coverage {cover:5.1%}  "
                  f"{'all targets met' if all(meets) else 'misses ' + ', '.join(n for n, ok in zip(('half-width', 'error', 'coverage'), meets, strict=True) if not ok)}")


def _runs(rows: pl.DataFrame, n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(person, cell, rows) per (person, cell) with rows, sorted by person then cell."""
    import numpy as np

    comp = np.sort(rows["person_key"].to_numpy().astype(np.int64) * n_cells
                   + rows["cell"].to_numpy(), kind="stable")
    start = np.flatnonzero(np.r_[True, comp[1:] != comp[:-1]])
    person, cell = np.divmod(comp[start], n_cells)
    return person, cell, np.diff(np.r_[start, len(comp)])


def _fill(person: np.ndarray, n: np.ndarray, *, cost: Callable[[np.ndarray], np.ndarray],
          budget: float, top: int) -> np.ndarray:
    """Each person's runs cut to one common level L (the largest with Σ cost(min(n, L)) ≤
    budget, L ≤ top), then +1 on their first runs above L while the budget allows: a
    deterministic water-fill depending on the person's own rows only. ``cost`` is v for a
    total bound (then every row the budget allows is kept), v² for an L2 one."""
    import numpy as np

    start = np.flatnonzero(np.r_[True, person[1:] != person[:-1]])
    length = np.diff(np.r_[start, len(person)])
    level = np.zeros(len(start), dtype=np.int64)
    for candidate in range(1, top + 1):
        spent = np.add.reduceat(cost(np.minimum(n, candidate)), start)
        level[spent <= budget] = candidate
    at = np.repeat(level, length)
    kept = np.minimum(n, at)
    room = budget - np.add.reduceat(cost(kept), start)
    extra = np.floor(room / (cost(level + 1) - cost(level))).astype(np.int64)
    above = (np.minimum(n, top) > at).astype(np.int64)
    cum = np.cumsum(above)
    rank = cum - np.repeat(np.r_[0, cum][start], length)
    return kept + ((above == 1) & (rank <= np.repeat(extra, length)))


def totals(plan: object, data: object, truth: dict) -> None:
    """``--totals``: (C total, R per cell) bounds and the floor of any bound (docstring)."""
    from privacy.engine import cell_keys, load_rows
    from privacy.plan import PERIOD_DAYS, Bounds, query_cost

    for query in plan.releases:  # type: ignore[attr-defined]
        if query.name not in FIXED:
            continue
        path, column = TRUTH[query.name]
        cells = cell_keys(plan, query)  # type: ignore[arg-type]
        exact = _at(truth, path)
        labels = [str(v) for v in cells.labels[column].to_list()]
        _totals_of(query.name, load_rows(query, data, cells),  # type: ignore[arg-type]
                   [exact.get(v, 0) for v in labels], labels,
                   # today's daily share: the targets (a weekly query's ρ / 7)
                   float(query_cost(plan, query)  # type: ignore[arg-type]
                         / PERIOD_DAYS[query.cadence]),
                   int(PERIOD_DAYS[query.cadence]),
                   Bounds(**FIXED[query.name]))


def _totals_of(name: str, rows: pl.DataFrame, truth: list[int], labels: list[str],
               rho: float, days: int, today: Bounds) -> None:
    """One query's ``--totals`` table (see the module docstring)."""
    import math
    from statistics import NormalDist

    import numpy as np

    from privacy.autobounds import excess_bounds, sensitivity
    from privacy.bounding import bound_counts, bound_l2, bound_with_excess
    from privacy.plan import Bounds

    normal = NormalDist()
    z = normal.inv_cdf(0.975)
    n_cells = len(labels)
    t = np.array(truth, float)
    inside = t > 0

    def expected_abs(mu: float, sigma: float) -> float:
        return sigma * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sigma * sigma)) + (
            mu * (1 - 2 * normal.cdf(-mu / sigma)))

    def covered(b: float, sigma: float) -> float:
        return normal.cdf(z - b / sigma) - normal.cdf(-z - b / sigma)

    def l2(total: int, limit: int) -> float:
        q, r = divmod(total, limit)
        return math.sqrt(q * limit * limit + r * r)

    def per_cell(where: np.ndarray, kept: np.ndarray) -> np.ndarray:
        return np.bincount(where, kept, minlength=n_cells)

    def figures(counted: np.ndarray, d: float) -> tuple[float, float, float]:
        sigma = d / math.sqrt(2 * rho)
        bias = (t - counted)[inside]
        return (float(np.mean([expected_abs(b, sigma) for b in bias])), z * sigma,
                float(np.mean([covered(b, sigma) for b in bias])))

    person, cell, n = _runs(rows, n_cells)
    today_sigma = sensitivity(today) / math.sqrt(2 * rho)
    kept_today, _ = bound_with_excess(rows, bounds=today, n_cells=n_cells, shape="aggregate")
    counted_today = per_cell(kept_today["cell"].to_numpy(), kept_today["n"].to_numpy())
    target_mae = float(np.mean([expected_abs(b, today_sigma)
                                for b in (t - counted_today)[inside]])) / 2
    target_half = 2 * z * today_sigma
    limit_d = 2 * sensitivity(today)  # Δ₂ at the target half-width
    print(f"{name}: targets ± ≤ {target_half:.0f} (Δ₂ ≤ {limit_d:.2f}), error ≤ "
          f"{target_mae:.0f}, coverage ≥ 90 %; whole ρ of the query, exact counts")
    rows_of = []
    for limit in range(1, 17):
        for total in range(limit, 161):
            if l2(total, limit) > 10:
                continue
            kept = _fill(person, np.minimum(n, limit), cost=lambda v: v, budget=total,
                         top=limit)
            counted = per_cell(cell, kept)
            rows_of.append((*figures(counted, l2(total, limit)), f"C={total} R={limit}"))
            cut = n - kept
            has = cut > 0
            for total2, limit2 in sorted({(max(1, total // 2), max(1, math.ceil(limit / 2))),
                                          (total, limit), (max(1, total // 2), limit),
                                          (total, max(1, math.ceil(limit / 2)))}):
                kept2 = _fill(person[has], np.minimum(cut[has], limit2), cost=lambda v: v,
                              budget=total2, top=limit2)
                rows_of.append((*figures(counted + per_cell(cell[has], kept2),
                                         l2(total, limit) + l2(total2, limit2)),
                                f"C={total} R={limit} + cut C={total2} R={limit2}"))
    within = [r for r in rows_of if r[1] <= target_half * (1 + 1e-9)]
    meets = [r for r in within if r[0] <= target_mae and r[2] >= 0.9]
    print(f"  (C, R) bounds with √(RC) ≤ 10, with or without a rows-cut count: {len(rows_of)}; "
          f"within the half-width: {len(within)}; meeting all three: {len(meets)}")
    shown = {"least error within ±": sorted(within)[:5],
             "best coverage within ±": sorted(within, key=lambda r: -r[2])[:5],
             "meeting all three, least error": sorted(meets)[:5]}
    for title, chosen in shown.items():
        if chosen:
            print(f"  {title}:")
        for mae, half, cover, label in chosen:
            print(f"    {label:32s} error {mae:6.0f}  ± {half:5.0f}  coverage {cover:5.1%}")
    for g, r in ((12, 2), (16, 2)) if n_cells > 16 else ((3, 6), (4, 4)):
        rect = Bounds(max_groups=g, max_rows_per_group=r)
        kept_rect, excess = bound_with_excess(rows, bounds=rect, n_cells=n_cells,
                                              shape="aggregate")
        cut_rect = bound_counts(excess, bounds=excess_bounds(rect), n_cells=n_cells)
        counted = (per_cell(kept_rect["cell"].to_numpy(), kept_rect["n"].to_numpy())
                   + per_cell(cut_rect["cell"].to_numpy(), cut_rect["n"].to_numpy()))
        mae, half, cover = figures(counted, sensitivity(rect) + sensitivity(excess_bounds(rect)))
        print(f"  for comparison, rectangular {g}×{r} + rows cut (as the engine, whole ρ): "
              f"error {mae:.0f}  ± {half:.0f}  coverage {cover:.1%}")
    sigma = limit_d / math.sqrt(2 * rho)
    floor = np.maximum(t - per_cell(cell, np.minimum(n, limit_d)), 0)[inside]
    shown_labels = np.array(labels)[inside]
    print(f"  floor for ANY bound with Δ₂ ≤ {limit_d:.2f} (± ≤ {target_half:.0f}): coverage ≤ "
          f"{np.mean([covered(b, sigma) for b in floor]):.1%}; cells whose truth exceeds what "
          "any such bound can count:")
    for i in np.argsort(-floor)[:3]:
        if floor[i] > 0:
            print(f"    {shown_labels[i]:>12s}: truth {t[inside][i]:7.0f}, ≥ {floor[i]:6.0f} "
                  f"uncountable = {floor[i] / sigma:4.1f} σ, covered ≤ "
                  f"{covered(floor[i], sigma):.1%}")
    for d2 in sorted({36, 48, 64, 81, 100, math.floor(limit_d ** 2 + 1e-9)}):
        ball, ball_cut = bound_l2(rows, max_l2=math.sqrt(d2) + 1e-12, n_cells=n_cells)
        mae, half, cover = figures(per_cell(ball["cell"].to_numpy(), ball["n"].to_numpy()),
                                   math.sqrt(d2))
        print(f"  water-fill to ‖v‖₂² ≤ {d2:3d} (count only): error {mae:6.0f}  ± {half:5.0f}  "
              f"coverage {cover:5.1%}  cut {int(ball_cut['n'].sum()) / int(n.sum()):.2%}")
    for power, factor in ((0.25, 1), (0.5, 1), *(((0.5, days),) if days > 1 else ())):
        w = np.where(inside, t, 1.0) ** power
        w /= w[inside].min()
        scale = target_half / (z * float(w[inside].mean()))  # mean half-width on target
        if factor > 1:
            print(f"  the plan's cadence: one release per {factor} days at {factor} × ρ "
                  "(the same daily ρ), weights from the exact counts:")
            rho_here = rho * factor
        else:
            rho_here = rho
        weighted, _ = bound_l2(rows, max_l2=scale * math.sqrt(2 * rho_here), n_cells=n_cells,
                               weights=w)
        counted = per_cell(weighted["cell"].to_numpy(), weighted["n"].to_numpy())
        sigma_c = scale * w
        bias = t - counted
        print(f"  noise weighted per cell ∝ count^{power} (same mean ±), water-fill to "
              f"Σ(v/w)² ≤ {scale * math.sqrt(2 * rho_here):.2f}²: error "
              f"{np.mean([expected_abs(b, s) for b, s in zip(bias[inside], sigma_c[inside], strict=True)]):6.0f}"
              f"  ± {target_half:5.0f} (up to {z * sigma_c.max():.0f})  coverage "
              f"{np.mean([covered(b, s) for b, s in zip(bias[inside], sigma_c[inside], strict=True)]):5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--candidates", action="store_true",
                        help="also print every auto candidate's expected figures (exact counts)")
    parser.add_argument("--totals", action="store_true",
                        help="evaluate (C total rows, R per cell) bounds and the floor of any "
                             "bound at the target half-width (exact counts; no release)")
    args = parser.parse_args()
    from importlib import resources

    import yaml

    from privacy.plan import parse_plan

    document = yaml.safe_load(resources.files("privacy").joinpath("plans", "default.yaml")
                              .read_text("utf-8"))
    auto = parse_plan(document)
    for query in document["releases"]:
        if query["name"] in FIXED:  # today's plan: these bounds, released daily
            query["bounds"] = FIXED[query["name"]]
            if query.pop("cadence", "daily") == "weekly":
                query["share"] = str(Fraction(query["share"]) / 7)
    fixed = parse_plan(document)
    with tempfile.TemporaryDirectory(prefix="bench-bounds-") as tmp:
        data, truth = campaign(Path(tmp), args.people, args.seed)
        figures = {"fixed": measure(fixed, data, truth), "auto": measure(auto, data, truth)}
        report(figures, args.people, args.seed)
        if args.candidates:
            print("expected figures of the auto candidates, bias-aware estimate (exact "
                  "counts, best 8 by error):")
            candidates(auto, data, truth)
        if args.totals:
            print("bounds on a person's total rows C and rows per cell R (L2 sensitivity "
                  "√(RC)), from the exact counts:")
            totals(auto, data, truth)


def report(figures: dict[str, dict[str, dict[str, float]]], people: int, seed: int) -> None:
    print(f"{people:,} supporters, seed {seed}: error against ground_truth.json "
          "(one release each; bias-aware interval where the table has one)")
    print(f"{'query':28s} {'plan, estimate':20s} {'bounds':>9s} {'cells':>5s} {'truth':>7s} "
          f"{'MAE':>6s} {'bias':>7s} {'±':>6s} {'cover':>6s}")
    for name in TRUTH:
        for kind in ("fixed", "auto"):
            for shown in ("plain", "aware"):
                f = figures[kind].get(f"{name}/{shown}")
                if f is None or (kind == "auto" and name not in FIXED):
                    continue
                label = (f"{'plan' if kind == 'auto' else kind}, "
                         f"{'count' if shown == 'plain' else 'bias-aware'}")
                print(f"{name:28s} {label:20s} {f['bounds']:>9s} {f['cells']:5d} "
                      f"{f['truth']:7.0f} {f['mae']:6.0f} {f['bias']:+7.0f} {f['half']:6.0f} "
                      f"{f['coverage']:6.0%}")
    print("(fixed, count: today's estimate; its noise is slightly above today's because part "
          "of the query's rho now counts the rows cut)")


if __name__ == "__main__":
    main()
