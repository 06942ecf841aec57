"""Reading landing files: sniff the dialect, prove the whole file well-formed, read it in chunks.

A landing file is read three times, each pass cheap and streaming (memory stays flat):

1. :func:`sniff_dialect` looks at the head of the file (and for the first non-ASCII bytes)
   to decide the encoding (UTF-8 with or without BOM, or cp1252) and the delimiter
   (``,`` ``;`` or tab), and checks the header against the profile.
2. :func:`validate_whole_file` scans every byte with vectorized passes (NumPy over 8 MiB
   blocks): encoding, binary content, quoting, the number of fields of every record and the
   size of every field. A file that breaks a rule is rejected here, before anything of it
   is loaded, with the file name, the line and the rule, never the offending value.
3. :func:`read_chunks` finds where each chunk of records starts (a lighter scan), parses
   each slice with pyarrow's CSV reader, keeping only the columns the profile maps (every
   other raw column is dropped as it is parsed), and yields pandas frames with the
   profile's internal field names and the line number of each record.

Rules (stable names, used in :class:`core.errors.InputFileError` and quarantine reports):

``empty_file``        the file holds no bytes (or only a BOM and whitespace)
``header_only``       a header and no data record
``encoding``          neither UTF-8 nor cp1252: UTF-16/32, bytes undefined in cp1252, or a
                      file that is not in the encoding its profile declares
``mixed_encoding``    mostly one encoding with bytes of another: invalid UTF-8 in a UTF-8
                      file, a UTF-8 BOM followed by cp1252 bytes, UTF-8 sequences in cp1252
``delimiter``         the header does not split on the expected delimiter (or on any of
                      ``,`` ``;`` tab)
``missing_column``    a required column is absent from the header (the column is named)
``duplicate_column``  a column the profile reads appears twice in the header
``truncated_line``    a record has fewer fields than the header (e.g. a cut last line)
``extra_fields``      a record has more fields than the header (an unquoted delimiter)
``unbalanced_quote``  a quote is opened and never closed, or a quote sits inside a field
                      instead of around it
``field_too_large``   a field longer than 64 KiB
``binary_content``    NUL bytes, or a high ratio of control bytes
``date_format``, ``amount_format``, ``negative_amount``: raised by :mod:`transforms.normalize`.

Error messages carry the file name, the line (``row``, 1-based, header = line 1), the column
name where it helps, and the rule. Messages of the underlying parsers are never passed on:
they quote the offending line.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import BinaryIO, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import InputFileError, InvariantViolation
from transforms.dates import (
    ORDER_LABELS,
    MixedDateOrder,
    Order,
    OrderEvidence,
    decide_order,
    order_evidence,
    parse_dates,
    profile_order,
)
from transforms.headers import HeaderMatch, match_header
from transforms.sources import BUILTIN_PROFILES, SourceProfile, guess_profile_from_name

log = logging.getLogger(__name__)

UTF8_BOM = codecs.BOM_UTF8
CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
#: Python codec names a file may be read with (``utf-8-sig``: UTF-8 after a BOM).
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16-le", "utf-16-be")
_UTF16_BOMS = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}
MAX_FIELD_BYTES = 64 * 1024
#: Share of control bytes (other than tab, CR, LF) above which a file is binary, not text.
MAX_CONTROL_RATIO = 0.01
SAMPLE_BYTES = 64 * 1024
BLOCK_BYTES = 8 * 1024 * 1024
_MAX_HEADER_BYTES = 1024 * 1024
_MIN_RECORD_LIMIT = 4 * 1024 * 1024

_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13)) + b"\x7f"
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
#: UTF-8 encodings of accented Latin letters and of typographic punctuation (’ “ ” …):
#: two or three bytes that cp1252 text essentially never holds side by side ("Ã©", "â€™").
_UTF8_SIGNATURE = re.compile(rb"\xc3[\x80-\xbf]|\xc5[\x92\x93\xa0\xa1\xb8\xbd\xbe]|\xe2\x80[\x80-\xbf]")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_CP1252_UNDEFINED_BYTES = b"\x81\x8d\x8f\x90\x9d"
_C5_SECOND = np.array([0x92, 0x93, 0xA0, 0xA1, 0xB8, 0xBD, 0xBE], dtype=np.uint8)


def _utf8_signature_at(data: bytes) -> int | None:
    """Offset of the first :data:`_UTF8_SIGNATURE` match, or ``None``, vectorized (the regex
    was the slowest step of reading a cp1252 file: French text is full of ``â``)."""
    if b"\xc3" not in data and b"\xc5" not in data and b"\xe2\x80" not in data:
        return None  # memchr-fast: the usual case of a cp1252 file
    a = np.frombuffer(data, dtype=np.uint8)
    if len(a) < 2:
        return None
    first, second = a[:-1], a[1:]
    continuation = (second >= 0x80) & (second <= 0xBF)
    found = ((first == 0xC3) & continuation) | ((first == 0xC5) & np.isin(second, _C5_SECOND))
    if len(a) >= 3:
        third = a[2:]
        found[:-1] |= (a[:-2] == 0xE2) & (a[1:-1] == 0x80) & (third >= 0x80) & (third <= 0xBF)
    hits = np.flatnonzero(found)
    return int(hits[0]) if len(hits) else None


_QUOTE = 34


@dataclass(frozen=True)
class FileDialect:
    """How a file is written, as sniffed from the file itself.

    ``encoding`` is a Python codec name: ``utf-8-sig`` when a UTF-8 file starts with a BOM,
    ``utf-8``, ``cp1252`` or ``latin-1`` otherwise, or ``utf-16-le``/``utf-16-be`` (then
    ``has_bom`` says whether a UTF-16 BOM starts the file). ``decimal`` is the decimal mark of
    amounts; ``line_ending`` is ``CRLF``, ``LF`` or ``CR``, for reports only.
    """

    encoding: str
    delimiter: str
    decimal: str
    has_bom: bool
    line_ending: str = field(default="LF", compare=False)
    #: ``text``, or ``xlsx`` for a workbook sheet converted to CSV (``transforms.workbook``).
    container: str = field(default="text", compare=False)
    #: The sheet read, for a workbook.
    sheet: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.delimiter not in CANDIDATE_DELIMITERS:
            raise ValueError(f"unsupported delimiter {self.delimiter!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unsupported encoding {self.encoding!r}")
        if self.decimal not in (".", ","):
            raise ValueError(f"unsupported decimal mark {self.decimal!r}")

    @property
    def utf16(self) -> bool:
        return self.encoding.startswith("utf-16")

    @property
    def bom_bytes(self) -> int:
        """Length of the byte-order mark the file starts with (0 when none)."""
        if not self.has_bom:
            return 0
        return 2 if self.utf16 else len(UTF8_BOM)

    @property
    def codec(self) -> str:
        """The codec of the bytes after the BOM."""
        return "utf-8" if self.encoding == "utf-8-sig" else self.encoding

    def to_dict(self) -> dict[str, object]:
        """What a report shows: encoding, delimiter, decimal mark, BOM, line ending."""
        shown: dict[str, object] = {
            "encoding": self.codec, "delimiter": _show(self.delimiter), "decimal": self.decimal,
            "bom": self.has_bom, "line_ending": self.line_ending}
        if self.container != "text":
            shown.update({"format": self.container, "sheet": self.sheet})
        return shown

    def describe(self) -> str:
        """One line for a log: ``utf-8 with BOM, ',' delimited, '.' decimals, LF``."""
        if self.container != "text":
            return f"{self.container} workbook, sheet {self.sheet!r}"
        return (f"{self.codec}{' with BOM' if self.has_bom else ''}, {_show(self.delimiter)} "
                f"delimited, {self.decimal!r} decimals, {self.line_ending}")


def sha256_file(path: Path) -> str:
    """SHA-256 of the raw bytes: the key of an ingested file (a reload is a no-op)."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- sniffing


