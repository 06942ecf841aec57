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
import pyarrow as pa
import pyarrow.compute as pc

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


def pseudonyms_of(pseudonymizer: Pseudonymizer, kind: str, values: pd.Series) -> pd.Series:
    """Pseudonyms of one column (nulls stay null); each distinct value is hashed once.

    Dictionary encoding does the de-duplication in Arrow, so a supporter who appears on many
    rows of a chunk costs one HMAC, and no per-file memo of identifiers is kept in memory.
    """
    array = pa.array(values, type=pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = pc.dictionary_encode(array)
    pseudonyms = pseudonymizer.pseudonymize_array(kind, encoded.dictionary).take(encoded.indices)
    return pd.Series(pseudonyms.to_pandas().array, index=values.index)


def pseudonymize_chunk(normalized: pd.DataFrame, kind: str, *, dataset: str, keyring: Keyring,
                       file_sha256: str,
                       objections: frozenset[str] = frozenset()) -> tuple[pd.DataFrame,
                                                                         PseudonymizeStats]:
    """Pseudonymize one normalized chunk; the result holds only allow-listed columns."""
    rows_in = len(normalized)
    basis = normalized["lawful_basis"].fillna(False).astype(bool)
    frame = normalized.loc[basis]
    excluded_no_basis = rows_in - len(frame)

    identity = keyring.pseudonymizer(dataset, PURPOSE_IDENTITY)
    out = pd.DataFrame(index=frame.index)
    for column, id_column in _ID_FROM.items():
        if column in frame.columns:
            out[id_column] = pseudonyms_of(identity, IDENTIFIER_KINDS[column], frame[column])
        else:
            out[id_column] = pd.Series(None, index=frame.index, dtype="str")

    excluded_objection = 0
    if objections and len(out):
        hit = out[list(ID_COLUMNS)].isin(objections).any(axis=1)
        excluded_objection = int(hit.sum())
        out = out.loc[~hit]
        frame = frame.loc[~hit]

    if kind in ("contacts", "donations"):
        rows = keyring.pseudonymizer(dataset, PURPOSE_ROW)
        messages = pa.array(file_sha256 + ":" + frame["row_number"].astype("int64").astype(str),
                            type=pa.string())
        out["row_id"] = pd.Series(rows.pseudonymize_array(kind, messages).to_pandas().array,
                                  index=frame.index)
    if kind == "contacts":
        canvassers = keyring.pseudonymizer(dataset, PURPOSE_CANVASSER)
        out["canvasser_id"] = pseudonyms_of(canvassers, "canvasser", frame["canvasser_id"])
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
