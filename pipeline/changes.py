"""What a staged file changes in the warehouse: exports are snapshots, not new facts.

Campaign tools export the whole people list and the whole contact history every day, so
most rows of a file are already in the warehouse. Inside the load's transaction, and before
identity resolution, this module decides for each staged row:

* **key rotation**: rows staged under an older key version (``<column>__k<n>``) that the
  warehouse holds under that version are moved to the current version first
  (:func:`rekey_stored`), so one human stays one person whatever key made the pseudonym;
* **withdrawal**: a row that says ``do_not_contact`` takes the whole person out of the
  analytics (:func:`withdraw`): every row of theirs goes, and every identifier pseudonym
  linked to them joins the objection list, so later exports naming them are only counted;
* **events** (contacts, donations): an event's id is its keyed natural key plus its
  occurrence in the file (:func:`event_ids`); a stored event with the same fingerprint is
  skipped, a changed one is replaced, a new one is added (:func:`diff_events`);
* **people**: a row whose fingerprint equals the state last applied for its source id is
  skipped, and so is a row older (by the source's ``updated_at``) than that state
  (:func:`diff_people`); without ``updated_at``, the later arrival wins.

So a daily full export writes in proportion to what changed, not to the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl
from sqlalchemy import Connection, Table

from core.frames import compact, repeated
from pipeline import unchanged
from pipeline.staged import StagedFile
from privacy.pseudonymize import (
    EVENT_KEY,
    FINGERPRINT,
    ID_COLUMNS,
    RAW_HASH,
    RAW_OCCURRENCE,
    UPDATED_AT,
    WITHDRAWN,
    previous_column,
)
from warehouse import erasure, store
from warehouse.schema import contacts, donations, identifier_links, objections, people_rows

log = logging.getLogger(__name__)

EVENT_TABLES: dict[str, tuple[Table, str]] = {"contacts": (contacts, "contact_id"),
                                              "donations": (donations, "donation_id")}


def older_versions(columns: list[str]) -> list[int]:
    """Key versions the staged file also carries pseudonyms for (``<column>__k<n>``)."""
    found = {int(c.rsplit("__k", 1)[1]) for c in columns if "__k" in c}
    return sorted(found)


def event_ids(keys: pl.Expr) -> pl.Expr:
    """``<event key>.<k>``: the rows of a file sharing a natural key are occurrences 1, 2, ...

    A re-export of the same history therefore maps onto the same ids, and two genuinely
    identical attempts in one file stay two events. Occurrences are numbered in fingerprint
    order, not file order, so a re-export that lists the rows in another order keys them
    the same even when rows sharing a natural key differ elsewhere (another zip code).
    """
    occurrence = pl.int_range(1, pl.len() + 1).over(keys, order_by=pl.col(FINGERPRINT))
    return pl.concat_str([keys, pl.lit("."), occurrence.cast(pl.String)])


def rekey_stored(conn: Connection, staged: pl.LazyFrame, kind: str, columns: list[str]) -> int:
    """Move links, objections, people rows and events stored under older key versions to the
    current one (nothing else can: a pseudonym is re-made only from the raw identifier)."""
    moved = 0
    for version in older_versions(columns):
        pairs = pl.concat([
            staged.select(pl.col(previous_column(c, version)).alias("old"),
                          pl.col(c).alias("new")).collect()
            for c in ID_COLUMNS])
        moved += store.rekey(conn, identifier_links, "pseudonym", pairs)
        moved += store.rekey(conn, objections, "pseudonym", pairs)
        if kind == "people":
            moved += store.rekey(conn, people_rows, "row_key", staged.select(
                pl.col(previous_column("id_source", version)).alias("old"),
                pl.col("id_source").alias("new")).collect())
        if kind in EVENT_TABLES:
            table, id_column = EVENT_TABLES[kind]
            events = staged.filter(~pl.col(WITHDRAWN)).select(
                event_ids(pl.col(previous_column(EVENT_KEY, version))).alias("old"),
                event_ids(pl.col(EVENT_KEY)).alias("new")).collect()
            moved += store.rekey(conn, table, id_column, events)
    if moved:
        log.info("moved %d stored rows from older key versions to the current one", moved)
    return moved


def objected_rows(conn: Connection, staged: StagedFile) -> pl.Series:
    """Rows naming someone put on the objection list after the file was staged.

    Staging excluded the identifiers listed when it read the list; an erasure or objection
    committed since then (``isoloir forget`` runs beside the DAG) must win over this load,
    so the list is read again inside the load's transaction.
    """
    ids = [c for c in staged.columns if c.split("__k")[0] in ID_COLUMNS]
    # The list is small next to a file (the identifiers of people who left): read it whole
    # rather than sending every pseudonym of the file to the database.
    listed = pl.Series("pseudonym", sorted(store.objection_pseudonyms(conn)), dtype=pl.String)
    if listed.is_empty():
        return pl.Series("row", [], dtype=pl.UInt32)
    hit = pl.any_horizontal([pl.col(c).is_in(listed.implode()).fill_null(False) for c in ids])
    found = [frame.filter(~pl.col(WITHDRAWN) & hit).get_column("row")
             for frame in staged.slices([WITHDRAWN, *ids])]
    return pl.concat(found) if found else pl.Series("row", [], dtype=pl.UInt32)


@dataclass(frozen=True)
class Withdrawal:
    """What one file's ``do_not_contact`` rows took out: counts only."""

    persons: int
    rows: int
    objections: int