def sniff_dialect(path: Path, profile: SourceProfile | None = None) -> FileDialect:
    """Decide encoding, BOM, delimiter and line ending from the file itself.

    A UTF-16 file is known by its BOM (or, without one, by the zero bytes of its ASCII
    characters). Otherwise the encoding is decided by the first non-ASCII bytes anywhere in
    the file: valid UTF-8 there means UTF-8 (cp1252 text with accents never is), otherwise
    cp1252 (or latin-1 when the profile says so: they agree on every printable character).
    The delimiter is the one of ``,`` ``;`` tab ``|`` on which the header holds the profile's
    required columns, the profile's own delimiter first: the profile's dialect is a hint, not
    a requirement. ``decimal`` here is the profile's (or ``,`` for a ``;`` file without
    profile); :func:`plan_read` decides it from the amounts themselves.
    """
    name = path.name
    head = _read_head(path)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise InputFileError(name, "encoding", "UTF-32 is not supported: save the export as "
                             "UTF-8, UTF-16 or cp1252", row=1)
    utf16 = _utf16_kind(head)
    if utf16 is not None:
        encoding, has_bom = utf16
        text = _decode_head_utf16(head, encoding, has_bom, name)
        if not text.strip() and path.stat().st_size <= len(head):
            raise InputFileError(name, "empty_file", "the file holds no data")
        header_text = _first_text_line(text)
    else:
        has_bom = head.startswith(UTF8_BOM)
        body = head[len(UTF8_BOM):] if has_bom else head
        if not body.strip() and path.stat().st_size <= len(head):
            raise InputFileError(name, "empty_file", "the file holds no data")
        _check_binary(body, name, line_base=0)
        encoding = _detect_encoding(path, has_bom, profile)
        header_bytes = _first_line(body)
        if len(header_bytes) >= _MAX_HEADER_BYTES:
            raise InputFileError(name, "field_too_large", "the header line is longer than 1 MiB",
                                 row=1)
        try:
            header_text = header_bytes.decode("utf-8" if encoding.startswith("utf-8")
                                              else encoding)
        except UnicodeDecodeError:
            raise InputFileError(name, "mixed_encoding" if has_bom else "encoding",
                                 "the header is not in the file's encoding", row=1) from None
        text = body[:SAMPLE_BYTES].decode("latin-1")  # line endings only
    if not header_text.strip():
        raise InputFileError(name, "empty_file", "the first line is blank: no header", row=1)
    delimiter = _detect_delimiter(header_text, profile, name)
    decimal = profile.decimal if profile is not None else ("," if delimiter == ";" else ".")
    return FileDialect(encoding=encoding, delimiter=delimiter, decimal=decimal, has_bom=has_bom,
                       line_ending=_line_ending(text))


def _utf16_kind(head: bytes) -> tuple[str, bool] | None:
    """``(codec, has_bom)`` of a UTF-16 file, or ``None``.

    Without a BOM, UTF-16 text in a Latin script has a zero byte in (almost) every other
    position, which no UTF-8 or cp1252 export has (they fail ``binary_content`` otherwise).
    """
    for encoding, bom in _UTF16_BOMS.items():
        if head.startswith(bom):
            return encoding, True
    sample = head[:4096]
    sample = sample[:len(sample) - len(sample) % 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_zero, odd_zero = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_zero > 0.7 and even_zero < 0.05:
        return "utf-16-le", False
    if even_zero > 0.7 and odd_zero < 0.05:
        return "utf-16-be", False
    return None


def _decode_head_utf16(head: bytes, encoding: str, has_bom: bool, name: str) -> str:
    body = head[2:] if has_bom else head
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        text = decoder.decode(body, final=False)
    except UnicodeDecodeError as err:
        before = body[:err.start - err.start % 2].decode(encoding, errors="replace")
        raise InputFileError(name, "encoding", "bytes that are not UTF-16 in a UTF-16 file",
                             row=before.count("\n") + 1) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise InputFileError(name, "binary_content", "NUL characters: this is not a text export",
                             row=text.count("\n", 0, nul) + 1)
    return text


def _first_text_line(text: str) -> str:
    text = text.lstrip("\r\n")
    return text.split("\n", 1)[0].rstrip("\r") if "\n" in text else text.split("\r", 1)[0]


def _line_ending(text: str) -> str:
    """``CRLF``, ``LF`` or ``CR``: the most frequent line end of the file's head (a line break
    inside a quoted field, often a bare LF in a CRLF file, does not make a file "mixed")."""
    crlf = text.count("\r\n")
    counts = {"CRLF": crlf, "LF": text.count("\n") - crlf, "CR": text.count("\r") - crlf}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else "LF"


def _read_head(path: Path) -> bytes:
    """The first 64 KiB, extended to the end of the first line (a header up to 1 MiB)."""
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES)
        while b"\n" not in head.lstrip(b"\r\n") and b"\r" not in head.lstrip(b"\r\n") \
            and len(head) < _MAX_HEADER_BYTES:
            more = handle.read(SAMPLE_BYTES)
            if not more:
                break
            head += more
    return head


