"""Ingestion of one landing file: read, normalize, pseudonymize, stage; then resolve and load.

Two steps, because Airflow runs them as two tasks (with the pseudonymized-suite validation
in between) and only small metadata may travel between tasks:

* :func:`prepare_file` reads the raw file (the only place raw values exist), hands each
  normalized chunk to :mod:`privacy.pseudonymize`, and stages the pseudonymized rows as a
  parquet file in the secure work zone. It returns a :class:`PreparedFile`: counts and paths.
* :func:`load_prepared` resolves identities against the warehouse and loads the staged rows
  in ONE transaction keyed by the raw file's SHA-256, then deletes the staged file.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import Connection, Engine

from core.errors import InvariantViolation
from core.settings import Settings
from pipeline import changes, unchanged
from pipeline.staged import StagedFile
from pipeline.unchanged import StaleStagingError
from privacy.identity import (
    Resolution,
    existing_links,
    index_identifier_slices,
    resolve_index,
)
from privacy.keys import Keyring
from privacy.pseudonymize import (
    EVENT_KEY,
    FINGERPRINT,
    ID_COLUMNS,
    PURPOSE_PERSON,
    RAW_HASH,
    RAW_OCCURRENCE,
    UPDATED_AT,
)
from warehouse import store
from warehouse.schema import ingested_files, people_rows, persons

log = logging.getLogger(__name__)

DEFAULT_DATASET = "campaign"


@dataclass(frozen=True)
class PreparedFile:
    """What the prepare step made of one raw file: counts and paths only (XCom-safe)."""

    file_name: str
    sha256: str
    source: str
    kind: str
    staged_path: str
    dataset: str
    key_id: str
    rows_read: int
    rows_staged: int
    rows_excluded_no_basis: int
    rows_excluded_objection: int
    rows_unplaced: int
    bad_email: int
    bad_phone: int
    rows_withdrawn: int = 0
    #: Records found unchanged before staging (``pipeline.unchanged``): never processed.
    rows_skipped: int = 0
    skipped_path: str = ""  # their raw keys, for the load's checks
    skip_marker: str = ""  # the warehouse's change marker when they were found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreparedFile:
        return cls(**data)


@dataclass(frozen=True)
class LoadResult:
    """What a load did (XCom-safe)."""

    file_name: str
    sha256: str
    source: str
    status: str  # loaded | already_loaded
    rows_read: int
    rows_loaded: int
    rows_excluded: int
    rows_unplaced: int
    persons_new: int
    persons_merged: int
    #: Wall seconds per load stage (diff, lookup, resolve, links, rows, commit).
    seconds: Mapping[str, float] = field(default_factory=dict)
    #: Rows of the file already in the warehouse as they are (a snapshot's old rows).
    rows_unchanged: int = 0
    #: Rows that replaced a stored version of themselves (a corrected event, a changed person).
    rows_changed: int = 0
    #: People rows older (by the source's updated_at) than the state already applied.
    rows_stale: int = 0
    #: Persons removed because a row of this file says do_not_contact.
    persons_withdrawn: int = 0
    #: Of ``rows_unchanged``, the records recognised from their raw bytes before any
    #: processing (byte-identical to what is stored; ``pipeline.unchanged``).
    rows_skipped: int = 0
    #: The loading process's peak memory (MB) at the end of each load stage.
    peak_mb: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def staged_dir(settings: Settings) -> Path:
    path = settings.work / "staged"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def workbook_dir(settings: Settings) -> Path:
    """Where workbook sheets are converted for reading (secure work zone, 0700; each
    conversion is deleted once read, see :mod:`transforms.workbook`)."""
    path = settings.work / "workbooks"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def prepare_file(path: Path, settings: Settings, keyring: Keyring, *, source: str = "auto",
                 dataset: str = DEFAULT_DATASET, objections: frozenset[str] = frozenset(),
                 chunk_rows: int | None = None, processes: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 engine: Engine | None = None) -> PreparedFile:
    """Read and pseudonymize one raw file into a staged parquet file; raise on any bad input.

    The whole file is proven well-formed first (the same pass locates its chunks), so a
    rejection never follows a partial stage. Chunks of ``chunk_rows`` rows are staged on
    ``processes`` processes (defaults: ``settings.chunk_rows``, ``settings.ingest_processes``).
    Given the warehouse ``engine``, records it holds already, byte for byte, are skipped
    before anything but reading and one keyed hash is spent on them (``pipeline.unchanged``).
    """
    from pipeline.staging import ChunkStats, StageJob, chunk_pool, stage_file
    from transforms.exports import open_export
    from transforms.read import sha256_file

    sha = sha256_file(path)  # of the file that landed (a workbook: the workbook's bytes)
    work = staged_dir(settings)
    workers = settings.ingest_processes if processes is None else processes
    with open_export(path, source, work_dir=workbook_dir(settings)) as opened:
        profile = opened.profile
        plan = opened.plan(chunk_rows or settings.chunk_rows, validate=True)
        out = work / f"{sha}.{profile.kind}.parquet"
        job = StageJob(plan=plan, keyring=keyring, dataset=dataset,
                       objections=objections, parts_dir=work / f"{sha}.parts",
                       raw_context=unchanged.raw_context(plan))
        skip = None
        with chunk_pool(plan, workers) as pool:
            if engine is not None and job.raw_context is not None:
                skip = unchanged.find_unchanged(job, engine, work, processes=workers,
                                                pool=pool)
                job = replace(job, selection_dir=skip.selection_dir)
            try:
                total = ChunkStats.total(stage_file(job, out, progress=progress,
                                                    processes=workers, pool=pool))
            except BaseException:
                if skip is not None:
                    unchanged.drop(skip)
                raise
        if skip is not None and skip.selection_dir is not None:
            unchanged.drop(selection_dir=str(skip.selection_dir))
    prepared = PreparedFile(
        file_name=path.name, sha256=sha, source=profile.name, kind=profile.kind,
        staged_path=str(out), dataset=dataset, key_id=keyring.current.key_id,
        rows_read=total.rows, rows_staged=total.staged,
        rows_excluded_no_basis=total.excluded_no_basis,
        rows_excluded_objection=total.excluded_objection, rows_unplaced=total.unplaced,
        bad_email=total.bad_email, bad_phone=total.bad_phone, rows_withdrawn=total.withdrawn,
        rows_skipped=total.skipped,
        skipped_path=str(skip.skipped_path) if skip and skip.skipped_path else "",
        skip_marker=skip.marker if skip else "")
    log.info("prepared %s (%s): %d rows read, %d skipped as unchanged, %d staged, "
             "%d excluded, %d unplaced", path.name, profile.name, prepared.rows_read,
             prepared.rows_skipped, prepared.rows_staged,
             prepared.rows_excluded_no_basis + prepared.rows_excluded_objection,
             prepared.rows_unplaced)
    return prepared


def read_staged(prepared: PreparedFile) -> pd.DataFrame:
    """The staged pseudonymized rows (for the pseudonymized-suite validation)."""
    return pd.read_parquet(prepared.staged_path)


def load_prepared(prepared: PreparedFile, engine: Engine, keyring: Keyring, *,
                  now: datetime | None = None, warnings: Mapping[str, Any] | None = None,
                  again: bool = False) -> LoadResult:
    """Apply what the staged file changes, in one transaction; a reload is a no-op.

    Older key versions are moved to the current one, ``do_not_contact`` persons leave,
    unchanged rows are skipped (see :mod:`pipeline.changes`); then identities are resolved
    and the new or changed rows are written. ``again`` loads a file already loaded (to move
    what it names to the current key version: ``isoloir keys rekey``); being a diff, that
    is safe.
    """
    at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    clock = _StageClock()
    with store.load_transaction(engine) as conn:
        done = store.already_loaded(conn, prepared.sha256)
        if done is not None and again:
            store.delete_keys(conn, ingested_files, "sha256", [prepared.sha256])
        elif done is not None:
            log.info("%s already loaded (sha256 %s...): nothing to do", prepared.file_name,
                     prepared.sha256[:12])
            drop_staged(prepared)
            return LoadResult(prepared.file_name, prepared.sha256, prepared.source,
                              "already_loaded", int(done["rows_read"]), 0,
                              int(done["rows_excluded"]), int(done["rows_unplaced"]), 0, 0)
        if prepared.rows_skipped:
            unchanged.recheck(conn, prepared.kind, prepared.skipped_path, prepared.skip_marker)
        staged = StagedFile.open(prepared.staged_path)
        scan = pl.scan_parquet(prepared.staged_path)
        columns = list(staged.columns)
        changes.rekey_stored(conn, scan, prepared.kind, columns)
        del scan
        late = changes.objected_rows(conn, staged)  # listed since staging: as if withdrawn
        withdrawal = changes.withdraw(conn, staged, late, at)
        numbering = changes.number_rows(conn, staged, prepared.kind, late,
                                        prepared.skipped_path or None)
        diff = _diff_slices(conn, staged, prepared.kind, numbering)
        keep = diff.keep.to_numpy()
        clock.lap("diff")
        index = index_identifier_slices(lambda: _positions(staged, keep, ID_COLUMNS),
                                        len(keep))
        known = existing_links(conn, index.nodes.get_column("pseudonym"))
        clock.lap("lookup")
        resolution = resolve_index(index, known,
                                   keyring.pseudonymizer(prepared.dataset, PURPOSE_PERSON))
        del index, known
        clock.lap("resolve")
        store.apply_merges(conn, resolution.merges)
        store.upsert_links(conn, resolution.new_link_batches(), resolution.repointed,
                           prepared.sha256, incoming=resolution.new_link_count)
        clock.lap("links")
        counts_new, counts_merged = len(resolution.new_persons), len(resolution.merges)
        written = _write_slices(conn, staged, prepared, keep, resolution, numbering)
        del resolution, numbering
        excluded = prepared.rows_excluded_no_basis + prepared.rows_excluded_objection
        if prepared.rows_staged + excluded + prepared.rows_skipped != prepared.rows_read:
            raise InvariantViolation(f"{prepared.file_name}: staged + excluded + skipped "
                                     "!= read")
        excluded += late.len()
        counts = {"rows_read": prepared.rows_read, "rows_loaded": written,
                  "rows_excluded": excluded, "rows_unplaced": prepared.rows_unplaced,
                  "persons_new": counts_new, "persons_merged": counts_merged}
        details = {"excluded_no_lawful_basis": prepared.rows_excluded_no_basis,
                   "excluded_objection": prepared.rows_excluded_objection,
                   "bad_email": prepared.bad_email, "bad_phone": prepared.bad_phone,
                   "rows_unchanged": diff.unchanged + prepared.rows_skipped,
                   "rows_skipped_unchanged": prepared.rows_skipped,
                   "rows_changed": diff.changed,
                   "rows_older_than_stored": diff.stale,
                   "withdrawn_rows": prepared.rows_withdrawn,
                   "excluded_objection_at_load": late.len(),
                   "persons_withdrawn": withdrawal.persons,
                   "rows_removed_by_withdrawal": withdrawal.rows,
                   "warnings": dict(warnings or {})}
        store.record_file(conn, sha256=prepared.sha256, file_name=prepared.file_name,
                          source=prepared.source, status="loaded", counts=counts,
                          key_id=prepared.key_id, loaded_at=at, details=details)
        clock.lap("rows")
    clock.lap("commit")
    drop_staged(prepared)
    log.info("loaded %s: %d rows written (%d unchanged, of which %d skipped before "
             "processing; %d changed, %d older than stored), %d new persons, %d merged, "
             "%d withdrawn (%s)", prepared.file_name, written,
             diff.unchanged + prepared.rows_skipped, prepared.rows_skipped, diff.changed,
             diff.stale, counts["persons_new"],
             counts["persons_merged"], withdrawal.persons,
             ", ".join(f"{k} {v:.1f} s" for k, v in clock.seconds.items()))
    return LoadResult(prepared.file_name, prepared.sha256, prepared.source, "loaded",
                      prepared.rows_read, written, excluded, prepared.rows_unplaced,
                      counts["persons_new"], counts["persons_merged"], dict(clock.seconds),
                      rows_unchanged=diff.unchanged + prepared.rows_skipped,
                      rows_changed=diff.changed, rows_stale=diff.stale,
                      persons_withdrawn=withdrawal.persons, rows_skipped=prepared.rows_skipped,
                      peak_mb=dict(clock.peak_mb))


def _diff_slices(conn: Connection, staged: StagedFile, kind: str,
                 numbering: changes.Numbering) -> changes.Diff:
    """The diff of a staged file, slice by slice: which loaded rows to write.

    Changed stored rows are deleted as they are found (to be written again), and unchanged
    rows found under another raw record get that record's key. A first load of an event
    table has nothing to compare with: every loaded row is written.
    """
    if kind == "people":
        wanted = ["id_source", FINGERPRINT, UPDATED_AT, RAW_HASH]
        table, id_column = people_rows, "row_key"
        compare = True
    else:
        wanted = [EVENT_KEY, FINGERPRINT, RAW_HASH, RAW_OCCURRENCE]
        table, id_column = changes.EVENT_TABLES[kind]
        compare = store.holds_rows(conn, table)
    parts: list[changes.Diff] = []
    for frame in staged.slices(wanted, rows=numbering.active):
        keyed = changes.with_keys(frame, kind, numbering)
        if kind == "people":
            diff = changes.diff_people(conn, keyed)
        elif compare:
            diff = changes.diff_events(conn, keyed.select("row", "id", FINGERPRINT), kind)
        else:
            diff = changes.Diff(keyed.get_column("row"), 0, 0)
        if not diff.rekeyed.is_empty():
            raw = keyed.select("row", changes.RAW_KEY).join(diff.rekeyed, on="row")
            store.set_raw_keys(conn, table, id_column, raw.select("id", changes.RAW_KEY))
        parts.append(changes.Diff(diff.keep, diff.unchanged, diff.changed, diff.stale))
    return changes.Diff.combine(parts)


def _positions(staged: StagedFile, keep: np.ndarray, columns: Sequence[str]
               ) -> Iterator[pl.DataFrame]:
    """Slices of the rows to write, their ``row`` replaced by their position in ``keep``."""
    for frame in staged.slices(columns, rows=keep):
        yield frame.with_columns(pl.Series("row", np.searchsorted(
            keep, frame.get_column("row").to_numpy()).astype(np.uint32)))


def _write_slices(conn: Connection, staged: StagedFile, prepared: PreparedFile,
                  keep: np.ndarray, resolution: Resolution,
                  numbering: changes.Numbering) -> int:
    """Write the kept rows slice by slice, with their person; returns how many.

    A person is inserted the first time a slice names them and refreshed afterwards; a
    people row's state replaces the one stored for its source id (the file's last wins).
    Secondary indexes of a large load are built once, at the end.
    """
    kind = prepared.kind
    people = kind == "people"
    table = people_rows if people else changes.EVENT_TABLES[kind][0]
    fresh = resolution.new_persons
    new_component = resolution.component_person.is_in(fresh.implode()).to_numpy()
    inserted = np.zeros(len(new_component), dtype=bool)
    written = 0
    several = len(keep) > staged.slice_rows
    wanted = [c for c in staged.columns if "__k" not in c and
              (c not in ID_COLUMNS or (people and c == "id_source"))]
    with store.indexes_deferred(conn, [table], len(keep)):
        for frame in _positions(staged, keep, wanted):
            positions = frame.get_column("row").to_numpy()
            components = resolution.row_component[positions]
            is_new = new_component[components] & ~inserted[components]
            first = resolution.component_person.gather(np.unique(components[is_new]))
            inserted[components] = True
            rows = frame.with_columns(resolution.persons_at(positions))
            written += rows.height
            if people:
                rows = changes.with_keys(rows.with_columns(
                    pl.Series("row", keep[positions])), kind, numbering)
                states = changes.people_states(rows)
                store.upsert_persons(conn, rows.select(
                    "person_id", *(c for c in store.PERSON_ATTRIBUTES if c in rows.columns)),
                    first, prepared.sha256, update_existing=True)
                store.replace_people_rows(conn, states, prepared.sha256)
            else:
                rows = changes.with_keys(rows.with_columns(
                    pl.Series("row", keep[positions])), kind, numbering)
                store.upsert_persons(conn, rows.select("person_id", "commune", "departement",
                                                       "region"),
                                     first, prepared.sha256, update_existing=False)
                store.bulk_insert(conn, table, rows.rename({"id": changes.EVENT_TABLES[kind][1]}),
                                  constants={"source": prepared.source,
                                             "file_sha256": prepared.sha256})
            # The next slice looks rows up by key in what this one wrote: without fresh
            # statistics PostgreSQL plans those lookups for the empty tables it last saw.
            if several:
                store.refresh_statistics(conn, [persons, people_rows] if people else [persons])
    return written


class _StageClock:
    """Wall time of consecutive stages, and the process's peak memory at the end of each,
    for the load's log line and benchmarks (memory is bounded per stage, so a regression
    shows where it happened)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {"before": round(peak_rss_mb(), 1)}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self.peak_mb[stage] = round(peak_rss_mb(), 1)
        self._last = now


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB.

    Linux's ``VmHWM`` where there is one: ``ru_maxrss`` survives ``exec``, so a process
    started by a large parent would report the parent's peak as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drop_staged(prepared: PreparedFile) -> None:
    """Delete a prepared file's staged and skipped-record files: a stale or failed staging
    must not be loaded later."""
    Path(prepared.staged_path).unlink(missing_ok=True)
    if prepared.skipped_path:
        Path(prepared.skipped_path).unlink(missing_ok=True)


