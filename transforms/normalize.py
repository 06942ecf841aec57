"""Normalization: one raw chunk (internal field names, strings) to the normalized schema.

What comes out is an explicit list of columns per kind; every other raw value (names,
addresses, notes, the exact birth date) is left behind. Every kept string is either an
identifier that :mod:`privacy.pseudonymize` hashes next (``source_id`` namespaced as
``nb:123``, a normalized email, an E.164 phone, ``canvasser_id``), or a code from a closed
vocabulary or public key set (commune, département, région, age band, ISO week, month,
channel, result, method). So a cell such as ``=HYPERLINK(...)`` can only survive as the
tail of a namespaced id, and is hashed before it is stored.

Columns (all kinds): ``row_number`` (int64), ``source_id``, ``email``, ``phone``,
``phone2``, ``commune``, ``departement``, ``region`` (strings, missing as NA),
``lawful_basis`` (bool), ``withdrawn`` (bool: the row says ``do_not_contact``).

* people: ``age_band``, ``support_level`` (Int8 1-5), ``is_volunteer``, ``is_donor``,
  ``email_opt_in``, ``mobile_opt_in`` (boolean), ``created_month`` (``YYYY-MM``),
  ``updated_at`` (ISO timestamp text, or NA: which of two exports of a person is newer)
* contacts: ``week`` (``YYYY-Www``), ``channel``, ``result``, ``support_level`` (Int8),
  ``canvasser_id`` (``{namespace}:canvasser:{name}``), ``event_day`` (``YYYY-MM-DD``),
  ``event_id`` (the source's own event id, namespaced, or NA)
* donations: ``amount_cents`` (int64), ``month``, ``method``, ``recurring`` (boolean),
  ``event_day``, ``event_id``

``event_day`` and ``event_id`` exist only to build the event's keyed natural key
(:mod:`privacy.pseudonymize`); they are never stored.

All work is vectorized (pyarrow compute) and anything done in Python runs once per unique
value of a chunk, never per row. Rules raised here (see :mod:`transforms.read`):
``date_format``, ``amount_format``, ``negative_amount``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InputFileError
from core.geography import Geography, Placement, load_geography
from core.vocabulary import AGE_BANDS, CHANNELS, DONATION_METHODS, RESULTS
from transforms import phones
from transforms.dates import (
    ORDER_LABELS,
    MixedDateOrder,
    Order,
    decide_order,
    order_evidence,
    parse_date_text,
    parse_dates,
    profile_order,
)
from transforms.phones import normalize_phones_arrow
from transforms.sources import CHANNEL_MAP, SourceProfile

log = logging.getLogger(__name__)

COMMON_COLUMNS = ("row_number", "source_id", "email", "phone", "phone2", "commune",
                  "departement", "region", "lawful_basis", "withdrawn")
KIND_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "people": ("age_band", "support_level", "is_volunteer", "is_donor", "email_opt_in",
               "mobile_opt_in", "created_month", "updated_at"),
    "contacts": ("week", "channel", "result", "support_level", "canvasser_id", "event_day",
                 "event_id"),
    "donations": ("amount_cents", "month", "method", "recurring", "event_day", "event_id"),
}

#: Spellings of donation methods seen in exports -> core.vocabulary.DONATION_METHODS.
METHOD_MAP: Mapping[str, str] = {
    "card": "card", "credit card": "card", "debit card": "card", "carte": "card",
    "carte bancaire": "card", "cb": "card", "stripe": "card", "paypal": "card",
    "cheque": "cheque", "chèque": "cheque", "check": "cheque",
    "transfer": "transfer", "bank transfer": "transfer", "wire": "transfer", "virement": "transfer",
    "sepa": "transfer", "prélèvement": "transfer", "direct debit": "transfer",
    "cash": "cash", "espèces": "cash", "especes": "cash", "liquide": "cash",
}
TRUE_WORDS = ("true", "t", "yes", "y", "1", "oui", "o", "vrai", "x", "subscribed")
FALSE_WORDS = ("false", "f", "no", "n", "0", "non", "faux", "unsubscribed")

_CASED_TRUE = pa.array(sorted({c for w in TRUE_WORDS for c in (w, w.upper(), w.title())}))
_CASED_FALSE = pa.array(sorted({c for w in FALSE_WORDS for c in (w, w.upper(), w.title())}))
_NULL = pa.scalar(None, pa.string())
_EMAIL_CHAR = r"[^@\s<>(),;:\"\[\]\\]"
_DOMAIN_CHAR = r"[^@\s<>(),;:\"\[\]\\.]"
#: A plausible address; one that starts like a spreadsheet formula (= + - @) is rejected.
EMAIL_PATTERN = (rf"^[^=+\-@.\s<>(),;:\"\[\]\\]{_EMAIL_CHAR}*@(?:{_DOMAIN_CHAR}+\.)+"
                 rf"{_DOMAIN_CHAR}{{2,}}$")
_AGE_EDGES = np.array([18, 25, 35, 45, 55, 65, 75, 121])
_BAND_LABELS = pa.array([*AGE_BANDS, None], type=pa.string())
__all__ = ["COMMON_COLUMNS", "KIND_COLUMNS", "NormalizeStats", "detect_decimal",
           "normalize_chunk", "normalize_email", "normalize_phones", "parse_amount",
           "parse_bool", "parse_date_text", "parse_dates"]


@dataclass(frozen=True)
class NormalizeStats:
    """Counts only: rows in the chunk, rows with no département, rows without a lawful
    basis, non-empty emails and phone values that were not valid."""

    rows: int
    unplaced: int
    no_lawful_basis: int
    bad_email: int
    bad_phone: int


def normalize_chunk(raw: pd.DataFrame, profile: SourceProfile, file_name: str, *,
                    reference_date: date | None = None,
                    geography: Geography | None = None) -> tuple[pd.DataFrame, NormalizeStats]:
    """Normalize one chunk read by :func:`transforms.read.read_chunks`.

    Ages are computed at ``reference_date``; by default the file's newest ``created_at``
    (``raw.attrs["reference_date"]``, set by ``read_chunks``), else the chunk's newest: never
    today's date, so a rerun gives the same bands. Raises :class:`InputFileError` naming the
    file, line and column when a date or an amount breaks its rule.
    """
    n = len(raw)
    rows = raw["row_number"].to_numpy(dtype=np.int64)
    ctx = _Context(file_name, profile, rows, raw.attrs)
    col = ctx.column_getter(raw)
    out: dict[str, pa.Array] = {}

    raw_id = col("source_id")
    out["source_id"] = pc.binary_join_element_wise(f"{profile.namespace}:", raw_id, "") \
        if raw_id is not None else _nulls(n)
    email_in = col("email")
    out["email"] = _normalize_email(email_in) if email_in is not None else _nulls(n)
    bad_email = _count_lost(email_in, out["email"])
    bad_phone = 0
    for field in ("phone", "phone2"):
        values = col(field)
        out[field] = normalize_phones_arrow(values) if values is not None else _nulls(n)
        bad_phone += _count_lost(values, out[field])
    tables = _default_place_tables() if geography is None else _place_tables(geography)
    out.update(_place(col("insee_code"), col("postcode"), tables, n))
    unplaced = int(pc.sum(pc.is_null(out["departement"])).as_py() or 0)

    basis = np.full(n, profile.lawful_basis != "none")
    dnc = col("do_not_contact")
    withdrawn = _true(parse_bool(dnc)) if dnc is not None else np.zeros(n, dtype=bool)
    basis &= ~withdrawn
    if profile.lawful_basis == "consent_column":
        consent = col("consent")
        basis &= _true(parse_bool(consent)) if consent is not None else False

    if profile.kind == "people":
        out.update(_people(ctx, col, raw, reference_date, n))
    elif profile.kind == "contacts":
        out.update(_contacts(ctx, col, n))
    else:
        out.update(_donations(ctx, col, n))

    frame = _to_pandas(out, profile.kind)
    frame.insert(0, "row_number", rows)
    frame["lawful_basis"] = basis
    frame["withdrawn"] = withdrawn
    frame = frame[list(COMMON_COLUMNS + KIND_COLUMNS[profile.kind])]
    stats = NormalizeStats(rows=n, unplaced=unplaced, no_lawful_basis=int((~basis).sum()),
                           bad_email=bad_email, bad_phone=bad_phone)
    return frame, stats


def normalize_email(s: pd.Series) -> pd.Series:
    """Emails trimmed, NFKC-normalized and lowercased; malformed ones become missing."""
    return pd.Series(_normalize_email(_clean(_arrow(s))).to_numpy(zero_copy_only=False), index=s.index,
                     name=s.name, dtype="str")


def normalize_phones(s: pd.Series, default_region: str = "FR") -> pd.Series:
    """Phones to E.164 (see :mod:`transforms.phones`); invalid ones become missing."""
    return phones.normalize_phones(s, default_region)


def parse_bool(values: pa.Array) -> pa.Array:
    """Yes/no words in English and French (true/false, oui/non, 1/0, x) to booleans."""
    is_true = pc.is_in(values, value_set=_CASED_TRUE)
    is_false = pc.is_in(values, value_set=_CASED_FALSE)
    if not pc.all(pc.or_kleene(pc.or_kleene(is_true, is_false), pc.is_null(values))).as_py():
        lowered = pc.utf8_lower(values)  # rare spellings such as "tRUE"
        is_true = pc.is_in(lowered, value_set=pa.array(TRUE_WORDS))
        is_false = pc.is_in(lowered, value_set=pa.array(FALSE_WORDS))
    unknown = pa.scalar(None, pa.bool_())
    return pc.if_else(is_true, True, pc.if_else(is_false, False, unknown))


#: Amounts whose shape proves the decimal mark (cents: one or two digits after it).
_SPACES = " \u00a0\u202f"  # a space, and the no-break spaces French Excel writes
_DECIMAL_PROOF = {
    ",": rf"^-?(?:\d+|\d{{1,3}}(?:[{_SPACES}.]\d{{3}})+),\d{{1,2}}$",
    ".": rf"^-?(?:\d+|\d{{1,3}}(?:[{_SPACES},]\d{{3}})+)\.\d{{1,2}}$",
}
#: Amounts with groups of thousands and no decimals: ``1.234`` hints at ``,``, ``1,234`` at ``.``.
_DECIMAL_HINT = {",": r"^-?\d{1,3}(?:\.\d{3})+$", ".": r"^-?\d{1,3}(?:,\d{3})+$"}


def detect_decimal(values: pa.Array | pa.ChunkedArray, default: str) -> str:
    """The decimal mark of an amount column: ``,`` or ``.``, decided by the values.

    An amount with one or two digits after a mark (``12,50``, ``1 234,50``, ``1.234,50``)
    proves it; when no value proves either, groups of thousands without decimals
    (``1.234``) hint the other mark; when the values say nothing, or contradict each other
    (then the parser rejects the odd ones, with their rows), ``default`` (the profile's) holds.

    >>> detect_decimal(pa.array(["12", "12,50", "1 234,50"]), "."), detect_decimal(pa.array(["7"]), ".")
    (',', '.')
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return default
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(
        pc.unique(values), r"(?i)\s*(€|eur)\s*$|^\s*(€|eur)\s*|^'", ""))

    def any_match(pattern: str) -> bool:
        return bool(pc.any(pc.match_substring_regex(text, pattern)).as_py())

    proofs = [d for d, pattern in _DECIMAL_PROOF.items() if any_match(pattern)]
    if len(proofs) == 1:
        return proofs[0]
    if proofs:
        return default
    hints = [d for d, pattern in _DECIMAL_HINT.items() if any_match(pattern)]
    return hints[0] if len(hints) == 1 else default