def _first_line(body: bytes) -> bytes:
    """The header: the first line that is not blank."""
    body = body.lstrip(b"\r\n")
    return body.split(b"\n", 1)[0] if b"\n" in body else body.split(b"\r", 1)[0]


def _check_binary(data: bytes, name: str, line_base: int, ratio: bool = True) -> None:
    """NUL bytes anywhere, or (on a sample) too many control bytes: not a text export."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputFileError(name, "binary_content", "NUL bytes: this is not a text export",
                             row=line_base + data.count(b"\n", 0, nul) + 1)
    if not ratio:
        return
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls and controls > MAX_CONTROL_RATIO * max(len(data), 256):
        first = min(i for i in (data.find(bytes([b])) for b in _CONTROL_BYTES) if i >= 0)
        raise InputFileError(name, "binary_content",
                             f"{controls} control bytes: this is not a text export",
                             row=line_base + data.count(b"\n", 0, first) + 1)


def _detect_encoding(path: Path, has_bom: bool, profile: SourceProfile | None) -> str:
    name = path.name
    found = _first_non_ascii(path)
    if found is None:
        return "utf-8-sig" if has_bom else "utf-8"
    _, line, window = found
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(window, final=False)
        utf8 = True
    except UnicodeDecodeError as err:
        utf8 = False
        bad_at = err.start
    if utf8:
        return "utf-8-sig" if has_bom else "utf-8"
    bad_line = line + window.count(b"\n", 0, bad_at)
    if has_bom:
        raise InputFileError(name, "mixed_encoding", "a UTF-8 BOM, then bytes that are not UTF-8",
                             row=bad_line)
    if bad_at > 0 and _NON_ASCII.search(window, 0, bad_at):
        raise InputFileError(name, "mixed_encoding", "valid UTF-8, then bytes that are not UTF-8",
                             row=bad_line)
    declared = (profile.encoding or "").lower().replace("_", "-") if profile else ""
    if declared in ("latin-1", "latin1", "iso-8859-1", "iso8859-1"):
        return "latin-1"
    return "cp1252"


def _first_non_ascii(path: Path) -> tuple[int, int, bytes] | None:
    """Offset and line of the first non-ASCII byte, with up to 64 KiB of bytes from there."""
    lines = 1
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            match = _NON_ASCII.search(block)
            if match is None:
                lines += block.count(b"\n")
                offset += len(block)
                continue
            start = match.start()
            window = block[start:start + SAMPLE_BYTES]
            if len(window) < SAMPLE_BYTES:
                window += handle.read(SAMPLE_BYTES - len(window))
            return offset + start, lines + block.count(b"\n", 0, start), window
    return None


def _split_header(header_text: str, delimiter: str) -> list[str]:
    row = next(csv.reader([header_text], delimiter=delimiter), [])
    return [c.strip() for c in row]


def required_columns(profile: SourceProfile) -> tuple[str, ...]:
    """The raw columns a file must have for ``profile`` (its consent column included)."""
    cols = list(profile.required)
    if profile.lawful_basis == "consent_column" and profile.consent_column \
            and profile.consent_column not in cols:
        cols.append(profile.consent_column)
    return tuple(cols)


def _detect_delimiter(header_text: str, profile: SourceProfile | None, name: str) -> str:
    splits = {d: _split_header(header_text, d) for d in CANDIDATE_DELIMITERS}
    by_width = sorted(CANDIDATE_DELIMITERS, key=lambda d: -len(splits[d]))
    best = by_width[0]
    if len(splits[best]) < 2:
        raise InputFileError(name, "delimiter", "the header splits on none of , ; tab |", row=1)
    if profile is None:
        return best
    required = required_columns(profile)

    def missing(d: str) -> list[str]:
        return match_header(splits[d], profile).missing(required)

    hinted = [profile.delimiter] if profile.delimiter in CANDIDATE_DELIMITERS else []
    for d in dict.fromkeys([*hinted, *by_width]):
        if len(splits[d]) >= 2 and not missing(d):
            return d
    absent = missing(best)
    raise InputFileError(name, "missing_column", f"profile {profile.name} needs "
                         f"{', '.join(absent)}", row=1, column=absent[0])


def _show(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def _header_text(path: Path, dialect: FileDialect) -> str:
    head = _read_head(path)
    if dialect.utf16:
        body = head[dialect.bom_bytes:]
        text = body[:len(body) - len(body) % 2].decode(dialect.codec, errors="replace")
        return _first_text_line(text)
    line = _first_line(head[len(UTF8_BOM):] if dialect.has_bom else head)
    return line.decode(dialect.codec, errors="replace")


def header_columns(path: Path, dialect: FileDialect) -> list[str]:
    """The header's column names as written, stripped of whitespace (and of the BOM)."""
    return _split_header(_header_text(path, dialect), dialect.delimiter)


def match_columns(path: Path, dialect: FileDialect, profile: SourceProfile) -> HeaderMatch:
    """The file's header matched against ``profile`` (see :mod:`transforms.headers`)."""
    return match_header(header_columns(path, dialect), profile)


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Detection:
    """Which profile reads a file, and why (names of columns only, never a value).

    ``decided_by``: the chosen profile's required columns, all found in the header;
    ``also_matching``: other profiles whose required columns are all there too, beaten
    because the chosen one requires more of the header's columns (or, on a tie, by the file
    name); ``by_file_name``: the file name broke a tie; ``requested``: the profile was named
    (``--source``), not detected.
    """

    profile: SourceProfile
    decided_by: tuple[str, ...] = ()
    also_matching: tuple[str, ...] = ()
    by_file_name: bool = False
    requested: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"profile": self.profile.name, "requested": self.requested,
                "decided_by": list(self.decided_by), "also_matching": list(self.also_matching),
                "by_file_name": self.by_file_name}

    def describe(self) -> str:
        """One line for a log: ``van_contacts (named)`` or ``donations, from its columns …``."""
        if self.requested:
            return f"{self.profile.name} (named)"
        text = f"{self.profile.name}, detected from columns {', '.join(self.decided_by)}"
        if self.also_matching:
            text += f" (over {', '.join(self.also_matching)}"
            text += ", by file name)" if self.by_file_name else ", which require fewer)"
        return text


