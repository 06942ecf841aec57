"""The full default release plan on 2 M persons, 10 M contacts, 1 M donations.

    .venv/bin/python benchmarks/bench_release.py [--persons 2000000] [--contacts 10000000]
                                                 [--donations 1000000] [--skip-baseline]

Builds a warehouse snapshot in the engine's Parquet format directly with numpy (fast: the
snapshot step itself is not what is measured), then, each in its own child process so that
its peak RSS is its own:

* **isoloir**: every query of ``privacy/plans/default.yaml`` through ``privacy.engine``
  (user-level bounding + OpenDP), as a release run does after its charges;
* **baseline, identifier truncation**: one grouped count (contacts by week) with OpenDP's
  own identifier-level truncation (``truncate_per_group`` + ``truncate_num_groups``,
  ``keep="first"`` since ``"sample"`` crashes) over ``scan_parquet`` of the 10 M contacts;
* **baseline, row-level**: the same grouped count with no user-level bound at all (each
  row its own privacy unit) over ``scan_parquet``: the floor of what counting can cost.

Targets (issue 5): the full plan in ≤ 20 s wall and ≤ 4 GB peak RSS on 2 cores. Measured
earlier for the baselines: 43 s / 5.9 GB (identifier truncation) and 1.5 s (row-level).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(directory: Path, persons: int, contacts: int, donations: int) -> dict[str, Path]:
    """A synthetic snapshot, person by person as ``warehouse.reader`` writes it."""
    import numpy as np
    import polars as pl

    from core.geography import load_geography
    from core.vocabulary import AGE_BANDS, CHANNELS, RESULTS, iso_weeks, months

    rng = np.random.default_rng(20260101)  # synthetic data only: DP noise is OpenDP's
    geo = load_geography()
    deps = sorted(geo.departements)
    dep_codes = rng.integers(0, len(deps), persons)
    dep = pl.Series("departement", deps).gather(dep_codes)
    reg = pl.Series("region", [geo.departement_region[d] for d in deps]).gather(dep_codes)
    people = pl.DataFrame({
        "person_key": np.arange(persons, dtype=np.int64), "region": reg, "departement": dep,
        "commune": pl.Series("commune", [None] * persons, dtype=pl.String),
        "age_band": pl.Series(AGE_BANDS).gather(rng.integers(0, len(AGE_BANDS), persons)),
        "support_level": pl.Series(rng.integers(1, 6, persons), dtype=pl.Int16),
        "is_volunteer": rng.random(persons) < 0.05, "is_donor": rng.random(persons) < 0.25,
        "email_opt_in": rng.random(persons) < 0.6, "mobile_opt_in": rng.random(persons) < 0.4,
    })
    period = (date(2026, 1, 1), date(2026, 6, 30))

    def owners(rows: int, heavy: float) -> np.ndarray:
        # Skewed activity: most people a few rows, a few prolific (the 400-door volunteer).
        weights = rng.pareto(heavy, persons) + 1.0
        counts = rng.multinomial(rows, weights / weights.sum())
        return np.repeat(np.arange(persons, dtype=np.int64), counts)

    def located(frame: pl.DataFrame) -> pl.DataFrame:
        idx = frame["person_key"]
        return frame.with_columns(region=reg.gather(idx), departement=dep.gather(idx),
                                  commune=pl.lit(None, dtype=pl.String))

    weeks = pl.Series(iso_weeks(*period))
    owner = owners(contacts, 2.5)
    contact_frame = located(pl.DataFrame({
        "person_key": owner, "week": weeks.gather(rng.integers(0, weeks.len(), contacts)),
        "channel": pl.Series(CHANNELS).gather(rng.integers(0, len(CHANNELS), contacts)),
        "result": pl.Series(RESULTS).gather(
            rng.choice(len(RESULTS), contacts, p=_result_weights(len(RESULTS)))),
        "support_level": pl.Series(rng.integers(1, 6, contacts), dtype=pl.Int16),
    }))
    donors = owners(donations, 3.0)
    month = pl.Series(months(*period))
    donation_frame = located(pl.DataFrame({
        "person_key": donors,
        "amount_cents": np.minimum(rng.lognormal(8.3, 1.0, donations), 460_000).astype(np.int64),
        "month": month.gather(rng.integers(0, month.len(), donations)),
        "method": pl.Series(["card", "cheque", "transfer"]).gather(
            rng.integers(0, 3, donations)),
        "recurring": rng.random(donations) < 0.2,
    }))
    paths = {}
    for name, frame in (("persons", people), ("contacts", contact_frame),
                        ("donations", donation_frame)):
        paths[name] = directory / f"{name}.parquet"
        frame.write_parquet(paths[name], compression="zstd")
    return paths


def _result_weights(n: int) -> list[float]:
    weights = [0.3, 0.35, 0.1] + [0.25 / (n - 3)] * (n - 3)
    return [w / sum(weights) for w in weights]


# ----------------------------------------------------------------------------- phases (children)

def phase_plan(directory: Path) -> dict[str, object]:
    from privacy.engine import ReleaseData, postprocess, run_query
    from privacy.hierarchy import release_levels
    from privacy.plan import load_plan, query_cost

    plan = load_plan()
    data = ReleaseData(tables={n: directory / f"{n}.parquet"
                               for n in ("persons", "contacts", "donations")},
                       snapshot_hash="benchmark")
    per_query = {}
    start, cpu0 = time.perf_counter(), _cpu()
    for query in plan.releases:
        t0 = time.perf_counter()
        if query.hierarchy:  # every level, then the consistent post-processing (issue 16)
            release_levels(query, plan, data, query_cost(plan, query), run_query)
        else:
            postprocess(run_query(query, plan, data, query_cost(plan, query)))
        per_query[query.name] = round(time.perf_counter() - t0, 2)
    return {"wall": time.perf_counter() - start, "cpu": _cpu() - cpu0, "per_query": per_query}


def _cpu() -> float:
    """CPU seconds of this process (all threads): comparable when the machine is shared."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _baseline_context(directory: Path, privacy_unit: object) -> tuple[object, object]:
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    contacts = pl.scan_parquet(directory / "contacts.parquet").select("person_key", "week")
    context = dp.Context.compositor(
        data=contacts, privacy_unit=privacy_unit, privacy_loss=dp.loss_of(rho=1 / 3000),
        split_evenly_over=1)
    return dp, context