def parse_amount(text: str, decimal: str) -> tuple[int | None, str | None]:
    """Cents of an amount written with ``decimal`` as decimal mark, or the rule it breaks.

    Groups of thousands are accepted only where they cannot be a decimal mark
    (``1 234,56`` / ``1.234,56`` with ``,``; ``1,234.56`` with ``.``), so ``50,00`` in a
    ``.`` file is rejected rather than read as 5000. A currency sign ``€`` is ignored.
    """
    t = text.replace("\u00a0", " ").replace("\u202f", " ").strip().lstrip("'")
    t = re.sub(r"\s*(€|eur)\s*$|^\s*(€|eur)\s*", "", t, flags=re.IGNORECASE)
    negative = t.startswith("-") or (t.startswith("(") and t.endswith(")"))
    body = t.strip("()").removeprefix("-").strip() if negative else t
    group = "." if decimal == "," else ","
    pattern = (rf"^(\d{{1,3}}(?:[ {re.escape(group)}]\d{{3}})+|\d+)"
               rf"(?:{re.escape(decimal)}(\d{{1,2}}))?$")
    match = re.match(pattern, body)
    if match is None:
        return None, "amount_format"
    if negative:
        return None, "negative_amount"
    units = int(re.sub(r"\D", "", match.group(1)))
    cents = int((match.group(2) or "0").ljust(2, "0"))
    return units * 100 + cents, None


