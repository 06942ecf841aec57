"""The accountant: the one path that spends privacy budget, and the only writer of the ledger.

Every release is charged **before** its noise is drawn, in one database transaction that
cannot overspend even when several DAG runs race. A run is **admitted whole**
(:meth:`Accountant.admit_run`): the ρ of all its queries is checked and charged in that one
transaction, so concurrent runs never split the last of the budget between them and publish a
patchwork; a run that does not fit is refused with nothing charged. Locking:

* on PostgreSQL the dataset's budget row is locked (``SELECT ... FOR UPDATE``), then a
  transaction-level advisory lock serializes appends to the (global) hash chain;
* on SQLite the transaction starts with ``BEGIN IMMEDIATE``, which takes the database's write
  lock up front (see :mod:`warehouse.db`).

Budgets are exact: ρ-zCDP as :class:`~fractions.Fraction`, stored as text ``"p/q"``; an
(ε, δ) rendering is for display only. A dataset's cap is fixed by the first release that
opens it: a plan declaring another cap is refused, never silently applied. A plan declaring
the same (ε, δ) keeps the dataset's recorded ρ whichever conversion recorded it (datasets
opened before the tight conversion keep the loose ρ); only :meth:`Accountant.recompute_cap`
(``isoloir budget recompute-cap``) changes it, and it appends a signed, zero-cost ledger
entry (:data:`~privacy.ledger.CAP_CHANGE_MECHANISM`) saying from which ρ to which.

**Cadence.** Every charge of a run states the period it covers (:mod:`privacy.cadence`).
A run admitted with ``only_due=True`` (the release DAG's runs) is refused
(:class:`PeriodAlreadyReleased`, nothing charged) when one of its queries' period is already
covered in the ledger: checked inside the admission's transaction, so racing runs never
charge one week's weekly query twice.

>>> from fractions import Fraction
>>> cap = BudgetCap(rho=Fraction(2))
>>> cap.rho >= Fraction(2), cap.rho >= Fraction("2.000000001")
(True, False)
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from core.errors import (
    AuditFailure,
    BudgetExhaustedError,
    InvariantViolation,
    IsoloirError,
    PlanError,
)
from privacy.cadence import charge_period, coverage, covered
from privacy.conversion import (
    LOOSE,
    TIGHT,
    Conversion,
    cap_rho_for,
    conversion_of,
    tight_epsilon,
)
from privacy.ledger import (
    CAP_CHANGE_MECHANISM,
    GENESIS_HASH,
    RELEASE_ID_HEX,
    LedgerEntry,
    PublishedFile,
    ReleaseResult,
    StoredResult,
    canonical_json,
    check_file_hashes,
    compute_entry_hash,
    entry_from_row,
    entry_message,
    fraction_text,
    hashed_fields,
    read_result,
    release_id,
    result_message,
    sha256_hex,
)
from privacy.signing import SigningKey, VerifyKey, VerifyKeyring
from warehouse.db import write_transaction
from warehouse.schema import ledger_entries, privacy_budgets, release_results

log = logging.getLogger(__name__)

#: PostgreSQL advisory lock serializing appends to the ledger's hash chain (a constant
#: derived from a name, so every Isoloir process agrees on it).
LEDGER_LOCK_KEY = int.from_bytes(hashlib.sha256(b"isoloir.ledger.chain").digest()[:8],
                                 "big", signed=True)
#: Width of ``ledger_entries.mechanism``.
MECHANISM_MAX = 40
#: Attempts of one query in one run before giving up (each lost attempt stays charged).
MAX_ATTEMPTS = 100

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock (a parameter wherever time is read, so tests can fix it)."""
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """UTC ISO-8601 text as stored in the ledger (fits its 32-character columns)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- display

def decimal_text(value: Fraction, digits: int = 12) -> str:
    """A readable decimal rendering of an exact rational (display only).

    >>> decimal_text(Fraction(1, 20)), decimal_text(Fraction(1, 3)), decimal_text(Fraction(80))
    ('0.05', '0.333333333333', '80')
    """
    with localcontext() as ctx:
        ctx.prec = digits
        quotient = Decimal(value.numerator) / Decimal(value.denominator)
    return format(quotient.normalize(), "f")


def epsilon_equivalent(rho: Fraction, delta: Decimal | float,
                       conversion: Conversion = TIGHT) -> float:
    """ε of (ε, δ)-DP implied by ρ-zCDP, by the tight conversion (Canonne, Kamath & Steinke
    2020, as OpenDP's ``make_zCDP_to_approxDP``) or, with ``conversion="bun-steinke-2016"``,
    the loose ``ρ + 2·sqrt(ρ·ln(1/δ))`` (Bun & Steinke 2016).

    For display and reports only; all accounting stays in exact ρ.

    >>> round(epsilon_equivalent(Fraction(1, 2), 1e-7), 3)
    5.671
    >>> round(epsilon_equivalent(Fraction(1, 2), 1e-7, "bun-steinke-2016"), 3)
    6.178
    """
    d = float(delta)
    if not 0 < d < 1:
        raise ValueError("delta must lie strictly between 0 and 1")
    r = float(rho)
    if r <= 0:
        return 0.0
    if conversion == LOOSE:
        return r + 2 * math.sqrt(r * math.log(1 / d))
    return tight_epsilon(Fraction(rho), Decimal(repr(d)) if isinstance(delta, float) else
                         Decimal(delta))


def describe_rho(rho: Fraction, delta: Decimal | None) -> str:
    """``ρ=1/20 (0.05; ε≈1.87 at δ=1e-07)``: exact first, then the readable forms."""
    shown = f"ρ={fraction_text(rho)} ({decimal_text(rho)}"
    if delta is not None and rho >= 0:
        shown += f"; ε≈{epsilon_equivalent(rho, delta):.4g} at δ={delta}"
    return shown + ")"


# --------------------------------------------------------------------------- values

@dataclass(frozen=True)
class BudgetCap:
    """A dataset's lifetime cap: exact ρ, and the (ε, δ) it was declared as, if any."""

    rho: Fraction
    epsilon: Decimal | None = None
    delta: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rho, Fraction) or self.rho <= 0:
            raise PlanError("cap: rho must be a positive exact fraction")
        if self.delta is not None and not Decimal(0) < self.delta < Decimal(1):
            raise PlanError("cap: delta must lie strictly between 0 and 1")

    @classmethod
    def from_plan(cls, cap: Any) -> BudgetCap:
        """From :class:`privacy.plan.Cap` (``cap_rho()`` rounds an (ε, δ) cap down)."""
        return cls(rho=Fraction(cap.cap_rho()), epsilon=cap.epsilon, delta=cap.delta)


