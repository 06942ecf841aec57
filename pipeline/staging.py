"""Staging: a raw file's chunks read, normalized and pseudonymized into one parquet file.

This is the only code that holds raw values, and it holds one chunk at a time. The staged
file lives in the secure work zone (``work/staged``, mode 0600) until the load deletes it.

Why several processes: parsing, normalizing and one HMAC per identifier are CPU-bound and,
in Python, bound to one core by the GIL. A file of several chunks is spread over worker
processes that each read their chunk's bytes themselves (the :class:`ReadPlan` says where
each chunk lies) and write a part file; only counts travel back (inside a daemonic process,
such as a Celery worker's, chunks are staged in the process itself). Workers are *spawned*,
never forked: a task process may hold threads and its supervisor's socket, which a forked
child must not inherit. The keyring travels to them over the pool's private pipe, the way
it reached this process; it is never written anywhere.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from itertools import repeat
from multiprocessing import current_process, get_context
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from privacy.keys import Keyring
from privacy.pseudonymize import RAW_HASH, RAW_OCCURRENCE, pseudonymize_chunk, raw_row_hashes
from transforms.read import ReadPlan, chunk_frame, read_chunk_table

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class StageJob:
    """Everything a worker needs to stage one chunk of one file (picklable)."""

    plan: ReadPlan
    keyring: Keyring = field(repr=False)
    dataset: str
    objections: frozenset[str] = field(repr=False)
    parts_dir: Path
    #: Domain of the raw records' keyed hashes (``pipeline.unchanged.raw_context``); ``None``:
    #: this file's records are not hashed (nothing of it will ever be skipped).
    raw_context: str | None = None
    #: Where ``pipeline.unchanged`` wrote, per chunk, the rows still to process (the others
    #: are unchanged records, skipped); ``None``: every row is processed.
    selection_dir: Path | None = None


@dataclass(frozen=True)
class ChunkStats:
    """Counts of one staged chunk: numbers only."""

    rows: int
    staged: int
    excluded_no_basis: int
    excluded_objection: int
    unplaced: int
    bad_email: int
    bad_phone: int
    withdrawn: int = 0
    skipped: int = 0  # unchanged records, recognised by their raw key and never processed

    @classmethod
    def total(cls, chunks: list[ChunkStats]) -> ChunkStats:
        """The file's counts: the sum over its chunks."""
        return cls(*(sum(getattr(c, f.name) for c in chunks) for f in fields(cls)))


def stage_chunk(job: StageJob, k: int) -> ChunkStats:
    """Read, normalize and pseudonymize chunk ``k`` into ``parts_dir/part-<k>.parquet``."""
    from transforms.normalize import normalize_chunk

    table = read_chunk_table(job.plan, k)
    raw = chunk_frame(job.plan, table, k)
    read = len(raw)
    occurrences = None
    if job.selection_dir is not None:  # the first pass hashed every record already
        selection = pq.read_table(selection_path(job.selection_dir, k))
        raw = raw.iloc[selection.column("i").to_numpy()].reset_index(drop=True)
        hashes: pa.Array | None = selection.column(RAW_HASH).combine_chunks()
        occurrences = selection.column("occurrence").to_pandas()
    else:
        hashes = raw_hashes(job, table) if job.raw_context is not None else None
    del table
    normalized, nstats = normalize_chunk(raw, job.plan.profile, job.plan.path.name)
    del raw
    if hashes is not None:
        normalized[RAW_HASH] = hashes.to_pandas().to_numpy()
    if occurrences is not None:
        normalized[RAW_OCCURRENCE] = occurrences.astype("Int64").to_numpy()
    pseudo, pstats = pseudonymize_chunk(normalized, job.plan.profile.kind, dataset=job.dataset,
                                        keyring=job.keyring,
                                        objections=job.objections,
                                        natural_key=job.plan.profile.natural_key)
    del normalized
    part = _part_path(job.parts_dir, k)
    pq.write_table(pa.Table.from_pandas(pseudo, preserve_index=False), part)
    part.chmod(0o600)
    return ChunkStats(rows=read, staged=pstats.rows_out, skipped=read - nstats.rows,
                      excluded_no_basis=pstats.excluded_no_basis,
                      excluded_objection=pstats.excluded_objection, unplaced=nstats.unplaced,
                      bad_email=nstats.bad_email, bad_phone=nstats.bad_phone,
                      withdrawn=pstats.withdrawn)