def withdraw(conn: Connection, staged: StagedFile, late: pl.Series, at: str) -> Withdrawal:
    """Take out the persons that ``do_not_contact`` rows (and the ``late`` rows, naming
    someone listed since staging) name; relist already-listed people.

    A withdrawn row whose identifiers are not listed yet is a new withdrawal: its person
    leaves everywhere and every identifier linked to them joins the list. A row naming
    someone already listed (staging or the load's re-check found them) only refreshes the
    list: each listed identifier is added under the current key version, so an older key
    can be retired without letting them back in. Nobody else is touched.
    """
    ids = [c for c in staged.columns if c.split("__k")[0] in ID_COLUMNS]
    late_rows = late.implode()
    parts = [compact(frame.filter(pl.col(WITHDRAWN) | pl.col("row").is_in(late_rows))
                     .select(ids)) for frame in staged.slices([WITHDRAWN, *ids])]
    rows = pl.concat(parts) if parts else pl.DataFrame()
    if rows.is_empty():
        return Withdrawal(0, 0, 0)
    values = pl.concat([rows.get_column(c) for c in ids]).drop_nulls().unique()
    listed = store.lookup(conn, objections, "pseudonym", [], values).get_column("pseudonym")
    on_list = {c: pl.col(c).is_in(listed.implode()).fill_null(False) for c in ids}
    named = rows.filter(pl.any_horizontal(list(on_list.values())))
    relisted = pl.concat([
        named.filter(pl.any_horizontal([on_list[c] for c in ids if c.split("__k")[0] == base]))
        .get_column(base) for base in ID_COLUMNS if base in ids]).drop_nulls().unique()
    fresh = rows.filter(~pl.any_horizontal(list(on_list.values())))
    pseudonyms = pl.concat([fresh.get_column(c) for c in ids]).drop_nulls().unique()
    persons = store.lookup(conn, identifier_links, "pseudonym", ["person_id"], pseudonyms) \
        .get_column("person_id").unique().to_list()
    linked = erasure.linked_pseudonyms(conn, persons)
    added = erasure.add_to_objection_list(
        conn, {*pseudonyms.to_list(), *linked, *relisted.to_list()}, "objection",
        datetime.fromisoformat(at))
    removed = erasure.delete_persons(conn, persons)
    removed_rows = removed.rows - removed.persons
    if persons or added:
        log.info("withdrawal: %d person(s) named by do_not_contact rows left the analytics "
                 "(%d rows removed); %d identifiers added to the objection list",
                 len(persons), removed_rows, added)
    return Withdrawal(len(persons), removed_rows, added)


