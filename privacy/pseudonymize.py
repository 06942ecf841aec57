"""Turn a normalized frame into pseudonymized, generalized rows: the hand-off out of the raw zone.

What comes out is an explicit allow-list per kind. Identifiers become keyed pseudonyms
(used only for identity resolution and then kept solely in ``identifier_links``); names,
street addresses, free text and exact birth dates never enter the frame that comes out,
because nothing outside the allow-list is copied. Rows without a lawful basis for
analytics, or whose identifiers are on the objection list, are dropped and only counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from privacy.keys import Keyring, Pseudonymizer

#: Identifier columns of the normalized frame and the kind of identifier each holds.
IDENTIFIER_KINDS: dict[str, str] = {
    "source_id": "source_id", "email": "email", "phone": "phone", "phone2": "phone",
}
ID_COLUMNS: tuple[str, ...] = ("id_source", "id_email", "id_phone", "id_phone2")
_ID_FROM = dict(zip(IDENTIFIER_KINDS, ID_COLUMNS, strict=True))

#: Attribute columns kept per kind (all generalized codes; see warehouse/schema.py).
KEPT_COLUMNS: dict[str, tuple[str, ...]] = {
    "people": ("commune", "departement", "region", "age_band", "support_level", "is_volunteer",
               "is_donor", "email_opt_in", "mobile_opt_in", "created_month"),
    "contacts": ("row_id", "canvasser_id", "week", "channel", "result", "support_level",
                 "commune", "departement", "region"),
    "donations": ("row_id", "amount_cents", "month", "method", "recurring", "commune",
                  "departement", "region"),
}

PURPOSE_IDENTITY = "identity"
PURPOSE_PERSON = "person"
PURPOSE_ROW = "row"
PURPOSE_CANVASSER = "canvasser"


@dataclass(frozen=True)
class PseudonymizeStats:
    rows_in: int
    rows_out: int
    excluded_no_basis: int
    excluded_objection: int


class PseudonymCache:
    """Per-file memo of value → pseudonym, so a repeated identifier is hashed once.

    Lives only for the duration of one file's preparation, in the task's memory.
    """

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self._p = pseudonymizer
        self._memo: dict[tuple[str, str], str] = {}

    def map(self, kind: str, values: pd.Series) -> pd.Series:
        present = values.dropna()
        if present.empty:
            return pd.Series([None] * len(values), index=values.index, dtype=object)
        uniques = pd.unique(present.to_numpy(dtype=object))
        missing = [v for v in uniques if (kind, v) not in self._memo]
        for value, pseudo in zip(missing, self._p.pseudonymize_many(kind, missing), strict=True):
            self._memo[(kind, value)] = pseudo
        table = {v: self._memo[(kind, v)] for v in uniques}
        return values.map(table).astype(object).where(values.notna(), None)


def pseudonymize_chunk(normalized: pd.DataFrame, kind: str, *, dataset: str, keyring: Keyring,
                       file_sha256: str, identity_cache: PseudonymCache,
                       objections: frozenset[str] = frozenset()) -> tuple[pd.DataFrame,
                                                                         PseudonymizeStats]:
    """Pseudonymize one normalized chunk; the result holds only allow-listed columns."""
    rows_in = len(normalized)
    basis = normalized["lawful_basis"].fillna(False).astype(bool)
    frame = normalized.loc[basis]
    excluded_no_basis = rows_in - len(frame)

    out = pd.DataFrame(index=frame.index)
    for column, id_column in _ID_FROM.items():
        if column in frame.columns:
            out[id_column] = identity_cache.map(IDENTIFIER_KINDS[column], frame[column])
        else:
            out[id_column] = None

    excluded_objection = 0
    if objections and len(out):
        hit = out[list(ID_COLUMNS)].isin(objections).any(axis=1)
        excluded_objection = int(hit.sum())
        out = out.loc[~hit]
        frame = frame.loc[~hit]

    if kind in ("contacts", "donations"):
        rows = keyring.pseudonymizer(dataset, PURPOSE_ROW)
        messages = (file_sha256 + ":" + frame["row_number"].astype("int64").astype(str)).tolist()
        out["row_id"] = rows.pseudonymize_many(kind, messages)
    if kind == "contacts":
        canvassers = PseudonymCache(keyring.pseudonymizer(dataset, PURPOSE_CANVASSER))
        out["canvasser_id"] = canvassers.map("canvasser", frame["canvasser_id"])
    for column in KEPT_COLUMNS[kind]:
        if column in ("row_id", "canvasser_id"):
            continue
        out[column] = frame[column] if column in frame.columns else None
    out = out.reset_index(drop=True)
    return out, PseudonymizeStats(rows_in, len(out), excluded_no_basis, excluded_objection)


def pseudonymize_identifiers(keyring: Keyring, dataset: str, kind: str,
                             values: Iterable[str]) -> list[str]:
    """Pseudonyms of normalized identifiers (for erasure and objection requests)."""
    return keyring.pseudonymizer(dataset, PURPOSE_IDENTITY).pseudonymize_many(kind, list(values))
