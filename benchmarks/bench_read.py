"""Read + normalize throughput of a NationBuilder export as sent, re-saved by French Excel, and
as an ``.xlsx`` workbook (issue #15).

    .venv/bin/python benchmarks/bench_read.py [--rows 1000000] [--xlsx-rows 20000]

Generates the synthetic NationBuilder people export (``isoloir synth``), writes the French
Excel re-save (cp1252, ``;``, CRLF) and an ``.xlsx`` workbook of its first ``--xlsx-rows``
rows (openpyxl writes about 1,500 rows/s here, so a 1 M-row workbook would take most of an
hour to *make*; the workbook's time is scaled to the full row count, per row, and said so).
Each file is read as the pipeline reads it (``open_export``, ``plan_read`` with the whole-file
validation, every chunk read and normalized in this process) and timed. Prints seconds,
rows/s and each as a ratio to the original; the French-Excel re-save must stay within 1.3x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.exports import open_export  # noqa: E402
from transforms.normalize import normalize_chunk  # noqa: E402
from transforms.read import read_chunk  # noqa: E402

TARGET = 1.3


def read_normalize(path: Path, work: Path, chunk_rows: int) -> tuple[float, int]:
    began = time.perf_counter()
    rows = 0
    with open_export(path, work_dir=work) as opened:
        plan = opened.plan(chunk_rows, validate=True)
        for k in range(plan.chunks):
            frame, _ = normalize_chunk(read_chunk(plan, k), opened.profile, path.name)
            rows += len(frame)
    return time.perf_counter() - began, rows


def french_excel(source: Path, target: Path) -> None:
    import polars as pl

    frame = pl.read_csv(source, infer_schema=False, encoding="utf8")
    data = frame.write_csv(separator=";", line_terminator="\r\n", quote_style="necessary")
    target.write_bytes(data.encode("cp1252", errors="replace"))


def workbook(source: Path, target: Path, rows: int) -> None:
    import polars as pl
    from openpyxl import Workbook

    frame = pl.read_csv(source, infer_schema=False, encoding="utf8", n_rows=rows)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("people")
    sheet.append(frame.columns)
    for row in frame.iter_rows():
        sheet.append([int(v) if v and v.isdigit() and not v.startswith("0") and len(v) < 16
                      else v for v in row])
    book.save(target)


def main() -> None:
    from transforms.synth import SynthConfig, generate_campaign

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=20_000)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        manifest = generate_campaign(SynthConfig(people=args.rows, seed=7), folder / "synth")
        original = manifest.file("nationbuilder_people").path
        print(f"synthetic NationBuilder export: {args.rows:,} rows in "
              f"{time.perf_counter() - began:.1f} s")
        resaved = folder / "nationbuilder_people.french_excel.csv"
        french_excel(original, resaved)
        book = folder / "nationbuilder_people.xlsx"
        began = time.perf_counter()
        workbook(original, book, min(args.xlsx_rows, args.rows))
        print(f"workbook of {min(args.xlsx_rows, args.rows):,} rows written in "
              f"{time.perf_counter() - began:.1f} s (openpyxl)")
        work = folder / "work"
        results = {}
        for name, path in (("original (UTF-8 BOM, ',')", original),
                           ("French Excel (cp1252, ';', CRLF)", resaved), (".xlsx", book)):
            seconds, rows = read_normalize(path, work, args.chunk_rows)
            per_row = seconds / rows
            results[name] = per_row
            print(f"{name:>34}: {rows:>9,} rows {seconds:7.2f} s {rows / seconds:>10,.0f} rows/s")
        base = results["original (UTF-8 BOM, ',')"]
        print("ratio of time per row to the original (the .xlsx figure is per row, from its "
              f"{min(args.xlsx_rows, args.rows):,}-row workbook):")
        for name, per_row in results.items():
            print(f"{name:>34}: {per_row / base:5.2f}x  ({per_row * args.rows:7.1f} s for "
                  f"{args.rows:,} rows)")
        ratio = results["French Excel (cp1252, ';', CRLF)"] / base
        print(f"French-Excel re-save within {TARGET}x of the original: "
              f"{'yes' if ratio <= TARGET else 'NO'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