def detect_profile(path: Path, requested: str = "auto") -> SourceProfile:
    """The profile of ``path``: a built-in name, a YAML profile path, or ``auto``.

    ``auto`` matches the header (split on each candidate delimiter, names matched as
    :mod:`transforms.headers` does) against every built-in profile's required columns; when
    several match, the one requiring the most columns wins, then the file name hints.
    :func:`detect_source` says which columns decided.
    """
    return detect_source(path, requested).profile


def named_profile(requested: str) -> SourceProfile:
    """A built-in profile by name, or a YAML profile by path (no file is read)."""
    if requested in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[requested]
    from transforms.profiles_yaml import ProfileError, load_profile

    candidate = Path(requested)
    if candidate.suffix.lower() in (".yaml", ".yml") or candidate.is_file():
        return load_profile(candidate)
    known = ", ".join(sorted(BUILTIN_PROFILES))
    raise ProfileError(f"unknown source profile {requested!r}: use auto, one of {known}, "
                       "or the path of a YAML profile")


def detect_source(path: Path, requested: str = "auto") -> Detection:
    """:func:`detect_profile`, with the columns that decided (see :class:`Detection`)."""
    if requested != "auto":
        return Detection(named_profile(requested), requested=True)
    dialect = sniff_dialect(path, None)
    splits = [header_columns(path, replace(dialect, delimiter=d)) for d in CANDIDATE_DELIMITERS]
    hinted = guess_profile_from_name(path)
    scored = []
    for profile in BUILTIN_PROFILES.values():
        required = required_columns(profile)
        absent = min((match_header(cols, profile).missing(required) for cols in splits),
                     key=len)
        scored.append((len(absent), -len(required), profile is not hinted, profile.name, absent))
    scored.sort()
    n_absent, width, unhinted, best_name, absent = scored[0]
    if n_absent:
        raise InputFileError(path.name, "missing_column", "the header matches no source profile; "
                             f"closest is {best_name}, which needs {', '.join(absent)}",
                             row=1, column=absent[0])
    others = [s for s in scored[1:] if s[0] == 0]
    best = BUILTIN_PROFILES[best_name]
    tie = any(s[1] == width for s in others)
    return Detection(best, decided_by=required_columns(best),
                     also_matching=tuple(s[3] for s in others), by_file_name=tie and not unhinted)


# --------------------------------------------------------------------------- structure scan


@dataclass(frozen=True)
class _Scan:
    """What the structural scan learnt: record count and the line where each record starts.

    The line of data record ``k`` (0-based) is ``k + delta``; ``delta`` only changes after
    blank lines or records spanning several lines, so only those breakpoints are kept.
    """

    data_rows: int
    header_line: int
    max_record_bytes: int
    break_rows: np.ndarray
    break_deltas: np.ndarray
    chunk_starts: tuple[int, ...] = ()  # file offsets of data records 0, n, 2n... (chunk_rows n)

    def lines(self, first: int, count: int) -> np.ndarray:
        index = np.arange(first, first + count, dtype=np.int64)
        which = np.searchsorted(self.break_rows, index, side="right") - 1
        return index + self.break_deltas[which]


