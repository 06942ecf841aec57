"""Validation speed: 1 M raw rows and 1 M pseudonymized rows, in seconds per million rows.

Target (issue 4): validations add at most 30 % to ingest time. Ingest runs at >= 250 k rows/s,
so 1 M rows ingest in ~4 s and each suite may take ~1.2 s per million rows.

What is measured, separately and honestly:

* the fast path (the blocking gate: every rule over every row, vectorized), per suite, after
  a warm-up that loads the COG snapshot and code lists once per process (printed apart);
* Great Expectations' one-off import, and GX validating the deterministic sample a big batch
  gets (``GX_MAX_ROWS`` rows) with the value-free result stored and Data Docs updated;
* GX per million rows, extrapolated from a GX run over a 100 k-row frame (for comparison:
  this is why GX documents a sample instead of gating whole big files).

Wall and CPU seconds are both printed: on a shared, busy machine the CPU figure is the one to
compare with the target.

Run: ``.venv/bin/python benchmarks/bench_validate.py [rows]`` (default 1 000 000).
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.settings import load_settings  # noqa: E402
from expectations.validate import GX_MAX_ROWS, validate_pseudonymized, validate_raw  # noqa: E402
from transforms.sources import NATIONBUILDER_PEOPLE  # noqa: E402


def raw_people(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, list[str]]:
    """A NationBuilder people export as ``transforms.read`` yields it (strings, row_number)."""
    ids = np.arange(1, n + 1).astype(str)
    emails = np.char.add(np.char.add("supporter", ids), "@example.fr")
    phones = np.char.add("06", rng.integers(10_000_000, 99_999_999, n).astype(str))
    postcodes = rng.choice(["75011", "13001", "69003", "33000", "20090", "97110", "59000"], n)
    day = rng.integers(1, 28, n).astype(str)
    month = rng.integers(1, 12, n).astype(str)
    year = rng.integers(1940, 2006, n).astype(str)
    born = np.char.add(np.char.add(np.char.add(np.char.add(np.char.zfill(month, 2), "/"),
                                               np.char.zfill(day, 2)), "/"), year)
    frame = pd.DataFrame({
        "source_id": ids.astype(object), "email": emails.astype(object),
        "phone": phones.astype(object), "phone2": phones.astype(object),
        "postcode": postcodes.astype(object), "birth_date": born.astype(object),
        "support_level": rng.choice(np.array(["1", "2", "3", "4", "5", None], dtype=object), n),
        "is_volunteer": rng.choice(np.array(["true", "false"], dtype=object), n),
        "email_opt_in": rng.choice(np.array(["true", "false"], dtype=object), n),
        "created_at": np.full(n, "03/01/2025 10:00", dtype=object),
        "do_not_contact": np.full(n, "false", dtype=object),
        "row_number": np.arange(2, n + 2, dtype=np.int64),
    })
    header = list(NATIONBUILDER_PEOPLE.required) + ["first_name", "last_name", "note"]
    return frame, header


def pseudonymized_contacts(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A staged contacts frame as ``privacy.pseudonymize`` writes it."""
    pool = np.array([f"k1:{base64.b32encode(rng.bytes(30)).decode().lower()}"
                     for _ in range(50_000)], dtype=object)

    def ids() -> np.ndarray:
        return pool[rng.integers(0, len(pool), n)]

    return pd.DataFrame({
        "id_source": ids(), "id_email": ids(), "id_phone": ids(), "id_phone2": ids(),
        "row_id": ids(), "canvasser_id": ids(),
        "week": rng.choice(np.array(["2026-W05", "2026-W06", "2026-W07"], dtype=object), n),
        "channel": rng.choice(np.array(["door", "phone", "sms"], dtype=object), n),
        "result": rng.choice(np.array(["contacted", "not_home", "refused"], dtype=object), n),
        "support_level": rng.choice(np.array([1, 2, 3, 4, 5], dtype=np.int64), n),
        "commune": rng.choice(np.array(["75111", "13201", "2A004", "69383"], dtype=object), n),
        "departement": rng.choice(np.array(["75", "13", "2A", "69"], dtype=object), n),
        "region": rng.choice(np.array(["11", "93", "94", "84"], dtype=object), n),
    })


