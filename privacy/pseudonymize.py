"""Turn a normalized frame into pseudonymized, generalized rows: the hand-off out of the raw zone.

What comes out is an explicit allow-list per kind. Identifiers become keyed pseudonyms
(used only for identity resolution and then kept solely in ``identifier_links``); names,
street addresses, free text and exact birth dates never enter the frame that comes out,
because nothing outside the allow-list is copied. Rows without a lawful basis for
analytics, or whose identifiers are on the objection list, are dropped and only counted.
"""

from __future__ import annotations

import hashlib
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
    "contacts": ("canvasser_id", "week", "channel", "result", "support_level",
                 "commune", "departement", "region"),
    "donations": ("amount_cents", "month", "method", "recurring", "commune",
                  "departement", "region"),
}
#: Staged columns that only steer the load (never stored as such in the warehouse).
EVENT_KEY = "event_key"  # keyed hash of the event's natural key (contacts, donations)
FINGERPRINT = "fingerprint"  # keyed hash of the whole staged row: unchanged rows are skipped
WITHDRAWN = "withdrawn"  # the row says do_not_contact: only its identifiers are staged
UPDATED_AT = "updated_at"  # people: which export of a person is newer
RAW_HASH = "raw_hash"  # keyed hash of the raw record (see raw_row_hashes)
RAW_OCCURRENCE = "raw_occurrence"  # events: the record's occurrence in the file, when known
#: Staged columns that travel beside the row and are no part of its fingerprint.
UNFINGERPRINTED: tuple[str, ...] = (UPDATED_AT, RAW_HASH, RAW_OCCURRENCE)
#: Columns whose values are keyed pseudonyms and that also exist under older key versions.
VERSIONED_COLUMNS: tuple[str, ...] = (*ID_COLUMNS, EVENT_KEY)

PURPOSE_IDENTITY = "identity"
PURPOSE_PERSON = "person"
PURPOSE_CANVASSER = "canvasser"
PURPOSE_EVENT = "event"
PURPOSE_FINGERPRINT = "fingerprint"
PURPOSE_RAW_ROW = "raw_row"
_SEP = "\x1f"  # unit separator: cannot occur in a normalized value


def previous_column(column: str, version: int) -> str:
    """The staged column holding ``column``'s pseudonyms under the older key ``version``.

    >>> previous_column("id_email", 1)
    'id_email__k1'
    """
    return f"{column}__k{version}"


@dataclass(frozen=True)
class PseudonymizeStats:
    rows_in: int
    rows_out: int
    excluded_no_basis: int
    excluded_objection: int
    withdrawn: int = 0  # rows staged with their identifiers only (excluded, and counted above)


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


def _joined(frame: pd.DataFrame, columns: Iterable[str]) -> pd.Series:
    """One text per row: the values of ``columns`` joined by a separator (null -> empty)."""
    parts = [frame[c].astype("string").fillna("") if c in frame.columns
             else pd.Series("", index=frame.index, dtype="string") for c in columns]
    if not parts:
        return pd.Series("", index=frame.index, dtype="string")
    text = parts[0]
    for part in parts[1:]:
        text = text + _SEP + part
    return text


def event_messages(frame: pd.DataFrame, natural_key: tuple[str, ...]) -> pd.Series:
    """The text whose keyed hash identifies an event: the source's event id, else the key tuple.

    Built from normalized values, so the same event re-saved in another dialect or date
    style keys the same. The occurrence number (two identical rows of one file are two
    events) is added at load time, over the whole file.
    """
    by_tuple = "t" + _SEP + _joined(frame, natural_key)
    if "event_id" not in frame.columns:
        return by_tuple
    event_id = frame["event_id"].astype("string")
    return ("i" + _SEP + event_id.fillna("")).where(event_id.notna(), by_tuple)


def raw_row_hashes(columns: list[pa.Array], context: str, keyring: Keyring,
                   dataset: str) -> pa.Array:
    """Keyed hash (purpose ``raw_row``, current key) of each raw record, as read.

    Why: a daily snapshot repeats yesterday's records byte for byte, and such a record
    normalizes, pseudonymizes and resolves exactly as it did then, provided the file-wide
    decisions are the same. ``context`` names those (profile, date orders, decimal mark,
    reference date, format version): it is the hash's domain, so a file read another way
    matches nothing and is processed in full. The message is the fields joined by a
    separator followed by their lengths, so two different records never share one.
    Keyed, never a plain hash: a record holds identifiers.
    """
    n = len(columns[0]) if columns else 0
    if not n:
        return pa.array([], type=pa.string())
    fields = [pc.fill_null(c.cast(pa.string()), "") for c in columns]
    lengths = [pc.cast(pc.binary_length(f), pa.string()) for f in fields]
    message = pc.binary_join_element_wise(*fields, *lengths, _SEP)
    kind = "raw:" + hashlib.sha256(context.encode()).hexdigest()[:32]
    return keyring.pseudonymizer(dataset, PURPOSE_RAW_ROW).pseudonymize_array(kind, message)


