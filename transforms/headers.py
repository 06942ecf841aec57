"""Header matching: a profile's raw column found under the spelling a file uses.

Exports are re-saved and hand-edited: ``email`` becomes ``Email``, ``E-mail`` or ``Courriel``,
``code_postal`` becomes ``Code postal`` or ``CP``. A header cell matches a profile's column when,
in this order of preference:

1. it is written exactly as the profile writes it;
2. it is the same once *folded*: trimmed, case-folded, accents removed, and runs of spaces,
   ``_``, ``-``, ``.`` and apostrophes made one ``_`` (``Téléphone`` = ``telephone``,
   ``Code postal`` = ``code_postal``, ``E-mail`` = ``e_mail``);
3. it is, folded, one of the aliases of the internal field the column feeds
   (:data:`COMMON_ALIASES`, plus the profile's own ``column_aliases``).

Each header cell is claimed by one profile column at most. Two cells matching one column at the
same level are a ``duplicate_column``. Cells that no column claims are *ignored*: their values
are never read, and their names are listed in the read report (a name that looks like
personal data, such as an email address left in a header row, is listed by position only).

>>> from transforms.sources import NATIONBUILDER_PEOPLE as NB
>>> m = match_header(["nationbuilder_id", " E-mail ", "Téléphone portable", "CP", "Pays"], NB)
>>> dict(m.aliases)
{'email': 'E-mail', 'mobile_number': 'Téléphone portable', 'primary_zip': 'CP'}
>>> m.ignored
('Pays',)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from transforms.sources import SourceProfile

#: Spellings of each internal field's column seen in exports (folded before comparing).
COMMON_ALIASES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "email": ("email", "e-mail", "mail", "courriel", "email address", "e-mail address",
              "adresse email", "adresse e-mail", "adresse mail", "adresse électronique",
              "adresse courriel"),
    "phone": ("phone", "phone number", "telephone", "téléphone", "tel", "tél",
              "numéro de téléphone", "téléphone fixe", "telephone number"),
    "phone2": ("mobile", "mobile number", "mobile phone", "cell", "cell phone", "portable",
               "téléphone portable", "tél portable", "tel portable", "téléphone mobile",
               "numéro de portable"),
    "postcode": ("zip", "zip code", "zipcode", "zip5", "postcode", "postal code", "post code",
                 "code postal", "cp"),
    "insee_code": ("insee", "code insee", "code commune", "citycode"),
    "birth_date": ("born at", "birth date", "birthdate", "date of birth", "dob",
                   "date de naissance", "naissance"),
    "support_level": ("support level", "niveau de soutien", "soutien"),
    "created_at": ("created at", "created", "date de création", "date creation"),
    "do_not_contact": ("do not contact", "ne pas contacter"),
    "email_opt_in": ("email opt in", "opt in email"),
    "mobile_opt_in": ("mobile opt in", "sms opt in"),
    "is_volunteer": ("volunteer", "bénévole"),
})

_SEPARATORS = re.compile(r"[\s_\-.'’]+")
#: A header cell that looks like a value rather than a name: never echoed in reports.
_VALUE_LIKE = re.compile(r"@|\d{5,}|(?:\d[\s.\-/]?){6,}|^.{65,}$")


def fold(name: str) -> str:
    """A header cell's comparison key: trimmed, case-folded, accents and separators evened.

    >>> fold(" Téléphone-Portable "), fold("E-mail"), fold("\\ufeffCode  postal")
    ('telephone_portable', 'e_mail', 'code_postal')
    """
    text = unicodedata.normalize("NFKD", name.replace("\ufeff", "").strip().strip('"'))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return _SEPARATORS.sub("_", text).strip("_")


@dataclass(frozen=True)
class HeaderMatch:
    """Where each profile column is in a file's header, and what the file holds besides.

    ``columns`` is the header as written (cells trimmed); ``index`` maps a profile raw column
    to its position; ``aliases`` lists the profile columns found under another spelling (the
    spelling used); ``ignored`` names the cells no profile column claimed; ``duplicates``
    names profile columns matched by two cells at the same level.
    """

    columns: tuple[str, ...]
    index: Mapping[str, int]
    aliases: Mapping[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()

    def missing(self, required: Iterable[str]) -> list[str]:
        """The required profile columns the header lacks."""
        return [c for c in required if c not in self.index]

    @property
    def canonical(self) -> tuple[str, ...]:
        """The header with every matched cell renamed to the profile's column name."""
        names = list(self.columns)
        for column, at in self.index.items():
            names[at] = column
        return tuple(names)


def profile_columns(profile: SourceProfile) -> tuple[str, ...]:
    """Every raw column ``profile`` reads or requires (its consent column included)."""
    cols = [*profile.fields.values(), *profile.required]
    if profile.consent_column:
        cols.append(profile.consent_column)
    return tuple(dict.fromkeys(cols))


def _aliases(profile: SourceProfile, column: str) -> set[str]:
    internal = [f for f, raw in profile.fields.items() if raw == column]
    found: set[str] = {fold(a) for a in profile.column_aliases.get(column, ())}
    for name in internal:
        found.update(fold(a) for a in COMMON_ALIASES.get(name, ()))
        if name == "phone" and "phone2" not in profile.fields:
            found.update(fold(a) for a in COMMON_ALIASES["phone2"])  # a file's only phone
    return found


def match_header(columns: Sequence[str], profile: SourceProfile) -> HeaderMatch:
    """Match a header (as split from the file) against ``profile``'s columns."""
    written = tuple(c.replace("\ufeff", "").strip() for c in columns)
    folded = [fold(c) for c in written]
    wanted = profile_columns(profile)
    index: dict[str, int] = {}
    aliases: dict[str, str] = {}
    duplicates: list[str] = []
    claimed: set[int] = set()
    levels = (
        lambda col: [i for i, c in enumerate(written) if c == col],
        lambda col: [i for i, f in enumerate(folded) if f and f == fold(col)],
        lambda col: [i for i, f in enumerate(folded) if f and f in _aliases(profile, col)],
    )
    for level, find in enumerate(levels):
        for col in wanted:
            if col in index:
                continue
            hits = [i for i in find(col) if i not in claimed]
            if not hits:
                continue
            if len(hits) > 1:
                duplicates.append(col)
            index[col] = hits[0]
            claimed.add(hits[0])
            if level > 0 and written[hits[0]] != col:
                aliases[col] = written[hits[0]]
    ignored = tuple(_shown(c, i) for i, c in enumerate(written) if i not in claimed)
    return HeaderMatch(columns=written, index=MappingProxyType(index),
                       aliases=MappingProxyType(dict(sorted(aliases.items(),
                                                            key=lambda kv: index[kv[0]]))),
                       ignored=ignored, duplicates=tuple(duplicates))


def _shown(name: str, position: int) -> str:
    """A column name for a report: the name, or its position when it looks like a value."""
    if not name:
        return f"(column {position + 1}, no name)"
    if _VALUE_LIKE.search(name):
        return f"(column {position + 1})"
    return name
