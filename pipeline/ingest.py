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
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
from sqlalchemy import Connection, Engine

from core.errors import InvariantViolation
from core.settings import Settings
from pipeline import changes, unchanged
from pipeline.unchanged import StaleStagingError
from privacy.identity import existing_links, index_identifiers, resolve_index
from privacy.keys import Keyring
from privacy.pseudonymize import (
    EVENT_KEY,
    FINGERPRINT,
    ID_COLUMNS,
    PURPOSE_PERSON,
    RAW_HASH,
    RAW_OCCURRENCE,
    WITHDRAWN,
)
from warehouse import store
from warehouse.schema import ingested_files, people_rows

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
        scan = pl.scan_parquet(prepared.staged_path)
        columns = scan.collect_schema().names()
        changes.rekey_stored(conn, scan, prepared.kind, columns)
        late = changes.objected_rows(conn, scan, columns)
        if not late.is_empty():  # listed since staging: excluded like a withdrawn row
            scan = scan.with_columns((pl.col(WITHDRAWN) | pl.int_range(pl.len(), dtype=pl.UInt32)
                                      .is_in(late.implode())).alias(WITHDRAWN))
        withdrawal = changes.withdraw(conn, scan, columns, at)
        wanted = [c for c in columns if "__k" not in c and c not in (RAW_HASH, RAW_OCCURRENCE)]
        base = scan.with_row_index("row").with_columns(changes.raw_key(prepared.kind, columns)) \
            .filter(~pl.col(WITHDRAWN))
        wanted.append(changes.RAW_KEY)
        if prepared.kind == "people":
            diff = changes.diff_people(conn, scan)
            raw_table, raw_id = people_rows, "row_key"
        else:  # ids over the whole file (skipped records included), then the subset
            raw_table, raw_id = changes.EVENT_TABLES[prepared.kind]
            diff, kept_ids = _diff_events(conn, prepared, base)
            if kept_ids is None:  # nothing claimed: the ids are computed again, lazily
                base = base.with_columns(changes.event_ids(pl.col(EVENT_KEY)).alias(raw_id))
            else:
                base = base.join(kept_ids.lazy().rename({"id": raw_id}), on="row", how="left",
                                 maintain_order="left")
            wanted = [c for c in wanted if c != EVENT_KEY] + [raw_id]  # the id holds the key
        if not diff.rekeyed.is_empty():
            raw = base.select("row", changes.RAW_KEY).join(diff.rekeyed.lazy(), on="row")
            store.set_raw_keys(conn, raw_table, raw_id, raw.select("id", changes.RAW_KEY)
                               .collect())
        rows = base.filter(pl.col("row").is_in(diff.keep.implode())).select(wanted)
        clock.lap("diff")
        index = index_identifiers(rows)
        known = existing_links(conn, index.nodes.get_column("pseudonym"))
        clock.lap("lookup")
        resolution = resolve_index(index, known,
                                   keyring.pseudonymizer(prepared.dataset, PURPOSE_PERSON))
        del index, known
        clock.lap("resolve")
        store.apply_merges(conn, resolution.merges)
        store.upsert_links(conn, resolution.new_links, resolution.repointed, prepared.sha256)
        clock.lap("links")
        keep_ids = ["id_source"] if prepared.kind == "people" else []
        staged = rows.drop([c for c in ID_COLUMNS if c not in keep_ids]).collect() \
            .with_columns(resolution.row_person)
        new_persons = resolution.new_persons
        counts_new, counts_merged = len(resolution.new_persons), len(resolution.merges)
        del resolution
        written = staged.height
        # The people frame is narrowed before it is written and the wider one let go: at
        # millions of rows, two copies of the written rows push the load's memory up.
        if prepared.kind == "people":
            states = changes.people_states(staged)
            staged = staged.select("person_id", *(c for c in store.PERSON_ATTRIBUTES
                                                  if c in staged.columns))
            store.upsert_persons(conn, staged, new_persons, prepared.sha256,
                                 update_existing=True)
            del staged
            store.replace_people_rows(conn, states, prepared.sha256)
            del states
        else:
            store.upsert_persons(conn, staged.select("person_id", "commune", "departement",
                                                     "region"),
                                 new_persons, prepared.sha256, update_existing=False)
            store.bulk_insert(conn, changes.EVENT_TABLES[prepared.kind][0], staged,
                              constants={"source": prepared.source,
                                         "file_sha256": prepared.sha256})
            del staged
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
                      persons_withdrawn=withdrawal.persons, rows_skipped=prepared.rows_skipped)


def _diff_events(conn: Connection, prepared: PreparedFile, base: pl.LazyFrame
                 ) -> tuple[changes.Diff, pl.DataFrame | None]:
    """The diff of a staged events file, and the ids of the rows to write when skipped
    records claimed some occurrences (``None``: :func:`changes.event_ids` gives them).

    A first load of the table has nothing to compare with: every row is written, and the
    file's ids are never held in memory at once.
    """
    table, _ = changes.EVENT_TABLES[prepared.kind]
    if not store.holds_rows(conn, table):
        keep = base.select("row").collect().get_column("row")
        return changes.Diff(keep, 0, 0), None
    events = base.select("row", EVENT_KEY, FINGERPRINT).collect()
    claims = unchanged.claimed(conn, prepared.kind, events.get_column(EVENT_KEY),
                               prepared.skipped_path or None)
    ids = events.select("row", FINGERPRINT,
                        changes.event_ids_around(events, claims).alias("id"))
    del events
    diff = changes.diff_events(conn, ids, prepared.kind)
    if claims.is_empty():
        return diff, None
    return diff, ids.filter(pl.col("row").is_in(diff.keep.implode())).select("row", "id")


class _StageClock:
    """Wall time of consecutive stages, for the load's log line and benchmarks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now


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
