"""Loading pseudonymized rows into the warehouse: one file, one transaction, all or nothing.

Loads are keyed by the raw file's SHA-256 (``ingested_files``), so loading the same file
twice is a no-op that says so, and an Airflow retry after a crash never doubles rows.
PostgreSQL takes the bulk path (COPY); SQLite takes batched ``executemany``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import (
    Connection,
    Engine,
    Index,
    Table,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)

from warehouse.db import write_transaction
from warehouse.schema import (
    contacts,
    donations,
    erasure_log,
    identifier_links,
    ingested_files,
    objections,
    people_rows,
    persons,
)

log = logging.getLogger(__name__)

PERSON_ATTRIBUTES = ("commune", "departement", "region", "age_band", "support_level",
                     "is_volunteer", "is_donor", "email_opt_in", "mobile_opt_in", "created_month")


#: Advisory lock key serializing loads on PostgreSQL ("isoloir load" as an integer).
LOAD_LOCK_KEY = 0x1501_0AD0


@contextmanager
def load_transaction(engine: Engine) -> Iterator[Connection]:
    """One load's transaction, serialized against other loads.

    Parallel workers loading files that share a supporter would otherwise both insert the
    same identifier link and one would fail on the unique key. PostgreSQL: a transaction-level
    advisory lock (only loads queue; readers do not). SQLite: BEGIN IMMEDIATE.
    """
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOAD_LOCK_KEY})")
        yield conn


def already_loaded(conn: Connection, sha256: str) -> Mapping[str, Any] | None:
    """The ``ingested_files`` row of a file already loaded, or ``None``."""
    row = conn.execute(select(ingested_files).where(ingested_files.c.sha256 == sha256)).first()
    return None if row is None else dict(row._mapping)


def objection_pseudonyms(conn: Connection) -> frozenset[str]:
    """Pseudonyms of people who objected or asked for erasure: excluded on every ingest."""
    return frozenset(conn.execute(select(objections.c.pseudonym)).scalars())


#: Rows per executemany / COPY batch: memory stays flat whatever the file size.
_BATCH_ROWS = 100_000


def bulk_insert(conn: Connection, table: Table, frame: pl.DataFrame | pd.DataFrame, *,
                constants: Mapping[str, Any] | None = None, presorted: bool = False) -> int:
    """Insert every row of ``frame`` (columns named as the table's) inside the open transaction.

    PostgreSQL: COPY fed with CSV that Polars writes. SQLite: ``executemany`` on the driver,
    in primary-key order (appending to a B-tree in order is several times faster).
    ``constants`` are columns with one value for every row (the file's SHA-256, say).
    """
    rows = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame)
    if rows.is_empty():
        return 0
    fixed = dict(constants or {})
    columns = [c.name for c in table.columns if c.name in rows.columns and c.name not in fixed]
    keys = [c.name for c in table.primary_key.columns if c.name in columns]
    rows = rows.select(columns)
    # In key order, gathered one batch at a time: sorting a copy of millions of rows would
    # hold the rows twice.
    order = rows.select(pl.arg_sort_by(keys)).to_series() if keys and not presorted else None
    batches = (rows.iter_slices(_BATCH_ROWS) if order is None else
               (rows[order.slice(start, _BATCH_ROWS)]
                for start in range(0, rows.height, _BATCH_ROWS)))
    tail = tuple(fixed.values())  # constants join each batch, never a whole column in memory
    columns += list(fixed)
    rebuilt = _indexes_to_rebuild(conn, table, rows.height)
    for index in rebuilt:
        index.drop(conn)
    dbapi = conn.connection.driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    if conn.dialect.name == "postgresql":
        schema = f'"{table.schema}".' if table.schema else ""
        sql = f'COPY {schema}"{table.name}" ({names}) FROM STDIN (FORMAT csv)'
        with dbapi.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            for batch in batches:
                batch = batch.with_columns([pl.lit(v).alias(k) for k, v in fixed.items()])
                copy.write(batch.write_csv(include_header=False, quote_style="non_numeric"))
    else:
        placeholders = ", ".join("?" for _ in columns)
        cur = dbapi.cursor()  # type: ignore[union-attr]
        sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({placeholders})'
        for batch in batches:
            cur.executemany(sql, (row + tail for row in batch.rows()) if tail else batch.rows())
        cur.close()
    for index in rebuilt:
        index.create(conn)
    return rows.height


#: A bulk insert at least this large, and larger than the table, rebuilds secondary indexes.
REBUILD_INDEXES_FROM = 100_000


def _indexes_to_rebuild(conn: Connection, table: Table, incoming: int) -> list[Index]:
    """Secondary indexes worth dropping and re-creating around a bulk insert.

    Rows arrive in primary-key order, so a secondary index (``person_id``: keyed, hence
    random) would take one random B-tree insert per row; building it afterwards from a sort
    is several times faster once the new rows outnumber the old. DDL is transactional on
    SQLite and PostgreSQL, so a failed load restores the indexes with everything else.
    """
    if incoming < REBUILD_INDEXES_FROM or not table.indexes or \
            table.name in conn.info.get(_DEFERRED, ()):
        return []
    held = conn.execute(select(func.count()).select_from(
        select(literal(1)).select_from(table).limit(incoming).subquery())).scalar_one()
    return sorted(table.indexes, key=lambda i: str(i.name)) if held < incoming else []


_DEFERRED = "isoloir_deferred_indexes"  # conn.info: tables whose indexes a load rebuilds


@contextmanager
def indexes_deferred(conn: Connection, tables: Sequence[Table], incoming: int
                     ) -> Iterator[None]:
    """Drop the secondary indexes of ``tables`` around a load written in several inserts,
    and build them once at the end, when ``incoming`` rows make that worth it (see
    :func:`_indexes_to_rebuild`). Inside, :func:`bulk_insert` leaves those indexes alone.
    """
    rebuilt = [(t, _indexes_to_rebuild(conn, t, incoming)) for t in tables]
    deferred = conn.info.setdefault(_DEFERRED, set())
    for table, indexes in rebuilt:
        for index in indexes:
            index.drop(conn)
        if indexes:
            deferred.add(table.name)
    try:
        yield
    finally:
        for table, _ in rebuilt:
            deferred.discard(table.name)
    for _, indexes in rebuilt:  # not after an error: the transaction rolls the drop back
        for index in indexes:
            index.create(conn)


def refresh_statistics(conn: Connection, tables: Sequence[Table]) -> None:
    """PostgreSQL: ``ANALYZE`` tables a load is filling (a sample, cheap), so that lookups
    later in the same transaction use their keys' index instead of scanning them."""
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.exec_driver_sql(f'ANALYZE "{table.name}"')


def apply_merges(conn: Connection, merges: Mapping[str, str]) -> int:
    """Fold merged persons into their canonical id everywhere, keeping the canonical row's values."""
    if not merges:
        return 0
    for old, new in sorted(merges.items()):
        for table in (identifier_links, contacts, donations):
            conn.execute(update(table).where(table.c.person_id == old).values(person_id=new))
        old_row = conn.execute(select(persons).where(persons.c.person_id == old)).first()
        new_row = conn.execute(select(persons).where(persons.c.person_id == new)).first()
        if old_row is not None and new_row is not None:
            fill = {a: getattr(old_row, a) for a in PERSON_ATTRIBUTES
                    if getattr(new_row, a) is None and getattr(old_row, a) is not None}
            if fill:
                conn.execute(update(persons).where(persons.c.person_id == new).values(**fill))
            conn.execute(delete(persons).where(persons.c.person_id == old))
        elif old_row is not None:
            conn.execute(update(persons).where(persons.c.person_id == old).values(person_id=new))
    return len(merges)


def upsert_links(conn: Connection, new_links: pl.DataFrame | Iterable[pl.DataFrame],
                 repointed: pl.DataFrame, file_sha: str, *, incoming: int | None = None
                 ) -> None:
    """Insert new identifier links (sorted by pseudonym; a frame, or batches of ``incoming``
    rows in all); repoint the known ones that moved."""
    batches = [new_links] if isinstance(new_links, pl.DataFrame) else new_links
    total = new_links.height if isinstance(new_links, pl.DataFrame) else (incoming or 0)
    with indexes_deferred(conn, [identifier_links], total):
        for batch in batches:
            bulk_insert(conn, identifier_links, batch, constants={"file_sha256": file_sha},
                        presorted=True)
    if not repointed.is_empty():
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        mark = "%s" if conn.dialect.name == "postgresql" else "?"
        cur.executemany(f"UPDATE {identifier_links.name} SET person_id = {mark} "
                        f"WHERE pseudonym = {mark}",
                        repointed.select("person_id", "pseudonym").rows())
        cur.close()


def upsert_persons(conn: Connection, people: pl.DataFrame, new_persons: pl.Series,
                   file_sha: str, *, update_existing: bool) -> tuple[int, int]:
    """One row per person of this file: insert the new, refresh the existing with non-null values.

    Returns (inserted, updated).
    """
    if people.is_empty():
        return 0, 0
    latest = people.unique("person_id", keep="last", maintain_order=True)
    is_new = latest.get_column("person_id").is_in(new_persons.implode())
    inserted = bulk_insert(conn, persons, latest.filter(is_new),
                           constants={"first_file": file_sha, "last_file": file_sha})
    existing = latest.filter(~is_new)
    if not update_existing or existing.is_empty():
        return inserted, 0
    attributes = [a for a in PERSON_ATTRIBUTES if a in existing.columns]
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    sets = ", ".join(f"{a} = COALESCE({mark}, {a})" for a in attributes)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cur.executemany(f"UPDATE {persons.name} SET {sets}, last_file = {mark} "
                    f"WHERE person_id = {mark}",
                    existing.select(*attributes, pl.lit(file_sha), "person_id").rows())
    cur.close()
    return inserted, existing.height


def record_file(conn: Connection, *, sha256: str, file_name: str, source: str, status: str,
                counts: Mapping[str, int], key_id: str, loaded_at: str,
                details: Mapping[str, Any]) -> None:
    """The file's ledger of ingestion: counts and rule names, never values."""
    conn.execute(insert(ingested_files).values(
        sha256=sha256, file_name=file_name, source=source, status=status, key_id=key_id,
        loaded_at=loaded_at, details=json.dumps(details, sort_keys=True),
        **{k: int(counts.get(k, 0)) for k in ("rows_read", "rows_loaded", "rows_excluded",
                                                "rows_unplaced", "persons_new",
                                                "persons_merged")}))


def table_counts(conn: Connection) -> dict[str, int]:
    """Row counts of the secure tables (numbers only: safe to log)."""
    return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (persons, contacts, donations, identifier_links, ingested_files)}


# ------------------------------------------------------------------ keyed lookups and edits

#: From this many keys on, a lookup joins a temporary table instead of batched ``IN`` lists.
_JOIN_LOOKUP_FROM = 20_000
_LOOKUP_BATCH = 5_000


def lookup(conn: Connection, table: Table, key: str, columns: Sequence[str],
           keys: pl.Series) -> pl.DataFrame:
    """``key, *columns`` (as text) of the rows of ``table`` whose ``key`` is in ``keys``.

    Talks to the driver directly. Many keys go to a temporary table joined once (COPY on
    PostgreSQL), rather than thousands of ``IN`` lookups.
    """
    schema = {key: pl.String, **{c: pl.String for c in columns}}
    empty = pl.DataFrame(schema=schema)
    if keys.is_empty() or conn.execute(select(table.c[key]).limit(1)).first() is None:
        return empty
    values = keys.drop_nulls().unique().sort()
    if values.is_empty():
        return empty
    wanted = ", ".join(f"l.{c}" for c in (key, *columns))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    postgres = conn.dialect.name == "postgresql"
    found: list[pl.DataFrame] = []

    def take(rows: list[tuple[Any, ...]]) -> None:
        if rows:
            found.append(pl.DataFrame(rows, schema=schema, orient="row"))

    try:
        if len(values) < _JOIN_LOOKUP_FROM:
            batch_values = values.to_list()
            for start in range(0, len(batch_values), _LOOKUP_BATCH):
                batch = batch_values[start:start + _LOOKUP_BATCH]
                if postgres:
                    cursor.execute(f"SELECT {wanted} FROM {table.name} l "
                                   f"WHERE l.{key} = ANY(%s)", (batch,))
                else:
                    marks = ",".join("?" * len(batch))
                    cursor.execute(f"SELECT {wanted} FROM {table.name} l "
                                   f"WHERE l.{key} IN ({marks})", batch)
                take(cursor.fetchall())
        else:  # one join against a temporary table of the keys, sent and read in batches
            if postgres:
                cursor.execute("CREATE TEMPORARY TABLE isoloir_lookup (k text) ON COMMIT DROP")
                with cursor.copy("COPY isoloir_lookup (k) FROM STDIN") as copy:
                    for start in range(0, len(values), _BATCH_ROWS):
                        copy.write("\n".join(values.slice(start, _BATCH_ROWS).to_list())
                                   + "\n")
            else:
                cursor.execute("DROP TABLE IF EXISTS temp.isoloir_lookup")
                cursor.execute("CREATE TEMP TABLE isoloir_lookup (k TEXT PRIMARY KEY) "
                               "WITHOUT ROWID")
                for start in range(0, len(values), _BATCH_ROWS):
                    cursor.executemany("INSERT INTO isoloir_lookup VALUES (?)",
                                       ((v,) for v in values.slice(start, _BATCH_ROWS)))
            cursor.execute(f"SELECT {wanted} FROM isoloir_lookup t "
                           f"JOIN {table.name} l ON l.{key} = t.k")
            while rows := cursor.fetchmany(_BATCH_ROWS):
                take(rows)
            cursor.execute("DROP TABLE isoloir_lookup")
    finally:
        cursor.close()
    return pl.concat(found) if found else empty


def delete_keys(conn: Connection, table: Table, key: str, keys: Iterable[str]) -> int:
    """Delete the rows of ``table`` whose ``key`` is one of ``keys``; returns how many."""
    values = sorted(set(keys))
    removed = 0
    for start in range(0, len(values), _LOOKUP_BATCH):
        batch = values[start:start + _LOOKUP_BATCH]
        removed += conn.execute(delete(table).where(table.c[key].in_(batch))).rowcount or 0
    return removed


def rekey(conn: Connection, table: Table, key: str, pairs: pl.DataFrame) -> int:
    """Move rows stored under an older key version to the current one (``old`` -> ``new``).

    A row already stored under its new key wins and the old one is dropped, so a key
    rotation never leaves one fact under two keys. Returns how many rows moved.
    """
    pairs = pairs.drop_nulls().unique("old")
    if pairs.is_empty():
        return 0
    held = lookup(conn, table, key, [], pairs.get_column("old"))
    if held.is_empty():
        return 0
    pairs = pairs.join(held.rename({key: "old"}), on="old", how="semi")
    both = lookup(conn, table, key, [], pairs.get_column("new"))
    twice = pairs.join(both.rename({key: "new"}), on="new", how="semi")
    delete_keys(conn, table, key, twice.get_column("old").to_list())
    move = pairs.join(twice, on="old", how="anti").unique("new")
    if move.is_empty():
        return 0
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    cur.executemany(f"UPDATE {table.name} SET {key} = {mark} WHERE {key} = {mark}",
                    move.select("new", "old").rows())
    cur.close()
    return move.height


def replace_people_rows(conn: Connection, rows: pl.DataFrame, file_sha: str) -> None:
    """Record the state of each people row applied by this load (``row_key`` is unique)."""
    if rows.is_empty():
        return
    delete_keys(conn, people_rows, "row_key", rows.get_column("row_key").to_list())
    bulk_insert(conn, people_rows, rows, constants={"file_sha256": file_sha})


#: Stored values that are looked up by a keyed pseudonym of the current key version: a key
#: version still used here cannot be retired (its rows would never be found again).
KEYED_LOOKUPS: tuple[tuple[Table, str], ...] = (
    (identifier_links, "pseudonym"), (objections, "pseudonym"), (people_rows, "row_key"),
    (contacts, "contact_id"), (donations, "donation_id"))


def key_version_usage(conn: Connection, key_id: str) -> dict[str, int]:
    """Rows per table whose lookup key was made by key version ``key_id`` (``k1``, ...)."""
    return {table.name: int(conn.execute(select(func.count()).select_from(table)
                                          .where(table.c[column].startswith(f"{key_id}:")))
                             .scalar_one())
            for table, column in KEYED_LOOKUPS}


# ------------------------------------------------------------------ unchanged raw records

def holds_raw_keys(conn: Connection, table: Table) -> bool:
    """Whether any row of ``table`` carries a raw key (a first load has nothing to skip)."""
    return conn.execute(select(table.c.raw_key).where(table.c.raw_key.is_not(None))
                        .limit(1)).first() is not None


def change_marker(conn: Connection) -> str:
    """A value that changes whenever a load, an erasure or a purge has changed the warehouse.

    Skip decisions are taken before the load's transaction; the load compares this marker
    to the one seen then, and checks its skipped records again only when it moved.
    """
    files = conn.execute(select(func.count(), func.max(ingested_files.c.loaded_at))
                         .select_from(ingested_files)).one()
    listed = conn.execute(select(func.count()).select_from(objections)).scalar_one()
    erased = conn.execute(select(func.max(erasure_log.c.seq))).scalar_one()
    return f"{files[0]}/{files[1]}/{listed}/{erased}"


def missing_keys(conn: Connection, table: Table,
                 keys: pl.DataFrame | Iterable[pl.DataFrame]) -> pl.Series:
    """The ``row`` of each ``key`` (columns of ``keys``, a frame or batches of them) that
    no row of ``table`` holds as ``raw_key``, sorted.

    One temporary table (COPY on PostgreSQL, batched inserts on SQLite) and one anti-join
    on the indexed ``raw_key``: millions of keys cost one pass, not millions of queries.
    Only the misses come back, a re-export's few new or changed records.
    """
    if isinstance(keys, pl.DataFrame):
        if keys.is_empty():
            return pl.Series("row", [], dtype=pl.UInt32)
        keys = [keys]
    # Probed in key order (each batch sorted), the index on raw_key is walked in runs
    # instead of at random (SQLite: faster once the index outgrows its page cache).
    batches = (b.select("key", "row").sort("key") for b in keys)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    postgres = conn.dialect.name == "postgresql"
    found: list[np.ndarray] = []
    try:
        if postgres:
            cursor.execute("CREATE TEMPORARY TABLE isoloir_raw_keys (k text, r bigint) "
                           "ON COMMIT DROP")
            with cursor.copy("COPY isoloir_raw_keys (k, r) FROM STDIN (FORMAT csv)") as copy:
                for frame in batches:
                    for batch in frame.iter_slices(_BATCH_ROWS):
                        copy.write(batch.write_csv(include_header=False))
            cursor.execute("ANALYZE isoloir_raw_keys")
        else:
            cursor.execute("DROP TABLE IF EXISTS temp.isoloir_raw_keys")
            cursor.execute("CREATE TEMP TABLE isoloir_raw_keys (k TEXT, r INTEGER)")
            for frame in batches:
                for batch in frame.iter_slices(_BATCH_ROWS):
                    cursor.executemany("INSERT INTO isoloir_raw_keys VALUES (?, ?)",
                                       batch.rows())
        cursor.execute(f"SELECT t.r FROM isoloir_raw_keys t WHERE NOT EXISTS "  # noqa: S608
                       f"(SELECT 1 FROM {table.name} l WHERE l.raw_key = t.k)")
        while rows := cursor.fetchmany(_BATCH_ROWS):
            found.append(np.fromiter((r[0] for r in rows), dtype=np.uint32, count=len(rows)))
        cursor.execute("DROP TABLE isoloir_raw_keys")
    finally:
        cursor.close()
    return pl.Series("row", np.concatenate(found) if found else [], dtype=pl.UInt32).sort()


def stored_occurrences(conn: Connection, table: Table, key: str,
                       event_keys: pl.Series) -> pl.DataFrame:
    """``id, raw_key`` of the stored events whose id is ``<event key>.<k>`` for a given key.

    One range scan of the primary key per event key (``<key>.`` <= id < ``<key>/``).
    """
    schema = {"id": pl.String, "raw_key": pl.String}
    values = event_keys.drop_nulls().unique().sort()
    if values.is_empty():
        return pl.DataFrame(schema=schema)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    postgres = conn.dialect.name == "postgresql"
    try:
        if postgres:
            cursor.execute("CREATE TEMPORARY TABLE isoloir_prefixes (lo text, hi text) "
                           "ON COMMIT DROP")
            with cursor.copy("COPY isoloir_prefixes (lo, hi) FROM STDIN") as copy:
                copy.write("".join(f"{v}.\t{v}/\n" for v in values.to_list()))
            cursor.execute("ANALYZE isoloir_prefixes")
        else:
            cursor.execute("DROP TABLE IF EXISTS temp.isoloir_prefixes")
            cursor.execute("CREATE TEMP TABLE isoloir_prefixes (lo TEXT, hi TEXT)")
            cursor.executemany("INSERT INTO isoloir_prefixes VALUES (?, ?)",
                               ((f"{v}.", f"{v}/") for v in values.to_list()))
        cursor.execute(f"SELECT l.{key}, l.raw_key FROM isoloir_prefixes t "  # noqa: S608
                       f"JOIN {table.name} l ON l.{key} >= t.lo AND l.{key} < t.hi")
        rows = cursor.fetchall()
        cursor.execute("DROP TABLE isoloir_prefixes")
    finally:
        cursor.close()
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, orient="row")


def set_raw_keys(conn: Connection, table: Table, key: str, pairs: pl.DataFrame) -> int:
    """Record ``raw_key`` on stored rows (``id``, ``raw_key``) that a load found unchanged
    under another raw record (a column it does not keep changed): the next export skips them."""
    pairs = pairs.drop_nulls()
    if pairs.is_empty():
        return 0
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    for batch in pairs.select("raw_key", "id").iter_slices(_BATCH_ROWS):
        cur.executemany(f"UPDATE {table.name} SET raw_key = {mark} WHERE {key} = {mark}",
                        batch.rows())
    cur.close()
    return pairs.height


def holds_rows(conn: Connection, table: Table) -> bool:
    """Whether ``table`` has any row at all (a first load has nothing to compare with)."""
    return conn.execute(select(literal(1)).select_from(table).limit(1)).first() is not None
