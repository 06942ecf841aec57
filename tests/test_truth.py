"""The default plan against the truth: every published interval is compared with the
synthetic generator's exact aggregates (``ground_truth.json``), not with the bounded count.

Two synthetic campaigns of 50,000 supporters (seeds 2026 and 7; ~150,000 contact
attempts each, heavy-tailed: median 3 per person, p99 31) go through the real path
(``isoloir synth`` → ``isoloir ingest`` → warehouse snapshot → the engine on the packaged
plan). About 40 s per campaign on 2 cores. For each query with a ground truth, pooled over
both campaigns and :data:`RUNS` independent runs of each, the test checks what issue #14
asks:

* the truth lies inside the published 95 % interval (the bias-aware one where the table
  has it) in at least 90 % of the cells;
* the mean half-width is at most 2× today's (fixed bounds, the whole share on the count:
  σ = R·√G/√(2ρ));
* for contacts by week and by result, the mean absolute error is at most half of what
  today's fixed bounds give: E|b + N(0, σ²)| per cell, with b the exact bias of today's
  bounds on the same data (computed here, in the test, never published).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from fractions import Fraction
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cli.main import app
from privacy.bounding import bound_contributions
from privacy.cell_weights import weights_from_table
from privacy.engine import ReleaseData, cell_keys, compile_query, load_rows, postprocess
from privacy.hierarchy import consistent_tables
from privacy.plan import PERIOD_DAYS, Bounds, Plan, Query, load_plan, query_cost
from warehouse.db import make_engine
from warehouse.reader import snapshot_warehouse

SEEDS = (2026, 7)
PEOPLE = 50_000
#: Independent runs per campaign: each compiles afresh (an auto query draws its bounds
#: choice again) and draws new noise, as one daily run does. One run per campaign pooled
#: only ~50 weekly cells, whose coverage swung 0.86–0.92 between runs of the test (DP draws:
#: one bounds choice for the whole table), around a 0.90 target; pooling runs measures the
#: coverage over the DP draws instead of one draw of it. The campaigns' bias is the same in
#: every run: more runs do not average it away.
RUNS = 4
#: Today's fixed bounds (the plan before issue #14), for the "today" reference.
TODAY = {"contacts_by_week": Bounds(max_groups=8, max_rows_per_group=2),
         "contacts_by_result": Bounds(max_groups=3, max_rows_per_group=2)}
#: Query → (path in ground_truth.json, group column). Contacts are compared with
#: ``contacts.counted``: the attempts a correct pipeline holds, without those on people who
#: withdrew (``do_not_contact`` takes the whole person out, contacts included; ~0.9 % of
#: attempts). The file-level counts (``contacts.by_iso_week``, every row of the exports)
#: are compared too and printed (``coverage_file``), not asserted: the rows of withdrawn
#: people are an exclusion the law requires, not a bias of the release.
TRUTH = {"supporters_by_departement": (("people", "by_departement"), "departement"),
         "volunteers_by_departement": (("people", "volunteers_by_departement"), "departement"),
         "contacts_by_week": (("contacts", "counted", "by_iso_week"), "week"),
         "contacts_by_result": (("contacts", "counted", "by_result"), "result")}
# supporters_by_region and donations_count_by_month are left out: 18 and 6 cells per
# campaign are too few to tell 90 % from 95 % (one run had 2 of 12 month cells outside).


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[ReleaseData, dict]]]:
    out = []
    with pytest.MonkeyPatch.context() as mp:
        for seed in SEEDS:
            root = tmp_path_factory.mktemp(f"truth{seed}")
            home = root / "home"
            mp.setenv("ISOLOIR_HOME", str(home))
            mp.delenv("ISOLOIR_WAREHOUSE_URL", raising=False)
            mp.delenv("ISOLOIR_KEY_FILE", raising=False)
            mp.setenv("ISOLOIR_MASTER_KEY", base64.b64encode(bytes([seed % 256]) * 32).decode())
            mp.setenv("ISOLOIR_SIGNING_KEY_FILE", str(root / "keys" / "signing.key"))
            synth = root / "synth"
            runner = CliRunner()
            made = runner.invoke(app, ["synth", "--people", str(PEOPLE), "--seed", str(seed),
                                       "--out", str(synth)])
            assert made.exit_code == 0, made.output
            files = [str(p) for p in sorted(synth.iterdir()) if p.name != "ground_truth.json"]
            loaded = runner.invoke(app, ["ingest", *files, "--json"])
            assert loaded.exit_code == 0, loaded.output
            data = snapshot_warehouse(make_engine(f"sqlite:///{home}/warehouse.db"),
                                      root / "snapshot")
            truth = json.loads((synth / "ground_truth.json").read_text(encoding="utf-8"))
            out.append((data, truth))
    yield out


def _at(document: dict, path: tuple[str, ...]) -> dict[str, int]:
    for key in path:
        document = document[key]
    return document


def _today_sigma(bounds: Bounds, rho: float) -> float:
    return bounds.max_rows_per_group * math.sqrt(bounds.max_groups) / math.sqrt(2 * rho)


def _expected_abs(mu: float, sigma: float) -> float:
    """E|X| for X ~ N(mu, sigma²)."""
    z = mu / sigma
    return sigma * math.sqrt(2 / math.pi) * math.exp(-z * z / 2) + mu * (
        1 - 2 * NormalDist().cdf(-z))


def _release(plan: Plan, query: Query, data: ReleaseData, rho: Fraction) -> pl.DataFrame:
    """One release as the product makes it. An L2-ball query weighted by its last release
    (``weights: last_release``) is released twice, as it runs week after week: the first
    release has uniform weights, the second takes its weights from the first's published
    counts (:func:`privacy.cell_weights.weights_from_table`); the second is measured."""
    ball = query.ball_bounds
    if ball is not None and ball.weights == "last_release":
        first = postprocess(compile_query(query, plan, data, rho).release(1)[0])
        query = query.with_cell_weights(weights_from_table(plan, query, first))
    return postprocess(compile_query(query, plan, data, rho).release(1)[0])


def _figures(campaigns: list[tuple[ReleaseData, dict]]) -> dict[str, dict[str, float]]:
    plan = load_plan()
    figures: dict[str, dict[str, Any]] = {}
    for data, truth in campaigns:
        for query in plan.releases:
            if query.name not in TRUTH:
                continue
            path, column = TRUTH[query.name]
            section = path[0]
            exact = _at(truth, path)
            file_level = _at(truth, (section, path[-1])) if len(path) > 2 else exact
            rho = query_cost(plan, query)
            if query.hierarchy:  # the published département level: consistent (issue 16)
                levels = [compile_query(q, plan, data, rho * lv.share).release(RUNS)
                          for q, lv in zip(query.level_queries(), query.hierarchy, strict=True)]
                tables = [consistent_tables(plan, query, [lv[i].table for lv in levels])[-1]
                          .table for i in range(RUNS)]
            else:
                tables = [_release(plan, query, data, rho) for _ in range(RUNS)]
            table = pl.concat(tables, how="vertical_relaxed")
            aware = "bias_aware_estimate" in table.columns
            prefix = "bias_aware_" if aware else ""
            f = figures.setdefault(query.name, {"covered": [], "error": [], "half": [],
                                                 "today_error": [], "today_half": [],
                                                 "covered_file": []})
            today = TODAY[query.name] if query.name in TODAY else (
                query.auto_bounds is None and query.ball_bounds is None and query.fixed_bounds())
            # today's plan released these daily: its reference is one day's share
            daily = float(rho / PERIOD_DAYS[query.cadence]) if query.name in TODAY else float(rho)
            sigma_today = _today_sigma(today, daily) if isinstance(today, Bounds) else None
            bounded_today = None
            if query.name in TODAY:
                cells = cell_keys(plan, query)
                rows = load_rows(query, data, cells)
                kept = bound_contributions(rows, bounds=TODAY[query.name],
                                           n_cells=cells.n_cells, shape="aggregate")
                per_cell = kept.group_by("cell").agg(pl.col("n").sum())
                bounded_today = dict(zip(cells.labels.join(per_cell, on="cell", how="left")
                                         .sort("cell")[column].to_list(),
                                         cells.labels.join(per_cell, on="cell", how="left")
                                         .sort("cell")["n"].fill_null(0).to_list(), strict=True))
            for row in table.iter_rows(named=True):
                key_value = str(row[column])
                if key_value not in exact or (section == "contacts" and exact[key_value] == 0):
                    continue
                t = exact[key_value]
                low = row[f"{prefix}ci95_low" if aware else "ci95_low"]
                high = row[f"{prefix}ci95_high" if aware else "ci95_high"]
                f["covered"].append(low <= t <= high)
                f["covered_file"].append(low <= file_level[key_value] <= high)
                f["error"].append(abs(row[f"{prefix}estimate" if aware else "estimate"] - t))
                f["half"].append(row[f"{prefix}ci95_halfwidth" if aware else "ci95_halfwidth"])
                if sigma_today is not None:
                    f["today_half"].append(float(NormalDist().inv_cdf(0.975)) * sigma_today)
                if bounded_today is not None and sigma_today is not None:
                    f["today_error"].append(_expected_abs(bounded_today[key_value] - t,
                                                          sigma_today))
    return {name: {"coverage": float(np.mean(f["covered"])), "mae": float(np.mean(f["error"])),
                   "coverage_file": float(np.mean(f["covered_file"])),
                   "half": float(np.mean(f["half"])),
                   "today_half": float(np.mean(f["today_half"])) if f["today_half"] else math.nan,
                   "today_mae": float(np.mean(f["today_error"])) if f["today_error"] else math.nan,
                   "cells": len(f["covered"])}
            for name, f in figures.items()}


@pytest.fixture(scope="module")
def figures(campaigns: list[tuple[ReleaseData, dict]]) -> dict[str, dict[str, float]]:
    result = _figures(campaigns)
    for name, f in result.items():  # shown with -s: the figures the README quotes
        print(f"{name}: {json.dumps({k: round(v, 3) for k, v in f.items()})}")
    return result


#: Targets the default plan does not meet: none since issue #14's L2 balls (README, "Rows
#: the bounds cut"). Contacts by week: max_l2 11.27 (± 856, ~94-97 % coverage, error ~340-370
#: against today's 900). Contacts by result: weekly, weighted by its last release (released
#: twice here, as it runs week after week): mean ± ~740 over the codes with attempts,
#: ~96 % coverage, error ~300 against today's 4,290. Before, no rectangular bound met all
#: three (``benchmarks/bench_bounds.py --candidates``, ``--totals``).
UNMET: set[tuple[str, str]] = set()


def _unmet(kind: str, names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.xfail(strict=False, reason=f"issue #14: {kind} "
                                                    f"target not (always) met by {n}"))
            if (kind, n) in UNMET else n for n in names]


@pytest.mark.parametrize("name", _unmet("coverage", sorted(TRUTH)))
def test_truth_inside_the_published_interval_in_90_percent_of_cells(
        figures: dict[str, dict[str, float]], name: str) -> None:
    assert figures[name]["cells"] >= 2 * 6 * RUNS
    assert figures[name]["coverage"] >= 0.90, figures[name]


@pytest.mark.parametrize("name", _unmet("halfwidth", sorted(TRUTH)))
def test_mean_halfwidth_at_most_twice_today(figures: dict[str, dict[str, float]],
                                           name: str) -> None:
    f = figures[name]
    assert f["half"] <= 2 * f["today_half"], f


@pytest.mark.parametrize("name", sorted(TODAY))
def test_contacts_error_at_least_halved(figures: dict[str, dict[str, float]], name: str) -> None:
    f = figures[name]
    assert f["mae"] <= 0.5 * f["today_mae"], f