# --------------------------------------------------------------------------- internals


class _Context:
    """What error messages need: the file, the profile's raw column names, row numbers."""

    def __init__(self, file_name: str, profile: SourceProfile, rows: np.ndarray,
                 attrs: Mapping[str, Any] | None = None) -> None:
        self.file_name = file_name
        self.profile = profile
        self.rows = rows
        self.attrs: Mapping[str, Any] = attrs or {}

    def column_getter(self, raw: pd.DataFrame) -> Callable[[str], pa.Array | None]:
        def get(field: str) -> pa.Array | None:
            if field not in raw.columns:
                return None
            return _clean(_arrow(raw[field]))

        return get

    def fail_first(self, bad: pa.Array, field: str, rule: str, detail: str) -> None:
        """Raise for the first row where ``bad`` is true (if any)."""
        first = pc.index(pc.fill_null(bad, False), True).as_py()
        if first is not None and first >= 0:
            column = self.profile.consent_column if field == "consent" else \
                self.profile.fields.get(field, field)
            raise InputFileError(self.file_name, rule, detail, row=int(self.rows[first]),
                                 column=column)

    def raw_column(self, field: str) -> str:
        return self.profile.fields.get(field, field)

    def order(self, values: pa.Array, field: str) -> Order:
        """The column's day/month order: the file's (decided by the reader over every row), or
        this chunk's own when normalizing a frame the reader did not plan."""
        decided = self.attrs.get("date_orders")
        if isinstance(decided, Mapping) and field in decided:
            return decided[field]  # type: ignore[no-any-return]
        try:
            order, _ = decide_order(order_evidence(values, self.rows),
                                    profile_order(self.profile.date_format,
                                                  self.profile.date_order))
        except MixedDateOrder as err:
            raise InputFileError(self.file_name, "date_order", str(err), row=err.row,
                                 column=self.raw_column(field)) from None
        return order

    def dates(self, values: pa.Array | None, field: str, n: int,
              required: bool = False, latest: date | None = None) -> pa.Array:
        """Parse a date column; a value that does not parse (or a missing required one) fails."""
        if values is None:
            if required:
                raise InputFileError(self.file_name, "date_format", "the date column is missing",
                                     column=self.raw_column(field))
            return pa.nulls(n, pa.date32())
        order = self.order(values, field)
        parsed = parse_dates(values, self.profile.date_format, order=order, latest=latest)
        bad = pc.is_null(parsed) if required else pc.and_(pc.is_valid(values),
                                                           pc.is_null(parsed))
        self.fail_first(bad, field, "date_format",
                        f"not a date: neither ISO 8601 nor {ORDER_LABELS[order]}/yyyy "
                        f"(this column's order) nor {self.profile.date_format}")
        return parsed


