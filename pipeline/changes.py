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

import polars as pl
from sqlalchemy import Connection, Table

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


def objected_rows(conn: Connection, staged: pl.LazyFrame, columns: list[str]) -> pl.Series:
    """Rows naming someone put on the objection list after the file was staged.

    Staging excluded the identifiers listed when it read the list; an erasure or objection
    committed since then (``isoloir forget`` runs beside the DAG) must win over this load,
    so the list is read again inside the load's transaction.
    """
    ids = [c for c in columns if c.split("__k")[0] in ID_COLUMNS]
    # The list is small next to a file (the identifiers of people who left): read it whole
    # rather than sending every pseudonym of the file to the database.
    listed = pl.Series("pseudonym", sorted(store.objection_pseudonyms(conn)), dtype=pl.String)
    if listed.is_empty():
        return pl.Series("row", [], dtype=pl.UInt32)
    frame = staged.with_row_index("row").filter(~pl.col(WITHDRAWN)).select("row", *ids).collect()
    hit = pl.any_horizontal([pl.col(c).is_in(listed.implode()).fill_null(False) for c in ids])
    return frame.filter(hit).get_column("row")


@dataclass(frozen=True)
class Withdrawal:
    """What one file's ``do_not_contact`` rows took out: counts only."""

    persons: int
    rows: int
    objections: int


def withdraw(conn: Connection, staged: pl.LazyFrame, columns: list[str], at: str) -> Withdrawal:
    """Take out the persons that ``do_not_contact`` rows name; relist already-listed people.

    A withdrawn row whose identifiers are not listed yet is a new withdrawal: its person
    leaves everywhere and every identifier linked to them joins the list. A row naming
    someone already listed (staging or the load's re-check found them) only refreshes the
    list: each listed identifier is added under the current key version, so an older key
    can be retired without letting them back in. Nobody else is touched.
    """
    ids = [c for c in columns if c.split("__k")[0] in ID_COLUMNS]
    rows = staged.filter(pl.col(WITHDRAWN)).select(ids).collect()
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


RAW_KEY = "raw_key"


def raw_key(kind: str, columns: list[str]) -> pl.Expr:
    """The staged rows' raw key (see :mod:`pipeline.unchanged`); null when not hashed.

    An event's occurrence among identical records was decided over the whole file when
    records were skipped (``raw_occurrence``); otherwise every record of the file was
    staged, and it is counted here, in file order.
    """
    if RAW_HASH not in columns:
        return pl.lit(None, pl.String).alias(RAW_KEY)
    if kind == "people":
        return pl.col(RAW_HASH).alias(RAW_KEY)
    counted = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(RAW_HASH)
    occurrence = pl.col(RAW_OCCURRENCE).cast(pl.Int64).fill_null(counted) \
        if RAW_OCCURRENCE in columns else counted
    return pl.concat_str([pl.col(RAW_HASH), pl.lit("."), occurrence.cast(pl.String)]) \
        .alias(RAW_KEY)


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


def diff_people(conn: Connection, staged: pl.LazyFrame) -> Diff:
    """People rows whose state differs from the last applied one and is not older than it.

    Within one file, the last row of a source id wins (as it always did).
    """
    rows = (staged.with_row_index("row").filter(~pl.col(WITHDRAWN))
            .select("row", "id_source", FINGERPRINT, UPDATED_AT).collect()
            .with_columns(pl.col(UPDATED_AT).cast(pl.String)))
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
