"""Phone numbers to E.164, fast for the common French forms.

``phonenumbers`` costs tens of microseconds per value: too slow for a million rows. So the
common forms are decided by vectorized string operations (pyarrow compute, RE2): after
removing spaces, dots, dashes, slashes, parentheses, quotes and a ``(0)``, a number written
``0612345678``, ``+33612345678`` or ``0033612345678`` is valid when its nine national
digits match the patterns ``phonenumbers`` itself uses for France (its metadata, read once),
and becomes ``+33612345678``.

Overseas départements share France's national format but not its country code: a national
``0690…`` is Guadeloupe's ``+590690…``, ``0262…`` Réunion's ``+262262…``. Those, and numbers
already written ``+262…``, ``+590…``, ``+594…``, ``+596…``, are checked against the
patterns of their territories the same way. Anything else (foreign numbers, odd lengths)
goes to ``phonenumbers``, once per distinct value (memoized). A value that is not a valid
number becomes missing.
"""

from __future__ import annotations

from functools import cache, lru_cache

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: National prefixes (after the leading 0) of the overseas départements -> country code.
OVERSEAS_PREFIXES: dict[str, str] = {
    "262": "262", "263": "262", "692": "262", "693": "262",  # La Réunion
    "269": "262", "639": "262",  # Mayotte
    "590": "590", "690": "590", "691": "590",  # Guadeloupe, Saint-Barthélemy, Saint-Martin
    "594": "594", "694": "594",  # Guyane
    "596": "596", "696": "596", "697": "596",  # Martinique
}
#: Country code -> the regions of phonenumbers' metadata that share it.
TERRITORIES: dict[str, tuple[str, ...]] = {
    "33": ("FR",), "262": ("RE", "YT"), "590": ("GP", "BL", "MF"), "594": ("GF",),
    "596": ("MQ",),
}
#: The number types phonenumbers.is_valid_number accepts.
_NUMBER_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "voip",
                 "personal_number", "pager", "uan", "voicemail")
_SEPARATORS = r"[\s.\-/()'\"\x{00A0}\x{202F}]"
_NULL = pa.scalar(None, pa.string())
#: The forms the fast path decides: a national number, or one of France's country codes,
#: then the nine national digits.
_FORMS = r"^(?P<lead>0|\+33|\+262|\+590|\+594|\+596)(?P<nsn>[1-9]\d{8})$"
_OVERSEAS_KEYS = pa.array(list(OVERSEAS_PREFIXES))
_OVERSEAS_CODES = pa.array(list(OVERSEAS_PREFIXES.values()))


@cache
def national_pattern(country_code: str) -> str:
    """RE2 pattern of every valid national number of ``country_code`` (phonenumbers' data)."""
    from phonenumbers import PhoneMetadata

    parts = []
    for region in TERRITORIES[country_code]:
        metadata = PhoneMetadata.metadata_for_region(region)
        for kind in _NUMBER_TYPES:
            desc = getattr(metadata, kind, None)
            if desc is not None and desc.national_number_pattern:
                parts.append(f"(?:{desc.national_number_pattern})")
    return "^(?:" + "|".join(parts) + ")$"


def normalize_phones(s: pd.Series, default_region: str = "FR") -> pd.Series:
    """Phones to E.164 strings (``+33612345678``); invalid or missing values are missing.

    ``default_region`` is the region of numbers written without a country code.
    """
    values = pa.array(s.astype(object).where(s.notna(), None), type=pa.string())
    result = normalize_phones_arrow(values, default_region)
    return pd.Series(result.to_numpy(zero_copy_only=False), index=s.index, name=s.name, dtype="str")


def normalize_phones_arrow(values: pa.Array, default_region: str = "FR") -> pa.Array:
    """The same on a pyarrow string array."""
    if len(values) == 0:
        return pa.array([], type=pa.string())
    if values.null_count > len(values) // 4:  # work on the values present only
        present = pc.is_valid(values)
        found = normalize_phones_arrow(values.filter(present), default_region)
        return pc.replace_with_mask(pa.nulls(len(values), pa.string()), present, found)
    cleaned = _strip_separators(values)
    found = pc.extract_regex(cleaned, _FORMS)
    lead, nsn = pc.struct_field(found, [0]), pc.struct_field(found, [1])
    national = pc.equal(lead, "0")
    overseas_code = pc.take(_OVERSEAS_CODES, pc.index_in(pc.utf8_slice_codeunits(nsn, 0, 3),
                                                         value_set=_OVERSEAS_KEYS))
    if default_region == "FR":
        national_code = pc.fill_null(overseas_code, "33")
    else:  # a national number of another region: phonenumbers decides
        national_code = pa.nulls(len(values), pa.string())
    code = pc.if_else(national, national_code, pc.utf8_slice_codeunits(lead, 1, 4))
    french = pc.fill_null(pc.equal(code, "33"), False)
    valid = pc.and_(french, pc.fill_null(pc.match_substring_regex(nsn, national_pattern("33")),
                                         False))
    result = pc.if_else(valid, pc.binary_join_element_wise("+33", nsn, ""), _NULL)
    overseas = pc.and_(pc.is_valid(code), pc.invert(french))
    overseas = pc.fill_null(overseas, False)
    if pc.any(overseas).as_py():
        result = pc.replace_with_mask(result, overseas,
                                      _overseas(nsn.filter(overseas), code.filter(overseas),
                                                national.filter(overseas)))
    decided = pc.is_valid(code)
    undecided = pc.and_(pc.invert(pc.fill_null(decided, False)),
                        pc.invert(pc.equal(pc.fill_null(cleaned, ""), "")))
    undecided = pc.fill_null(undecided, False)
    if pc.any(undecided).as_py():
        slow = [parse_phone(v, default_region) for v in values.filter(undecided).to_pylist()]
        result = pc.replace_with_mask(result, undecided, pa.array(slow, type=pa.string()))
    return result


def _overseas(nsn: pa.Array, code: pa.Array, national: pa.Array) -> pa.Array:
    """Numbers of the overseas départements, against their own territory's patterns; a
    national number the territory does not know may still be a French one (0263...)."""
    result = pa.nulls(len(nsn), pa.string())
    for country in TERRITORIES:
        mine = pc.fill_null(pc.equal(code, country), False)
        valid = pc.fill_null(pc.match_substring_regex(nsn, national_pattern(country)), False)
        hit = pc.and_(mine, valid)
        result = pc.if_else(hit, pc.binary_join_element_wise(f"+{country}", nsn, ""), result)
    retry = pc.and_(national, pc.is_null(result))
    valid = pc.fill_null(pc.match_substring_regex(nsn, national_pattern("33")), False)
    return pc.if_else(pc.and_(retry, valid), pc.binary_join_element_wise("+33", nsn, ""), result)


def _strip_separators(values: pa.Array) -> pa.Array:
    """Remove what people put between digits: spaces from every value (cheap), the other
    separators only from the few values that still hold something besides digits."""
    cleaned = pc.replace_substring(values, " ", "")
    odd = pc.invert(pc.fill_null(pc.ascii_is_decimal(pc.ascii_ltrim(cleaned, characters="+")),
                                 True))
    if pc.any(odd).as_py():
        fixed = pc.replace_substring(cleaned.filter(odd), "(0)", "")
        fixed = pc.replace_substring_regex(fixed, _SEPARATORS, "")
        cleaned = pc.replace_with_mask(cleaned, odd, fixed)
    if pc.any(pc.fill_null(pc.starts_with(cleaned, "00"), False)).as_py():
        cleaned = pc.replace_substring_regex(cleaned, r"^00", "+")
    return cleaned


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