def _arrow(s: pd.Series) -> pa.Array:
    array = pa.array(s, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_string(array.type):
        array = array.cast(pa.string())
    return array


def _clean(values: pa.Array) -> pa.Array:
    """Trim, drop NationBuilder's leading ``'`` (it stops Excel reformatting), empty -> null."""
    trimmed = pc.utf8_trim_whitespace(values)
    if pc.any(pc.fill_null(pc.starts_with(trimmed, "'"), False)).as_py():
        trimmed = pc.utf8_trim_whitespace(pc.utf8_ltrim(trimmed, characters="'"))
    return pc.if_else(pc.equal(trimmed, ""), _NULL, trimmed)


def _nulls(n: int) -> pa.Array:
    return pa.nulls(n, pa.string())


def _count_lost(before: pa.Array | None, after: pa.Array) -> int:
    if before is None:
        return 0
    lost = pc.and_(pc.is_valid(before), pc.is_null(after))
    return int(pc.sum(lost).as_py() or 0)


def _true(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _normalize_email(values: pa.Array) -> pa.Array:
    folded = pc.utf8_lower(pc.utf8_normalize(values, form="NFKC"))
    if not pc.all(pc.fill_null(pc.string_is_ascii(values), True)).as_py():
        folded = pc.utf8_trim_whitespace(folded)  # NFKC can turn odd spaces into plain ones
    valid = pc.match_substring_regex(folded, EMAIL_PATTERN)
    return pc.if_else(valid, folded, _NULL)


def _map_unique(values: pa.Array, fn: Callable[[Any], Any], type_: pa.DataType) -> pa.Array:
    """Apply ``fn`` once per distinct value (null stays null)."""
    if len(values) == 0:
        return pa.array([], type=type_)
    encoded = pc.dictionary_encode(values)
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], type=type_)
    return pc.take(mapped, encoded.indices)