@dataclass(frozen=True)
class BudgetState:
    """A dataset's budget as stored: cap, spent and how many releases were charged."""

    dataset_id: str
    cap: BudgetCap
    spent: Fraction
    releases: int
    created_at: str

    @property
    def remaining(self) -> Fraction:
        return self.cap.rho - self.spent


class InsufficientBudget(BudgetExhaustedError):
    """The remaining budget cannot cover a charge (exit code 3). Says what was asked and left,
    and, for a run, which run and how many queries the ask covers."""

    def __init__(self, dataset_id: str, asked: Fraction, remaining: Fraction,
                 delta: Decimal | None, *, run_id: str | None = None,
                 queries: int | None = None) -> None:
        self.dataset_id = dataset_id
        self.asked = asked
        self.remaining = remaining
        self.run_id = run_id
        self.queries = queries
        what = "" if run_id is None else f" for run {run_id!r}" + (
            "" if queries is None else f" ({queries} {'query' if queries == 1 else 'queries'})")
        runs = "" if run_id is None else (
            " and nothing published: a run is admitted whole or not at all")
        super().__init__(f"budget exhausted: asked {describe_rho(asked, delta)}{what}, "
                         f"remaining {describe_rho(remaining, delta)} of dataset "
                         f"{dataset_id!r}; nothing was charged{runs}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable with its fields (a refused run in a worker process arrives whole)."""
        return (_rebuild_insufficient, (self.dataset_id, self.asked, self.remaining,
                                        self.args[0], self.run_id, self.queries))


def _rebuild_insufficient(dataset_id: str, asked: Fraction, remaining: Fraction, message: str,
                          run_id: str | None, queries: int | None) -> InsufficientBudget:
    err = InsufficientBudget.__new__(InsufficientBudget)
    BudgetExhaustedError.__init__(err, message)
    err.dataset_id, err.asked, err.remaining = dataset_id, asked, remaining
    err.run_id, err.queries = run_id, queries
    return err


class CapMismatch(PlanError):
    """A plan declares a cap other than the one fixed when the dataset's budget was opened."""


class PeriodAlreadyReleased(IsoloirError):
    """A charge covers a query's period (day, ISO week, month) that the ledger already
    covers: another run released it a moment ago. Nothing was charged; retry the run (it
    then skips what is no longer due)."""


@dataclass(frozen=True)
class CapChange:
    """What :meth:`Accountant.recompute_cap` did: ``entry`` is None when nothing changed."""

    dataset_id: str
    from_rho: Fraction
    to_rho: Fraction
    from_conversion: str
    to_conversion: str
    spent: Fraction
    entry: LedgerEntry | None

    @property
    def changed(self) -> bool:
        return self.entry is not None

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "changed": self.changed,
                "from_rho": fraction_text(self.from_rho), "to_rho": fraction_text(self.to_rho),
                "from_conversion": self.from_conversion, "to_conversion": self.to_conversion,
                "spent_rho": fraction_text(self.spent),
                "ledger_seq": None if self.entry is None else self.entry.seq,
                "release_id": None if self.entry is None else self.entry.release_id}