@dataclass(frozen=True)
class Diff:
    """Which staged rows to write: ``keep`` (row indexes), and how the others were judged."""

    keep: pl.Series  # u32 indexes of staged rows to load, in file order
    unchanged: int
    changed: int
    stale: int = 0
    #: ``row, id`` of stored rows found unchanged under another raw record (a column the
    #: warehouse does not keep changed): their raw key is updated, so the next export skips them.
    rekeyed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(
        schema={"row": pl.UInt32, "id": pl.String}))

    @classmethod
    def combine(cls, parts: list[Diff]) -> Diff:
        """The diff of a file from its slices' (rekeyed rows are applied per slice)."""
        keep = pl.concat([d.keep.cast(pl.UInt32) for d in parts]) if parts else \
            pl.Series("row", [], dtype=pl.UInt32)
        return cls(keep, sum(d.unchanged for d in parts), sum(d.changed for d in parts),
                   sum(d.stale for d in parts))


RAW_KEY = "raw_key"


@dataclass(frozen=True)
class Numbering:
    """Where a file's rows stand among the rows sharing their key, over the whole file.

    Most rows of an export are the only one of their natural key and of their raw record,
    and their occurrence is 1. Finding the others needs the whole file but not its text:
    a 64-bit hash of each key finds the rows whose key may be shared (a collision only
    adds a candidate), and only those candidates are numbered, exactly, from their keys.
    So a file of millions of rows is numbered holding a few integers per row.
    """

    active: np.ndarray  # sorted u32 numbers of the rows to load (not withdrawn, not objected)
    raw: pl.DataFrame  # row, raw_occurrence: records repeated in the file (all rows)
    ids: pl.DataFrame  # row, id: events whose natural key repeats in the file or is claimed


def number_rows(conn: Connection, staged: StagedFile, kind: str, late: pl.Series,
                skipped_path: str | None) -> Numbering:
    """Number the staged rows: which are loaded, and the occurrences that are not 1.

    An event's id is ``<event key>.<k>`` over the loaded rows of its natural key, in
    fingerprint order, around the numbers its skipped twins keep (:func:`event_ids_around`);
    a record's raw occurrence is its rank among identical raw records of the file, in file
    order (every row counts, withdrawn ones too: ``pipeline.unchanged`` hashed them all).
    """
    events = kind in EVENT_TABLES
    hashed = events and RAW_HASH in staged.columns
    late_rows = late.implode()
    claims = pl.DataFrame(schema={"event_key": pl.String, "occurrence": pl.Int64})
    if events and skipped_path:
        keys = [compact(f.filter(~pl.col(WITHDRAWN) & ~pl.col("row").is_in(late_rows))
                        .select(pl.col(EVENT_KEY).unique()))
                for f in staged.slices([WITHDRAWN, EVENT_KEY])]
        if keys:
            claims = unchanged.claimed(conn, kind, pl.concat(keys).get_column(EVENT_KEY)
                                       .unique(), skipped_path)
    claimed_keys = claims.get_column("event_key").unique().implode()
    active, event_hash, claimed_rows, raw_hash = [], [], [], []
    for frame in staged.slices([WITHDRAWN, EVENT_KEY, RAW_HASH] if events else [WITHDRAWN]):
        loaded = frame.filter(~pl.col(WITHDRAWN) & ~pl.col("row").is_in(late_rows))
        active.append(loaded.get_column("row").to_numpy())
        if events:
            event_hash.append(loaded.get_column(EVENT_KEY).hash().to_numpy())
            claimed_rows.append(loaded.filter(pl.col(EVENT_KEY).is_in(claimed_keys))
                                .get_column("row").to_numpy())
        if hashed:
            raw_hash.append(frame.get_column(RAW_HASH).hash().to_numpy())
    rows = np.concatenate(active).astype(np.uint32) if active else np.zeros(0, np.uint32)
    raw_candidates = _repeated(raw_hash, None)
    event_candidates = np.union1d(_repeated(event_hash, active),
                                  np.concatenate(claimed_rows) if claimed_rows else [])
    raw = pl.DataFrame(schema={"row": pl.UInt32, "raw_occurrence": pl.Int64})
    ids = pl.DataFrame(schema={"row": pl.UInt32, "id": pl.String})
    candidates = np.union1d(raw_candidates, event_candidates).astype(np.uint32)
    if len(candidates):
        held = pl.concat([compact(f) for f in staged.slices([RAW_HASH, EVENT_KEY, FINGERPRINT],
                                                            rows=candidates)])
        if len(raw_candidates):
            raw = held.filter(pl.col("row").is_in(pl.Series(raw_candidates.astype(np.uint32))
                                                  .implode())).select(
                "row", pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(RAW_HASH)
                .alias("raw_occurrence"))
        if len(event_candidates):
            picked = held.filter(pl.col("row").is_in(
                pl.Series(event_candidates.astype(np.uint32)).implode()))
            ids = picked.select("row", event_ids_around(picked, claims).alias("id"))
    return Numbering(rows, raw, ids)


