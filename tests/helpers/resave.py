"""Re-saved variants of an export, the way people's tools re-save them (issue #15).

Each variant holds the same records as the original, written in another dialect: what a file
becomes after a pass through French Excel, Excel's "Unicode text", a script that drops the
BOM, a tool that writes ``|``, an API that writes ISO 8601, a colleague who writes dd/mm. Every
variant must normalize to exactly the original's normalized content; a corpus test can run
every variant of every file through the pipeline.

Only synthetic exports are re-saved (``transforms.synth``); nothing here touches real data.

>>> sorted(VARIANTS)[:3]
['aliased_headers', 'ddmm_dates', 'french_excel']
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from transforms.sources import SourceProfile

DATE_FIELDS = ("birth_date", "created_at", "contact_date", "donation_date")


@dataclass(frozen=True)
class Export:
    """An export as records: header and rows of strings (empty cells as "")."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Dialect:
    encoding: str  # a Python codec; utf-8-sig and utf-16 write a BOM
    delimiter: str
    eol: str


def read_export(path: Path, profile: SourceProfile) -> Export:
    """Read a synthetic export in its tool's own dialect (UTF-8, with or without BOM, or cp1252)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=profile.delimiter or ",")
    header, *rows = list(reader)
    return Export(header, rows)


def write_export(path: Path, export: Export, dialect: Dialect) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=dialect.delimiter, lineterminator=dialect.eol)
    writer.writerow(export.header)
    writer.writerows(export.rows)
    path.write_bytes(buf.getvalue().encode(dialect.encoding, errors="replace"))
    return path


def _columns(profile: SourceProfile, fields: tuple[str, ...]) -> dict[str, str]:
    return {f: profile.fields[f] for f in fields if f in profile.fields}


def _parse(value: str, fmt: str) -> date | None:
    try:
        return datetime.strptime(value.strip().lstrip("'"), fmt).date()
    except ValueError:
        return None  # left as written (a dirty cell stays dirty in every variant)


def _map_dates(export: Export, profile: SourceProfile,
               write: Callable[[date, str, int], str]) -> Export:
    """Rewrite every date cell ``write(day, internal field, row index)``."""
    where = {f: export.header.index(c) for f, c in _columns(profile, DATE_FIELDS).items()
             if c in export.header}
    rows = []
    for i, row in enumerate(export.rows):
        new = list(row)
        for f, at in where.items():
            day = _parse(row[at], profile.date_format) if row[at] else None
            if day is not None:
                new[at] = write(day, f, i)
        rows.append(new)
    return Export(list(export.header), rows)


def _iso(day: date, field: str, i: int) -> str:
    """Birth dates as ISO dates; other dates as timestamps, with Z or an offset."""
    if field == "birth_date":
        return day.isoformat()
    zone = ("+01:00", "Z", "+02:00", "-05:00")[i % 4]
    return f"{day.isoformat()}T{8 + i % 12:02d}:{i % 60:02d}:00{zone}"


def _french_amount(value: str) -> str:
    """``1234.50`` as French Excel shows it: ``1 234,50`` (a space groups thousands)."""
    text = value.strip()
    if not text or "." not in text:
        return text
    units, cents = text.split(".", 1)
    if units.isdigit() and len(units) > 3:
        units = f"{int(units):,}".replace(",", " ")
    return f"{units},{cents}"


def _map_amounts(export: Export, profile: SourceProfile, fn: Callable[[str], str]) -> Export:
    column = profile.fields.get("amount")
    if column is None or column not in export.header:
        return export
    at = export.header.index(column)
    rows = [[fn(v) if j == at else v for j, v in enumerate(row)] for row in export.rows]
    return Export(list(export.header), rows)


#: Other spellings of raw columns, as a person re-typing a header would write them.
ALIASED = {"email": "E-mail", "Email": "Courriel", "primary_zip": "Code postal",
           "phone_number": "Téléphone", "mobile_number": "Téléphone portable",
           "code_postal": "CP", "téléphone": "TELEPHONE", "zip": "Code Postal", "Zip5": "ZIP",
           "born_at": "Born At", "résultat": "Resultat", "date_passage": "Date passage"}
EXTRA_COLUMN = "Commentaire libre"


def _aliased(export: Export, profile: SourceProfile) -> Export:
    """Headers re-typed (aliases, case, accents) and an unknown free-text column added."""
    header = [ALIASED.get(c, c) for c in export.header] + [EXTRA_COLUMN]
    rows = [[*row, f"texte libre {i} Zephyrine"] for i, row in enumerate(export.rows)]
    return Export(header, rows)


def _original_dialect(profile: SourceProfile) -> Dialect:
    return Dialect("utf-8", profile.delimiter or ",", "\n")


def _variant(name: str, export: Export, profile: SourceProfile) -> tuple[Export, Dialect]:
    delimiter = profile.delimiter or ","
    if name == "french_excel":
        return (_map_amounts(export, profile, _french_amount), Dialect("cp1252", ";", "\r\n"))
    if name == "utf16_tab":
        return export, Dialect("utf-16", "\t", "\r\n")
    if name == "utf8_no_bom":
        return export, Dialect("utf-8", delimiter, "\n")
    if name == "pipe":
        return export, Dialect("utf-8", "|", "\n")
    if name == "iso_dates":
        return _map_dates(export, profile, _iso), _original_dialect(profile)
    if name == "ddmm_dates":
        return (_map_dates(export, profile, lambda d, f, i: d.strftime("%d/%m/%Y")),
                _original_dialect(profile))
    if name == "mmdd_dates":
        return (_map_dates(export, profile, lambda d, f, i: d.strftime("%m/%d/%Y")),
                _original_dialect(profile))
    if name == "aliased_headers":
        return _aliased(export, profile), _original_dialect(profile)
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")


VARIANTS = ("french_excel", "utf16_tab", "utf8_no_bom", "pipe", "iso_dates", "ddmm_dates",
            "mmdd_dates", "aliased_headers")


def resave(path: Path, profile: SourceProfile, variant: str, out_dir: Path) -> Path:
    """Write ``variant`` of the export at ``path`` into ``out_dir`` (same file name stem)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if variant == "xlsx":
        return write_workbook(out_dir / f"{path.stem}.xlsx", read_export(path, profile), profile)
    export, dialect = _variant(variant, read_export(path, profile), profile)
    return write_export(out_dir / f"{path.stem}.{variant}{path.suffix}", export, dialect)


