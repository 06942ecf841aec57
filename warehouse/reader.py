"""Snapshot the warehouse into Parquet for one release run: the DP engine's only input.

A release reads the warehouse once, in one read transaction (REPEATABLE READ on
PostgreSQL, one WAL read transaction on SQLite), so every query of a run sees the same rows
and the ledger can name them by one hash. Only the columns the engine needs are exported,
and the person pseudonym is replaced by a dense integer ``person_key`` (the rank of the
pseudonym): the scratch files hold no pseudonym at all, and the engine's bounding step sorts
small integers instead of 80-character strings.

Rows are exported person by person (``ORDER BY person_id, <primary key>``): the order is
total, so the snapshot and its hash are deterministic for the same rows, and the engine's
per-person sort finds the data already grouped. Rows are streamed in chunks
(``stream_results`` + ``yield_per``) and written with a pyarrow ``ParquetWriter``, so memory
stays flat whatever the warehouse size.

The files are secure-zone scratch under ``settings.work``: the caller deletes them when the
release run ends.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from sqlalchemy import Column, Connection, Engine, Table, select

from warehouse.schema import contacts, donations, persons

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
PERSON_KEY = "person_key"

#: The columns the DP engine reads, per table (never a pseudonym, never a file hash).
SNAPSHOT_SCHEMAS: Mapping[str, Mapping[str, pl.DataType]] = {
    "persons": {
        PERSON_KEY: pl.Int64(), "region": pl.String(), "departement": pl.String(),
        "commune": pl.String(), "age_band": pl.String(), "support_level": pl.Int16(),
        "is_volunteer": pl.Boolean(), "is_donor": pl.Boolean(), "email_opt_in": pl.Boolean(),
        "mobile_opt_in": pl.Boolean(),
    },
    "contacts": {
        PERSON_KEY: pl.Int64(), "week": pl.String(), "channel": pl.String(),
        "result": pl.String(), "support_level": pl.Int16(), "region": pl.String(),
        "departement": pl.String(), "commune": pl.String(),
    },
    "donations": {
        PERSON_KEY: pl.Int64(), "amount_cents": pl.Int64(), "month": pl.String(),
        "method": pl.String(), "recurring": pl.Boolean(), "region": pl.String(),
        "departement": pl.String(), "commune": pl.String(),
    },
}

_TABLES: Mapping[str, tuple[Table, Column[Any]]] = {
    "persons": (persons, persons.c.person_id),
    "contacts": (contacts, contacts.c.contact_id),
    "donations": (donations, donations.c.donation_id),
}


@dataclass(frozen=True)
class ReleaseData:
    """A warehouse snapshot: one Parquet file per table, and the hash of its content."""

    tables: Mapping[str, Path]
    snapshot_hash: str


def snapshot_warehouse(engine: Engine, work_dir: Path) -> ReleaseData:
    """Export persons, contacts and donations to Parquet in ``work_dir`` and hash them.

    The hash covers the table names, the column names and every exported row in export
    order: the same warehouse rows always give the same hash.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(b"isoloir-snapshot-v1\n")
    paths: dict[str, Path] = {}
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            keys = _KeyMap()
            for name in ("persons", "contacts", "donations"):
                paths[name] = work_dir / f"{name}.parquet"
                rows = _export(conn, name, paths[name], keys, digest)
                log.info("snapshot: %s exported (%d rows)", name, rows)
    return ReleaseData(tables=paths, snapshot_hash=digest.hexdigest())


class _KeyMap:
    """person_id → dense person_key: the rank among persons, then first sight for orphans."""

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}

    def assign_persons(self, person_ids: pl.Series) -> pl.Series:
        start = len(self._keys)
        for offset, person_id in enumerate(person_ids.to_list()):
            self._keys[person_id] = start + offset
        return pl.int_range(start, start + person_ids.len(), eager=True, dtype=pl.Int64)

    def lookup(self, person_ids: pl.Series) -> pl.Series:
        keys = self._keys
        out = []
        for person_id in person_ids.to_list():
            key = keys.get(person_id)
            if key is None:  # a contact or donation whose person has no persons row
                key = keys[person_id] = len(keys)
            out.append(key)
        return pl.Series(PERSON_KEY, out, dtype=pl.Int64)


def _export(conn: Connection, name: str, path: Path, keys: _KeyMap, digest: Any) -> int:
    table, primary = _TABLES[name]
    schema = SNAPSHOT_SCHEMAS[name]
    columns = [c for c in schema if c != PERSON_KEY]
    order: Sequence[Column[Any]] = ((table.c.person_id,) if name == "persons"
                                    else (table.c.person_id, primary))
    stmt = select(table.c.person_id, *(table.c[c] for c in columns)).order_by(*order)
    digest.update(f"table {name}: {','.join(schema)}\n".encode())
    arrow_schema = pl.DataFrame(schema=dict(schema)).to_arrow().schema
    total = 0
    result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(stmt)
    with pq.ParquetWriter(path, arrow_schema, compression="zstd") as writer:
        for part in result.partitions():
            raw = pl.DataFrame([tuple(r) for r in part], orient="row",
                               schema={"person_id": pl.String, **{c: schema[c] for c in columns}})
            person_ids = raw["person_id"]
            person_key = (keys.assign_persons(person_ids) if name == "persons"
                          else keys.lookup(person_ids))
            frame = raw.drop("person_id").insert_column(0, person_key.alias(PERSON_KEY))
            frame = frame.select(list(schema))
            digest.update(frame.write_csv(include_header=False).encode("utf-8"))
            writer.write_table(frame.to_arrow())
            total += frame.height
    return total