def _repeated(hashes: list[np.ndarray], rows: list[np.ndarray] | None) -> np.ndarray:
    """Rows (numbers from ``rows``, else positions) whose hash occurs more than once."""
    if not hashes:
        return np.zeros(0, dtype=np.int64)
    where = repeated(np.concatenate(hashes))
    return np.concatenate(rows)[where].astype(np.int64) if rows is not None else where


def with_keys(frame: pl.DataFrame, kind: str, numbering: Numbering) -> pl.DataFrame:
    """A slice with its raw key (``RAW_KEY``) and, for events, its id (``id``)."""
    columns = frame.columns
    if RAW_HASH not in columns:
        raw = pl.lit(None, pl.String)
    elif kind == "people":
        raw = pl.col(RAW_HASH)
    else:
        frame = frame.join(numbering.raw, on="row", how="left", maintain_order="left")
        given = pl.col(RAW_OCCURRENCE).cast(pl.Int64) if RAW_OCCURRENCE in columns else \
            pl.lit(None, pl.Int64)
        occurrence = pl.coalesce(given, pl.col("raw_occurrence"), pl.lit(1, pl.Int64))
        raw = pl.concat_str([pl.col(RAW_HASH), pl.lit("."), occurrence.cast(pl.String)])
    frame = frame.with_columns(raw.alias(RAW_KEY))
    if kind in EVENT_TABLES:
        frame = frame.join(numbering.ids.rename({"id": "numbered"}), on="row", how="left",
                           maintain_order="left").with_columns(
            pl.coalesce(pl.col("numbered"), pl.concat_str([pl.col(EVENT_KEY), pl.lit(".1")]))
            .alias("id"))
    return frame.drop([c for c in ("raw_occurrence", "numbered") if c in frame.columns])


