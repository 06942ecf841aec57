"""Daily snapshots: day 2 re-exports everything, and must cost what changed, not the file.

A synthetic campaign (default 1 M people and a VAN contact history of about 5 M rows) is
loaded on day 1. Day 2 is what the tools send the next day: the whole people export again
with 1 % of people changed (support level), and the whole history again grown by 1 %.
Each ingest runs in its own child process (its own peak RSS), into the same warehouse with
the same key, on SQLite and PostgreSQL. Prints wall times, the day 2 / day 1 ratio
(target <= 25 %), peak RSS (target < 2 GB), and day 1 against the storage floor of the
rows it wrote (target <= 1.5x; see bench_ingest.py).

Usage: python benchmarks/bench_incremental.py [--people N] [--contacts-per-person X]
       [--skip-postgres] [--skip-sqlite] [--data DIR]
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FILES = ("nationbuilder_people.csv", "van_contact_history.txt")


def child(export: str, url: str, floor: bool) -> None:
    """Runs in a child process: ingest one file into the shared warehouse, print figures."""
    from core.memory import return_freed_memory

    return_freed_memory()  # as the isoloir command does, before Polars loads
    from core.settings import load_settings
    from pipeline.ingest import ingest_file, peak_rss_mb
    from privacy.keys import load_keyring
    from warehouse.db import ensure_schema, make_engine

    settings = load_settings()
    settings.ensure_dirs()
    engine = make_engine(url)
    ensure_schema(engine)
    keyring = load_keyring(settings)
    t = time.perf_counter()
    result = ingest_file(Path(export), settings, engine, keyring)
    seconds = time.perf_counter() - t
    rss_mb = peak_rss_mb()  # VmHWM: ru_maxrss would carry this benchmark's own peak
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures = {"rows": result.rows_read, "written": result.rows_loaded,
               "unchanged": result.rows_unchanged, "changed": result.rows_changed,
               "seconds": seconds, "rss_mb": rss_mb, "workers_mb": workers_mb,
               "stages": result.seconds, "peak_mb": result.peak_mb}
    if floor:
        from bench_ingest import storage_floor

        figures["floor"] = storage_floor(engine, settings.work)
    print("RESULT" + json.dumps(figures))


def run_child(export: Path, url: str, home: Path, key: str, floor: bool = False) -> dict:
    env = dict(os.environ, ISOLOIR_HOME=str(home), ISOLOIR_MASTER_KEY=key)
    cmd = [sys.executable, __file__, "--child", str(export), url] + (["--floor"] if floor else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed on {export.name}:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[6:])


def day_two(day1: Path, day2: Path, seed: int) -> dict[str, int]:
    """Write day 2's exports: 1 % of people changed; the history again plus 1 % new rows."""
    rng = random.Random(seed)
    day2.mkdir()
    changed = 0
    people_in, people_out = day1 / FILES[0], day2 / FILES[0]
    with people_in.open(encoding="utf-8-sig", newline="") as src, \
            people_out.open("w", encoding="utf-8-sig", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
        header = next(reader)
        writer.writerow(header)
        level = header.index("support_level")
        for row in reader:
            if rng.random() < 0.01:
                row[level] = str(rng.randint(1, 5)) if row[level] != "5" else "1"
                changed += 1
            writer.writerow(row)
    history_in, history_out = day1 / FILES[1], day2 / FILES[1]
    added = 0
    with history_in.open(encoding="utf-8", newline="") as src, \
            history_out.open("w", encoding="utf-8", newline="") as dst:
        reader = csv.reader(src, delimiter="\t")
        writer = csv.writer(dst, delimiter="\t", lineterminator="\n")
        header = next(reader)
        writer.writerow(header)
        when = header.index("DateCanvassed")
        fresh = []
        for row in reader:
            writer.writerow(row)
            if rng.random() < 0.01:
                fresh.append([*row[:when], "03/30/2026", *row[when + 1:]])
        writer.writerows(fresh)
        added = len(fresh)
    return {"people_changed": changed, "history_added": added}


def _lines(path: Path) -> int:
    """Data rows of an export (its lines less the header)."""
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--contacts-per-person", type=float, default=9.0,
                        help="mean attempts per canvassed person (9 gives ~5 VAN rows/person)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--data", help="keep the generated exports in this folder and reuse "
                        "them on the next run with the same folder (generation takes minutes "
                        "at 1 M people)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, floor=args.floor)
        return
    from bench_ingest import drop_pg_schema, fresh_pg_schema

    from transforms.synth import SynthConfig, generate_campaign

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp)
        day1, day2 = data / "day1", data / "day2"
        if not (day2 / FILES[-1]).is_file():
            t = time.perf_counter()
            shutil.rmtree(day1, ignore_errors=True)
            shutil.rmtree(day2, ignore_errors=True)
            generate_campaign(SynthConfig(people=args.people, seed=11,
                                          contacts_per_person=args.contacts_per_person,
                                          canvassed_share=1.0), day1)
            edits = day_two(day1, day2, seed=3)
            print(f"synthetic campaign generated in {time.perf_counter() - t:.0f} s; day 2: "
                  f"the same exports again, {edits['people_changed']:,} people changed, "
                  f"{edits['history_added']:,} history rows added")
        rows = {f: _lines(day1 / f) for f in FILES}
        print(f"day 1: {rows[FILES[0]]:,} people rows, {rows[FILES[1]]:,} VAN history rows"
              + (f" (kept in {data})" if args.data else ""))
        targets = [] if args.skip_sqlite else [("SQLite", f"sqlite:///{Path(tmp) / 'warehouse.db'}")]
        schema = None
        if not args.skip_postgres:
            schema = fresh_pg_schema()
            targets.append(("PostgreSQL", f"{PG}?options=-csearch_path%3D{schema}"))
        try:
            for name, url in targets:
                key = base64.b64encode(os.urandom(32)).decode()
                home = Path(tmp) / f"home-{name}"
                first = [run_child(day1 / f, url, home, key, floor=(f == FILES[-1]))
                         for f in FILES]
                second = [run_child(day2 / f, url, home, key) for f in FILES]
                d1 = sum(r["seconds"] for r in first)
                d2 = sum(r["seconds"] for r in second)
                rss = max(r["rss_mb"] for r in first + second)
                print(f"\n{name}")
                for label, results in (("day 1", first), ("day 2", second)):
                    for f, r in zip(FILES, results, strict=True):
                        print(f"  {label} {f:26s} {r['seconds']:7.1f} s  {r['rows']:>10,} rows "
                              f"read, {r['written']:>10,} written, {r['unchanged']:>10,} "
                              f"unchanged | peak RSS {r['rss_mb']:,.0f} MB")
                        print(f"  {'':32s} load stages: " + ", ".join(
                            f"{k} {v:.1f}" for k, v in r["stages"].items()) + " s")
                        print(f"  {'':32s} peak RSS after: " + ", ".join(
                            f"{k} {v:,.0f}" for k, v in r["peak_mb"].items()) + " MB; "
                            f"staging processes at most {r['workers_mb']:,.0f} MB")
                ratio = d2 / d1
                print(f"  day 2 / day 1: {d2:.1f} s / {d1:.1f} s = {ratio:.0%} "
                      f"(target <= 25 %: {'met' if ratio <= 0.25 else 'NOT met'}); peak RSS "
                      f"{rss:,.0f} MB (target < 2 GB: {'met' if rss < 2048 else 'NOT met'})")
                floor = first[-1]["floor"]
                print(f"  day 1 against the storage floor of the {floor['rows']:,} rows it "
                      f"wrote ({floor['seconds']:.1f} s): {d1 / floor['seconds']:.2f}x "
                      f"(target <= 1.5x: {'met' if d1 <= 1.5 * floor['seconds'] else 'NOT met'})")
        finally:
            if schema:
                drop_pg_schema(schema)


if __name__ == "__main__":
    main()
