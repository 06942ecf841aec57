"""Regular expressions the suites share: what personal data looks like, and what valid codes look like.

Two families live here:

* **Leak patterns** (:data:`PII_PATTERNS`): an email, a phone number (French or international),
  an IBAN or a street address anywhere inside a value. The pseudonymized and published suites
  fail when any value matches one. They are searched (not anchored), so an email inside a
  sentence is found.
* **Shape patterns** for raw exports: a well-formed email, a French postcode with a real
  département prefix, a support level, a profile's result codes, a phone number.

Every pattern is written so pandas can hand it to pyarrow's RE2 engine (no look-arounds, no
``\\d``/``\\s``/``\\b``, which RE2 and Python treat differently; the end anchor is ``\\Z``, since
``$`` makes pandas scan for newlines first): pandas 3 then evaluates it in C++ over a whole
column, and Great Expectations, which calls the same ``Series.str.contains``, gets exactly the
same answer. Patterns are case-sensitive unless they say ``(?i)``.

No leak pattern matches a valid pseudonym (``k1:`` + lowercase base32) or an official code
(département, commune, age band, ISO week...): tests prove it, and the fast path relies on it
to scan only values that are not already known to be pseudonyms or codes.

>>> import re
>>> bool(re.search(PHONE_FR, "appeler le 06 12 34 56 78"))
True
>>> bool(re.search(PHONE_FR, "k1:abcdefghijklmnopqrstuvwxyz234567"))
False
>>> bool(re.search(postcode_pattern(), "20090")), bool(re.search(postcode_pattern(), "99000"))
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType

# ------------------------------------------------------------------ leak patterns (searched)

#: An email address anywhere in a value (any local part: RFC 5322 allows ``!#$%&'*+/=?^`{|}~``).
EMAIL = r"[^ \t\r\n@<>(),;:\"\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"

#: A French number: national ``06 12 34 56 78`` / ``0612345678`` / ``06.12.34.56.78``, or
#: international ``+33 6 12 34 56 78`` / ``0033612345678`` / ``+33 (0)6...``.
PHONE_FR = (
    r"(?:^|[^0-9])0[1-9](?:[ .-]?[0-9]{2}){4}(?:\Z|[^0-9])"
    r"|(?:\+|00) ?33 ?(?:\(0\) ?)?[1-9](?:[ .-]?[0-9]{2}){4}"
)

#: Any international number: ``+`` then 8 to 15 digits, optionally grouped (E.164 and its
#: printed forms, ``+1 202-555-0143``).
PHONE_INTERNATIONAL = r"\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}"

#: An IBAN as banks print it (capitals, optionally in groups of four). Lowercase IBANs are not
#: matched on purpose: pseudonyms are lowercase base32 and would look like one.
IBAN = r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}"

_STREET_WORDS = (
    r"rue|avenue|av\.|bd|boulevard|place|all[ée]e|impasse|chemin|route|quai|cours|square"
    r"|passage|faubourg|lieu-dit|r[ée]sidence|hameau|voie|sentier|rond-point|esplanade|parvis"
    r"|cit[ée]|villa|promenade|street|st\.|road|lane|drive|avenida|calle|strasse|straße"
)
#: A street address: ``12 rue des Lilas``, ``3bis, avenue Foch``, ``rue de la Paix``,
#: ``221 Baker Street``.
STREET_ADDRESS = (
    rf"(?i)[0-9]{{1,4}} ?(?:bis|ter|[a-d])?,? +(?:{_STREET_WORDS})(?:\Z|[^a-zà-ÿ])"
    r"|(?:^|[^a-zà-ÿ])(?:rue|avenue|boulevard|impasse|all[ée]e|chemin|quai|faubourg)"
    r" +(?:de |du |des |d'|la |le |les )"
    r"|[0-9]{1,5} +[a-z]+ +(?:street|road|avenue|lane|drive|boulevard)(?:\Z|[^a-z])"
)

#: Every leak pattern family, by the name rules and reports use.
PII_PATTERNS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "email": (EMAIL,),
    "phone": (PHONE_FR, PHONE_INTERNATIONAL),
    "iban": (IBAN,),
    "street_address": (STREET_ADDRESS,),
})

# ------------------------------------------------------------------ pseudonyms and codes

#: A pseudonym as ``privacy.keys`` writes it: key id, colon, lowercase unpadded base32. The key
#: id is capped at 6 digits so no phone number can hide in it: a value of this shape provably
#: matches no leak pattern, and the fast path does not scan it again.
PSEUDONYM = r"^k[0-9]{1,6}:[a-z2-7]+\Z"

ISO_WEEK = r"^[0-9]{4}-W(?:0[1-9]|[1-4][0-9]|5[0-3])\Z"
YEAR_MONTH = r"^[0-9]{4}-(?:0[1-9]|1[0-2])\Z"
SHA256_HEX = r"^[0-9a-f]{64}\Z"
SLUG = r"^[a-z0-9_]+\Z"

# ------------------------------------------------------------------ raw shapes (anchored)

#: A well-formed email, allowing the spaces exports leave around values.
EMAIL_WELL_FORMED = (
    r"^ *[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,} *\Z"
)

#: NationBuilder guards values from Excel with a leading ``'`` (``'06 12...``, ``'02160``); the
#: normalizer strips it, so the raw shapes below accept it.

#: A support level: 1 to 5, alone (``3``) or leading a survey answer (VAN: ``1 - Strong Support``).
SUPPORT_LEVEL = r"^ *'?[1-5](?:\Z|[^0-9.,])"

#: A phone number as exports write it: digits, spaces, dots, dashes, brackets, ``+`` or ``00``.
PHONE_PLAUSIBLE = r"^ *'?(?:\+|00)?[0-9][0-9 ().-]{5,24} *\Z"

#: Every leak regex, flattened (one expectation per column checks them all).
ALL_PII_REGEXES: tuple[str, ...] = tuple(r for regexes in PII_PATTERNS.values() for r in regexes)


def family_of(regex: str) -> str:
    """The leak family a regex of :data:`ALL_PII_REGEXES` belongs to."""
    for name, regexes in PII_PATTERNS.items():
        if regex in regexes:
            return name
    raise KeyError("not a leak pattern")


def result_pattern(codes: Iterable[str]) -> str:
    """Any of a profile's result codes, case-insensitive, spaces around allowed."""
    names = sorted({c.strip() for c in codes if c.strip()}, key=lambda c: (-len(c), c))
    if not names:
        raise ValueError("a result vocabulary needs at least one code")
    return "(?i)^ *(?:" + "|".join(re.escape(n) for n in names) + r") *\Z"


