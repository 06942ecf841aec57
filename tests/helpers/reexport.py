"""Exports as campaigns send them over time: the same snapshot again, re-ordered, grown.

Records are read and written with :mod:`csv` in the synthetic export's own dialect, as a
script re-dumping the tool's export would (a record may span lines).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path


def _dialect(path: Path) -> tuple[str, str]:
    encoding = "cp1252" if path.name == "porte_a_porte.csv" else "utf-8-sig"
    delimiter = "\t" if path.suffix == ".txt" else ";" if path.name == "porte_a_porte.csv" \
        else ","
    return encoding, delimiter


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and records of a synthetic export (records may span lines: csv reads them)."""
    encoding, delimiter = _dialect(path)
    with path.open(encoding=encoding, newline="") as handle:
        records = list(csv.reader(handle, delimiter=delimiter))
    return records[0], records[1:]


def write_rows(path: Path, like: Path, header: list[str], rows: list[list[str]]) -> Path:
    """Write records as a script re-dumping the tool's export would (same dialect)."""
    encoding, delimiter = _dialect(like)
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle, delimiter=delimiter, lineterminator="\n").writerows([header, *rows])
    return path


def reexport(src: Path, dest: Path, *, extra: list[list[str]] = (), seed: int = 0) -> Path:  # type: ignore[assignment]
    """The same export the next day: the records in another order, plus ``extra`` new ones."""
    header, rows = read_rows(src)
    random.Random(seed).shuffle(rows)
    return write_rows(dest, src, header, rows + list(extra))


def rows_with(src: Path, column: str, value: str, count: int) -> list[list[str]]:
    """``count`` records of ``src`` copied with ``column`` set to ``value`` (new events)."""
    header, rows = read_rows(src)
    at = header.index(column)
    return [[value if i == at else cell for i, cell in enumerate(row)] for row in rows[:count]]