def event_ids_around(rows: pl.DataFrame, claims: pl.DataFrame) -> pl.Series:
    """Event ids of processed rows (``event_key``, ``fingerprint``), around skipped ones.

    Without claims this is :func:`event_ids`. Skipped records (``pipeline.unchanged``) keep
    the ids they are stored under; those that share a natural key with processed rows
    ``claim`` their occurrence numbers (``event_key, occurrence``), and the processed rows of
    that key take the smallest free numbers, in fingerprint order. So the file's rows of one
    natural key are still numbered over all of them: two identical attempts stay two.
    """
    occurrence = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(
        EVENT_KEY, order_by=pl.col(FINGERPRINT))
    ranked = rows.select(EVENT_KEY, occurrence.alias("occurrence"))
    if not claims.is_empty():
        taken: dict[str, set[int]] = {}
        for key, number in claims.iter_rows():
            taken.setdefault(key, set()).add(int(number))
        touched = ranked.with_row_index("at").filter(pl.col(EVENT_KEY).is_in(list(taken)))
        fixed: dict[int, int] = {}
        for at, key, rank in touched.iter_rows():
            free = (n for n in range(1, rank + len(taken[key]) + 1) if n not in taken[key])
            fixed[at] = next(n for i, n in enumerate(free, 1) if i == rank)
        if fixed:
            ranked = ranked.with_columns(ranked.get_column("occurrence").scatter(
                list(fixed), list(fixed.values())))
    return ranked.select(pl.concat_str([pl.col(EVENT_KEY), pl.lit("."),
                                        pl.col("occurrence").cast(pl.String)])).to_series()


def diff_events(conn: Connection, rows: pl.DataFrame, kind: str) -> Diff:
    """New and changed events (``row, id, fingerprint``, withdrawn rows left out); changed
    ones are deleted here, to be re-added."""
    table, id_column = EVENT_TABLES[kind]
    stored = store.lookup(conn, table, id_column, ["fingerprint"], rows.get_column("id"))
    judged = rows.join(stored.rename({id_column: "id", "fingerprint": "stored"}), on="id",
                       how="left")
    unchanged = judged.filter(pl.col("stored") == pl.col(FINGERPRINT))
    changed = judged.filter(pl.col("stored").is_not_null() &
                            (pl.col("stored") != pl.col(FINGERPRINT)))
    store.delete_keys(conn, table, id_column, changed.get_column("id").to_list())
    keep = judged.filter(pl.col("stored").is_null() | (pl.col("stored") != pl.col(FINGERPRINT)))
    return Diff(keep.get_column("row").sort(), unchanged.height, changed.height,
                rekeyed=unchanged.select("row", "id"))


def diff_people(conn: Connection, rows: pl.DataFrame) -> Diff:
    """People rows (``row, id_source, fingerprint, updated_at``, withdrawn rows left out)
    whose state differs from the last applied one and is not older than it.

    Within one file, the last row of a source id wins (as it always did).
    """
    rows = rows.select("row", "id_source", FINGERPRINT, pl.col(UPDATED_AT).cast(pl.String))
    stored = store.lookup(conn, people_rows, "row_key", ["fingerprint", "updated_at"],
                          rows.get_column("id_source"))
    judged = rows.join(stored.rename({"row_key": "id_source", "fingerprint": "stored",
                                      "updated_at": "stored_at"}),
                       on="id_source", how="left")
    same = pl.col("stored") == pl.col(FINGERPRINT)
    older = pl.col(UPDATED_AT).is_not_null() & pl.col("stored_at").is_not_null() & \
        (pl.col(UPDATED_AT) < pl.col("stored_at"))
    unchanged = judged.filter(same.fill_null(False))
    stale = judged.filter(~same.fill_null(False) & older.fill_null(False)).height
    keep = judged.filter(~same.fill_null(False) & ~older.fill_null(False))
    changed = keep.filter(pl.col("stored").is_not_null()).height
    return Diff(keep.get_column("row").sort(), unchanged.height, changed, stale,
                rekeyed=unchanged.select("row", pl.col("id_source").alias("id")))


def people_states(applied: pl.DataFrame) -> pl.DataFrame:
    """``people_rows`` content for the people rows a load applied (last row per source id)."""
    return (applied.filter(pl.col("id_source").is_not_null())
            .unique("id_source", keep="last", maintain_order=True)
            .select(pl.col("id_source").alias("row_key"), "person_id",
                    pl.col(FINGERPRINT).alias("fingerprint"),
                    pl.col(UPDATED_AT).cast(pl.String).alias("updated_at"), RAW_KEY))