@dataclass(frozen=True)
class _PlaceTable:
    """Every code of a public list with its placement, as arrays for vectorized lookups."""

    codes: pa.Array
    commune: pa.Array
    departement: pa.Array
    region: pa.Array

    @classmethod
    def build(cls, codes: list[str], place: Callable[[str], Placement]) -> _PlaceTable:
        found = [place(code) for code in codes]
        return cls(pa.array(codes, type=pa.string()),
                   *(pa.array([getattr(p, a) for p in found], type=pa.string())
                     for a in ("commune", "departement", "region")))

    def look_up(self, values: pa.Array) -> dict[str, pa.Array]:
        at = pc.index_in(values, value_set=self.codes)
        return {"commune": pc.take(self.commune, at), "departement": pc.take(self.departement, at),
                "region": pc.take(self.region, at)}


def _place_tables(geo: Geography) -> tuple[_PlaceTable, _PlaceTable]:
    """Placement of every La Poste postcode and of every COG commune code."""
    return (_PlaceTable.build(sorted(geo.postcode_communes), geo.place_postcode),
            _PlaceTable.build(sorted(geo.communes), geo.place_commune))


@lru_cache(maxsize=1)
def _default_place_tables() -> tuple[_PlaceTable, _PlaceTable]:
    return _place_tables(load_geography())


def _place(insee: pa.Array | None, postcode: pa.Array | None,
           tables: tuple[_PlaceTable, _PlaceTable], n: int) -> dict[str, pa.Array]:
    """Commune, département, région: by INSEE code when there is one, else by postcode.

    A postcode must be five digits (``1000`` is not guessed into ``01000``), and is placed
    through La Poste's table only: one commune -> that commune; several communes of one
    département -> that département; anything else stays unplaced.
    """
    by_postcode, by_commune = tables
    placed = {"commune": _nulls(n), "departement": _nulls(n), "region": _nulls(n)}
    if postcode is not None:
        placed = by_postcode.look_up(pc.replace_substring(postcode, " ", ""))
    if insee is not None:
        by_code = by_commune.look_up(pc.utf8_upper(insee))
        use = pc.is_valid(by_code["departement"])
        placed = {k: pc.if_else(use, by_code[k], placed[k]) for k in placed}
    return placed


def _support_level(values: pa.Array | None, n: int) -> pa.Array:
    """The leading 1-5 of a scale value: ``2``, ``2 - Lean Support``, ``1-Strong Dupont``."""
    if values is None:
        return pa.nulls(n, pa.int8())
    encoded = pc.dictionary_encode(values)
    found = pc.extract_regex(encoded.dictionary, r"^(?P<level>[1-5])(?:\D|$)")
    return pc.take(pc.cast(pc.struct_field(found, [0]), pa.int8()), encoded.indices)


