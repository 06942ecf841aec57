"""Release orchestration: snapshot → admit the run → for each query: noise → record → publish.

A **run** is one ``run_id``: the plan's queries (or a chosen subset of them) released
together. The order is the privacy argument:

1. The plan's cap opens (or must equal) the dataset's budget, and the run's cost is checked
   against what is left **before any data is read** (an early refusal, not the guarantee).
2. Each query's release id derives from (dataset, run id, query name, plan hash, attempt).
   A release already recorded is **replayed**: its signed files are written again, byte for
   byte, and nothing is charged or drawn.
3. The run's other queries are **admitted whole**: the accountant charges all of them in one
   transaction, before any noise, or refuses the run with nothing charged
   (:class:`~privacy.accountant.InsufficientBudget`, exit 3). Concurrent runs therefore never
   split the last of the budget into a patchwork of half-published runs.
4. Then, query by query, the DP engine draws the noise, the files are rendered, their bytes
   are recorded and signed in the ledger, and only then copied to ``published/``.
5. **Cadence.** Each charge states the period it covers (the run's logical day, ISO week or
   month, by the query's cadence: :mod:`privacy.cadence`). With ``only_due=True`` (the
   release DAG) a query whose period already holds a release is not due and is left out of
   the run (``skipped`` in the summary); the accountant re-checks it in the admission's
   transaction, so a weekly query is charged once a week however many daily runs happen.
6. A crash after the admission leaves the budget spent. The next attempt of the run replays
   what was recorded, and admits the unfinished queries again under new ids (attempt + 1),
   charged again: noise is never drawn again for free.

The warehouse snapshot (Parquet in ``work/``) is deleted when the run ends, whatever happens.
:func:`run_release` is what the Airflow task and the CLI call; its summary is small and
JSON-able (XCom-safe): ids, paths, counts, hashes, exact budgets as text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

import polars as pl
from sqlalchemy import Engine

from core.errors import IsoloirError, PlanError
from core.settings import Settings
from privacy.accountant import (
    RUN_ID_MAX,
    Accountant,
    BudgetCap,
    ChargeRequest,
    Clock,
    RunRequest,
    decimal_text,
    epsilon_equivalent,
    utc_now,
)
from privacy.cadence import period_of, stamp_period
from privacy.ledger import LedgerEntry, PublishedFile, fraction_text
from privacy.plan import Plan, Query, canonical_query, plan_hash, query_cost
from privacy.publish import CsvFormat, build_files, jsonable, published_table, write_files

log = logging.getLogger(__name__)


class ReleaseInProgress(IsoloirError):
    """Another process charged this release id a moment ago and is still producing it."""


class RunSelectionError(PlanError):
    """A run names a query the plan does not have, or a run id that cannot be stored (exit 2)."""


# --------------------------------------------------------------------------- the DP engine

class SnapshotLike(Protocol):
    tables: Mapping[str, Path]
    snapshot_hash: str


class QueryResultLike(Protocol):
    mechanism: str
    table: pl.DataFrame
    metadata: Mapping[str, Any]


class DPEngine(Protocol):
    """What the release needs from the DP engine (:mod:`privacy.engine` by default)."""

    def snapshot(self, engine: Engine, work_dir: Path) -> SnapshotLike: ...

    def mechanism(self, query: Query) -> str: ...

    def run_query(self, query: Query, plan: Plan, data: Any,
                  rho: Fraction) -> QueryResultLike: ...

    def postprocess(self, result: Any) -> pl.DataFrame: ...


class OpenDPEngine:
    """The real engine: :mod:`privacy.engine` (OpenDP), imported when a release runs."""

    @staticmethod
    def _module() -> Any:
        import importlib

        return importlib.import_module("privacy.engine")

    def snapshot(self, engine: Engine, work_dir: Path) -> SnapshotLike:
        return self._module().snapshot_warehouse(engine, work_dir)  # type: ignore[no-any-return]

    def mechanism(self, query: Query) -> str:
        named = getattr(self._module(), "mechanism_name", None)
        if callable(named):
            return str(named(query))
        return "gaussian (zCDP)"

    def run_query(self, query: Query, plan: Plan, data: Any, rho: Fraction) -> QueryResultLike:
        return self._module().run_query(query, plan, data, rho)  # type: ignore[no-any-return]

    def postprocess(self, result: Any) -> pl.DataFrame:
        return self._module().postprocess(result)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- summary

@dataclass(frozen=True)
class ReleasedQuery:
    """One query of a run: charged now, or replayed from the ledger."""

    query: str
    release_id: str
    ledger_seq: int
    status: Literal["charged", "replayed"]
    cost_rho: str
    result_hash: str
    files: tuple[str, ...]
    lost_attempts: int


@dataclass(frozen=True)
class ReleaseSummary:
    """What a run did (XCom-safe: no data, exact budgets as ``"p/q"`` text)."""

    dataset_id: str
    run_id: str
    plan_hash: str
    queries: tuple[str, ...]  # the queries this run releases (the whole plan, or a subset)
    logical_date: str
    snapshot_hash: str | None
    published_dir: str
    releases: tuple[ReleasedQuery, ...]
    charged_rho: str
    cap_rho: str
    spent_rho: str
    remaining_rho: str
    #: Queries left out because their period already holds a release (``only_due``), with
    #: the period: ``{"volunteers_by_departement": "2026-W02"}``.
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def charged(self) -> int:
        return sum(1 for r in self.releases if r.status == "charged")

    @property
    def replayed(self) -> int:
        return sum(1 for r in self.releases if r.status == "replayed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"charged": self.charged, "replayed": self.replayed}


# --------------------------------------------------------------------------- run

def default_run_id(day: date, queries: Sequence[str] | None = None) -> str:
    """The CLI's run id when none is given: one release per calendar day (``cli-2026-03-01``).

    Running again the same day replays that day's releases at no cost. A subset of the plan
    is its own run: its id names the queries (sorted, so the same subset the same day is the
    same run), or a digest of them when the names are too long to store.

    >>> default_run_id(date(2026, 3, 1)), default_run_id(date(2026, 3, 1), ["b", "a"])
    ('cli-2026-03-01', 'cli-2026-03-01+a+b')
    """
    base = f"cli-{day.isoformat()}"
    if not queries:
        return base
    names = sorted(set(queries))
    joined = "+".join([base, *names])
    if len(joined) <= RUN_ID_MAX:
        return joined
    digest = hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()[:16]
    return f"{base}+subset-{digest}"


def select_queries(plan: Plan, names: Sequence[str] | None) -> tuple[Query, ...]:
    """The plan's queries a run releases: all of them, or those named (in plan order).

    A table of a hierarchical query (``supporters_by_region``) names its query: its levels
    are released together or not at all."""
    if not names:
        return tuple(plan.releases)
    owner = {table: q.name for q in plan.releases for table in q.table_names()}
    unknown = sorted(set(names) - set(owner))
    if unknown:
        raise RunSelectionError(f"the plan has no query {', '.join(map(repr, unknown))}; its "
                                f"queries are: {', '.join(q.name for q in plan.releases)}")
    wanted = {owner[name] for name in names}
    return tuple(q for q in plan.releases if q.name in wanted)


def _logical_moment(logical_date: datetime | date | None, clock: Clock) -> datetime:
    if logical_date is None:
        now = clock()
        log.warning("no logical date given: the published created_at is the release time")
        return now
    if isinstance(logical_date, datetime):
        return logical_date if logical_date.tzinfo else logical_date.replace(tzinfo=UTC)
    return datetime(logical_date.year, logical_date.month, logical_date.day, tzinfo=UTC)


def due_queries(settings: Settings, plan: Plan, run_id: str, day: date,
                queries: Sequence[str] | None = None) -> tuple[tuple[Query, ...], dict[str, str]]:
    """The plan's queries (or those named) due on ``day`` for run ``run_id``, and those not
    due with the period that already holds their release. An unlocked read: the accountant
    re-checks inside the admission."""
    from privacy.cadence import coverage, covered, period_of
    from privacy.ledger import read_entries
    from warehouse.db import ensure_schema, make_engine

    db = make_engine(settings.warehouse_url)
    ensure_schema(db)
    with db.connect() as conn:
        cover = coverage(read_entries(conn, plan.dataset_id))
    due, skipped = [], {}
    for query in select_queries(plan, queries):
        period = period_of(query.cadence, day)
        if covered(cover.get((query.name, period), ()), run_id):
            skipped[query.name] = period
        else:
            due.append(query)
    return tuple(due), skipped


def run_release(settings: Settings, plan: Plan, run_id: str, *,
                logical_date: datetime | date | None,
                clock: Clock = utc_now,
                dp_engine: DPEngine | None = None,
                csv_format: CsvFormat = CsvFormat(),
                on_release: Callable[[ReleasedQuery], None] | None = None,
                queries: Sequence[str] | None = None,
                only_due: bool = False) -> ReleaseSummary:
    """Release ``plan`` (or only the queries named in ``queries``) as run ``run_id``; see the
    module docstring for the order.

    ``logical_date`` is the run's date (Airflow's logical date; the CLI passes today): it is
    the ``created_at`` of the published files. Raises :class:`InsufficientBudget` (exit 3),
    with nothing charged and nothing published, when the run's unreleased queries cost more
    than what is left; :class:`RunSelectionError` (exit 2) for an unknown query name.

    Every charge states the period (by the query's cadence) that holds ``logical_date``.
    ``only_due``: release only the queries due on ``logical_date`` (:func:`due_queries`);
    recorded releases of this run are still replayed. It needs a ``logical_date``.
    """
    from privacy.signing import load_signing_key, load_verify_key, retired_public_keys
    from warehouse.db import ensure_schema, make_engine

    if not run_id.strip():
        raise ValueError("run_id must not be empty")
    if len(run_id) > RUN_ID_MAX:
        raise RunSelectionError(f"run id is {len(run_id)} characters long; at most "
                                f"{RUN_ID_MAX} are stored")
    selected = select_queries(plan, queries)
    moment = _logical_moment(logical_date, clock)
    day = moment.date()
    if only_due and logical_date is None:
        raise ValueError("only_due needs the run's logical date")
    settings.ensure_dirs()
    db = make_engine(settings.warehouse_url)
    ensure_schema(db)
    accountant = Accountant(db, load_signing_key(settings.signing_key_file), clock=clock,
                            retired_keys=[load_verify_key(p) for p in
                                          retired_public_keys(settings.signing_key_file)])
    cap = BudgetCap.from_plan(plan.cap)
    accountant.open_budget(plan.dataset_id, cap)
    phash = plan_hash(plan)
    created_at = moment.isoformat()
    dp = dp_engine or OpenDPEngine()

    attempts = [(q, accountant.next_attempt(plan.dataset_id, run_id, q.name, phash))
                for q in selected]
    skipped: dict[str, str] = {}
    if only_due:
        due, skipped = due_queries(settings, plan, run_id, day, [q.name for q in selected])
        due_names = {q.name for q in due}
        attempts = [(q, a) for q, a in attempts if a.status == "recorded" or q.name in due_names]
        skipped = {name: period for name, period in skipped.items()
                   if name not in {q.name for q, _ in attempts}}
        if skipped:
            log.info("not due on %s (their period holds a release): %s", day.isoformat(),
                     ", ".join(f"{n} ({p})" for n, p in skipped.items()))
    new = [(q, a) for q, a in attempts if a.status == "new"]
    if new:  # refused here when it cannot fit now: no data read yet
        accountant.require(plan.dataset_id, sum((query_cost(plan, q) for q, _ in new),
                                                Fraction(0)), run_id=run_id, queries=len(new))

    work = Path(tempfile.mkdtemp(prefix="snapshot-", dir=settings.work))
    data: SnapshotLike | None = None
    done: list[ReleasedQuery] = []
    try:
        charged: dict[str, LedgerEntry] = {}
        if new:
            data = dp.snapshot(db, work)
            log.info("warehouse snapshot %s taken", data.snapshot_hash[:12])
            admission = accountant.admit_run(RunRequest(plan.dataset_id, run_id, tuple(
                ChargeRequest(dataset_id=plan.dataset_id, release_id=a.release_id,
                              plan_hash=phash,
                              query=stamp_period(canonical_query(q), period_of(q.cadence, day)),
                              mechanism=dp.mechanism(q), cost=query_cost(plan, q),
                              snapshot_hash=data.snapshot_hash) for q, a in new)),
                only_due=only_due)
            if not admission.fresh:
                raise ReleaseInProgress(
                    f"run {run_id!r} was admitted by another process that is still producing "
                    f"it ({len(admission.entries)} of its releases are charged); retry once it "
                    "has finished")
            charged = {e.release_id: e for e in admission.entries}
        for query, attempt in attempts:
            if attempt.status == "recorded":
                outcome = _replay(accountant, query, attempt.release_id, attempt.lost,
                                  settings.published)
            else:
                assert data is not None  # taken before the admission
                outcome = _release(accountant, dp, plan, query, data,
                                   charged[attempt.release_id], attempt.lost, run_id=run_id,
                                   created_at=created_at, cap=cap, csv_format=csv_format,
                                   published=settings.published)
            done.append(outcome)
            if on_release is not None:
                on_release(outcome)
    finally:
        if data is not None:
            for path in data.tables.values():
                Path(path).unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)

    state = accountant.budget(plan.dataset_id)
    assert state is not None  # opened above
    return ReleaseSummary(
        dataset_id=plan.dataset_id, run_id=run_id, plan_hash=phash,
        queries=tuple(q.name for q, _ in attempts), logical_date=created_at,
        snapshot_hash=None if data is None else data.snapshot_hash,
        published_dir=str(settings.published), releases=tuple(done),
        charged_rho=fraction_text(sum((Fraction(r.cost_rho) for r in done
                                       if r.status == "charged"), Fraction(0))),
        cap_rho=fraction_text(state.cap.rho), spent_rho=fraction_text(state.spent),
        remaining_rho=fraction_text(state.remaining), skipped=skipped)


def _replay(accountant: Accountant, query: Query, release: str, lost: int,
            published: Path) -> ReleasedQuery:
    result = accountant.stored_result(release)  # verified before it is written again
    entry = accountant.entry(release)
    assert entry is not None and entry.result_hash is not None
    write_files(result.files, published)
    log.info("replayed release %s (%s): nothing charged", release, query.name)
    return ReleasedQuery(query=query.name, release_id=release, ledger_seq=entry.seq,
                         status="replayed", cost_rho=entry.cost_rho,
                         result_hash=entry.result_hash,
                         files=tuple(f.name for f in result.files), lost_attempts=lost)


def _release(accountant: Accountant, dp: DPEngine, plan: Plan, query: Query,
             data: SnapshotLike, entry: LedgerEntry, lost: int, *, run_id: str,
             created_at: str, cap: BudgetCap, csv_format: CsvFormat,
             published: Path) -> ReleasedQuery:
    """Draw the noise of a query whose charge ``entry`` the run's admission appended."""
    release = entry.release_id
    if query.hierarchy:
        files = _hierarchy_files(dp, plan, query, data, entry, run_id=run_id,
                                 created_at=created_at, cap=cap, csv_format=csv_format)
    else:
        query, source = _resolved(plan, query, published)
        result = dp.run_query(query, plan, data, entry.cost)  # the noise: after the charge
        table = published_table(dp.postprocess(result), query.group_by, release_id=release,
                                mechanism=result.mechanism, budget_share=float(query.share))
        meta = _metadata(plan, query, entry, result, run_id=run_id, created_at=created_at,
                         cap=cap)
        if source is not None:
            meta["bounds"]["weights_from_release"] = source
        files = build_files(query.name, release, table, meta, csv_format)
    stored = accountant.record_result(entry, files)
    write_files(files, published)
    return ReleasedQuery(query=query.name, release_id=release, ledger_seq=entry.seq,
                         status="charged", cost_rho=entry.cost_rho,
                         result_hash=stored.result_hash, files=tuple(f.name for f in files),
                         lost_attempts=lost)


def _resolved(plan: Plan, query: Query, published: Path) -> tuple[Query, str | None]:
    """An L2-ball query with ``weights: last_release``: its cell weights from the query's
    last published release (a DP output already charged; :mod:`privacy.cell_weights`),
    with that release's id; any other query as it is."""
    ball = query.ball_bounds
    if ball is None or ball.weights != "last_release":
        return query, None
    from privacy.cell_weights import last_release_weights

    weights, source = last_release_weights(published, plan, query)
    log.info("query %s: %s", query.name, "uniform weights (no earlier release)"
             if weights is None else f"cell weights from release {source}")
    return query.with_cell_weights(weights), source


def _hierarchy_files(dp: DPEngine, plan: Plan, query: Query, data: SnapshotLike,
                     entry: LedgerEntry, *, run_id: str, created_at: str, cap: BudgetCap,
                     csv_format: CsvFormat) -> tuple[PublishedFile, ...]:
    """A hierarchical query: every level drawn at its part of the charge, post-processed to
    agree (:mod:`privacy.hierarchy`), one table (three files) per level, one ledger entry."""
    from privacy.hierarchy import release_levels

    files: list[PublishedFile] = []
    for level, result in release_levels(query, plan, data, entry.cost, dp.run_query):
        table = published_table(level.table, level.query.group_by,
                                release_id=entry.release_id, mechanism=result.mechanism,
                                budget_share=float(level.query.share))
        meta = _metadata(plan, level.query, entry, result, run_id=run_id,
                         created_at=created_at, cap=cap)
        meta |= {"hierarchy": jsonable(level.hierarchy),
                 "post_processing": [*meta["post_processing"][:1], level.hierarchy["method"],
                                     "intervals " + level.hierarchy["intervals"]]}
        files += build_files(level.query.name, entry.release_id, table, meta, csv_format)
    return tuple(files)


def _metadata(plan: Plan, query: Query, entry: LedgerEntry, result: QueryResultLike, *,
              run_id: str, created_at: str, cap: BudgetCap) -> dict[str, Any]:
    """The JSON metadata of a release (no data values: provenance, budget, bounds)."""
    engine_meta = jsonable(result.metadata)
    rho = entry.cost
    clip = query.clip if query.clip is not None else (
        query.clip_bounds() if query.value is not None else None)
    return {
        "release_id": entry.release_id, "ledger_seq": entry.seq, "entry_hash": entry.entry_hash,
        "dataset_id": plan.dataset_id, "run_id": run_id, "plan_hash": entry.plan_hash,
        "query_name": query.name, "query": json.loads(entry.query),
        "query_canonical": entry.query,  # exactly as in the ledger entry
        "title": query.title, "title_fr": query.title_fr, "measure": query.measure,
        "group_by": list(query.group_by),
        "mechanism": result.mechanism, "ledger_mechanism": entry.mechanism,
        "rho": entry.cost_rho, "rho_decimal": decimal_text(rho),
        "delta": None if cap.delta is None else str(cap.delta),
        "epsilon_equivalent": None if cap.delta is None else
        f"{epsilon_equivalent(rho, cap.delta):.6g}",
        "budget_share": fraction_text(query.share),
        "cadence": query.cadence, "period": json.loads(entry.query).get("period"),
        "bounds": _bounds_used(query, engine_meta),
        "rows_cut": engine_meta.get("rows_cut"),
        "clipping": None if clip is None else list(clip),
        "post_processing": engine_meta.get("post_processing", []),
        "snapshot_hash": entry.snapshot_hash, "created_at": created_at,
        "privacy_unit": plan.privacy_unit, "engine": engine_meta,
    }


def _bounds_used(query: Query, engine_meta: Mapping[str, Any]) -> dict[str, Any]:
    """The bounds the release applied: the plan's, or those an auto query chose under DP
    (the ledger entry holds the rule ``auto``; the signed result holds what it chose)."""
    rule = query.auto_bounds
    ball = query.ball_bounds
    if ball is not None:
        used: dict[str, Any] = {"max_l2": ball.max_l2}
        if ball.weights != "uniform":
            used |= {"weights": ball.weights, "cell_weights": None if ball.cell_weights is None
                     else list(ball.cell_weights)}
        return used
    if rule is None:
        bounds = query.fixed_bounds()
        return {"max_groups": bounds.max_groups,
                "max_rows_per_group": bounds.max_rows_per_group}
    chosen = engine_meta.get("bounds") or {}
    return {"max_groups": chosen.get("max_groups"),
            "max_rows_per_group": chosen.get("max_rows_per_group"),
            "chosen_under_dp": True, "rule": "auto", "choice_share": fraction_text(rule.share)}