def timed(label: str, fn, rows: int) -> float:  # type: ignore[no-untyped-def]
    """Wall and CPU seconds (the CPU figure is what a shared, busy machine cannot inflate)."""
    started, cpu = time.perf_counter(), time.process_time()
    outcome = fn()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    per_million = cpu_seconds * 1_000_000 / rows
    print(f"{label:62s} wall {seconds:6.2f} s  cpu {cpu_seconds:6.2f} s  "
          f"({per_million:5.2f} cpu-s per million rows)  success={outcome.success}")
    return cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000,
                        help="rows per suite (default 1000000)")
    rows = parser.parse_args().rows
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings({"ISOLOIR_HOME": home})
        print(f"building {rows:,} raw and {rows:,} pseudonymized rows...")
        raw, header = raw_people(rows, rng)
        pseudo = pseudonymized_contacts(rows, rng)
        started, cpu = time.perf_counter(), time.process_time()
        validate_raw(raw.head(1000), header, NATIONBUILDER_PEOPLE, "warm.csv", settings, gx=False)
        validate_pseudonymized(pseudo.head(1000), "contacts", "warm.tsv", settings, gx=False)
        print(f"{'one-off per process: COG snapshot, code lists (warm-up)':62s} wall "
              f"{time.perf_counter() - started:6.2f} s  cpu {time.process_time() - cpu:6.2f} s")
        print(f"== fast path (blocking gate, every rule over every row), {rows:,} rows")
        fast_raw = timed("raw suite (nationbuilder_people), fast path",
                         lambda: validate_raw(raw, header, NATIONBUILDER_PEOPLE, "nb.csv",
                                              settings, gx=False), rows)
        fast_pseudo = timed("pseudonymized suite (contacts), fast path",
                            lambda: validate_pseudonymized(pseudo, "contacts", "van.tsv",
                                                           settings, gx=False), rows)
        print("== Great Expectations (documentation: value-free results + Data Docs)")
        started, cpu = time.perf_counter(), time.process_time()
        from expectations.context import import_gx

        import_gx()
        print(f"{'GX import (once per process)':62s} wall {time.perf_counter() - started:6.2f} s"
              f"  cpu {time.process_time() - cpu:6.2f} s")
        # warm-up: the first context/Data Docs build copies static assets
        validate_pseudonymized(pseudo.head(100), "contacts", "warmup.tsv", settings)
        both_raw = timed(f"raw suite, fast path + GX on a {GX_MAX_ROWS:,}-row sample",
                         lambda: validate_raw(raw, header, NATIONBUILDER_PEOPLE, "nb.csv",
                                              settings), rows)
        both_pseudo = timed(f"pseudonymized suite, fast path + GX on a {GX_MAX_ROWS:,}-row sample",
                            lambda: validate_pseudonymized(pseudo, "contacts", "van.tsv",
                                                           settings), rows)
        full = min(rows, 100_000)
        gx_full = timed(f"raw suite, GX over all of a {full:,}-row frame (for comparison)",
                        lambda: validate_raw(raw.head(full), header, NATIONBUILDER_PEOPLE,
                                             "nb-head.csv", settings, gx_max_rows=full), full)
        ingest = rows / 250_000
        print("== summary, CPU seconds per million rows")
        print(f"fast path: raw {fast_raw * 1e6 / rows:.2f}, pseudonymized "
              f"{fast_pseudo * 1e6 / rows:.2f} (budget per suite ~1.2 at 250 k rows/s ingest)")
        print(f"with GX sample: raw {both_raw * 1e6 / rows:.2f}, pseudonymized "
              f"{both_pseudo * 1e6 / rows:.2f}")
        print(f"GX over whole frames: ~{gx_full * 1e6 / full:.1f} s per million rows")
        added = (fast_raw + fast_pseudo) / ingest
        print(f"both blocking gates add {added:.0%} to a {ingest:.1f} s ingest of {rows:,} rows "
              f"(target <= 30 %); with GX samples {(both_raw + both_pseudo) / ingest:.0%} "
              "(plus the one-off GX import)")


if __name__ == "__main__":
    main()
