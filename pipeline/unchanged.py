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

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, Table

from core.errors import IsoloirError
from core.frames import compact, repeated
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
    Chunk by chunk: across chunks only a 64-bit hash per record is held (to find the
    records repeated in the file, whose occurrence numbers need the whole file).
    """
    kind = job.plan.profile.kind
    table, _ = RAW_KEY_TABLES[kind]
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
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

        def chunk_keys(k: int, occurrences: pl.DataFrame) -> pl.DataFrame:
            """``record, i, key, occurrence`` of chunk ``k`` (record: number in the file)."""
            hashes = pl.read_parquet(hash_path(job.parts_dir, k)).with_row_index("i") \
                .with_columns((pl.col("i").cast(pl.Int64) + int(starts[k])).alias("record"))
            if kind == "people":
                return hashes.select("record", "i", pl.col(RAW_HASH).alias("key"),
                                     pl.lit(None, pl.Int64).alias("occurrence"))
            hashes = hashes.join(occurrences, on="record", how="left", maintain_order="left") \
                .with_columns(pl.col("occurrence").fill_null(1))
            return hashes.select("record", "i", pl.concat_str(
                [pl.col(RAW_HASH), pl.lit("."), pl.col("occurrence").cast(pl.String)])
                .alias("key"), "occurrence")

        occurrences = pl.DataFrame(schema={"record": pl.Int64, "occurrence": pl.Int64})
        if kind != "people":
            occurrences = _occurrences(job.parts_dir, chunks, starts)
        with engine.connect() as conn, conn.begin():
            missing = store.missing_keys(conn, table, (
                chunk_keys(k, occurrences).select("key", pl.col("record").alias("row"))
                for k in range(chunks)))
        process_records = missing.cast(pl.Int64).implode()
        selection_dir.mkdir(mode=0o700, exist_ok=True)
        chosen = 0
        with pq.ParquetWriter(skipped_path, pa.schema([("raw_key", pa.string())])) as skipped:
            for k in range(chunks):
                keyed = chunk_keys(k, occurrences).with_columns(
                    pl.col("record").is_in(process_records).alias("process"))
                skipped.write_table(keyed.filter(~pl.col("process"))
                                    .select(pl.col("key").alias("raw_key"))
                                    .to_arrow(compat_level=pl.CompatLevel.oldest())
                                    .cast(pa.schema([("raw_key", pa.string())])))
                part = selection_path(selection_dir, k)
                picked = keyed.filter(pl.col("process"))
                picked.select(pl.col("i").cast(pl.UInt32), "occurrence",
                              pl.col("key").str.split(".").list.first().alias(RAW_HASH)) \
                    .write_parquet(part)
                part.chmod(0o600)
                chosen += picked.height
        skipped_path.chmod(0o600)
    except BaseException:
        shutil.rmtree(selection_dir, ignore_errors=True)
        skipped_path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(job.parts_dir, ignore_errors=True)
    skipped = sum(sizes) - chosen
    log.info("%s: %d of %d records unchanged since they were loaded (skipped)",
             job.plan.path.name, skipped, sum(sizes))
    return Skip(skipped, selection_dir, skipped_path, marker)


def _occurrences(parts_dir: Path, chunks: int, starts: np.ndarray) -> pl.DataFrame:
    """``record, occurrence`` of the records repeated in the file (the others are 1st).

    Found from a 64-bit hash per record; only the candidates are numbered from their keys,
    in file order (a hash collision only adds a candidate, numbered 1 like any unique key).
    """
    hashes = [pl.read_parquet(hash_path(parts_dir, k)).get_column(RAW_HASH).hash().to_numpy()
              for k in range(chunks)]
    candidates = repeated(np.concatenate(hashes)) if hashes else np.zeros(0, np.int64)
    del hashes
    if not len(candidates):
        return pl.DataFrame(schema={"record": pl.Int64, "occurrence": pl.Int64})
    held = []
    for k in range(chunks):
        lo, hi = np.searchsorted(candidates, [starts[k], starts[k + 1]])
        if lo == hi:
            continue
        local = (candidates[lo:hi] - starts[k]).astype(np.int64)
        held.append(compact(pl.read_parquet(hash_path(parts_dir, k)).select(RAW_HASH)
                            [local].with_columns(pl.Series("record", candidates[lo:hi]))))
    return pl.concat(held).select(
        "record", pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(RAW_HASH)
        .alias("occurrence"))


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
