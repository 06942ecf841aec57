"""Dates as campaign exports write them, whatever the profile declares.

Every date and timestamp column accepts:

* **ISO 8601**: ``YYYY-MM-DD``, optionally followed by a time (after ``T`` or a space) with
  ``Z`` or an offset (``2026-03-14T10:22:00+01:00``). The date kept is the calendar date as
  written, at the writer's own offset (not converted to UTC): it is what the same export
  shows as ``03/14/2026 10:22``.
* **day, month and year as numbers** separated by ``/``, ``-`` or ``.`` (``14/03/2026``,
  ``3/14/26``, ``14.03.2026``), with a time after a space ignored. Whether the first number is
  the day or the month is decided **per file and per column** (:func:`decide_order`): a value
  whose first number is above 12 (``25/12/2020``) proves dd/mm, one whose second number is
  above 12 proves mm/dd; when no value decides, the profile's order applies
  (:func:`default_order`) and the reader says the order was *assumed*. A column holding values
  of both kinds is rejected (rule ``date_order``, with the row of the first value that
  contradicts the rows before it).
* ``YYYY/MM/DD`` (and with ``.``), and the profile's own strptime format (``%d %b %Y``...).

**Two-digit years** follow the POSIX ``strptime`` pivot: ``00``-``68`` are 2000-2068,
``69``-``99`` are 1969-1999. Birth dates are the exception: a birth date cannot be after the
file's reference date (its newest ``created_at``), so a two-digit birth year that the pivot puts
after it belongs to the previous century (``01/19/45`` is 1945, not 2045; with a reference date
in 2026, ``01/19/20`` stays 2020). Four-digit years are never moved.

All work runs once per distinct value of a chunk (dates repeat a lot), vectorized with pyarrow
where the value is in a common shape. No function here returns or raises a value: callers
name the row and the column.

>>> import pyarrow as pa
>>> parse_dates(pa.array(["03/14/2026", "2026-03-14T10:22:00+01:00", "3/14/26", None]),
...             "%m/%d/%Y").to_pylist()
[datetime.date(2026, 3, 14), datetime.date(2026, 3, 14), datetime.date(2026, 3, 14), None]
>>> parse_dates(pa.array(["14/03/2026", "01/02/2026"]), "%m/%d/%Y", order="dmy").to_pylist()
[datetime.date(2026, 3, 14), datetime.date(2026, 2, 1)]
>>> ev = order_evidence(pa.array(["01/02/2026", "14/03/2026"]), rows=[2, 3])
>>> (ev.first_dmy, ev.first_mdy, ev.ambiguous)
(3, None, True)
>>> decide_order(ev, "mdy")
('dmy', False)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Order = Literal["dmy", "mdy"]
ORDER_LABELS: dict[str, str] = {"dmy": "dd/mm", "mdy": "mm/dd"}
#: Two-digit years up to this one are 20yy, the others 19yy (POSIX strptime ``%y``).
PIVOT_YEAR = 68

_TIME_SUFFIX = r"[ T].*$"
#: What may follow a date: a time, with seconds, fractions, AM/PM and a zone or offset.
_TIME = (r"[T ]\s*\d{1,2}(?::\d{2}){1,2}(?:[.,]\d+)?\s*(?:[AaPp]\.?[Mm]\.?)?\s*"
         r"(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?")
_WITH_TIME = rf"^[^ T]*(?:{_TIME})?$"
_NUMERIC = re.compile(r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{2}|\d{4})$")
_YMD = re.compile(r"^(\d{4})([/.\-])(\d{1,2})\2(\d{1,2})$")
_NUMERIC_PATTERN = r"^(?P<a>\d{1,2})[/.\-](?P<b>\d{1,2})[/.\-](?:\d{2}|\d{4})$"
_ISO = "%Y-%m-%d"


class MixedDateOrder(ValueError):  # noqa: N818 - a domain name, not an "...Error" suffix
    """A column holds values only valid as dd/mm and others only valid as mm/dd.

    ``row`` is the first row that contradicts the rows before it (never the value).
    """

    def __init__(self, row: int, first_order: Order) -> None:
        self.row = row
        self.first_order = first_order
        other = "mdy" if first_order == "dmy" else "dmy"
        super().__init__(f"earlier rows are only valid as {ORDER_LABELS[first_order]}, this one "
                         f"only as {ORDER_LABELS[other]}")


def default_order(date_format: str) -> Order:
    """The profile's order: mm/dd when its format puts ``%m`` before ``%d``, else dd/mm.

    A format without a numeric day and month before the year (ISO ``%Y-%m-%d``) says nothing
    about slashed dates; the European dd/mm applies.

    >>> default_order("%m/%d/%Y"), default_order("%d/%m/%Y"), default_order("%Y-%m-%d")
    ('mdy', 'dmy', 'dmy')
    """
    m, d, y = (date_format.find(c) for c in ("%m", "%d", "%Y"))
    if y < 0:
        y = date_format.find("%y")
    if 0 <= m < d and (y < 0 or d < y):
        return "mdy"
    return "dmy"


def profile_order(date_format: str, declared: str | None = None) -> Order:
    """The order a profile assumes when no value decides: its declared ``date_order``, else
    :func:`default_order` of its format."""
    if declared is not None:
        if declared not in ORDER_LABELS:
            raise ValueError(f"date order must be dmy or mdy, not {declared!r}")
        return "dmy" if declared == "dmy" else "mdy"
    return default_order(date_format)


@dataclass(frozen=True)
class OrderEvidence:
    """What a column's numeric dates say about their order: the first row of a value only
    valid as dd/mm, the first row of one only valid as mm/dd, and whether any value was
    ambiguous (both numbers 12 or below, and different)."""

    first_dmy: int | None = None
    first_mdy: int | None = None
    ambiguous: bool = False
    numeric: bool = False  # any value in the numeric day/month/year shape

    def merge(self, later: OrderEvidence) -> OrderEvidence:
        """This evidence followed by ``later``'s (rows of ``later`` come after)."""
        return OrderEvidence(
            self.first_dmy if self.first_dmy is not None else later.first_dmy,
            self.first_mdy if self.first_mdy is not None else later.first_mdy,
            self.ambiguous or later.ambiguous, self.numeric or later.numeric)