@dataclass(frozen=True)
class ChargeRequest:
    """What one release asks the accountant for, before any noise is drawn."""

    dataset_id: str
    release_id: str
    plan_hash: str
    query: str  # canonical JSON
    mechanism: str
    cost: Fraction
    snapshot_hash: str

    def __post_init__(self) -> None:
        if not isinstance(self.cost, Fraction) or self.cost <= 0:
            raise InvariantViolation("a charge must be a positive exact fraction")
        if self.mechanism == CAP_CHANGE_MECHANISM:
            raise InvariantViolation(f"{CAP_CHANGE_MECHANISM!r} is reserved for cap changes")
        if not 0 < len(self.mechanism) <= MECHANISM_MAX:
            raise InvariantViolation(f"a mechanism name has 1 to {MECHANISM_MAX} characters")


#: Width of ``ledger_entries.run_id``.
RUN_ID_MAX = 200


@dataclass(frozen=True)
class RunRequest:
    """A run's charges, admitted together or not at all (all for one dataset, distinct ids)."""

    dataset_id: str
    run_id: str
    charges: tuple[ChargeRequest, ...]

    def __post_init__(self) -> None:
        if not self.run_id.strip() or len(self.run_id) > RUN_ID_MAX:
            raise InvariantViolation(f"a run id has 1 to {RUN_ID_MAX} characters")
        if not self.charges:
            raise InvariantViolation("a run admits at least one charge")
        if any(c.dataset_id != self.dataset_id for c in self.charges):
            raise InvariantViolation("every charge of a run is for the run's dataset")
        if len({c.release_id for c in self.charges}) != len(self.charges):
            raise InvariantViolation("a run charges each release id once")

    @property
    def cost(self) -> Fraction:
        return sum((c.cost for c in self.charges), Fraction(0))


@dataclass(frozen=True)
class Admission:
    """The ledger entries of an admitted run, in chain order. ``fresh`` is False when some of
    its release ids were already charged (by a concurrent run of the same id): then nothing
    was charged by this call, and ``entries`` are those already there."""

    run_id: str
    entries: tuple[LedgerEntry, ...]
    fresh: bool


