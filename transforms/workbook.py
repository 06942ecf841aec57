"""Excel workbooks (``.xlsx``, ``.xlsm``) in landing/: one sheet, rendered as the CSV its tool writes.

Campaigns send workbooks as often as CSV files: a NationBuilder export opened and saved by a
volunteer, a VAN list saved "as Excel". Isoloir reads the first sheet, or the sheet a profile
names (``SourceProfile.sheet``), with python-calamine (Rust; measured 200 k rows against
openpyxl in read-only mode with ``benchmarks/bench_xlsx_readers.py``: calamine was the faster,
see the README's benchmark table).

**Design: convert, then read as CSV.** The sheet is written once, cell by cell, as a UTF-8,
comma-delimited CSV in the secure work zone (a private folder of ``work/``, mode 0700, the
file 0600), under the workbook's own file name so that every message names the file the
engineer dropped; it is deleted as soon as the reader is done (:func:`sheet_as_csv` is a
context manager). Then every rule of the CSV path applies unchanged: header matching and
aliases, the per-file day/month order, decimal detection, the structural scan, chunk planning
for parallel staging, and row numbers. Reading cells straight into chunks would have meant a
second implementation of each of these, and a workbook cannot be streamed cheaply anyway (an
``.xlsx`` is a zip of XML; the sheet is decompressed whole by any reader).

**Cells are rendered as the profile's CSV would hold them**, so a workbook loads to the same
warehouse content as the CSV it was saved from:

* a number cell holding a whole number is written without a decimal part (an id ``123``
  stays ``123``, never ``123.0``); other numbers in their shortest exact form with ``.``;
* a date cell is an ISO date (``1985-01-19``), a date-time cell an ISO timestamp
  (``2026-03-14 10:22:00``; midnight is the date alone), a time cell ``10:22:00``: ISO 8601 is
  accepted by every date column whatever the profile's local format;
* a text cell is written as it is: a postcode ``01000`` stored as text keeps its zero;
* a boolean cell is ``true``/``false``; an empty cell, or a formula without a cached value,
  is empty; a formula is read through its cached value (what Excel last computed);
* line breaks inside a cell become spaces, and an empty row becomes an empty line, so line
  *k* of the CSV is row *k* of the sheet: errors name the sheet's row.

Rules (stable names, as in :mod:`transforms.read`): ``workbook_encrypted`` (a
password-protected workbook: an encrypted OLE container), ``workbook_unreadable`` (not a
readable ``.xlsx``: corrupt, truncated, a legacy ``.xls``), ``workbook_sheet`` (the profile's
sheet is absent). Messages never quote a cell, and never chain the reader's own error (it may).

>>> render_cell(123.0), render_cell(12.5), render_cell("01000"), render_cell(True)
('123', '12.5', '01000', 'true')
>>> import datetime
>>> render_cell(datetime.date(1985, 1, 19)), render_cell(datetime.datetime(2026, 3, 14, 10, 22))
('1985-01-19', '2026-03-14 10:22:00')
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from core.errors import InputFileError

log = logging.getLogger(__name__)

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\x0b": " "})


def is_workbook(path: Path) -> bool:
    """Whether ``path`` is read as an Excel workbook (by its suffix)."""
    return path.suffix.lower() in WORKBOOK_SUFFIXES


def render_cell(value: object) -> str:
    """A cell's value as the tool's CSV export would hold it (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return ""
        if value.is_integer() and abs(value) < 2 ** 63:
            return str(int(value))
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text or "E" in text else text
    if isinstance(value, datetime):
        if value.time() == time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="seconds")
    if isinstance(value, timedelta):
        return str(value)
    return str(value).translate(_LINE_BREAKS)


@dataclass(frozen=True)
class SheetCsv:
    """A workbook sheet converted: the CSV to read, the sheet's name, its rows."""

    path: Path
    sheet: str
    rows: int


def _check_container(path: Path) -> None:
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(_OLE_MAGIC):
        data = path.read_bytes()
        if _ENCRYPTED_STREAM in data:
            raise InputFileError(path.name, "workbook_encrypted", "the workbook is protected by "
                                 "a password: save it again without one (or export as CSV)")
        raise InputFileError(path.name, "workbook_unreadable", "an OLE file, not an .xlsx "
                             "workbook (a legacy .xls?): save it as .xlsx or CSV")
    if not head.startswith(_ZIP_MAGIC):
        raise InputFileError(path.name, "workbook_unreadable",
                             "not an .xlsx workbook (no zip container): corrupt or mislabelled")


def sheet_names(path: Path) -> list[str]:
    """The workbook's sheet names (raises ``workbook_*`` rules like :func:`sheet_as_csv`)."""
    from python_calamine import CalamineWorkbook

    _check_container(path)
    try:
        book = CalamineWorkbook.from_path(str(path))
    except Exception:  # noqa: BLE001 - the reader's message may quote the file's content
        raise InputFileError(path.name, "workbook_unreadable",
                             "the workbook cannot be opened: corrupt or truncated") from None
    try:
        return list(book.sheet_names)
    finally:
        book.close()


def write_sheet_csv(path: Path, target: Path, sheet: str | None = None) -> SheetCsv:
    """Write sheet ``sheet`` (default: the first) of workbook ``path`` as UTF-8 CSV ``target``."""
    from python_calamine import CalamineWorkbook

    _check_container(path)
    try:
        book = CalamineWorkbook.from_path(str(path))
    except Exception:  # noqa: BLE001 - never chained: the reader's message may quote content
        raise InputFileError(path.name, "workbook_unreadable",
                             "the workbook cannot be opened: corrupt or truncated") from None
    try:
        names = list(book.sheet_names)
        if not names:
            raise InputFileError(path.name, "workbook_unreadable", "the workbook has no sheet")
        if sheet is not None and sheet not in names:
            raise InputFileError(path.name, "workbook_sheet", f"the profile reads sheet "
                                 f"{sheet!r}, which this workbook does not have")
        name = sheet if sheet is not None else names[0]
        rows = 0
        try:
            data = book.get_sheet_by_name(name)
            first_row = data.start[0] if data.start else 0
            with target.open("w", encoding="utf-8", newline="") as handle:
                target.chmod(0o600)
                writer = csv.writer(handle, lineterminator="\n")
                handle.write("\n" * first_row)  # keep line k = row k of the sheet
                for row in data.iter_rows():
                    cells = [render_cell(v) for v in row]
                    if any(cells):
                        writer.writerow(cells)
                    else:
                        handle.write("\n")
                    rows += 1
        except InputFileError:
            raise
        except Exception:  # noqa: BLE001 - a corrupt sheet part: never chain the message
            raise InputFileError(path.name, "workbook_unreadable",
                                 "a sheet of the workbook cannot be read: corrupt or "
                                 "truncated") from None
        return SheetCsv(target, name, rows)
    finally:
        book.close()


@contextmanager
def sheet_as_csv(path: Path, work_dir: Path, sheet: str | None = None) -> Iterator[SheetCsv]:
    """The sheet of workbook ``path`` as a CSV file under ``work_dir``, deleted on exit.

    The CSV bears the workbook's file name (inside a private folder), so every message of the
    reader names the workbook.
    """
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = Path(tempfile.mkdtemp(prefix="workbook-", dir=work_dir))
    try:
        folder.chmod(0o700)
        converted = write_sheet_csv(path, folder / path.name, sheet)
        log.debug("%s: sheet converted for reading (%d rows)", path.name, converted.rows)
        yield converted
    finally:
        shutil.rmtree(folder, ignore_errors=True)
