"""Distributed ingest: a synthetic campaign's people in 8 files, on 1 Celery worker versus 2.

For each worker count, a fresh Airflow cluster (``tests/helpers/airflow_cluster.py``: api-server,
scheduler, dag-processor and N Celery workers on PostgreSQL + Redis) ingests the same 8 parts
of the NationBuilder people export into a fresh PostgreSQL warehouse schema. The figure is the
wall time of the ``isoloir_ingest`` run (its start to its end in the metadata database), cluster
start-up excluded; then the speed-up.

Each worker runs ``--concurrency`` task slots (default 1, so the comparison is one task process
against two). All workers share this machine: the speed-up is bounded by its free cores; on
separate machines each worker brings its own.

Needs PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379).
Usage: python benchmarks/bench_distributed.py [--people 1000000] [--parts 8] [--workers 1,2]
       [--concurrency 1] [--seed 2026]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INGEST = "isoloir_ingest"


def make_parts(people: int, seed: int, parts: int, out_dir: Path) -> list[Path]:
    """Generate the campaign, then split its people export into ``parts`` files (header, BOM)."""
    from tests.helpers.airflow_cluster import split_export
    from transforms.synth import PEOPLE_FILE, SynthConfig, generate_campaign

    campaign = out_dir / "campaign"
    # Only the people export is ingested: keep the other exports small.
    generate_campaign(SynthConfig(people=people, seed=seed, contacts_per_person=1.0,
                                  canvassed_share=0.01), campaign)
    split = split_export(campaign / PEOPLE_FILE, parts, out_dir / "parts",
                         stem=Path(PEOPLE_FILE).stem)
    shutil.rmtree(campaign)
    return split


def run_once(files: list[Path], workers: int, concurrency: int, root: Path) -> dict[str, Any]:
    """One cluster with ``workers`` workers ingests ``files``; timings and task spread."""
    from core.settings import load_settings
    from tests.helpers.airflow_cluster import (
        INGEST_TASK_MODULES,
        REPO,
        airflow_cluster,
        fresh_pg_schema,
        isoloir_env,
    )
    from warehouse.db import ensure_schema, make_engine

    with fresh_pg_schema("bench") as url:
        env = isoloir_env(root, url)
        settings = load_settings(env)
        settings.ensure_dirs()
        engine = make_engine(url)
        ensure_schema(engine)
        engine.dispose()
        for file in files:
            shutil.copy(file, settings.landing / file.name)
        started = time.monotonic()
        with airflow_cluster(REPO / "dags", root / "cluster", env=env, workers=workers,
                             worker_concurrency=concurrency, preload=INGEST_TASK_MODULES,
                             startup_timeout=600) as cluster:
            up = time.monotonic() - started
            cluster.wait_for_dags([INGEST], timeout=300)
            cluster.unpause(INGEST)
            cluster.trigger(INGEST, "bench")
            state = cluster.wait_for_run(INGEST, "bench", timeout=6 * 3600)
            (run_s,) = cluster.query("SELECT EXTRACT(EPOCH FROM end_date - start_date) "
                                     "FROM dag_run WHERE dag_id = %s AND run_id = %s",
                                     (INGEST, "bench"))[0]
            tis = cluster.task_instances(INGEST, "bench")
        from sqlalchemy import func, select

        from warehouse.schema import ingested_files, persons

        engine = make_engine(url)
        with engine.connect() as conn:
            n_files = conn.execute(select(func.count()).select_from(ingested_files)).scalar_one()
            n_persons = conn.execute(select(func.count()).select_from(persons)).scalar_one()
        engine.dispose()
    spread: dict[str, int] = {}
    for ti in tis:
        if ti["task_id"].startswith("file.") and ti["hostname"]:
            name = str(ti["hostname"]).rsplit("-", 1)[0]
            spread[name] = spread.get(name, 0) + 1
    return {"workers": workers, "state": state, "run_s": float(run_s), "startup_s": up,
            "files_loaded": int(n_files), "persons": int(n_persons), "spread": spread}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--concurrency", type=int, default=1, help="task slots per worker")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    from tests.helpers.airflow_cluster import services_unreachable

    reason = services_unreachable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as tmp:
        t = time.perf_counter()
        files = make_parts(args.people, args.seed, args.parts, Path(tmp))
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"campaign: {args.people:,} people, people export split into {len(files)} files "
              f"({size_mb:.0f} MB) in {time.perf_counter() - t:.0f} s; "
              f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
        results = []
        for workers in counts:
            result = run_once(files, workers, args.concurrency, Path(tmp) / f"w{workers}")
            results.append(result)
            print(f"{workers} worker(s) x {args.concurrency} slot(s): ingest run "
                  f"{result['run_s']:7.1f} s  ({args.people / result['run_s']:,.0f} people/s)  "
                  f"state {result['state']}, files loaded {result['files_loaded']}, "
                  f"persons {result['persons']:,}, file.* tasks per worker {result['spread']}, "
                  f"cluster start-up {result['startup_s']:.0f} s (not counted), "
                  f"load average {os.getloadavg()[0]:.1f}")
    base = results[0]
    for result in results[1:]:
        print(f"speed-up {result['workers']} workers vs {base['workers']}: "
              f"{base['run_s'] / result['run_s']:.2f}x")
    return 0 if all(r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
