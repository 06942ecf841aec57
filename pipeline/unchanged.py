"""Unchanged records of a re-export: recognised from their raw bytes, and never processed.

A daily snapshot repeats almost all of yesterday's records byte for byte. Such a record
would normalize, pseudonymize and resolve exactly as it did, so doing it again is the whole
cost of a re-export for nothing. Each stored event and people row therefore carries
``raw_key``: a keyed hash (HKDF purpose ``raw_row``, never a plain hash: a record holds
identifiers) of the raw record it was loaded from, within the domain of the file-wide
reading decisions (:func:`raw_context`), and, for events, the record's occurrence in its
file (the k-th identical record of a file is ``<hash>.<k>``, so two genuinely identical
attempts stay two and a re-export adds nothing).

Before staging, :func:`find_unchanged` hashes every record (reading and one HMAC each, on
the staging processes), looks the keys up in one anti-join, and writes per chunk the rows
still to process; only those are normalized, pseudonymized, validated, resolved and diffed.
The skipped rows' keys are kept for the load (:func:`recheck`, :func:`claimed`).

What is never skipped: a record without a stored twin (new, changed, loaded before schema
version 3, or under an older key: after a rotation the first re-export is processed in full,
which is what moves its links to the current key), a ``do_not_contact`` record (nothing of
it is stored), a record without lawful basis (idem), and anything of a file read under other
decisions (another profile, date order, decimal mark or people reference date).
"""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, Table

from core.errors import IsoloirError
from pipeline.staging import StageJob, hash_chunk, hash_path, run_chunks, selection_path
from privacy.pseudonymize import RAW_HASH
from transforms.read import ReadPlan
from warehouse import store
from warehouse.schema import contacts, donations, people_rows

log = logging.getLogger(__name__)

#: Bumped whenever normalization or pseudonymization would make something else of the same
#: raw record: every stored raw key then stops matching, and the next export is processed.
RAW_FORMAT = 1
#: The table whose rows carry the raw keys of each kind of export.
RAW_KEY_TABLES: dict[str, tuple[Table, str]] = {
    "people": (people_rows, "row_key"), "contacts": (contacts, "contact_id"),
    "donations": (donations, "donation_id")}


class StaleStagingError(IsoloirError):
    """The warehouse changed since the file was staged, under records it skipped."""


def raw_context(plan: ReadPlan) -> str | None:
    """The file-wide decisions a raw record's meaning depends on; ``None``: never skip.

    A people file without a reference date computes ages at each chunk's newest date, so
    its records are not self-contained: such a file is always processed in full.
    """
    if plan.profile.kind == "people" and "reference_date" not in plan.attrs:
        return None
    return json.dumps({"format": RAW_FORMAT, "profile": repr(plan.profile),
                       "columns": sorted(plan.mapping.items()),
                       "present": sorted(plan.present.items()),
                       "attrs": {k: plan.attrs[k] for k in sorted(plan.attrs)}},
                      sort_keys=True, default=str)


@dataclass(frozen=True)
class Skip:
    """What :func:`find_unchanged` decided: counts and paths (XCom-safe)."""

    skipped: int
    selection_dir: Path | None  # per chunk, the rows to process (None: all of them)
    skipped_path: Path | None  # raw keys of the skipped rows
    marker: str  # store.change_marker when decided


def raw_keys(hashes: pl.LazyFrame, kind: str) -> pl.LazyFrame:
    """An event's raw key is its hash and its occurrence among identical records of the
    file (file order); a people row's is its hash (identical rows are one state)."""
    if kind == "people":
        return hashes.with_columns(pl.col(RAW_HASH).alias("key"), pl.lit(None, pl.Int64)
                                   .alias("occurrence"))
    occurrence = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(RAW_HASH)
    return hashes.with_columns(occurrence.alias("occurrence")).with_columns(
        pl.concat_str([pl.col(RAW_HASH), pl.lit("."), pl.col("occurrence").cast(pl.String)])
        .alias("key"))