def _key(text: str) -> str:
    import unicodedata

    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _vocabulary(values: pa.Array | None, table: Mapping[str, str], allowed: tuple[str, ...],
                n: int, missing: str) -> pa.Array:
    """Map raw codes to a closed vocabulary; unknown -> ``other``, missing -> ``missing``."""
    if values is None:
        return pa.array([missing] * n, type=pa.string())
    keys = {_key(k): v for k, v in table.items()}

    def code(text: str) -> str:
        key = _key(text)
        found = keys.get(key) or (key if key in allowed else None)
        return found if found in allowed else "other"

    mapped = _map_unique(values, code, pa.string())
    return pc.fill_null(mapped, missing)


def _bool(values: pa.Array | None, n: int) -> pa.Array:
    return parse_bool(values) if values is not None else pa.nulls(n, pa.bool_())


def _people(ctx: _Context, col: Callable[[str], pa.Array | None], raw: pd.DataFrame,
            reference_date: date | None, n: int) -> dict[str, pa.Array]:
    created = ctx.dates(col("created_at"), "created_at", n)
    ref = reference_date or raw.attrs.get("reference_date") or pc.max(created).as_py()
    born = ctx.dates(col("birth_date"), "birth_date", n, latest=ref)
    if ref is None and n:
        log.warning("%s: no reference date (no created_at): age bands left empty", ctx.file_name)
    return {
        "age_band": _age_bands(born, ref),
        "support_level": _support_level(col("support_level"), n),
        "is_volunteer": _bool(col("is_volunteer"), n),
        "is_donor": _bool(col("is_donor"), n),
        "email_opt_in": _bool(col("email_opt_in"), n),
        "mobile_opt_in": _bool(col("mobile_opt_in"), n),
        "created_month": _strftime(created, "%Y-%m"),
        "updated_at": _timestamps(ctx, col("updated_at"), n),
    }


def _timestamps(ctx: _Context, values: pa.Array | None, n: int) -> pa.Array:
    """An ``updated_at`` column as sortable ISO text (UTC when an offset is given), or nulls.

    Only its order matters (which export of a person is newer), so a value that does not
    parse is left null rather than rejecting the file: arrival order then decides.
    """
    if values is None:
        return _nulls(n)

    def iso(text: str) -> str | None:
        for parse in (datetime.fromisoformat,
                      lambda t: datetime.strptime(t, ctx.profile.date_format)):
            try:
                stamp = parse(text.replace("Z", "+00:00"))
            except ValueError:
                continue
            if stamp.tzinfo is not None:
                stamp = stamp.astimezone(UTC).replace(tzinfo=None)
            return stamp.isoformat(timespec="seconds")
        return None

    return _map_unique(values, iso, pa.string())


def _event_id(ctx: _Context, col: Callable[[str], pa.Array | None], n: int) -> pa.Array:
    """The source's own event id, namespaced like ``source_id`` (null when the export has none)."""
    raw = col("event_id")
    if raw is None:
        return _nulls(n)
    return pc.binary_join_element_wise(f"{ctx.profile.namespace}:event:", raw, "")


def _age_bands(born: pa.Array, ref: date | None) -> pa.Array:
    """Age in whole years at ``ref``, banded (core.vocabulary.AGE_BANDS); minors -> null."""
    if ref is None or len(born) == 0:
        return pa.nulls(len(born), pa.string())
    encoded = pc.dictionary_encode(born)
    days = encoded.dictionary
    year = pc.year(days).to_numpy(zero_copy_only=False)
    before_birthday = (pc.month(days).to_numpy(zero_copy_only=False) * 100
                       + pc.day(days).to_numpy(zero_copy_only=False)) > ref.month * 100 + ref.day
    age = ref.year - year - before_birthday
    index = np.searchsorted(_AGE_EDGES, age, side="right") - 1
    index = np.where((index >= 0) & (index < len(AGE_BANDS)), index, len(AGE_BANDS))
    labels = pc.take(_BAND_LABELS, pa.array(index))
    return pc.take(labels, encoded.indices)