class _Scanner:
    """Vectorized RFC 4180 checks over runs of whole records (see the module docstring)."""

    def __init__(self, name: str, dialect: FileDialect, ncols: int, full: bool,
                 chunk_rows: int | None = None) -> None:
        self.name = name
        self.chunk_rows = chunk_rows
        self.chunk_starts: list[int] = []
        self.offset_base = 0  # file offset of the current segment
        self.full = full  # False: only find records and their lines (the file was validated)
        self.ncols = ncols
        self.delim = ord(dialect.delimiter)
        self.utf8 = dialect.encoding.startswith("utf-8")
        self.encoding = dialect.encoding
        self.line_base = 0  # physical lines before the current segment
        self.records = 0  # non-empty records so far, header included
        self.header_line = 0
        self.max_record = 0
        self.break_rows: list[np.ndarray] = []
        self.break_deltas: list[np.ndarray] = []
        self.last_delta: int | None = None

    def fail(self, rule: str, detail: str, line: int) -> InputFileError:
        return InputFileError(self.name, rule, detail, row=line)

    def segment(self, data: bytes, final: bool) -> int:
        """Check the whole records at the start of ``data``; return how many bytes they span.

        Unless ``final``, bytes after the last record end are left for the next call (0 is
        returned when ``data`` holds no complete record). When ``final``, all of ``data`` is
        checked and the last record may lack its end of line.
        """
        if not data:
            return 0
        a = np.frombuffer(data, dtype=np.uint8)
        nl = _line_ends(data, a, final)
        qp = np.flatnonzero(a == _QUOTE)
        rec_end = nl[(np.searchsorted(qp, nl) & 1) == 0]
        if final:
            cut = len(a)
            if len(rec_end) == 0 or rec_end[-1] < cut - 1:
                rec_end = np.append(rec_end, cut)
        else:
            if len(rec_end) == 0:
                return 0
            cut = int(rec_end[-1]) + 1
            a, nl, qp = a[:cut], nl[nl < cut], qp[qp < cut]
        seg = data[:cut] if cut < len(data) else data

        def line_of(pos: int) -> int:
            return self.line_base + int(np.searchsorted(nl, pos)) + 1

        if self.full:
            self._check_bytes(seg, line_of)
        if len(qp) % 2:
            raise self.fail("unbalanced_quote", "a quote opened in this record is never closed",
                            line_of(_record_start_before(nl, qp, int(qp[-1]))))
        if self.full:
            self._check_quote_places(a, qp[0::2], qp[1::2], line_of)
        rec_start = np.concatenate(([0], rec_end[:-1] + 1)).astype(np.int64)
        length = rec_end - rec_start
        first_byte = a[np.minimum(rec_start, len(a) - 1)]
        empty = (length == 0) | ((length == 1) & (first_byte == 13))
        if self.full:
            self._check_fields(a, qp, rec_start, rec_end, empty, line_of)
        keep = ~empty
        if keep.any():
            self.max_record = max(self.max_record, int(length[keep].max()))
        starts = rec_start[keep]
        self._record_lines(self.line_base + np.searchsorted(nl, starts) + 1,
                           self.offset_base + starts)
        self.line_base += len(nl)
        self.offset_base += cut
        return cut

    def _check_fields(self, a: np.ndarray, qp: np.ndarray, rec_start: np.ndarray,
                      rec_end: np.ndarray, empty: np.ndarray,
                      line_of: Callable[[int], int]) -> None:
        """Every record has the header's number of fields, none over 64 KiB.

        Delimiters are counted per record and per quoted span with 16-bit sums (fast);
        records too long for those to be exact are recounted one by one.
        """
        is_delim = (a == self.delim).view(np.uint8)
        fields = np.add.reduceat(is_delim, rec_start, dtype=np.uint16).astype(np.int64) + 1
        if len(qp):
            quoted = np.add.reduceat(is_delim, qp, dtype=np.uint16)[0::2].astype(np.int64)
            record_of_pair = np.searchsorted(rec_end, qp[0::2], side="right")
            fields -= np.bincount(record_of_pair, weights=quoted,
                                  minlength=len(rec_end))[:len(rec_end)].astype(np.int64)
        for k in np.flatnonzero(~empty & (rec_end - rec_start > 0xFFFF)):
            s, e = int(rec_start[k]), int(rec_end[k])
            d = np.flatnonzero(is_delim[s:e]) + s
            d = d[(np.searchsorted(qp, d) & 1) == 0]
            bounds = np.concatenate(([s - 1], d, [e]))
            if int(np.diff(bounds).max()) - 1 > MAX_FIELD_BYTES:
                raise self.fail("field_too_large", "a field is longer than 64 KiB", line_of(s))
            fields[k] = len(d) + 1
        bad = ~empty & (fields != self.ncols)
        if bad.any():
            first = int(np.argmax(bad))
            count = int(fields[first])
            rule = "truncated_line" if count < self.ncols else "extra_fields"
            raise self.fail(rule, f"{count} fields where the header has {self.ncols}",
                            line_of(int(rec_start[first])))

    def _record_lines(self, lines: np.ndarray, offsets: np.ndarray) -> None:
        """Remember where records start, as breakpoints of ``line - index``, and the file
        offset of every ``chunk_rows``-th data record."""
        if self.records == 0 and len(lines):
            self.header_line = int(lines[0])
            self.records = 1
            lines, offsets = lines[1:], offsets[1:]
        if not len(lines):
            return
        first_index = self.records - 1
        self.records += len(lines)
        if self.chunk_rows:
            index = np.arange(first_index, first_index + len(lines))
            self.chunk_starts.extend(int(o) for o in offsets[index % self.chunk_rows == 0])
        delta = lines - np.arange(first_index, first_index + len(lines), dtype=np.int64)
        change = np.flatnonzero(np.diff(delta)) + 1
        if self.last_delta is None or self.last_delta != int(delta[0]):
            change = np.concatenate(([0], change))
        self.break_rows.append(first_index + change)
        self.break_deltas.append(delta[change])
        self.last_delta = int(delta[-1])

    def _check_bytes(self, seg: bytes, line_of: Callable[[int], int]) -> None:
        _check_binary(seg, self.name, self.line_base, ratio=self.line_base == 0)
        if self.encoding.startswith("utf-16"):
            return  # decoded strictly while projected (see _utf16_blocks)
        if self.utf8:
            if seg.isascii():
                return
            try:
                seg.decode("utf-8")
            except UnicodeDecodeError as err:
                raise self.fail("mixed_encoding", "bytes that are not UTF-8 in a UTF-8 file",
                                line_of(err.start)) from None
            return
        if self.encoding == "cp1252" and \
                len(seg.translate(None, _CP1252_UNDEFINED_BYTES)) != len(seg):
            undefined = _CP1252_UNDEFINED.search(seg)
            assert undefined is not None
            raise self.fail("encoding", "bytes undefined in cp1252: neither UTF-8 nor cp1252",
                            line_of(undefined.start()))
        at = _utf8_signature_at(seg)
        if at is not None:
            raise self.fail("mixed_encoding", "UTF-8 sequences in a cp1252 file", line_of(at))

    def _check_quote_places(self, a: np.ndarray, opens: np.ndarray, closes: np.ndarray,
                            line_of: Callable[[int], int]) -> None:
        """A quote opens a field right after a delimiter or a line start and closes it right
        before a delimiter or a line end; ``""`` inside a quoted field is an escaped quote."""
        allowed = np.array([self.delim, 10, 13, _QUOTE], dtype=np.uint8)
        inner_open = opens[opens > 0]
        bad_open = inner_open[~np.isin(a[inner_open - 1], allowed)]
        has_next = closes + 1 < len(a)
        bad = has_next.copy()
        bad[has_next] = ~np.isin(a[closes[has_next] + 1], allowed)
        bad_close = opens[:len(closes)][bad]  # reported where the quoted field opened
        if len(bad_open) or len(bad_close):
            first = min(int(x[0]) for x in (bad_open, bad_close) if len(x))
            raise self.fail("unbalanced_quote", "a quote inside a field: quote the whole field "
                            "and double the quotes within it", line_of(first))

    def result(self) -> _Scan:
        if self.break_rows:
            rows = np.concatenate(self.break_rows).astype(np.int64)
            deltas = np.concatenate(self.break_deltas).astype(np.int64)
        else:
            rows, deltas = np.array([0], dtype=np.int64), np.array([2], dtype=np.int64)
        return _Scan(data_rows=max(self.records - 1, 0), header_line=self.header_line or 1,
                     max_record_bytes=self.max_record, break_rows=rows, break_deltas=deltas,
                     chunk_starts=tuple(self.chunk_starts))


def _line_ends(data: bytes, a: np.ndarray, final: bool) -> np.ndarray:
    """Offsets of line ends: LF, and a CR not followed by LF (as the CSV reader sees them).

    Unless ``final``, a CR in the last byte is not counted: an LF may follow in the next block.
    """
    is_lf = a == 10
    if data.find(b"\r") < 0:
        return np.flatnonzero(is_lf)
    lone_cr = a == 13
    lone_cr[:-1] &= ~is_lf[1:]
    if not final:
        lone_cr[-1] = False
    return np.flatnonzero(is_lf | lone_cr)


def _record_start_before(nl: np.ndarray, qp: np.ndarray, pos: int) -> int:
    """Start of the record holding ``pos``: just after the last record end before it."""
    before = nl[nl < pos]
    ends = before[(np.searchsorted(qp, before) & 1) == 0]
    return int(ends[-1]) + 1 if len(ends) else 0


