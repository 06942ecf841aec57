"""Consistent geography against direct releases, on a synthetic campaign (issue 16).

    .venv/bin/python benchmarks/bench_hierarchy.py [--people 50000] [--seed 2026] [--draws 40]

One synthetic campaign (``isoloir synth``) goes through ``isoloir ingest`` into a scratch
warehouse; one snapshot. The default plan's supporters query spends ρ_T = 3/24 of a day's
budget, what supporters by région (1/24) and by département (2/24) cost when they were
released apart. With that same total, ``--draws`` independent releases of:

* **consistent**: the national, région and département levels at the plan's split
  (1/24, 7/24, 16/24 of ρ_T), post-processed by :mod:`privacy.hierarchy` (WLS, then whole
  non-negative counts);
* **direct**: région alone at 1/3 of ρ_T and département alone at 2/3 (yesterday's plan);
* for reference, région alone at the whole ρ_T (publishing no département at all).

Printed per level: the mean absolute error against ``ground_truth.json``, the mean 95 %
half-width and the share of cells whose interval holds the truth; whether every consistent
release added up exactly (national = Σ régions = Σ départements); and the time the
post-processing takes per release.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--draws", type=int, default=40)
    args = parser.parse_args()

    import numpy as np

    from benchmarks.bench_bounds import campaign
    from privacy.engine import compile_query, postprocess
    from privacy.hierarchy import consistent_tables
    from privacy.plan import load_plan, query_cost

    plan = load_plan()
    query = next(q for q in plan.releases if q.name == "supporters_by_departement")
    national, region, departement = query.level_queries()
    total = query_cost(plan, query)
    with tempfile.TemporaryDirectory(prefix="bench-hier-") as tmp:
        started = time.perf_counter()
        data, truth = campaign(Path(tmp), args.people, args.seed)
        print(f"campaign of {args.people:,} people (seed {args.seed}) synthesised and "
              f"ingested in {time.perf_counter() - started:.1f} s")
        exact = {"region": truth["people"]["by_region"],
                 "departement": truth["people"]["by_departement"]}
        levels = [compile_query(q, plan, data, total * lv.share).release(args.draws)
                  for q, lv in zip(query.level_queries(), query.hierarchy, strict=True)]
        direct = {"region": compile_query(region, plan, data, total / 3).release(args.draws),
                  "departement": compile_query(departement, plan, data,
                                               total * 2 / 3).release(args.draws),
                  "region (whole ρ_T)": compile_query(region, plan, data,
                                                      total).release(args.draws)}
    figures: dict[str, list[tuple[float, float, float]]] = {}
    exact_sums = True
    post_seconds = []
    for draw in range(args.draws):
        started = time.perf_counter()
        tables = consistent_tables(plan, query, [level[draw].table for level in levels])
        post_seconds.append(time.perf_counter() - started)
        n, r, d = (t.table for t in tables)
        exact_sums &= n["estimate"].sum() == r["estimate"].sum() == d["estimate"].sum()
        for name, table in (("consistent région", r), ("consistent département", d)):
            figures.setdefault(name, []).extend(_cells(table, exact[name.split()[1]
                                                                    .replace("é", "e")]))
        for name, results in direct.items():
            column = "region" if name.startswith("region") else "departement"
            table = postprocess(results[draw])
            figures.setdefault(f"direct {name}", []).extend(_cells(table, exact[column], column))
    print(f"\n{args.draws} draws; ρ_T = {total} = {float(total):.6g} per release "
          f"(3/24 of per_run); national level measured too ({national.name})")
    print(f"{'release':<28} {'MAE':>8} {'± mean':>8} {'truth inside':>13}")
    for name in ("direct région", "consistent région", "direct région (whole ρ_T)",
                 "direct departement", "consistent département"):
        key = name.replace("direct région", "direct region").replace(
            "direct departement", "direct departement")
        rows = np.array(figures[key])
        print(f"{name:<28} {rows[:, 0].mean():>8.1f} {rows[:, 1].mean():>8.1f} "
              f"{rows[:, 2].mean():>12.1%}")
    cons = np.array(figures["consistent région"])[:, 0].mean()
    dire = np.array(figures["direct region"])[:, 0].mean()
    print(f"\nrégion MAE, consistent / direct at the same total budget: {cons / dire:.3f} "
          f"({'lower' if cons < dire else 'NOT lower'})")
    print(f"every consistent release added up exactly (national = Σ régions = Σ départements):"
          f" {exact_sums}")
    print(f"post-processing per release: {1000 * float(np.mean(post_seconds)):.1f} ms "
          f"(max {1000 * max(post_seconds):.1f} ms)")


def _cells(table: object, exact: dict[str, int],
           column: str | None = None) -> list[tuple[float, float, float]]:
    """(absolute error, half-width, truth inside) per cell of a published-shape table."""
    col = column or ("region" if "region" in table.columns else "departement")  # type: ignore[attr-defined]
    out = []
    for row in table.iter_rows(named=True):  # type: ignore[attr-defined]
        truth = float(exact.get(str(row[col]), 0))
        inside = row["ci95_low"] <= truth <= row["ci95_high"]
        out.append((abs(row["estimate"] - truth), row["ci95_halfwidth"], float(inside)))
    return out


if __name__ == "__main__":
    main()
