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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from itertools import repeat
from multiprocessing import current_process, get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from privacy.keys import Keyring
from privacy.pseudonymize import pseudonymize_chunk
from transforms.read import ReadPlan, read_chunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageJob:
    """Everything a worker needs to stage one chunk of one file (picklable)."""

    plan: ReadPlan
    keyring: Keyring = field(repr=False)
    dataset: str
    objections: frozenset[str] = field(repr=False)
    parts_dir: Path


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

    @classmethod
    def total(cls, chunks: list[ChunkStats]) -> ChunkStats:
        """The file's counts: the sum over its chunks."""
        return cls(*(sum(getattr(c, f.name) for c in chunks) for f in fields(cls)))


def stage_chunk(job: StageJob, k: int) -> ChunkStats:
    """Read, normalize and pseudonymize chunk ``k`` into ``parts_dir/part-<k>.parquet``."""
    from transforms.normalize import normalize_chunk

    raw = read_chunk(job.plan, k)
    normalized, nstats = normalize_chunk(raw, job.plan.profile, job.plan.path.name)
    del raw
    pseudo, pstats = pseudonymize_chunk(normalized, job.plan.profile.kind, dataset=job.dataset,
                                        keyring=job.keyring,
                                        objections=job.objections,
                                        natural_key=job.plan.profile.natural_key)
    del normalized
    part = _part_path(job.parts_dir, k)
    pq.write_table(pa.Table.from_pandas(pseudo, preserve_index=False), part)
    part.chmod(0o600)
    return ChunkStats(rows=nstats.rows, staged=pstats.rows_out,
                      excluded_no_basis=pstats.excluded_no_basis,
                      excluded_objection=pstats.excluded_objection, unplaced=nstats.unplaced,
                      bad_email=nstats.bad_email, bad_phone=nstats.bad_phone,
                      withdrawn=pstats.withdrawn)


def stage_file(job: StageJob, out: Path, *, processes: int = 1,
               progress: Callable[[int], None] | None = None) -> list[ChunkStats]:
    """Stage every chunk of ``job.plan`` into the parquet file ``out``; return per-chunk counts.

    Raises the first chunk's error (an :class:`InputFileError` names file, line and rule);
    then nothing is left behind: no part, no staged file.
    """
    chunks = job.plan.chunks
    job.parts_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stats: list[ChunkStats] = []
    try:
        workers = min(processes, chunks)
        if workers > 1 and current_process().daemon:
            # A Celery prefork worker runs tasks in daemonic processes, which may not have
            # children: there, parallelism comes from the workers themselves.
            log.info("staging %s: %d chunks in this process (a daemonic worker process "
                     "cannot start staging processes)", job.plan.path.name, chunks)
            workers = 1
        pool = None
        if workers > 1:
            log.info("staging %s: %d chunks on %d processes", job.plan.path.name, chunks,
                     workers)
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        try:
            for result in (pool.map if pool else map)(stage_chunk, repeat(job), range(chunks)):
                stats.append(result)
                if progress is not None:
                    progress(result.rows)
        finally:
            if pool is not None:  # after an error, chunks not yet started never start
                pool.shutdown(wait=True, cancel_futures=True)
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