def _date_parts(values: pa.Array, keep_time: bool = False) -> pa.Array:
    """The date part of each value: trimmed, NationBuilder's ``'`` dropped, a time cut off
    (unless ``keep_time``)."""
    text = pc.utf8_trim_whitespace(values)
    text = pc.utf8_ltrim(text, characters="'")
    return text if keep_time else pc.replace_substring_regex(text, _TIME_SUFFIX, "")


def order_evidence(values: pa.Array | pa.ChunkedArray,
                   rows: Sequence[int] | np.ndarray) -> OrderEvidence:
    """Order evidence of one column; ``rows[i]`` is the row number of ``values[i]``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return OrderEvidence()
    encoded = pc.dictionary_encode(values)
    found = pc.extract_regex(_date_parts(encoded.dictionary), _NUMERIC_PATTERN)
    a = pc.cast(pc.struct_field(found, [0]), pa.int16())
    b = pc.cast(pc.struct_field(found, [1]), pa.int16())
    a_np = pc.fill_null(a, 0).to_numpy(zero_copy_only=False)
    b_np = pc.fill_null(b, 0).to_numpy(zero_copy_only=False)
    dmy = (a_np > 12) & (a_np <= 31) & (b_np >= 1) & (b_np <= 12)
    mdy = (b_np > 12) & (b_np <= 31) & (a_np >= 1) & (a_np <= 12)
    ambiguous = bool(((a_np >= 1) & (a_np <= 12) & (b_np >= 1) & (b_np <= 12)
                      & (a_np != b_np)).any())
    indices = encoded.indices
    row_numbers = np.asarray(rows)

    def first_row(mask: np.ndarray) -> int | None:
        if not mask.any():
            return None
        hit = pc.is_in(indices, value_set=pa.array(np.flatnonzero(mask), type=indices.type))
        at = pc.index(hit, True).as_py()
        return int(row_numbers[at]) if at is not None and at >= 0 else None

    numeric = bool(pc.any(pc.is_valid(found)).as_py())
    return OrderEvidence(first_row(dmy), first_row(mdy), ambiguous, numeric)


def decide_order(evidence: OrderEvidence, default: Order) -> tuple[Order, bool]:
    """The column's order and whether it was assumed (no value decided it).

    Raises :class:`MixedDateOrder` when values prove both orders.
    """
    if evidence.first_dmy is not None and evidence.first_mdy is not None:
        if evidence.first_dmy < evidence.first_mdy:
            raise MixedDateOrder(evidence.first_mdy, "dmy")
        raise MixedDateOrder(evidence.first_dmy, "mdy")
    if evidence.first_dmy is not None:
        return "dmy", False
    if evidence.first_mdy is not None:
        return "mdy", False
    return default, evidence.ambiguous


def parse_dates(values: pa.Array | pa.ChunkedArray, date_format: str, *,
                order: Order | None = None, latest: date | None = None) -> pa.Array:
    """Dates of a string array (date32); values that are not a date become null.

    ``order`` is the column's day/month order (default: the profile's, see
    :func:`default_order`). ``latest`` is set for birth dates: a two-digit year that the
    pivot puts after it moves back a century. pyarrow parses the distinct date parts in the
    common shapes; its result is kept only where formatting it back gives the text (pyarrow
    rolls 02/30 over to 03/02); the rest (unpadded, two-digit years, other separators, the
    profile's own format) is parsed in Python, once per distinct value.
    """
    if isinstance(values, pa.ChunkedArray):  # callers may hand over a column of a table
        values = values.combine_chunks()
    if len(values) == 0:
        return pa.array([], type=pa.date32())
    order = order or default_order(date_format)
    encoded = pc.dictionary_encode(values)
    parts = _date_parts(encoded.dictionary)
    timed = pc.match_substring_regex(_date_parts(encoded.dictionary, keep_time=True), _WITH_TIME)
    local = "%m/%d/%Y" if order == "mdy" else "%d/%m/%Y"
    parsed: pa.Array | None = None
    formats = (local, _ISO) if _is_numeric_format(date_format) else (local, _ISO, date_format)
    for fmt in dict.fromkeys(formats):
        stamps = pc.strptime(parts, format=fmt, unit="s", error_is_null=True)
        exact = pc.fill_null(pc.equal(pc.strftime(stamps, format=fmt), parts), False)
        days = pc.if_else(pc.and_(exact, timed), pc.cast(stamps, pa.date32()),
                          pa.scalar(None, pa.date32()))
        parsed = days if parsed is None else pc.coalesce(parsed, days)
    assert parsed is not None
    redo = pc.indices_nonzero(pc.and_(pc.is_null(parsed), pc.is_valid(parts))).to_pylist()
    if redo:
        fixed = parsed.to_pylist()
        originals = encoded.dictionary.to_pylist()
        part_list = parts.to_pylist()
        for i in redo:
            fixed[i] = parse_date_text(originals[i], date_format, order=order, latest=latest,
                                       part=part_list[i])
        parsed = pa.array(fixed, type=pa.date32())
    return pc.take(parsed, encoded.indices)


def parse_date_text(text: str, date_format: str, *, order: Order | None = None,
                    latest: date | None = None, part: str | None = None) -> date | None:
    """One date (see the module docstring for the shapes accepted), or ``None``."""
    text = text.strip().lstrip("'").strip()
    if not text:
        return None
    if part is None:
        part = re.sub(_TIME_SUFFIX, "", text)
    timed = re.fullmatch(_WITH_TIME, text) is not None
    order = order or default_order(date_format)
    numeric = _NUMERIC.match(part)
    if not timed and (numeric is not None or _YMD.match(part)):
        return None  # a date followed by something that is not a time
    try:
        if numeric is not None:
            first, _, second, year_text = numeric.groups()
            day, month = (first, second) if order == "dmy" else (second, first)
            return _make(int(year_text), int(month), int(day), two_digit=len(year_text) == 2,
                         latest=latest)
        ymd = _YMD.match(part)
        if ymd is not None:
            return date(int(ymd.group(1)), int(ymd.group(3)), int(ymd.group(4)))
    except ValueError:
        return None
    for candidate in (text, part) if timed else (text,):
        try:
            return datetime.strptime(candidate, date_format).date()
        except ValueError:
            continue
    return None


def _make(year: int, month: int, day: int, *, two_digit: bool, latest: date | None) -> date:
    """The date; a two-digit year is pivoted, and moved back a century if after ``latest``
    (raises ``ValueError`` when the date does not exist, e.g. 29/02 of a common year)."""
    if not two_digit:
        return date(year, month, day)
    full = 2000 + year if year <= PIVOT_YEAR else 1900 + year
    if latest is not None and (full, month, day) > (latest.year, latest.month, latest.day):
        full -= 100
    return date(full, month, day)


def _is_numeric_format(date_format: str) -> bool:
    """A format of day, month and year numbers only (its order is decided per file)."""
    return re.fullmatch(r"%[dmyY]([/.\-])%[dmyY]\1%[dmyY]", date_format) is not None