def phase_truncation(directory: Path) -> dict[str, object]:
    import opendp.prelude as dp
    import polars as pl

    from core.vocabulary import iso_weeks

    dp.enable_features("contrib")
    start, cpu0 = time.perf_counter(), _cpu()
    # Same bounds as the plan's contacts_by_week: ≤ 2 rows per week, ≤ 8 weeks per person.
    _, context = _baseline_context(directory, dp.unit_of(contributions=1,
                                                         identifier="person_key"))
    keys = pl.LazyFrame({"week": list(iso_weeks(date(2026, 1, 1), date(2026, 6, 30)))})
    query = (context.query()  # type: ignore[attr-defined]
             .truncate_per_group(2, by=["week"], keep="first")
             .truncate_num_groups(8, by=["week"], keep="first")
             .group_by("week").agg(dp.len(signed=True)).with_keys(keys))
    query.release().collect()
    return {"wall": time.perf_counter() - start, "cpu": _cpu() - cpu0}


def phase_row_level(directory: Path) -> dict[str, object]:
    import opendp.prelude as dp
    import polars as pl

    from core.vocabulary import iso_weeks

    dp.enable_features("contrib")
    start, cpu0 = time.perf_counter(), _cpu()
    _, context = _baseline_context(directory, dp.unit_of(contributions=1))
    keys = pl.LazyFrame({"week": list(iso_weeks(date(2026, 1, 1), date(2026, 6, 30)))})
    query = context.query().group_by("week").agg(dp.len(signed=True)).with_keys(keys)  # type: ignore[attr-defined]
    query.release().collect()
    return {"wall": time.perf_counter() - start, "cpu": _cpu() - cpu0}


PHASES = {"plan": phase_plan, "truncation": phase_truncation, "row_level": phase_row_level}


def run_child(phase: str, directory: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--dir", str(directory)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=2_000_000)
    parser.add_argument("--contacts", type=int, default=10_000_000)
    parser.add_argument("--donations", type=int, default=1_000_000)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    if args.phase:
        figures = PHASES[args.phase](args.dir)
        figures["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(json.dumps(figures))
        return

    with tempfile.TemporaryDirectory(prefix="bench-release-") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        generate(directory, args.persons, args.contacts, args.donations)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
              "(wall times stretch when the cores are shared; CPU seconds do not)")
        print(f"snapshot: {args.persons:,} persons, {args.contacts:,} contacts, "
              f"{args.donations:,} donations generated in {time.perf_counter() - t0:.1f} s")
        ours = run_child("plan", directory)
        print(f"isoloir full default plan ({len(ours['per_query'])} queries, user-level "  # type: ignore[arg-type]
              f"bounding): {ours['wall']:.1f} s wall ({ours['cpu']:.1f} s CPU), "
              f"{ours['peak_rss_gb']:.2f} GB peak RSS (target ≤ 20 s, ≤ 4 GB)")
        for name, seconds in ours["per_query"].items():  # type: ignore[attr-defined]
            print(f"    {name:32s} {seconds:6.2f} s")
        if args.skip_baseline:
            return
        rows = run_child("row_level", directory)
        print(f"baseline row-level count over scan_parquet (no user bound): "
              f"{rows['wall']:.1f} s wall ({rows['cpu']:.1f} s CPU), {rows['peak_rss_gb']:.2f} GB")
        try:
            trunc = run_child("truncation", directory)
        except subprocess.CalledProcessError as err:
            print(f"baseline OpenDP identifier truncation failed: {err.stderr.strip()[-300:]}")
            return
        print(f"baseline one grouped count with OpenDP identifier truncation: "
              f"{trunc['wall']:.1f} s wall ({trunc['cpu']:.1f} s CPU), "
              f"{trunc['peak_rss_gb']:.2f} GB peak RSS "
              "(measured earlier: 43 s, 5.9 GB)")
        print(f"ratios: full plan / one truncated count = "
              f"{ours['wall'] / trunc['wall']:.2f}× wall, "  # type: ignore[operator]
              f"{ours['cpu'] / trunc['cpu']:.2f}× CPU, "  # type: ignore[operator]
              f"{ours['peak_rss_gb'] / trunc['peak_rss_gb']:.2f}× memory; "  # type: ignore[operator]
              f"full plan / one row-level count = {ours['wall'] / rows['wall']:.1f}× wall, "  # type: ignore[operator]
              f"{ours['cpu'] / rows['cpu']:.1f}× CPU")  # type: ignore[operator]


if __name__ == "__main__":
    main()
