"""Phone numbers to E.164, fast for the common French forms.

``phonenumbers`` costs tens of microseconds per value: too slow for a million rows. So the
common forms are decided by vectorized string operations (pyarrow compute, RE2) over the
unique values of a chunk: after removing spaces, dots, dashes, slashes, parentheses, quotes
and a ``(0)``, a metropolitan number written ``0612345678``, ``+33612345678`` or
``0033612345678`` whose nine national digits fall in the ranges ``phonenumbers`` itself
validates for France (fixed 1–5, mobile 6 and 73–79, VoIP 9) becomes ``+33612345678``.

Overseas départements share France's national format but not its country code: a national
``0690…`` is Guadeloupe's ``+590690…``, ``0262…`` Réunion's ``+262262…``. Those, numbers
already written with an overseas code, and everything else the fast path cannot decide go
to ``phonenumbers`` (once per unique value, memoized). A value that is not a valid number
becomes missing.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: The nine national digits that ``phonenumbers`` validates for France (metadata FR:
#: fixed line, mobile, VoIP), used as the fast path's whitelist.
FR_NATIONAL = (
    r"(?:(?:26[013-9]|59[1-35-9])\d{6}|(?:[13]\d|2[0-57-9]|4[1-9]|5[0-8])\d{7}"
    r"|(?:6(?:[0-24-8]\d|3[0-8]|9[589])|7[3-9]\d)\d{6}|9\d{8})"
)
#: National prefixes (after the leading 0) of the overseas départements -> country code.
OVERSEAS_PREFIXES: dict[str, str] = {
    "262": "262", "263": "262", "692": "262", "693": "262",  # La Réunion
    "269": "262", "639": "262",  # Mayotte
    "590": "590", "690": "590", "691": "590",  # Guadeloupe, Saint-Barthélemy, Saint-Martin
    "594": "594", "694": "594",  # Guyane
    "596": "596", "696": "596", "697": "596",  # Martinique
}

_SEPARATORS = r"[\s.\-/()'\"\x{00A0}\x{202F}]"


def normalize_phones(s: pd.Series, default_region: str = "FR") -> pd.Series:
    """Phones to E.164 strings (``+33612345678``); invalid or missing values are missing.

    ``default_region`` is the region of numbers written without a country code.
    """
    values = pa.array(s.astype(object).where(s.notna(), None), type=pa.string())
    result = normalize_phones_arrow(values, default_region)
    return pd.Series(result.to_pandas(), index=s.index, name=s.name, dtype="str")


def normalize_phones_arrow(values: pa.Array, default_region: str = "FR") -> pa.Array:
    """The same on a pyarrow string array: works on the unique values only."""
    if len(values) == 0:
        return pa.array([], type=pa.string())
    encoded = pc.dictionary_encode(values)
    uniques = encoded.dictionary
    mapped = _normalize_unique(uniques, default_region)
    return pc.take(mapped, encoded.indices)


def _normalize_unique(uniques: pa.Array, default_region: str) -> pa.Array:
    cleaned = pc.replace_substring(uniques, "(0)", "")
    cleaned = pc.replace_substring_regex(cleaned, _SEPARATORS, "")
    cleaned = pc.replace_substring_regex(cleaned, r"^00", "+")
    national = pc.match_substring_regex(cleaned, r"^0[1-9]\d{8}$")
    intl_fr = pc.match_substring_regex(cleaned, r"^\+33[1-9]\d{8}$")
    if default_region != "FR":
        national = pc.and_(national, pa.scalar(False))
    nsn = pc.if_else(national, pc.utf8_slice_codeunits(cleaned, 1, 10),
                     pc.if_else(intl_fr, pc.utf8_slice_codeunits(cleaned, 3, 12),
                                pa.scalar(None, pa.string())))
    overseas = pc.and_(national, pc.is_in(pc.utf8_slice_codeunits(cleaned, 1, 4),
                                          value_set=pa.array(list(OVERSEAS_PREFIXES))))
    fast = pc.and_kleene(pc.match_substring_regex(nsn, f"^{FR_NATIONAL}$"),
                         pc.invert(overseas))
    fast = pc.fill_null(fast, False)
    result = pc.if_else(fast, pc.binary_join_element_wise("+33", nsn, ""),
                        pa.scalar(None, pa.string()))
    undecided = pc.and_(pc.invert(fast), pc.invert(pc.equal(pc.fill_null(cleaned, ""), "")))
    slow_at = pc.indices_nonzero(pc.fill_null(undecided, False)).to_pylist()
    if not slow_at:
        return result
    originals = uniques.take(pa.array(slow_at)).to_pylist()
    overseas_flags = overseas.take(pa.array(slow_at)).to_pylist()
    cleaned_slow = cleaned.take(pa.array(slow_at)).to_pylist()
    fixed = [
        _overseas(clean) if is_overseas else parse_phone(original, default_region)
        for original, clean, is_overseas in zip(originals, cleaned_slow, overseas_flags,
                                                strict=True)
    ]
    out = result.to_pylist()
    for at, value in zip(slow_at, fixed, strict=True):
        out[at] = value
    return pa.array(out, type=pa.string())


def _overseas(cleaned: str) -> str | None:
    """A national number of an overseas département, under its own country code."""
    code = OVERSEAS_PREFIXES[cleaned[1:4]]
    found = parse_phone(f"+{code}{cleaned[1:]}", "FR")
    return found if found is not None else parse_phone(cleaned, "FR")


@lru_cache(maxsize=65536)
def parse_phone(value: str, region: str = "FR") -> str | None:
    """One value through ``phonenumbers``: E.164 when valid, else ``None`` (the slow path)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