def raw_hashes(job: StageJob, table: pa.Table) -> pa.Array:
    """The keyed hash of each raw record of a chunk, as parsed (every column the profile
    reads, in name order; straight from Arrow, never through pandas)."""
    return raw_row_hashes([table.column(c).combine_chunks() for c in sorted(table.column_names)],
                          str(job.raw_context), job.keyring, job.dataset)


def hash_chunk(job: StageJob, k: int) -> int:
    """Write chunk ``k``'s raw-record hashes to ``parts_dir/hash-<k>.parquet``; return its rows.

    The first pass of a re-export: reading and one HMAC per record, nothing else.
    """
    table = read_chunk_table(job.plan, k)
    part = hash_path(job.parts_dir, k)
    pq.write_table(pa.table({RAW_HASH: raw_hashes(job, table)}), part)
    part.chmod(0o600)
    return table.num_rows


def hash_path(parts_dir: Path, k: int) -> Path:
    return parts_dir / f"hash-{k:05d}.parquet"


def selection_path(selection_dir: Path, k: int) -> Path:
    return selection_dir / f"process-{k:05d}.parquet"


@contextmanager
def chunk_pool(plan: ReadPlan, processes: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for a file's chunks, or ``None`` (one chunk, one process, or a
    daemonic process). One pool serves every pass over the file: spawning costs seconds."""
    chunks = plan.chunks
    workers = min(processes, chunks)
    if workers > 1 and current_process().daemon:
        # A Celery prefork worker runs tasks in daemonic processes, which may not have
        # children: there, parallelism comes from the workers themselves.
        log.info("%s: %d chunks in this process (a daemonic worker process cannot start "
                 "staging processes)", plan.path.name, chunks)
        workers = 1
    if workers <= 1:
        yield None
        return
    log.info("%s: %d chunks on %d processes", plan.path.name, chunks, workers)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    try:
        yield pool
    finally:  # after an error, chunks not yet started never start
        pool.shutdown(wait=True, cancel_futures=True)


def run_chunks(job: StageJob, work: Callable[[StageJob, int], _T], *, processes: int,
               pool: ProcessPoolExecutor | None = None) -> Iterator[_T]:
    """``work(job, k)`` for every chunk, in chunk order: on ``pool`` when given, else on
    up to ``processes`` processes of a pool of its own."""
    if pool is not None:
        yield from pool.map(work, repeat(job), range(job.plan.chunks))
        return
    with chunk_pool(job.plan, processes) as own:
        yield from (own.map if own else map)(work, repeat(job), range(job.plan.chunks))


def stage_file(job: StageJob, out: Path, *, processes: int = 1,
               progress: Callable[[int], None] | None = None,
               pool: ProcessPoolExecutor | None = None) -> list[ChunkStats]:
    """Stage every chunk of ``job.plan`` into the parquet file ``out``; return per-chunk counts.

    Raises the first chunk's error (an :class:`InputFileError` names file, line and rule);
    then nothing is left behind: no part, no staged file.
    """
    chunks = job.plan.chunks
    job.parts_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stats: list[ChunkStats] = []
    try:
        for result in run_chunks(job, stage_chunk, processes=processes, pool=pool):
            stats.append(result)
            if progress is not None:
                progress(result.rows)
        _merge_parts([_part_path(job.parts_dir, k) for k in range(chunks)], out)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(job.parts_dir, ignore_errors=True)
    return stats


def _part_path(parts_dir: Path, k: int) -> Path:
    return parts_dir / f"part-{k:05d}.parquet"


def _merge_parts(parts: list[Path], out: Path) -> None:
    """Concatenate the parts in chunk order, one row group each (memory: one part at a time).

    A column that is empty in one chunk has Arrow's null type there; the unified schema
    gives every part the same column types.
    """
    schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                        for f in schema]).remove_metadata()
    with pq.ParquetWriter(out, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part).select(schema.names).cast(schema))
    out.chmod(0o600)