_INTEGER = re.compile(r"[1-9][0-9]{0,14}|0")
_DECIMAL = re.compile(r"[0-9]+\.[0-9]+")


def excel_cell(value: str, date_format: str | None) -> object:
    """A CSV cell as Excel stores it once the file is saved as a workbook: whole numbers
    without a leading zero as number cells (ids, postcodes like 75011), decimals as number
    cells, dates of the profile's format as date cells, ``true``/``false`` as booleans;
    anything else (a postcode ``01000``, a phone ``06 12...``, ``+33...``) as text."""
    if not value:
        return None
    if _INTEGER.fullmatch(value):
        return int(value)
    if _DECIMAL.fullmatch(value):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    if date_format is not None:
        day = _parse(value, date_format)
        if day is not None:
            return day
    return value


def write_workbook(path: Path, export: Export, profile: SourceProfile) -> Path:
    """Save ``export`` as an ``.xlsx`` workbook (one sheet), cells typed as Excel types them."""
    from openpyxl import Workbook

    dates = {export.header.index(c) for c in _columns(profile, DATE_FIELDS).values()
             if c in export.header}
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Export")
    sheet.append(list(export.header))
    for row in export.rows:
        sheet.append([excel_cell(v, profile.date_format if i in dates else None)
                      for i, v in enumerate(row)])
    book.save(path)
    return path