@lru_cache(maxsize=1)
def postcode_pattern() -> str:
    """French postcodes: 5 digits starting with a real département's prefix.

    Built from the COG snapshot (``core.geography``): metropolitan départements give two-digit
    prefixes, Corsica (2A, 2B) shares ``20``, overseas départements give ``971``-``976``.
    """
    from core.geography import load_geography

    two: set[str] = set()
    three: set[str] = set()
    for code in load_geography().departements:
        if code in ("2A", "2B"):
            two.add("20")
        elif len(code) == 3:
            three.add(code)
        else:
            two.add(code)
    alternatives = [f"{head}{_digit_class(tails)}[0-9]{{3}}"
                    for head, tails in _by_head(two).items()]
    alternatives += [f"{head}{_digit_class(tails)}[0-9]{{2}}"
                     for head, tails in _by_head(three).items()]
    return "^ *'?(?:" + "|".join(alternatives) + r") *\Z"


def _by_head(prefixes: set[str]) -> dict[str, list[str]]:
    """Group prefixes by all but their last digit: {"0": ["1", ..., "9"], "97": [...]}."""
    groups: dict[str, list[str]] = {}
    for prefix in sorted(prefixes):
        groups.setdefault(prefix[:-1], []).append(prefix[-1])
    return groups


def _digit_class(digits: list[str]) -> str:
    """A compact character class for sorted digits: ["1","2","3","6"] -> "[1-36]"."""
    values = sorted(int(d) for d in set(digits))
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    parts = [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    return "[" + "".join(parts) + "]"


def find_pii(value: str) -> tuple[str, ...]:
    """The leak families found in one value (for tests and debugging; never log the value)."""
    return tuple(name for name, regexes in PII_PATTERNS.items()
                 if any(re.search(r, value) for r in regexes))