def _scan(path: Path, dialect: FileDialect, ncols: int, *, full: bool = True,
          chunk_rows: int | None = None) -> _Scan:
    """Stream the file in blocks, checking each run of whole records (memory stays flat).

    ``full=False`` only locates records, their lines and (with ``chunk_rows``) where each
    chunk starts: a quarter of the work, for reading a file already validated.

    A UTF-16 file is scanned through its *ASCII projection*: one byte per 16-bit code unit,
    the unit itself when ASCII, ``A`` otherwise. Quotes, delimiters and line ends are ASCII,
    so records, fields and lines are where they are in the projection, and a file offset is
    the BOM plus twice the projection's (field sizes are then counted in code units).
    """
    record_limit = max(_MIN_RECORD_LIMIT, ncols * (MAX_FIELD_BYTES + 3))
    scanner = _Scanner(path.name, dialect, ncols, full, chunk_rows)
    with path.open("rb") as handle:
        if dialect.utf16:
            handle.seek(dialect.bom_bytes)
            blocks: Iterator[bytes] = _utf16_blocks(handle, dialect, path.name)
        else:
            blocks = iter(lambda: handle.read(BLOCK_BYTES), b"")
        data = next(blocks, b"")
        if not dialect.utf16 and data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM):]
            scanner.offset_base = len(UTF8_BOM)
        while True:
            more = next(blocks, b"")
            if not more:
                scanner.segment(data, final=True)
                break
            cut = scanner.segment(data, final=False)
            if cut == 0 and len(data) > record_limit:
                raise _oversized(path.name, scanner.line_base + 1, data)
            data = data[cut:] + more
    scan = scanner.result()
    if dialect.utf16:
        scan = replace(scan, chunk_starts=tuple(dialect.bom_bytes + 2 * o
                                                for o in scan.chunk_starts))
    return scan


def _utf16_blocks(handle: BinaryIO, dialect: FileDialect, name: str) -> Iterator[bytes]:
    """The ASCII projection of a UTF-16 file (after its BOM), block by block, each block
    decoded strictly first (an unpaired surrogate or an odd final byte is rule ``encoding``)."""
    decoder = codecs.getincrementaldecoder(dialect.codec)()
    unit = np.dtype("<u2" if dialect.encoding == "utf-16-le" else ">u2")
    lines = 0
    while True:
        block = handle.read(BLOCK_BYTES)
        final = len(block) < BLOCK_BYTES
        units = np.frombuffer(block[:len(block) - len(block) % 2], dtype=unit)
        projection = np.where(units < 128, units, 65).astype(np.uint8).tobytes()
        try:
            decoder.decode(block, final=final)
        except UnicodeDecodeError as err:
            at = min(err.start, len(block)) // 2
            raise InputFileError(name, "encoding", "bytes that are not UTF-16 in a UTF-16 file",
                                 row=lines + projection.count(b"\n", 0, at) + 1) from None
        lines += projection.count(b"\n")
        if projection:
            yield projection
        if final:
            return


def _oversized(name: str, line: int, data: bytes) -> InputFileError:
    if data.count(b'"') % 2:
        return InputFileError(name, "unbalanced_quote", "a quote opened here is not closed "
                              "within the size limit of a record", row=line)
    return InputFileError(name, "field_too_large", "a field is longer than 64 KiB", row=line)


def validate_whole_file(path: Path, profile: SourceProfile, dialect: FileDialect) -> int:
    """Prove the whole file well-formed before anything is loaded; return its data rows.

    One streaming pass: encoding, binary content, quoting, field count of every record,
    field sizes. Raises :class:`InputFileError` naming the file, the line and the rule.
    """
    match = _checked_columns(path, profile, dialect)
    scan = _require_data(path, _scan(path, dialect, len(match.columns)))
    log.debug("%s: %d data rows, well-formed (%s)", path.name, scan.data_rows, profile.name)
    return scan.data_rows


def _require_data(path: Path, scan: _Scan) -> _Scan:
    if scan.data_rows == 0:
        raise InputFileError(path.name, "header_only", "a header and no data row",
                             row=scan.header_line)
    return scan


def _checked_columns(path: Path, profile: SourceProfile, dialect: FileDialect) -> HeaderMatch:
    """The header matched against the profile, after checking that every required column is
    there and no column the profile reads is matched twice."""
    head = _read_head(path)
    if not head[dialect.bom_bytes:].strip() and path.stat().st_size <= len(head):
        raise InputFileError(path.name, "empty_file", "the file holds no data")
    match = match_columns(path, dialect, profile)
    if len(match.columns) < 2:
        raise InputFileError(path.name, "delimiter", f"the header does not split on "
                             f"{_show(dialect.delimiter)}", row=1)
    absent = match.missing(required_columns(profile))
    if absent:
        raise InputFileError(path.name, "missing_column", f"profile {profile.name} needs "
                             f"{', '.join(absent)}", row=1, column=absent[0])
    if match.duplicates:
        raise InputFileError(path.name, "duplicate_column", "the column appears twice",
                             row=1, column=match.duplicates[0])
    return match


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DateColumn:
    """What the reader decided about one date column: its day/month order, whether no value
    decided it (``assumed``), and whether it holds numeric dates at all."""

    order: Order
    assumed: bool
    numeric: bool

    def to_dict(self) -> dict[str, object]:
        return {"order": ORDER_LABELS[self.order] if self.numeric else "none",
                "assumed": self.assumed}


@dataclass(frozen=True)
class ReadReport:
    """What reading a file established, value-free: for reports, ``--json`` and logs.

    ``header`` is the header with matched columns under the profile's names (what the raw
    suite is declared on); ``aliases`` the profile columns found under another spelling;
    ``ignored`` the columns never read; ``dates`` the decision per date column (raw name).
    """

    file_name: str
    profile: str
    dialect: FileDialect
    header: tuple[str, ...]
    aliases: Mapping[str, str]
    ignored: tuple[str, ...]
    dates: Mapping[str, DateColumn]
    field_orders: Mapping[str, Order] = field(default_factory=dict)  # internal field -> order
    #: How the profile was chosen (:meth:`Detection.to_dict`), when the reader was told.
    detection: Mapping[str, object] | None = None

    def assumed_date_orders(self) -> dict[str, str]:
        """Raw date columns whose order no value decided -> the order assumed."""
        return {c: ORDER_LABELS[d.order] for c, d in self.dates.items() if d.assumed}

    def to_dict(self) -> dict[str, object]:
        shown: dict[str, object] = {
            "dialect": self.dialect.to_dict(), "columns_aliased": dict(self.aliases),
            "columns_ignored": list(self.ignored),
            "date_orders": {c: d.to_dict() for c, d in self.dates.items()}}
        if self.detection is not None:
            shown["profile_detection"] = dict(self.detection)
        return shown


