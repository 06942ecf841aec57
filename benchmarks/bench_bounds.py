"""Error against the truth, per query, with today's fixed bounds and with ``bounds: auto``.

    .venv/bin/python benchmarks/bench_bounds.py [--people 50000] [--seed 2026] [--candidates]

One synthetic campaign (``isoloir synth``) goes through ``isoloir ingest`` into a scratch
warehouse; one snapshot; then the default plan is released once as packaged (contacts by
week and by result on ``bounds: auto``) and once with those two queries on today's fixed
bounds (8 weeks × 2 rows, 3 results × 2 rows). Each published cell is compared with
``ground_truth.json`` (contacts: ``contacts.counted``); printed per query: bounds used, mean truth, mean absolute error,
mean error (bias), mean half-width and the share of cells whose published 95 % interval
(the bias-aware one where the table has it) holds the truth.

``--candidates`` also prints, for contacts by week and by result, what *every* candidate
of the auto grid would give, computed from the exact bounded counts (no noise drawn; a
benchmark on synthetic data, never a release): the bias-aware estimate's expected mean
absolute error E|b + N(0, σ²)| per cell, its 95 % half-width and its expected share of cells
whose interval holds the truth, against the issue's targets (half-width ≤ 2× today's,
error ≤ ½ today's, coverage ≥ 90 %). It shows whether any bound could meet them all.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

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

    from privacy.engine import compile_query, postprocess
    from privacy.plan import query_cost

    out = {}
    for query in plan.releases:  # type: ignore[attr-defined]
        if query.name not in TRUTH:
            continue
        path, column = TRUTH[query.name]
        section, exact = path[0], _at(truth, path)
        result = compile_query(query, plan, data,  # type: ignore[arg-type]
                               query_cost(plan, query)).release(1)[0]  # type: ignore[arg-type]
        table = postprocess(result)
        used = result.metadata["bounds"]
        for p, kind in (("", "plain"), ("bias_aware_", "aware")):
            if f"{p}estimate" in table.columns:
                out[f"{query.name}/{kind}"] = _errors(table, p, exact, section, column) | {
                    "bounds": f"{used['max_groups']}×{used['max_rows_per_group']}"}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--candidates", action="store_true",
                        help="also print every auto candidate's expected figures (exact counts)")
    args = parser.parse_args()
    from importlib import resources

    import yaml

    from privacy.plan import parse_plan

    document = yaml.safe_load(resources.files("privacy").joinpath("plans", "default.yaml")
                              .read_text("utf-8"))
    auto = parse_plan(document)
    for query in document["releases"]:
        if query["name"] in FIXED:
            query["bounds"] = FIXED[query["name"]]
    fixed = parse_plan(document)
    with tempfile.TemporaryDirectory(prefix="bench-bounds-") as tmp:
        data, truth = campaign(Path(tmp), args.people, args.seed)
        figures = {"fixed": measure(fixed, data, truth), "auto": measure(auto, data, truth)}
        report(figures, args.people, args.seed)
        if args.candidates:
            print("expected figures of the auto candidates, bias-aware estimate (exact "
                  "counts, best 8 by error):")
            candidates(auto, data, truth)


def report(figures: dict[str, dict[str, dict[str, float]]], people: int, seed: int) -> None:
    print(f"{people:,} supporters, seed {seed}: error against ground_truth.json "
          "(one release each; bias-aware interval where the table has one)")
    print(f"{'query':28s} {'plan, estimate':20s} {'bounds':>6s} {'cells':>5s} {'truth':>7s} "
          f"{'MAE':>6s} {'bias':>7s} {'±':>6s} {'cover':>6s}")
    for name in TRUTH:
        for kind in ("fixed", "auto"):
            for shown in ("plain", "aware"):
                f = figures[kind].get(f"{name}/{shown}")
                if f is None or (kind == "auto" and name not in FIXED):
                    continue
                label = f"{kind}, {'count' if shown == 'plain' else 'bias-aware'}"
                print(f"{name:28s} {label:20s} {f['bounds']:>6s} {f['cells']:5d} "
                      f"{f['truth']:7.0f} {f['mae']:6.0f} {f['bias']:+7.0f} {f['half']:6.0f} "
                      f"{f['coverage']:6.0%}")
    print("(fixed, count: today's estimate; its noise is slightly above today's because part "
          "of the query's rho now counts the rows cut)")


if __name__ == "__main__":
    main()
