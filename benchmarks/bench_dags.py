"""Airflow pipeline timings (issue 6): `isoloir demo` wall time, and the ingest DAG per stage at scale.

1. `isoloir demo` (what `make run` runs after install) on the default 50 k-person campaign, in
   a fresh ISOLOIR_HOME: wall seconds against the 3-minute target.
2. The ingestion DAG on an N-person campaign (default 1 M) through `dag.test()`: wall time,
   and the summed task durations per stage read from Airflow's metadata database.

Usage: python benchmarks/bench_dags.py [--people N] [--skip-demo]
"""

from __future__ import annotations

import argparse
import base64
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISOLOIR_", "AIRFLOW"))}
    env["ISOLOIR_HOME"] = str(home)
    return env


def bench_demo(tmp: Path) -> None:
    home = tmp / "demo"
    isoloir = Path(sys.executable).with_name("isoloir")
    t = time.perf_counter()
    done = subprocess.run([str(isoloir), "demo"], env=clean_env(home), capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
        raise SystemExit("isoloir demo failed")
    print(f"isoloir demo (50,000 people, both DAGs, reports): {seconds:6.1f} s "
          f"({seconds / 180:.2f}x of the 3-minute target)")
    t = time.perf_counter()
    subprocess.run([str(isoloir), "demo"], env=clean_env(home), capture_output=True, text=True,
                   check=True)
    print(f"second isoloir demo (reuses data, republishes stored releases): "
          f"{time.perf_counter() - t:6.1f} s")


def bench_ingest_dag(tmp: Path, people: int) -> None:
    from cli.airflow_runner import airflow_env, ensure_metadata_db, run_dag
    from core.settings import load_settings
    from transforms.synth import SynthConfig, generate_campaign

    home = tmp / "scale"
    env = clean_env(home)
    env["ISOLOIR_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    env["ISOLOIR_SIGNING_KEY_FILE"] = str(tmp / "signing.key")
    settings = load_settings(env)
    settings.ensure_dirs()
    t = time.perf_counter()
    manifest = generate_campaign(SynthConfig(people=people, seed=11), settings.landing)
    (settings.landing / "ground_truth.json").unlink(missing_ok=True)
    rows = sum(f.rows for f in manifest.files)
    print(f"\nsynthetic campaign: {people:,} people, {rows:,} rows in {len(manifest.files)} files, "
          f"generated in {time.perf_counter() - t:.1f} s")
    af_env = airflow_env(settings, env)
    ensure_metadata_db(af_env)
    t = time.perf_counter()
    run_dag("isoloir_ingest", af_env, timeout=7200)
    wall = time.perf_counter() - t
    conn = sqlite3.connect(settings.airflow_home / "airflow.db")
    per_stage: dict[str, float] = defaultdict(float)
    for task_id, seconds in conn.execute(
            "select task_id, (julianday(end_date) - julianday(start_date)) * 86400 "
            "from task_instance where dag_id = 'isoloir_ingest'"):
        per_stage[task_id] += seconds or 0.0
    conn.close()
    print(f"ingest DAG wall time: {wall:.1f} s ({rows / wall / 1e3:.0f} k rows/s overall)")
    for stage, seconds in per_stage.items():
        print(f"  {stage:32s} {seconds:8.1f} s (summed over mapped files)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_demo:
            bench_demo(Path(tmp))
        bench_ingest_dag(Path(tmp), args.people)


if __name__ == "__main__":
    main()
