"""Synthetic campaign generation: `isoloir synth --people 1000000` against its 60 s target.

Runs the real command in a child process (interpreter start-up and imports included), so
the peak RSS reported for children is the generator's own. Then, optionally, a heavier run
with ~10 M attempt rows shows that memory stays flat (chunks stream to disk; target 2 GB).
The CPU time is printed too: on a shared machine the wall time depends on everyone's load.
Usage: python benchmarks/bench_synth.py [--people N] [--ten-million-contacts]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0
TARGET_RSS_MB = 2048.0


def _isoloir() -> list[str]:
    exe = Path(sys.executable).with_name("isoloir")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from cli.main import app; app()"]


def run(people: int, contacts_per_person: float, label: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        out = Path(tmp) / "campaign"
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        began = time.perf_counter()
        proc = subprocess.run(
            [*_isoloir(), "synth", "--people", str(people), "--seed", "2026", "--out", str(out),
             "--contacts-per-person", str(contacts_per_person), "--json"],
            cwd=ROOT, capture_output=True, text=True, check=False,
            env=os.environ | {"PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - began
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n")
            raise SystemExit(f"isoloir synth failed with exit code {proc.returncode}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_rss_mb = usage.ru_maxrss / 1024
        cpu = usage.ru_utime + usage.ru_stime - cpu_before
        doc = json.loads(proc.stdout)
        sizes = {f["name"]: (out / f["name"]).stat().st_size for f in doc["files"]}
    rows = sum(f["rows"] for f in doc["files"])
    print(f"== {label}: isoloir synth --people {people:,} "
          f"--contacts-per-person {contacts_per_person:g}")
    for f in doc["files"]:
        print(f"  {f['name']:<26} {f['rows']:>12,} rows  {sizes[f['name']] / 1e6:9.1f} MB")
    print(f"  wall time (command)        {seconds:12.1f} s   (in-process {doc['seconds']} s)")
    print(f"  CPU time (user + system)   {cpu:12.1f} s   (wall/CPU {seconds / cpu:.2f}: > 1 means "
          "the machine was busy with other work)")
    print(f"  rows written               {rows:12,}     {rows / seconds:,.0f} rows/s, "
          f"{people / seconds:,.0f} people/s")
    print(f"  peak RSS (child process)   {child_rss_mb:12.0f} MB"
          + ("" if before == 0 else "   (max over children so far)"))
    print(f"  vs targets                 {seconds / TARGET_SECONDS:12.2f} x of {TARGET_SECONDS:.0f} s,"
          f" {child_rss_mb / TARGET_RSS_MB:.2f} x of {TARGET_RSS_MB:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--ten-million-contacts", action="store_true",
                        help="also generate ~10 M attempt rows (1 M people x 16.7 per canvassed)")
    args = parser.parse_args()
    print(f"self peak RSS before runs: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
          f"; cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}")
    run(args.people, 5.0, "default campaign")
    if args.ten_million_contacts:
        run(args.people, 16.7, "10 M attempt rows")
    print(f"self peak RSS after runs: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
          f"; load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