@dataclass(frozen=True)
class Charge:
    """The ledger entry of a charge; ``fresh`` is False when the release id was already charged
    (nothing was spent by this call)."""

    entry: LedgerEntry
    fresh: bool


@dataclass(frozen=True)
class Attempt:
    """Which id a query of a run gets: ``recorded`` → replay the stored result, ``new`` →
    charge it. Earlier attempts charged without a result stay spent (``lost``)."""

    release_id: str
    attempt: int
    status: Literal["new", "recorded"]
    lost: int


# --------------------------------------------------------------------------- reads

def read_budgets(conn: Connection) -> list[BudgetState]:
    """Every dataset's budget, with the number of charged releases."""
    counts: dict[str, int] = dict(conn.execute(select(ledger_entries.c.dataset_id, func.count())
                               .group_by(ledger_entries.c.dataset_id)).tuples().all())
    rows = conn.execute(select(privacy_budgets).order_by(privacy_budgets.c.dataset_id))
    return [_state(r._mapping, int(counts.get(r.dataset_id, 0))) for r in rows]


def _state(row: Any, releases: int) -> BudgetState:
    cap = BudgetCap(rho=Fraction(row["cap_rho"]),
                    epsilon=Decimal(row["cap_epsilon"]) if row["cap_epsilon"] else None,
                    delta=Decimal(row["cap_delta"]) if row["cap_delta"] else None)
    return BudgetState(dataset_id=row["dataset_id"], cap=cap, spent=Fraction(row["spent_rho"]),
                       releases=releases, created_at=row["created_at"])


def _existing(conn: Connection, releases: Iterable[str]) -> tuple[LedgerEntry, ...]:
    """Entries already charged under any of these release ids, in chain order."""
    rows = conn.execute(select(ledger_entries)
                        .where(ledger_entries.c.release_id.in_(list(releases)))
                        .order_by(ledger_entries.c.seq))
    return tuple(entry_from_row(r._mapping) for r in rows)


# --------------------------------------------------------------------------- accountant