def ingest_file(path: Path, settings: Settings, engine: Engine, keyring: Keyring, *,
                source: str = "auto", dataset: str = DEFAULT_DATASET, again: bool = False,
                staged_check: Callable[[PreparedFile], Mapping[str, Any]] | None = None,
                now: datetime | None = None,
                progress: Callable[[int], None] | None = None) -> LoadResult:
    """Prepare and load one file (the CLI path; the DAG runs the steps as separate tasks)."""
    from warehouse.db import ensure_schema

    ensure_schema(engine)
    from transforms.read import sha256_file

    with engine.connect() as conn:
        done = store.already_loaded(conn, sha256_file(path))
        objections = store.objection_pseudonyms(conn)
    if done is not None and not again:
        return LoadResult(path.name, str(done["sha256"]), str(done["source"]), "already_loaded",
                          int(done["rows_read"]), 0, int(done["rows_excluded"]),
                          int(done["rows_unplaced"]), 0, 0)
    for attempt in (1, 2):
        prepared = prepare_file(path, settings, keyring, source=source, dataset=dataset,
                                objections=objections, progress=progress, engine=engine)
        try:
            warnings = staged_check(prepared) if staged_check is not None else {}
            return load_prepared(prepared, engine, keyring, now=now, warnings=warnings,
                                 again=again)
        except StaleStagingError:
            drop_staged(prepared)
            if attempt == 2:
                raise
            log.info("%s: the warehouse changed under its skipped records since it was "
                     "staged; staging it again", path.name)
            with engine.connect() as conn:
                objections = store.objection_pseudonyms(conn)
        except BaseException:
            drop_staged(prepared)
            raise
    raise InvariantViolation("unreachable")