def _hash_text(pseudonymizer: Pseudonymizer, kind: str, text: pd.Series) -> pd.Series:
    hashed = pseudonymizer.pseudonymize_array(kind, pa.array(text, type=pa.string()))
    return pd.Series(hashed.to_pandas().array, index=text.index)


def pseudonymize_chunk(normalized: pd.DataFrame, kind: str, *, dataset: str, keyring: Keyring,
                       objections: frozenset[str] = frozenset(),
                       natural_key: tuple[str, ...] = ()) -> tuple[pd.DataFrame,
                                                                   PseudonymizeStats]:
    """Pseudonymize one normalized chunk; the result holds only allow-listed columns.

    Identifiers (and an event's natural key) are hashed under the current key version and,
    in ``<column>__k<n>`` columns, under every older version still in the keyring: the load
    looks them up under every version and stores them under the current one, so a key
    rotation never splits a human into two persons. A ``do_not_contact`` row, or one naming
    someone on the objection list, keeps only its identifier pseudonyms and
    ``withdrawn = true``: the load removes that person everywhere and lists the identifiers.
    """
    rows_in = len(normalized)
    basis = normalized["lawful_basis"].fillna(False).astype(bool)
    withdrawn_in = normalized["withdrawn"].fillna(False).astype(bool) \
        if WITHDRAWN in normalized.columns else pd.Series(False, index=normalized.index)
    frame = normalized.loc[basis | withdrawn_in]
    withdrawn = withdrawn_in.loc[frame.index]
    excluded_no_basis = rows_in - len(frame)
    older = sorted(v for v in keyring.keys if v != keyring.current.version)

    out = pd.DataFrame(index=frame.index)
    for version in (None, *older):
        identity = keyring.pseudonymizer(dataset, PURPOSE_IDENTITY, version)
        for column, id_column in _ID_FROM.items():
            name = id_column if version is None else previous_column(id_column, version)
            if column in frame.columns:
                out[name] = pseudonyms_of(identity, IDENTIFIER_KINDS[column], frame[column])
            else:
                out[name] = pd.Series(None, index=frame.index, dtype="str")

    # A row naming someone on the objection list is excluded and only counted; like a
    # withdrawn row it keeps its identifier pseudonyms, so the load can put them on the list
    # under the current key version too (and any new identifier of that person with them).
    excluded_objection = 0
    if objections and len(out):
        hit = out.isin(objections).any(axis=1)
        excluded_objection = int(hit.sum())
        withdrawn = withdrawn | hit
    if kind in ("contacts", "donations"):
        messages = event_messages(frame, natural_key)
        for version in (None, *older):
            events = keyring.pseudonymizer(dataset, PURPOSE_EVENT, version)
            name = EVENT_KEY if version is None else previous_column(EVENT_KEY, version)
            out[name] = _hash_text(events, kind, messages)
    if kind == "contacts":
        canvassers = keyring.pseudonymizer(dataset, PURPOSE_CANVASSER)
        out["canvasser_id"] = pseudonyms_of(canvassers, "canvasser", frame["canvasser_id"])
    for column in KEPT_COLUMNS[kind]:
        if column == "canvasser_id":
            continue
        out[column] = frame[column] if column in frame.columns else None
    if kind == "people":
        out[UPDATED_AT] = frame[UPDATED_AT] if UPDATED_AT in frame.columns else None
    for column in (RAW_HASH, RAW_OCCURRENCE):  # set by staging when it hashed the raw records
        if column in frame.columns:
            out[column] = frame[column]
    current_columns = [c for c in out.columns if "__k" not in c and c not in UNFINGERPRINTED]
    out[FINGERPRINT] = _hash_text(keyring.pseudonymizer(dataset, PURPOSE_FINGERPRINT), kind,
                                  _joined(out, current_columns))
    # A withdrawn row carries its identifiers only: nothing else of it is ever staged.
    for column in out.columns:
        if column not in VERSIONED_COLUMNS and "__k" not in column and withdrawn.any():
            values = out[column]
            if values.dtype == "int64":  # keep integers integers once nulls appear
                values = values.astype("Int64")
            elif values.dtype == "bool":
                values = values.astype("boolean")
            out[column] = values.where(~withdrawn, None)
    out[WITHDRAWN] = withdrawn.to_numpy()
    out = out.reset_index(drop=True)
    identifiers_only = int(withdrawn.sum())  # do_not_contact rows and objection hits
    return out, PseudonymizeStats(rows_in, len(out) - identifiers_only,
                                  excluded_no_basis + identifiers_only - excluded_objection,
                                  excluded_objection, identifiers_only)


def pseudonymize_identifiers(keyring: Keyring, dataset: str, kind: str,
                             values: Iterable[str]) -> list[str]:
    """Pseudonyms of normalized identifiers (for erasure and objection requests)."""
    return keyring.pseudonymizer(dataset, PURPOSE_IDENTITY).pseudonymize_many(kind, list(values))