def _strftime(days: pa.Array, pattern: str) -> pa.Array:
    """Format dates once per distinct day (formatting is slow per row)."""
    if len(days) == 0:
        return pa.array([], type=pa.string())
    encoded = pc.dictionary_encode(days)
    labels = pc.strftime(pc.cast(encoded.dictionary, pa.timestamp("s")), format=pattern)
    return pc.take(labels, encoded.indices)


def _contacts(ctx: _Context, col: Callable[[str], pa.Array | None],
              n: int) -> dict[str, pa.Array]:
    when = ctx.dates(col("contact_date"), "contact_date", n, required=True)
    maps = ctx.profile.value_maps
    channel_values = col("channel")
    if channel_values is None and "channel" not in ctx.profile.fields:
        channel = pa.array(["door"] * n, type=pa.string())  # a door-to-door app's export
    else:
        channel = _vocabulary(channel_values, maps.get("channel", CHANNEL_MAP), CHANNELS, n,
                              "other")
    canvasser = col("canvasser_id")
    if canvasser is not None:
        folded = pc.utf8_lower(pc.utf8_normalize(canvasser, form="NFKC"))
        folded = pc.replace_substring_regex(folded, r"\s+", " ")
        canvasser_id = pc.binary_join_element_wise(f"{ctx.profile.namespace}:canvasser:",
                                                   folded, "")
    else:
        canvasser_id = _nulls(n)
    return {
        "week": _strftime(when, "%G-W%V"),
        "channel": channel,
        "result": _vocabulary(col("result"), maps.get("result", {}), RESULTS, n, "other"),
        "support_level": _support_level(col("support_level"), n),
        "canvasser_id": canvasser_id,
        "event_day": _strftime(when, "%Y-%m-%d"),
        "event_id": _event_id(ctx, col, n),
    }


def _donations(ctx: _Context, col: Callable[[str], pa.Array | None],
               n: int) -> dict[str, pa.Array]:
    when = ctx.dates(col("donation_date"), "donation_date", n, required=True)
    amounts = col("amount")
    if amounts is None:
        raise InputFileError(ctx.file_name, "amount_format", "the amount column is missing",
                             column=ctx.profile.fields.get("amount", "amount"))
    decimal = str(raw_decimal) if (raw_decimal := ctx.attrs.get("decimal")) else \
        detect_decimal(amounts, ctx.profile.decimal)
    parsed = _map_unique(amounts, lambda t: parse_amount(t, decimal)[0], pa.int64())
    rules = pc.fill_null(_map_unique(amounts, lambda t: parse_amount(t, decimal)[1], pa.string()),
                         "")
    rules = pc.if_else(pc.is_null(amounts), "amount_format", rules)
    first = pc.index(pc.not_equal(rules, ""), True).as_py()
    if first is not None and first >= 0:
        rule = rules[first].as_py()
        detail = "a negative amount" if rule == "negative_amount" else \
            f"not an amount with {decimal!r} as decimal mark"
        ctx.fail_first(pc.equal(rules, rule), "amount", rule, detail)
    methods = {**METHOD_MAP, **ctx.profile.value_maps.get("method", {})}
    return {
        "amount_cents": parsed,
        "month": _strftime(when, "%Y-%m"),
        "method": _vocabulary(col("method"), methods, DONATION_METHODS, n, "other"),
        "recurring": _bool(col("recurring"), n),
        "event_day": _strftime(when, "%Y-%m-%d"),
        "event_id": _event_id(ctx, col, n),
    }


def _to_pandas(columns: Mapping[str, pa.Array], kind: str) -> pd.DataFrame:
    table = pa.table(dict(columns))
    types = {pa.bool_(): pd.BooleanDtype(), pa.int8(): pd.Int8Dtype()}
    frame = table.to_pandas(types_mapper=types.get)
    if "amount_cents" in frame.columns:
        frame["amount_cents"] = frame["amount_cents"].astype("int64")
    return frame
