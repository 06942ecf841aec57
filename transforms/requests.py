"""Erasure and objection requests: read and normalize the identifiers a data subject gave.

A request names a person by the identifiers ingest links people with: an e-mail, a phone
number, or a source-system id written ``NAMESPACE:ID`` (the profile's namespace, as ingest
namespaces it: ``nb:123`` for NationBuilder, ``van:456`` for NGP VAN, ``pap:789`` for the
French canvassing app; a built-in profile name such as ``nationbuilder_people:123`` is
accepted too). Each value is normalized by ingest's own functions (trimmed, NationBuilder's
leading ``'`` dropped, e-mails NFKC-lowercased, phones to E.164), because a pseudonym of
a value written differently would match nobody.

The request file is a CSV with a header line naming some of these columns (any order,
``,`` or ``;`` separated, UTF-8 or cp1252)::

    email,phone,source_id,reason
    jeanne@example.fr,06 12 34 56 78,,erasure
    ,,van:456,objection

One line is one request (one person); its non-empty identifiers are all searched for.
``reason`` is ``erasure`` (GDPR Art. 17) or ``objection`` (Art. 21); empty means the
default given by the caller. Any other column, a line with no identifier, or a value that
does not normalize stops the whole file with :class:`~core.errors.InputFileError`, which
names the file, the line (the header is line 1), the column and the rule, never the value.

Requests hold raw identifiers: they live in memory only, and never show in ``repr``.

>>> r = parse_identifiers(emails=[" Jeanne@Example.FR "], source_ids=["nb:'123"])
>>> r.identifiers
(('email', 'jeanne@example.fr'), ('source_id', 'nb:123'))
>>> "jeanne" in repr(r)
False
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa

from core.errors import InputFileError
from transforms.normalize import normalize_email
from transforms.phones import normalize_phones_arrow
from transforms.sources import BUILTIN_PROFILES

Reason = Literal["erasure", "objection"]
REASONS: tuple[Reason, ...] = ("erasure", "objection")
REQUEST_COLUMNS = ("email", "phone", "source_id", "reason")
IDENTIFIER_COLUMNS = ("email", "phone", "source_id")
#: A profile namespace (the same rule as a YAML profile's ``namespace``).
NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
_PLAIN_HEADER = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]{0,30}$")
_NAMESPACE_OF_PROFILE = {p.name: p.namespace for p in BUILTIN_PROFILES.values()}


@dataclass(frozen=True)
class Request:
    """One data subject's request: a reason and normalized ``(kind, value)`` identifiers."""

    reason: Reason
    identifiers: tuple[tuple[str, str], ...] = field(repr=False)

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}")
        if not self.identifiers:
            raise ValueError("a request needs at least one identifier")


class RequestError(InputFileError):
    """A request (option or file line) breaks a rule; names where, never the value."""


def parse_identifiers(*, emails: Sequence[str] = (), phones: Sequence[str] = (),
                      source_ids: Sequence[str] = (), reason: Reason = "erasure",
                      where: str = "command line") -> Request:
    """One request from identifiers given as options (``--email``, ``--phone``, ``--source-id``)."""
    found: list[tuple[str, str]] = []
    for kind, option, values in (("email", "--email", emails), ("phone", "--phone", phones),
                                 ("source_id", "--source-id", source_ids)):
        for number, value in enumerate(values, 1):
            found.append((kind, _normalize_one(kind, value, where=where, row=None,
                                               column=f"{option} #{number}")))
    if not found:
        raise RequestError(where, "empty_request",
                           "give at least one --email, --phone or --source-id, or --from-file")
    return Request(reason, tuple(sorted(set(found))))


def read_request_file(path: Path, *, default_reason: Reason = "erasure") -> list[Request]:
    """Every request of a request file, or :class:`RequestError` for the first broken rule."""
    name = path.name
    text = _decode(path.read_bytes(), name)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise RequestError(name, "header", "the first line must name the columns: "
                           + ", ".join(REQUEST_COLUMNS))
    delimiter = max((",", ";", "\t"), key=lines[0].count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    for position, column in enumerate(header, 1):
        if column in REQUEST_COLUMNS:
            continue
        shown = f"column {column!r}" if _PLAIN_HEADER.match(column) else f"column {position}"
        raise RequestError(name, "header", f"{shown} is not one of "
                           f"{', '.join(REQUEST_COLUMNS)} (is the first line a header?)", row=1)
    if len(set(header)) != len(header):
        raise RequestError(name, "header", "a column is named twice", row=1)
    if not set(header) & set(IDENTIFIER_COLUMNS):
        raise RequestError(name, "header", "no identifier column (email, phone, source_id)",
                           row=1)
    requests: list[Request] = []
    for cells in reader:
        row = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise RequestError(name, "field_count", f"{len(cells)} fields, the header has "
                               f"{len(header)}", row=row)
        values = dict(zip(header, cells, strict=True))
        reason_text = values.get("reason", "").strip().lower() or default_reason
        if reason_text not in REASONS:
            raise RequestError(name, "reason_value", "reason must be erasure or objection",
                               row=row, column="reason")
        found = [(kind, _normalize_one(kind, values[kind], where=name, row=row, column=kind))
                 for kind in IDENTIFIER_COLUMNS if values.get(kind, "").strip()]
        if not found:
            raise RequestError(name, "empty_request", "no email, phone or source_id on this line",
                               row=row)
        requests.append(Request(reason_text, tuple(sorted(set(found)))))  # type: ignore[arg-type]
    return requests


def _decode(data: bytes, name: str) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise RequestError(name, "encoding", "the file must be UTF-8 or cp1252")  # pragma: no cover


def _normalize_one(kind: str, value: str, *, where: str, row: int | None, column: str) -> str:
    if kind == "email":
        normalized = _first(normalize_email(pd.Series([value], dtype="str")))
        rule, detail = "email_format", "not a valid e-mail address"
    elif kind == "phone":
        cleaned = value.strip().lstrip("'").strip()
        normalized = normalize_phones_arrow(pa.array([cleaned or None], type=pa.string()))[0].as_py()
        rule, detail = "phone_format", "not a valid phone number"
    else:
        normalized = _source_id(value)
        rule, detail = "source_id_format", "write NAMESPACE:ID, e.g. nb:123 or van:456"
    if not normalized:
        raise RequestError(where, rule, detail, row=row, column=column)
    return normalized


def _source_id(value: str) -> str | None:
    """``nb:123`` as ingest builds it: ``namespace + ":" + the trimmed id`` (``'`` dropped)."""
    namespace, sep, raw_id = value.strip().partition(":")
    namespace = _NAMESPACE_OF_PROFILE.get(namespace.strip(), namespace.strip())
    raw_id = raw_id.strip().lstrip("'").strip()
    if not sep or not raw_id or not NAMESPACE.match(namespace):
        return None
    return f"{namespace}:{raw_id}"


def _first(values: pd.Series) -> str | None:
    value = values.iloc[0]
    return None if pd.isna(value) else str(value)


def identifiers_of(requests: Iterable[Request]) -> list[tuple[str, str]]:
    """Every ``(kind, value)`` of several requests (for one batch of pseudonyms)."""
    return sorted({pair for r in requests for pair in r.identifiers})