@dataclass(frozen=True)
class ReadPlan:
    """Where each chunk of a file lies and how its columns are named.

    Enough for any process to read chunk ``k`` on its own (it is picklable), which is how a
    large file is normalized and pseudonymized on several cores at once.
    """

    path: Path
    profile: SourceProfile
    dialect: FileDialect
    chunk_rows: int
    names: tuple[str, ...]
    include: tuple[str, ...]
    mapping: Mapping[str, str]
    present: Mapping[str, str]
    scan: _Scan
    bounds: tuple[int, ...]  # file offsets: chunk k is bytes bounds[k]..bounds[k + 1]
    attrs: Mapping[str, object]
    report: ReadReport

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1


#: Internal fields read as dates (``transforms.normalize``); their order is decided per file.
DATE_FIELDS = ("birth_date", "created_at", "contact_date", "donation_date")
_REPORTS: OrderedDict[tuple[str, int, int], ReadReport] = OrderedDict()
_REPORTS_KEPT = 64


def plan_read(path: Path, profile: SourceProfile, dialect: FileDialect | None = None,
              chunk_rows: int = 200_000, *, reference_date: date | None = None,
              validate: bool = False) -> ReadPlan:
    """Locate the chunks of ``path`` and decide what only the whole file can say.

    ``validate=True`` is :func:`validate_whole_file` and the chunk scan in one streaming pass
    (it raises :class:`InputFileError` naming the file, the line and the rule). Then one pass
    over the date and amount columns only decides, for the whole file, each date column's
    day/month order (rule ``date_order`` when a column mixes both), the decimal mark of
    amounts, and a people file's reference date (its newest ``created_at``). The decisions
    travel to :func:`transforms.normalize.normalize_chunk` in each chunk's ``attrs``.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    dialect = dialect or sniff_dialect(path, profile)
    match = _checked_columns(path, profile, dialect)
    scan = _scan(path, dialect, len(match.columns), full=validate, chunk_rows=chunk_rows)
    if validate:
        _require_data(path, scan)
    bounds = (*scan.chunk_starts, path.stat().st_size)
    names = _unique_names(list(match.columns))
    mapping = dict(profile.fields)
    if profile.lawful_basis == "consent_column" and profile.consent_column:
        mapping["consent"] = profile.consent_column
    present = {raw: names[match.index[raw]] for raw in set(mapping.values())
               if raw in match.index}
    include = [n for n in names if n in present.values()]
    facts = _column_facts(path, profile, dialect, names, scan, bounds, chunk_rows,
                          {f: present[mapping[f]] for f in (*DATE_FIELDS, "amount")
                           if f in mapping and mapping[f] in present})
    dialect = replace(dialect, decimal=facts.decimal or dialect.decimal)
    attrs: dict[str, object] = {"date_orders": {f: d.order for f, d in facts.dates.items()},
                                "decimal": dialect.decimal}
    if reference_date is not None:
        attrs["reference_date"] = reference_date
    elif profile.kind == "people" and facts.newest_created is not None:
        attrs["reference_date"] = facts.newest_created
    report = ReadReport(
        file_name=path.name, profile=profile.name, dialect=dialect, header=match.canonical,
        aliases=dict(match.aliases), ignored=match.ignored,
        dates={mapping[f]: d for f, d in facts.dates.items() if d.numeric},
        field_orders={f: d.order for f, d in facts.dates.items()})
    _remember(path, report)
    log.info("%s: read as %s", path.name, dialect.describe())
    return ReadPlan(path=path, profile=profile, dialect=dialect, chunk_rows=chunk_rows,
                    names=tuple(names), include=tuple(include), mapping=mapping,
                    present=present, scan=scan, bounds=bounds, attrs=attrs, report=report)


def remember_report(path: Path, report: ReadReport) -> None:
    """Keep ``report`` as the last read report of ``path`` (a workbook: its sheet's report)."""
    _remember(path, report)


def _remember(path: Path, report: ReadReport) -> None:
    key = _report_key(path)
    _REPORTS[key] = report
    _REPORTS.move_to_end(key)
    while len(_REPORTS) > _REPORTS_KEPT:
        _REPORTS.popitem(last=False)


def _report_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def last_read_report(path: Path) -> ReadReport | None:
    """The report of the last :func:`plan_read` of this very file in this process, if any
    (how ``isoloir ingest --json`` shows the dialect without reading the file again)."""
    try:
        return _REPORTS.get(_report_key(path))
    except OSError:
        return None


def read_chunk(plan: ReadPlan, k: int) -> pd.DataFrame:
    """Chunk ``k`` of a planned file (see :func:`read_chunks` for the frame's shape)."""
    return chunk_frame(plan, read_chunk_table(plan, k), k)


def read_chunk_table(plan: ReadPlan, k: int) -> pa.Table:
    """Chunk ``k`` as parsed: the raw columns the profile reads (``plan.include``), as text."""
    with plan.path.open("rb") as handle:
        return _parse_chunk(handle, k, plan.bounds, plan.chunk_rows, plan.dialect,
                            list(plan.names), list(plan.include), plan.scan)


def chunk_frame(plan: ReadPlan, table: pa.Table, k: int) -> pd.DataFrame:
    """The frame :func:`read_chunk` returns, from chunk ``k``'s parsed ``table``."""
    return _frame(table, plan.mapping, plan.present, plan.scan, k * plan.chunk_rows,
                  plan.attrs)


def read_chunks(path: Path, profile: SourceProfile, dialect: FileDialect | None = None,
                chunk_rows: int = 200_000, *,
                reference_date: date | None = None) -> Iterator[pd.DataFrame]:
    """Yield frames of at most ``chunk_rows`` records, columns named by internal field.

    Every column of ``profile.fields`` is present (all missing when the file lacks an
    optional column), plus ``consent`` for a consent-column profile, plus ``row_number``
    (int64, the line where the record starts; header = line 1). Values are strings, missing
    when empty (pandas' string dtype). Unmapped raw columns are never materialized.
    ``frame.attrs`` holds the file-wide decisions of :func:`plan_read`: ``date_orders``
    (internal field -> ``dmy``/``mdy``), ``decimal``, and for a people profile
    ``reference_date``, the date ages are computed at (see
    :func:`transforms.normalize.normalize_chunk`): ``reference_date`` when given (say, the
    run's logical date), else the file's newest ``created_at``.
    """
    plan = plan_read(path, profile, dialect, chunk_rows, reference_date=reference_date)
    for k in range(plan.chunks):
        yield read_chunk(plan, k)


def _unique_names(columns: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, col in enumerate(columns):
        label = col or f"_column_{i + 1}"
        if label in seen:
            seen[label] += 1
            label = f"{label}__{seen[label]}"
        else:
            seen[label] = 0
        out.append(label)
    return out


def _parse_chunk(handle: BinaryIO, k: int, bounds: tuple[int, ...], chunk_rows: int,
                 dialect: FileDialect, names: list[str], include: list[str],
                 scan: _Scan) -> pa.Table:
    """Chunk ``k``: the records between ``bounds[k]`` and ``bounds[k + 1]``."""
    expected = min(chunk_rows, scan.data_rows - k * chunk_rows)
    return _parse_slice(handle, bounds[k], bounds[k + 1], dialect, names, include, scan,
                        expected)


def _parse_slice(handle: BinaryIO, start: int, end: int, dialect: FileDialect,
                 names: list[str], include: list[str], scan: _Scan, expected: int) -> pa.Table:
    """Parse the records between two file offsets (whole records, thanks to the scan) with
    pyarrow's CSV reader, keeping the ``include`` columns only.

    A UTF-16 slice is transcoded to UTF-8 in memory first (one chunk at a time: no copy of
    the file is written anywhere). One thread: on two shared cores, pyarrow's threads cost a
    third more CPU for no gain in elapsed time (measured with benchmarks/bench_normalize.py).
    """
    handle.seek(start)
    data = handle.read(end - start)
    record_bytes = scan.max_record_bytes
    encoding = "utf8"
    if not dialect.encoding.startswith("utf-8"):
        # UTF-16, cp1252, latin-1: transcoded here, in memory, one chunk at a time (no copy
        # of the file is written); Python's codecs are several times faster than pyarrow's
        # own transcoding of a single-byte encoding (benchmarks/bench_read.py)
        try:
            data = data.decode(dialect.codec).encode("utf-8")
        except UnicodeDecodeError:
            _diagnose(Path(handle.name), dialect, len(names))
        record_bytes = 3 * record_bytes
    read_options = pacsv.ReadOptions(
        column_names=names, block_size=max(1 << 20, 2 * record_bytes + 1024),
        use_threads=False, encoding=encoding)
    parse_options = pacsv.ParseOptions(delimiter=dialect.delimiter, quote_char='"',
                                       double_quote=True, escape_char=False,
                                       newlines_in_values=True, ignore_empty_lines=True)
    convert_options = pacsv.ConvertOptions(
        include_columns=include, column_types={n: pa.string() for n in include},
        strings_can_be_null=True, quoted_strings_can_be_null=True, null_values=[""],
        true_values=[], false_values=[])
    try:
        table = pacsv.read_csv(pa.BufferReader(data), read_options=read_options,
                               parse_options=parse_options, convert_options=convert_options)
    except (pa.ArrowException, UnicodeDecodeError, ValueError):
        table = None  # never chain the parser's error: its message quotes the offending line
    if table is None or table.num_rows != expected:
        _diagnose(Path(handle.name), dialect, len(names))
    return table


def _diagnose(path: Path, dialect: FileDialect, ncols: int) -> NoReturn:
    """The CSV reader failed: the full scan names the rule and line (it raises)."""
    _scan(path, dialect, ncols, full=True)
    raise InvariantViolation(f"{path.name}: the CSV reader rejected a file the structural scan "
                             "accepted")


def _frame(table: pa.Table, mapping: Mapping[str, str], present: Mapping[str, str], scan: _Scan,
           first: int, attrs: Mapping[str, object]) -> pd.DataFrame:
    n = table.num_rows
    data: dict[str, pd.Series] = {}
    converted: dict[str, pd.Series] = {}
    for internal, raw in mapping.items():
        if raw in present:
            column = present[raw]
            if column not in converted:
                converted[column] = table.column(column).to_pandas()
            data[internal] = converted[column]
        else:
            data[internal] = pd.Series([None] * n, dtype="str")
    frame = pd.DataFrame(data)
    frame["row_number"] = scan.lines(first, n)
    frame.attrs.update(attrs)
    return frame


@dataclass(frozen=True)
class _ColumnFacts:
    dates: Mapping[str, DateColumn]  # internal field -> decision
    decimal: str | None  # None: no amount column
    newest_created: date | None


def _column_facts(path: Path, profile: SourceProfile, dialect: FileDialect, names: list[str],
                  scan: _Scan, bounds: tuple[int, ...], chunk_rows: int,
                  columns: Mapping[str, str]) -> _ColumnFacts:
    """One pass over the date and amount columns (``columns``: internal field -> column).

    Raises ``date_order`` naming the first row whose date contradicts the rows before it.
    """
    from transforms.normalize import detect_decimal

    if not columns:
        return _ColumnFacts({}, None, None)
    dates = [f for f in columns if f in DATE_FIELDS]
    evidence = {f: OrderEvidence() for f in dates}
    created: list[pa.Array] = []
    amounts: list[pa.Array] = []
    wanted = list(dict.fromkeys(columns.values()))
    with path.open("rb") as handle:
        for k in range(len(bounds) - 1):
            table = _parse_chunk(handle, k, bounds, chunk_rows, dialect, names, wanted, scan)
            rows = scan.lines(k * chunk_rows, table.num_rows)
            for f in dates:
                values = table.column(columns[f]).combine_chunks()
                evidence[f] = evidence[f].merge(order_evidence(values, rows))
                if f == "created_at":
                    created.append(pc.unique(values))
            if "amount" in columns:
                amounts.append(pc.unique(table.column(columns["amount"]).combine_chunks()))
    default = profile_order(profile.date_format, profile.date_order)
    decided: dict[str, DateColumn] = {}
    for f in dates:
        try:
            order, assumed = decide_order(evidence[f], default)
        except MixedDateOrder as err:
            raise InputFileError(path.name, "date_order", str(err), row=err.row,
                                 column=profile.fields.get(f, f)) from None
        decided[f] = DateColumn(order, assumed, evidence[f].numeric)
    newest = None
    if created:
        values = pc.unique(pa.concat_arrays(created))
        newest = pc.max(parse_dates(values, profile.date_format,
                                    order=decided["created_at"].order)).as_py()
    decimal = None
    if amounts:
        decimal = detect_decimal(pa.concat_arrays(amounts), profile.decimal)
    return _ColumnFacts(decided, decimal, newest)