class Accountant:
    """Opens budgets, charges releases, records their results; signs every ledger row."""

    def __init__(self, engine: Engine, signing_key: SigningKey, *, clock: Clock = utc_now,
                 retired_keys: Sequence[VerifyKey] = ()) -> None:
        """``retired_keys``: public halves of earlier signing keys, so that results recorded
        before a key rotation can still be verified and republished."""
        self._engine = engine
        self._key = signing_key
        self._clock = clock
        self._ring = VerifyKeyring((signing_key.verify_key, *(
            k for k in retired_keys if k.key_id != signing_key.key_id)))

    # ----------------------------------------------------------------- budgets

    def open_budget(self, dataset_id: str, cap: BudgetCap) -> BudgetState:
        """Create the dataset's budget at ``cap`` on first use; afterwards refuse another cap.

        ``cap_epsilon``/``cap_delta`` keep the cap as declared (empty when declared as ρ).
        """
        try:
            with write_transaction(self._engine) as conn:
                row = conn.execute(select(privacy_budgets)
                                   .where(privacy_budgets.c.dataset_id == dataset_id)).first()
                if row is None:
                    conn.execute(insert(privacy_budgets).values(
                        dataset_id=dataset_id, cap_rho=fraction_text(cap.rho),
                        cap_epsilon="" if cap.epsilon is None else str(cap.epsilon),
                        cap_delta="" if cap.delta is None else str(cap.delta),
                        spent_rho="0/1", created_at=timestamp(self._clock())))
                    log.info("opened budget of dataset %s at %s", dataset_id,
                             describe_rho(cap.rho, cap.delta))
        except IntegrityError:
            # Another process opened it between our read and our insert (PostgreSQL): the
            # first cap wins; compare against it.
            with self._engine.connect() as conn:
                row = conn.execute(select(privacy_budgets)
                                   .where(privacy_budgets.c.dataset_id == dataset_id)).one()
        if row is not None and Fraction(row.cap_rho) != cap.rho and _same_declared(row, cap):
            log.info("dataset %s keeps its recorded cap %s (%s conversion of the declared "
                     "(ε, δ)); `isoloir budget recompute-cap` records a change", dataset_id,
                     row.cap_rho, conversion_of(Fraction(row.cap_rho), cap.epsilon, cap.delta))
        elif row is not None and Fraction(row.cap_rho) != cap.rho:
            raise CapMismatch(
                f"cap: dataset {dataset_id!r} has its cap fixed at ρ={row.cap_rho} since "
                f"{row.created_at}; the plan declares ρ={fraction_text(cap.rho)}. A cap cannot "
                "be changed by a plan: restore the original cap in the plan")
        state = self.budget(dataset_id)
        if state is None:  # pragma: no cover - the row was just created
            raise InvariantViolation(f"budget of {dataset_id!r} vanished after creation")
        return state

    def recompute_cap(self, dataset_id: str, conversion: Conversion = TIGHT) -> CapChange:
        """Convert the dataset's declared (ε, δ) again with ``conversion`` and record it.

        In one transaction: the budget row's ``cap_rho`` changes and a signed, zero-cost
        ledger entry (mechanism :data:`~privacy.ledger.CAP_CHANGE_MECHANISM`) states the old
        and new ρ and conversions, so the change is in the hash chain the audit verifies.
        Refused (:class:`CapMismatch`) for a cap declared in ρ, or when the new cap would be
        below what is already spent. Nothing is written when the cap already is that value.
        """
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(privacy_budgets)
                               .where(privacy_budgets.c.dataset_id == dataset_id)
                               .with_for_update()).first()
            if row is None:
                raise CapMismatch(f"dataset {dataset_id!r} has no budget yet: its first "
                                  "release opens it (with the tight conversion)")
            state = _state(row._mapping, 0)
            eps, delta = state.cap.epsilon, state.cap.delta
            if eps is None or delta is None:
                raise CapMismatch(f"dataset {dataset_id!r} declared its cap in ρ: there is no "
                                  "(ε, δ) to convert")
            old, new = state.cap.rho, cap_rho_for(eps, delta, conversion)
            before = conversion_of(old, eps, delta)
            if new == old:
                return CapChange(dataset_id, old, new, before, conversion, state.spent, None)
            if new < state.spent:
                raise CapMismatch(f"dataset {dataset_id!r} has spent ρ={fraction_text(state.spent)}"
                                  f", more than the {conversion} cap ρ={fraction_text(new)}")
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK_KEY})
            tip = conn.execute(select(ledger_entries.c.seq, ledger_entries.c.entry_hash)
                               .order_by(ledger_entries.c.seq.desc()).limit(1)).first()
            seq = 1 if tip is None else tip.seq + 1
            prev = GENESIS_HASH if tip is None else tip.entry_hash
            created_at = timestamp(self._clock())
            document = canonical_json({
                "kind": "cap_change", "name": "cap_change", "dataset_id": dataset_id,
                "epsilon": str(eps), "delta": str(delta),
                "from_rho": fraction_text(old), "from_conversion": before,
                "to_rho": fraction_text(new), "to_conversion": conversion,
                "spent_rho": fraction_text(state.spent)})
            rid = "r-" + sha256_hex(canonical_json(["cap_change", dataset_id, seq,
                                                    document]))[:RELEASE_ID_HEX]
            request = _CapChangeRequest(dataset_id=dataset_id, release_id=rid, plan_hash="",
                                        query=document, mechanism=CAP_CHANGE_MECHANISM,
                                        cost=Fraction(0), snapshot_hash=GENESIS_HASH)
            entry = self._signed_entry(request, seq, prev, created_at, run_id=None,
                                       run_part=None, run_size=None)
            conn.execute(insert(ledger_entries), [entry.row()])
            conn.execute(update(privacy_budgets)
                         .where(privacy_budgets.c.dataset_id == dataset_id)
                         .values(cap_rho=fraction_text(new)))
        log.warning("cap of dataset %s recomputed: ρ %s (%s) → %s (%s), ledger seq %d",
                    dataset_id, fraction_text(old), before, fraction_text(new), conversion,
                    entry.seq)
        return CapChange(dataset_id, old, new, before, conversion, state.spent, entry)

    def budget(self, dataset_id: str) -> BudgetState | None:
        with self._engine.connect() as conn:
            return next((b for b in read_budgets(conn) if b.dataset_id == dataset_id), None)

    def require(self, dataset_id: str, asked: Fraction, *, run_id: str | None = None,
                queries: int | None = None) -> BudgetState:
        """Refuse up front (before any data is read) when ``asked`` exceeds what is left.

        An early, unlocked look: it spares reading the warehouse for a run that cannot fit
        now; the guarantee is the check inside :meth:`admit_run`'s transaction.
        """
        state = self.budget(dataset_id)
        if state is None:
            raise InvariantViolation(f"budget of {dataset_id!r} was not opened")
        if asked > state.remaining:
            raise InsufficientBudget(dataset_id, asked, state.remaining, state.cap.delta,
                                     run_id=run_id, queries=queries)
        return state

    # ----------------------------------------------------------------- releases

    def entry(self, release: str) -> LedgerEntry | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(ledger_entries)
                               .where(ledger_entries.c.release_id == release)).first()
        return None if row is None else entry_from_row(row._mapping)

    def next_attempt(self, dataset_id: str, run_id: str, query_name: str,
                     plan_hash: str) -> Attempt:
        """The release id this query of this run gets now.

        A recorded attempt is replayed; an attempt charged without a result (a crash between
        charge and record) stays spent, and the next attempt is a new, charged release.
        """
        with self._engine.connect() as conn:
            for attempt in range(MAX_ATTEMPTS):
                rid = release_id(dataset_id, run_id, query_name, plan_hash, attempt=attempt)
                row = conn.execute(select(ledger_entries.c.result_hash)
                                   .where(ledger_entries.c.release_id == rid)).first()
                if row is None:
                    return Attempt(rid, attempt, "new", lost=attempt)
                if row.result_hash is not None:
                    return Attempt(rid, attempt, "recorded", lost=attempt)
        raise InvariantViolation(f"query {query_name!r} of run {run_id!r} failed after its "
                                 f"charge {MAX_ATTEMPTS} times; investigate before retrying")

    def charge(self, request: ChargeRequest) -> Charge:
        """Charge one release outside any run (its entry states no run); never overspends."""
        entries, fresh = self._append(request.dataset_id, (request,), run_id=None)
        return Charge(entries[0], fresh=fresh)

    def admit_run(self, run: RunRequest, *, only_due: bool = False) -> Admission:
        """Charge every query of a run in one transaction, before any noise: all or nothing.

        The entries are appended consecutively, each stating the run id and its place in the
        admission (part ``i`` of ``n``), so the audit can prove the run was admitted whole.
        Raises :class:`InsufficientBudget` (nothing charged) when the run's total exceeds what
        is left; returns ``fresh=False`` (nothing charged) when any of its release ids is
        already in the ledger. ``only_due``: raises :class:`PeriodAlreadyReleased` (nothing
        charged) when a charge's (query, period) is already covered by another run's release.
        """
        entries, fresh = self._append(run.dataset_id, run.charges, run_id=run.run_id,
                                      only_due=only_due)
        return Admission(run.run_id, entries, fresh)

    def _append(self, dataset_id: str, requests: Sequence[ChargeRequest], *,
                run_id: str | None,
                only_due: bool = False) -> tuple[tuple[LedgerEntry, ...], bool]:
        """The one spend path: lock, check, append signed entries, spend; one transaction."""
        cost = sum((r.cost for r in requests), Fraction(0))
        with write_transaction(self._engine) as conn:
            budget = conn.execute(select(privacy_budgets)
                                  .where(privacy_budgets.c.dataset_id == dataset_id)
                                  .with_for_update()).first()
            if budget is None:
                raise InvariantViolation(f"budget of {dataset_id!r} was not opened")
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK_KEY})
            existing = _existing(conn, (r.release_id for r in requests))
            if existing:
                return existing, False
            if only_due:
                _refuse_covered(conn, dataset_id, requests, run_id)
            state = _state(budget._mapping, 0)
            if cost > state.remaining:
                raise InsufficientBudget(dataset_id, cost, state.remaining, state.cap.delta,
                                         run_id=run_id,
                                         queries=None if run_id is None else len(requests))
            tip = conn.execute(select(ledger_entries.c.seq, ledger_entries.c.entry_hash)
                               .order_by(ledger_entries.c.seq.desc()).limit(1)).first()
            seq = 0 if tip is None else tip.seq
            prev = GENESIS_HASH if tip is None else tip.entry_hash
            created_at = timestamp(self._clock())
            entries = []
            for part, request in enumerate(requests, start=1):
                seq += 1
                entry = self._signed_entry(request, seq, prev, created_at, run_id=run_id,
                                           run_part=None if run_id is None else part,
                                           run_size=None if run_id is None else len(requests))
                entries.append(entry)
                prev = entry.entry_hash
            conn.execute(insert(ledger_entries), [e.row() for e in entries])
            conn.execute(update(privacy_budgets)
                         .where(privacy_budgets.c.dataset_id == dataset_id)
                         .values(spent_rho=fraction_text(state.spent + cost)))
        for entry in entries:
            log.info("charged release %s (seq %d%s): %s", entry.release_id, entry.seq,
                     "" if run_id is None else f", run {run_id} part {entry.run_part}/"
                     f"{entry.run_size}", describe_rho(entry.cost, state.cap.delta))
        return tuple(entries), True

    def _signed_entry(self, request: ChargeRequest | _CapChangeRequest, seq: int, prev: str, created_at: str, *,
                      run_id: str | None, run_part: int | None,
                      run_size: int | None) -> LedgerEntry:
        fields = hashed_fields(seq=seq, dataset_id=request.dataset_id,
                               release_id=request.release_id, plan_hash=request.plan_hash,
                               query=request.query, mechanism=request.mechanism,
                               cost_rho=fraction_text(request.cost),
                               snapshot_hash=request.snapshot_hash,
                               signing_key_id=self._key.key_id, created_at=created_at,
                               run_id=run_id, run_part=run_part, run_size=run_size)
        digest = compute_entry_hash(fields, prev)
        return LedgerEntry(seq=seq, dataset_id=request.dataset_id,
                           release_id=request.release_id, plan_hash=request.plan_hash,
                           query=request.query, mechanism=request.mechanism,
                           cost_rho=fields["cost_rho"], snapshot_hash=request.snapshot_hash,
                           result_hash=None, prev_hash=prev, entry_hash=digest,
                           signature=self._key.sign(entry_message(digest)),
                           signing_key_id=self._key.key_id, created_at=created_at,
                           run_id=run_id, run_part=run_part, run_size=run_size)

    def record_result(self, entry: LedgerEntry, files: Sequence[PublishedFile]) -> StoredResult:
        """Store and sign what a charged release produced, and link it from its entry.

        Idempotent: a release already recorded keeps its first result.
        """
        result = ReleaseResult(release_id=entry.release_id, ledger_seq=entry.seq,
                               entry_hash=entry.entry_hash, files=tuple(files))
        if check_file_hashes(result) is not None:
            raise InvariantViolation("a published file's sha256 does not match its bytes")
        document = result.document()
        digest = sha256_hex(document)
        recorded_at = timestamp(self._clock())
        with write_transaction(self._engine) as conn:
            stored = read_result(conn, entry.release_id)
            if stored is not None:
                return stored
            done = conn.execute(update(ledger_entries)
                                .where(ledger_entries.c.release_id == entry.release_id,
                                       ledger_entries.c.entry_hash == entry.entry_hash,
                                       ledger_entries.c.result_hash.is_(None))
                                .values(result_hash=digest))
            if done.rowcount != 1:
                raise InvariantViolation(f"ledger entry of release {entry.release_id} is missing "
                                         "or already has a result")
            stored = StoredResult(release_id=entry.release_id, result_json=document,
                                  result_hash=digest, recorded_at=recorded_at,
                                  signature=self._key.sign(
                                      result_message(entry.release_id, digest, recorded_at)))
            conn.execute(insert(release_results).values(
                release_id=stored.release_id, result_json=stored.result_json,
                result_hash=stored.result_hash, signature=stored.signature,
                recorded_at=stored.recorded_at))
        log.info("recorded result of release %s (%d files)", entry.release_id, len(files))
        return stored

    def stored_result(self, release: str) -> ReleaseResult:
        """The recorded result of a release, verified before it is republished."""
        with self._engine.connect() as conn:
            stored = read_result(conn, release)
            row = conn.execute(select(ledger_entries)
                               .where(ledger_entries.c.release_id == release)).first()
        if stored is None or row is None:
            raise InvariantViolation(f"release {release} has no recorded result")
        entry = entry_from_row(row._mapping)
        problem = None
        try:
            result = stored.parsed()
        except ValueError:
            raise AuditFailure(f"stored result of release {release} is malformed; run "
                               "`isoloir audit verify`") from None
        if sha256_hex(stored.result_json) != stored.result_hash:
            problem = "its hash does not match its content"
        elif self._ring.signer(result_message(release, stored.result_hash, stored.recorded_at),
                               stored.signature) is None:
            problem = "its signature does not verify"
        elif entry.result_hash != stored.result_hash or result.entry_hash != entry.entry_hash:
            problem = "it does not match its ledger entry"
        elif check_file_hashes(result) is not None:
            problem = "a stored file does not match its sha256"
        if problem:
            raise AuditFailure(f"stored result of release {release} (seq {entry.seq}) cannot be "
                               f"republished: {problem}; run `isoloir audit verify`")
        return result


