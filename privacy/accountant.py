"""The accountant: the one path that spends privacy budget, and the only writer of the ledger.

Every release is charged **before** its noise is drawn, in one database transaction that
cannot overspend even when several DAG runs race:

* on PostgreSQL the dataset's budget row is locked (``SELECT ... FOR UPDATE``), then a
  transaction-level advisory lock serializes appends to the (global) hash chain;
* on SQLite the transaction starts with ``BEGIN IMMEDIATE``, which takes the database's write
  lock up front (see :mod:`warehouse.db`).

Budgets are exact: ρ-zCDP as :class:`~fractions.Fraction`, stored as text ``"p/q"``; an
(ε, δ) rendering is for display only. A dataset's cap is fixed by the first release that
opens it: a plan declaring another cap is refused, never silently applied.

>>> from fractions import Fraction
>>> cap = BudgetCap(rho=Fraction(2))
>>> cap.rho >= Fraction(2), cap.rho >= Fraction("2.000000001")
(True, False)
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from core.errors import AuditFailure, BudgetExhaustedError, InvariantViolation, PlanError
from privacy.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    PublishedFile,
    ReleaseResult,
    StoredResult,
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
from privacy.signing import SigningKey
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


def epsilon_equivalent(rho: Fraction, delta: Decimal | float) -> float:
    """ε of (ε, δ)-DP implied by ρ-zCDP: ``ρ + 2·sqrt(ρ·ln(1/δ))`` (Bun & Steinke 2016).

    For display and reports only; all accounting stays in exact ρ.

    >>> round(epsilon_equivalent(Fraction(1, 2), 1e-7), 3)
    6.178
    """
    d = float(delta)
    if not 0 < d < 1:
        raise ValueError("delta must lie strictly between 0 and 1")
    r = float(rho)
    if r <= 0:
        return 0.0
    return r + 2 * math.sqrt(r * math.log(1 / d))


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
    """The remaining budget cannot cover a charge (exit code 3). Says what was asked and left."""

    def __init__(self, dataset_id: str, asked: Fraction, remaining: Fraction,
                 delta: Decimal | None) -> None:
        self.dataset_id = dataset_id
        self.asked = asked
        self.remaining = remaining
        super().__init__(f"budget exhausted: asked {describe_rho(asked, delta)}, remaining "
                         f"{describe_rho(remaining, delta)} of dataset {dataset_id!r}; "
                         "nothing was charged")


class CapMismatch(PlanError):
    """A plan declares a cap other than the one fixed when the dataset's budget was opened."""


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
        if not 0 < len(self.mechanism) <= MECHANISM_MAX:
            raise InvariantViolation(f"a mechanism name has 1 to {MECHANISM_MAX} characters")


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


# --------------------------------------------------------------------------- accountant

class Accountant:
    """Opens budgets, charges releases, records their results; signs every ledger row."""

    def __init__(self, engine: Engine, signing_key: SigningKey, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._key = signing_key
        self._clock = clock

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
        if row is not None and Fraction(row.cap_rho) != cap.rho:
            raise CapMismatch(
                f"cap: dataset {dataset_id!r} has its cap fixed at ρ={row.cap_rho} since "
                f"{row.created_at}; the plan declares ρ={fraction_text(cap.rho)}. A cap cannot "
                "be changed by a plan: restore the original cap in the plan")
        state = self.budget(dataset_id)
        if state is None:  # pragma: no cover - the row was just created
            raise InvariantViolation(f"budget of {dataset_id!r} vanished after creation")
        return state

    def budget(self, dataset_id: str) -> BudgetState | None:
        with self._engine.connect() as conn:
            return next((b for b in read_budgets(conn) if b.dataset_id == dataset_id), None)

    def require(self, dataset_id: str, asked: Fraction) -> BudgetState:
        """Refuse up front (before any data is read) when ``asked`` exceeds what is left."""
        state = self.budget(dataset_id)
        if state is None:
            raise InvariantViolation(f"budget of {dataset_id!r} was not opened")
        if asked > state.remaining:
            raise InsufficientBudget(dataset_id, asked, state.remaining, state.cap.delta)
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
        """Append a signed ledger entry and spend its cost, atomically; never overspends."""
        with write_transaction(self._engine) as conn:
            budget = conn.execute(select(privacy_budgets)
                                  .where(privacy_budgets.c.dataset_id == request.dataset_id)
                                  .with_for_update()).first()
            if budget is None:
                raise InvariantViolation(f"budget of {request.dataset_id!r} was not opened")
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK_KEY})
            existing = conn.execute(select(ledger_entries).where(
                ledger_entries.c.release_id == request.release_id)).first()
            if existing is not None:
                return Charge(entry_from_row(existing._mapping), fresh=False)
            state = _state(budget._mapping, 0)
            if request.cost > state.remaining:
                raise InsufficientBudget(request.dataset_id, request.cost, state.remaining,
                                         state.cap.delta)
            tip = conn.execute(select(ledger_entries.c.seq, ledger_entries.c.entry_hash)
                               .order_by(ledger_entries.c.seq.desc()).limit(1)).first()
            seq = 1 if tip is None else tip.seq + 1
            prev = GENESIS_HASH if tip is None else tip.entry_hash
            fields = hashed_fields(seq=seq, dataset_id=request.dataset_id,
                                   release_id=request.release_id, plan_hash=request.plan_hash,
                                   query=request.query, mechanism=request.mechanism,
                                   cost_rho=fraction_text(request.cost),
                                   snapshot_hash=request.snapshot_hash,
                                   signing_key_id=self._key.key_id,
                                   created_at=timestamp(self._clock()))
            digest = compute_entry_hash(fields, prev)
            entry = LedgerEntry(seq=seq, dataset_id=request.dataset_id,
                                release_id=request.release_id, plan_hash=request.plan_hash,
                                query=request.query, mechanism=request.mechanism,
                                cost_rho=fraction_text(request.cost),
                                snapshot_hash=request.snapshot_hash, result_hash=None, prev_hash=prev, entry_hash=digest,
                                signature=self._key.sign(entry_message(digest)),
                                signing_key_id=self._key.key_id, created_at=fields["created_at"])
            conn.execute(insert(ledger_entries).values(**entry.row()))
            conn.execute(update(privacy_budgets)
                         .where(privacy_budgets.c.dataset_id == request.dataset_id)
                         .values(spent_rho=fraction_text(state.spent + request.cost)))
        log.info("charged release %s (seq %d): %s", entry.release_id, seq,
                 describe_rho(request.cost, state.cap.delta))
        return Charge(entry, fresh=True)

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
        verify = self._key.verify_key
        problem = None
        try:
            result = stored.parsed()
        except ValueError:
            raise AuditFailure(f"stored result of release {release} is malformed; run "
                               "`isoloir audit verify`") from None
        if sha256_hex(stored.result_json) != stored.result_hash:
            problem = "its hash does not match its content"
        elif not verify.verify(result_message(release, stored.result_hash, stored.recorded_at),
                               stored.signature):
            problem = "its signature does not verify"
        elif entry.result_hash != stored.result_hash or result.entry_hash != entry.entry_hash:
            problem = "it does not match its ledger entry"
        elif check_file_hashes(result) is not None:
            problem = "a stored file does not match its sha256"
        if problem:
            raise AuditFailure(f"stored result of release {release} (seq {entry.seq}) cannot be "
                               f"republished: {problem}; run `isoloir audit verify`")
        return result