def find_unchanged(job: StageJob, engine: Engine, work: Path, *, processes: int,
                   pool: ProcessPoolExecutor | None = None) -> Skip:
    """Hash every record of the file, and find those the warehouse holds already.

    Writes ``work/<name>.select/process-<k>.parquet`` (rows of chunk ``k`` to process, with
    their hash and occurrence) and ``work/<name>.skipped.parquet`` (the skipped rows' raw keys).
    """
    table, _ = RAW_KEY_TABLES[job.plan.profile.kind]
    with engine.connect() as conn:
        marker = store.change_marker(conn)
        if job.raw_context is None or not store.holds_raw_keys(conn, table):
            return Skip(0, None, None, marker)  # a first load: nothing can be skipped
    chunks = job.plan.chunks
    job.parts_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    selection_dir = work / f"{job.parts_dir.name}.select"
    skipped_path = work / f"{job.parts_dir.name}.skipped.parquet"
    try:
        sizes = list(run_chunks(job, hash_chunk, processes=processes, pool=pool))
        parts = [pl.scan_parquet(hash_path(job.parts_dir, k))
                 .with_columns(pl.lit(k, pl.UInt32).alias("chunk"),
                               pl.int_range(pl.len(), dtype=pl.UInt32).alias("i"))
                 for k in range(chunks)]
        keyed = (raw_keys(pl.concat(parts), job.plan.profile.kind)
                 .with_row_index("row").select("row", "chunk", "i", "key", "occurrence")
                 .collect())
        with engine.connect() as conn, conn.begin():
            missing = store.missing_keys(conn, table, keyed.select("key", "row"))
        process = keyed.with_columns(pl.col("row").is_in(missing.implode()).alias("process"))
        del keyed
        process.filter(~pl.col("process")).select(pl.col("key").alias("raw_key")) \
            .write_parquet(skipped_path)
        skipped_path.chmod(0o600)
        selection_dir.mkdir(mode=0o700, exist_ok=True)
        chosen = process.filter(pl.col("process")).select(
            "chunk", "i", "occurrence", pl.col("key").str.split(".").list.first().alias(RAW_HASH))
        del process
        for k in range(chunks):
            part = selection_path(selection_dir, k)
            chosen.filter(pl.col("chunk") == k).select("i", "occurrence", RAW_HASH) \
                .write_parquet(part)
            part.chmod(0o600)
    except BaseException:
        shutil.rmtree(selection_dir, ignore_errors=True)
        skipped_path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(job.parts_dir, ignore_errors=True)
    skipped = sum(sizes) - chosen.height
    log.info("%s: %d of %d records unchanged since they were loaded (skipped)",
             job.plan.path.name, skipped, sum(sizes))
    return Skip(skipped, selection_dir, skipped_path, marker)


def recheck(conn: Connection, kind: str, skipped_path: str, marker: str) -> None:
    """Inside the load's transaction: the skipped records must still be stored as they were.

    Only when something else was loaded, erased or purged since the decision (the marker
    moved): then the skipped keys are looked up again, and a missing one stops the load
    (:class:`StaleStagingError`), so that the file is staged again from its raw records.
    """
    if store.change_marker(conn) == marker:
        return
    table, _ = RAW_KEY_TABLES[kind]
    keys = pl.read_parquet(skipped_path).select(pl.col("raw_key").alias("key")) \
        .with_row_index("row")
    missing = store.missing_keys(conn, table, keys)
    if not missing.is_empty():
        raise StaleStagingError(f"{missing.len()} records skipped as unchanged are no longer "
                                "stored as they were (the warehouse changed since staging); "
                                "the file must be staged again")


def claimed(conn: Connection, kind: str, event_keys: pl.Series,
            skipped_path: str | None) -> pl.DataFrame:
    """``event_key, occurrence`` taken by the file's skipped events sharing a processed
    event's natural key: the processed ones are numbered around them (see
    :func:`pipeline.changes.event_ids_around`)."""
    schema = {"event_key": pl.String, "occurrence": pl.Int64}
    if skipped_path is None or event_keys.is_empty():
        return pl.DataFrame(schema=schema)
    table, id_column = RAW_KEY_TABLES[kind]
    stored = store.stored_occurrences(conn, table, id_column, event_keys)
    if stored.is_empty():
        return pl.DataFrame(schema=schema)
    mine = pl.scan_parquet(skipped_path).join(stored.lazy(), on="raw_key", how="inner") \
        .select("id").collect()
    parts = pl.col("id").str.splitn(".", 2)  # "k1:<base32>.<k>": no other dot
    return mine.select(parts.struct.field("field_0").alias("event_key"),
                       parts.struct.field("field_1").cast(pl.Int64).alias("occurrence"))


def drop(skip: Skip | None = None, *, selection_dir: str | None = None,
         skipped_path: str | None = None) -> None:
    """Remove what :func:`find_unchanged` wrote."""
    paths = (skip.selection_dir, skip.skipped_path) if skip else (selection_dir, skipped_path)
    if paths[0]:
        shutil.rmtree(paths[0], ignore_errors=True)
    if paths[1]:
        Path(paths[1]).unlink(missing_ok=True)