@dataclass(frozen=True)
class _CapChangeRequest:
    """The fields of a cap-change entry (zero cost: not a :class:`ChargeRequest`)."""

    dataset_id: str
    release_id: str
    plan_hash: str
    query: str
    mechanism: str
    cost: Fraction
    snapshot_hash: str


def _same_declared(row: Any, cap: BudgetCap) -> bool:
    """The recorded budget and ``cap`` declare the same (ε, δ), and the recorded ρ is one of
    its known conversions (the plan did not change the cap, only the conversion did)."""
    if cap.epsilon is None or cap.delta is None or not row.cap_epsilon or not row.cap_delta:
        return False
    if Decimal(row.cap_epsilon) != cap.epsilon or Decimal(row.cap_delta) != cap.delta:
        return False
    return Fraction(row.cap_rho) in (cap_rho_for(cap.epsilon, cap.delta, TIGHT),
                                     cap_rho_for(cap.epsilon, cap.delta, LOOSE))


def _refuse_covered(conn: Connection, dataset_id: str, requests: Sequence[ChargeRequest],
                    run_id: str | None) -> None:
    """Inside the admission: refuse charges whose (query, period) the ledger already covers."""
    periods = [p for p in (charge_period(r.query) for r in requests) if p is not None]
    if not periods:
        return
    rows = conn.execute(select(ledger_entries.c.query, ledger_entries.c.run_id,
                               ledger_entries.c.result_hash)
                        .where(ledger_entries.c.dataset_id == dataset_id))
    cover = coverage(rows)
    taken = [f"{name} ({period})" for name, period in periods
             if covered(cover.get((name, period), ()), run_id or "")]
    if taken:
        raise PeriodAlreadyReleased(
            f"already released for its period, by another run: {', '.join(taken)}; nothing "
            "was charged; retry the run (it releases only what is still due)")
