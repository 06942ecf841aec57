"""Which Excel reader Isoloir uses: python-calamine versus openpyxl in read-only mode.

    .venv/bin/python benchmarks/bench_xlsx_readers.py [--rows 200000]

Writes a NationBuilder-like workbook (ids and amounts as number cells, dates as date cells,
postcodes as text, booleans) with openpyxl, then reads every cell of its first sheet with
each reader, rendering cells the way ``transforms.workbook`` does, and prints seconds, rows/s
and the ratio. The faster reader is the one ``transforms.workbook`` uses.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.workbook import render_cell  # noqa: E402

HEADER = ["nationbuilder_id", "first_name", "last_name", "email", "phone_number", "primary_zip",
          "born_at", "support_level", "is_volunteer", "created_at", "donations_amount",
          "tag_list"]


def write_workbook(path: Path, rows: int) -> None:
    from openpyxl import Workbook

    rng = random.Random(7)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("people")
    sheet.append(HEADER)
    base = date(1940, 1, 1)
    for i in range(rows):
        sheet.append([100000 + i, f"Prenom{i % 997}", f"Nom{i % 1531}", f"p{i}@example.org",
                      f"06 {rng.randrange(10**8):08d}", f"{rng.randrange(1000, 99000):05d}",
                      base + timedelta(days=rng.randrange(25000)), rng.randrange(1, 6),
                      rng.random() < 0.1, date(2026, 1, 1) + timedelta(days=i % 180),
                      round(rng.random() * 500, 2), "canvass,donor" if i % 3 else None])
    book.save(path)


def read_calamine(path: Path) -> int:
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    n = 0
    for row in book.get_sheet_by_index(0).iter_rows():
        [render_cell(v) for v in row]
        n += 1
    book.close()
    return n


def read_openpyxl(path: Path) -> int:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    n = 0
    for row in book.worksheets[0].iter_rows(values_only=True):
        [render_cell(v) for v in row]
        n += 1
    book.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.xlsx"
        began = time.perf_counter()
        write_workbook(path, args.rows)
        print(f"wrote {args.rows:,} rows x {len(HEADER)} columns with openpyxl in "
              f"{time.perf_counter() - began:.1f} s ({path.stat().st_size / 1e6:.1f} MB)")
        seconds = {}
        for name, read in (("python-calamine", read_calamine), ("openpyxl read-only",
                                                                 read_openpyxl)):
            began = time.perf_counter()
            n = read(path)
            seconds[name] = time.perf_counter() - began
            print(f"{name:>20}: {seconds[name]:6.2f} s  {(n - 1) / seconds[name]:>10,.0f} rows/s")
        fast, slow = sorted(seconds, key=seconds.__getitem__)
        print(f"{fast} is {seconds[slow] / seconds[fast]:.1f}x faster than {slow}")


if __name__ == "__main__":
    main()
