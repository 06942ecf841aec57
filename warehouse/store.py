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

import pandas as pd
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, update

from warehouse.schema import (
    contacts,
    donations,
    identifier_links,
    ingested_files,
    objections,
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
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
        try:
            with conn.begin():
                if not sqlite:
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOAD_LOCK_KEY})")
                yield conn
        finally:
            conn.info.pop("sqlite_begin", None)


def already_loaded(conn: Connection, sha256: str) -> Mapping[str, Any] | None:
    """The ``ingested_files`` row of a file already loaded, or ``None``."""
    row = conn.execute(select(ingested_files).where(ingested_files.c.sha256 == sha256)).first()
    return None if row is None else dict(row._mapping)


def objection_pseudonyms(conn: Connection) -> frozenset[str]:
    """Pseudonyms of people who objected or asked for erasure: excluded on every ingest."""
    return frozenset(conn.execute(select(objections.c.pseudonym)).scalars())


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    cols = []
    for c in columns:
        s = frame[c]
        cols.append(s.astype(object).where(s.notna(), None).tolist())
    return list(zip(*cols, strict=True))


def bulk_insert(conn: Connection, table: Table, frame: pd.DataFrame) -> int:
    """Insert every row of ``frame`` (columns named as the table's) inside the open transaction."""
    if frame.empty:
        return 0
    columns = [c.name for c in table.columns if c.name in frame.columns]
    keys = [c.name for c in table.primary_key.columns if c.name in frame.columns]
    if keys:  # appending in key order keeps B-tree inserts sequential (several times faster)
        frame = frame.sort_values(keys, kind="stable")
    rows = _records(frame, columns)
    dbapi = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        schema = f'"{table.schema}".' if table.schema else ""
        names = ", ".join(f'"{c}"' for c in columns)
        with dbapi.cursor() as cur, cur.copy(f'COPY {schema}"{table.name}" ({names}) FROM STDIN') as cp:  # type: ignore[union-attr]
            for row in rows:
                cp.write_row(row)
    else:
        placeholders = ", ".join("?" for _ in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        cur = dbapi.cursor()  # type: ignore[union-attr]
        cur.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({placeholders})', rows)
        cur.close()
    return len(rows)


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


def upsert_links(conn: Connection, links: pd.DataFrame, known: Iterable[str], file_sha: str) -> None:
    """Insert new identifier links; repoint the known ones whose person changed."""
    if links.empty:
        return
    known_set = set(known)
    is_known = links["pseudonym"].isin(known_set)
    fresh = links.loc[~is_known].assign(file_sha256=file_sha)
    bulk_insert(conn, identifier_links, fresh)
    for row in links.loc[is_known].itertuples(index=False):
        conn.execute(update(identifier_links).where(identifier_links.c.pseudonym == row.pseudonym)
                     .values(person_id=row.person_id))


def upsert_persons(conn: Connection, people: pd.DataFrame, new_persons: frozenset[str],
                   file_sha: str, *, update_existing: bool) -> tuple[int, int]:
    """One row per person of this file: insert the new, refresh the existing with non-null values.

    Returns (inserted, updated).
    """
    if people.empty:
        return 0, 0
    latest = people.drop_duplicates("person_id", keep="last")
    is_new = latest["person_id"].isin(new_persons)
    inserted = bulk_insert(conn, persons, latest.loc[is_new].assign(first_file=file_sha,
                                                                      last_file=file_sha))
    updated = 0
    if update_existing:
        for record in latest.loc[~is_new].to_dict("records"):
            values = {a: _py(record.get(a)) for a in PERSON_ATTRIBUTES if pd.notna(record.get(a))}
            values["last_file"] = file_sha
            conn.execute(update(persons).where(persons.c.person_id == record["person_id"])
                         .values(**values))
            updated += 1
    return inserted, updated


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


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


def add_objections(conn: Connection, pseudonyms: Iterable[str], reason: str, at: str) -> int:
    """Record objection/erasure pseudonyms (idempotent)."""
    have = objection_pseudonyms(conn)
    fresh = sorted(set(pseudonyms) - have)
    if fresh:
        conn.execute(insert(objections), [{"pseudonym": p, "reason": reason, "recorded_at": at}
                                          for p in fresh])
    return len(fresh)


def erase_persons_by_pseudonyms(conn: Connection, pseudonyms: Iterable[str]) -> int:
    """Art. 17: delete every row of the persons these identifier pseudonyms resolve to."""
    found = set(conn.execute(select(identifier_links.c.person_id)
                             .where(identifier_links.c.pseudonym.in_(list(pseudonyms)))).scalars())
    for pid in sorted(found):
        for table in (contacts, donations, identifier_links, persons):
            conn.execute(delete(table).where(table.c.person_id == pid))
    return len(found)
