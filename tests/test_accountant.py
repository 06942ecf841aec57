"""The accountant: exact budgets, a fixed cap, charges that never overspend, signed rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from core.errors import AuditFailure, BudgetExhaustedError, PlanError
from privacy.accountant import (
    Accountant,
    BudgetCap,
    CapMismatch,
    ChargeRequest,
    InsufficientBudget,
    decimal_text,
    describe_rho,
    epsilon_equivalent,
    read_budgets,
    timestamp,
)
from privacy.ledger import (
    GENESIS_HASH,
    PublishedFile,
    compute_entry_hash,
    entry_message,
    release_id,
    sha256_hex,
)
from privacy.signing import SigningKey, create_signing_key, load_signing_key
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import ledger_entries, privacy_budgets, release_results

DATASET = "campaign"
PLAN_HASH = "ab" * 32
FIXED = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    return engine


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return load_signing_key(create_signing_key(tmp_path / "keys" / "ledger.key").path)


def request(n: int, cost: Fraction, dataset: str = DATASET) -> ChargeRequest:
    return ChargeRequest(dataset_id=dataset,
                         release_id=release_id(dataset, "run", f"q{n}", PLAN_HASH, attempt=0),
                         plan_hash=PLAN_HASH, query=f'{{"name":"q{n}"}}',
                         mechanism="gaussian (zCDP)", cost=cost, snapshot_hash="cd" * 32)


def accountant(engine: Engine, key: SigningKey) -> Accountant:
    return Accountant(engine, key, clock=lambda: FIXED)


def test_budget_is_stored_exactly_as_text(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    state = acc.open_budget(DATASET, BudgetCap(Fraction(4, 5), Decimal("8"), Decimal("1e-7")))
    assert state.cap.rho == Fraction(4, 5) and state.spent == 0 and state.releases == 0
    acc.charge(request(1, Fraction(1, 3)))
    with engine.connect() as conn:
        row = conn.execute(select(privacy_budgets)).one()
    assert (row.cap_rho, row.spent_rho, row.cap_epsilon, row.cap_delta) == \
        ("4/5", "1/3", "8", "1E-7")
    assert acc.budget(DATASET).remaining == Fraction(4, 5) - Fraction(1, 3)  # type: ignore[union-attr]


def test_cap_is_fixed_by_the_first_release(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    acc.open_budget(DATASET, BudgetCap(Fraction(2, 2)))  # the same cap, spelled otherwise
    with pytest.raises(CapMismatch, match=r"fixed at ρ=1/1.*declares ρ=2/1") as err:
        acc.open_budget(DATASET, BudgetCap(Fraction(2)))
    assert isinstance(err.value, PlanError)
    assert acc.budget(DATASET).cap.rho == 1  # type: ignore[union-attr]


def test_charge_appends_a_signed_chained_entry(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    first = acc.charge(request(1, Fraction(1, 10)))
    second = acc.charge(request(2, Fraction(1, 10)))
    assert first.fresh and second.fresh
    assert (first.entry.seq, second.entry.seq) == (1, 2)
    assert first.entry.prev_hash == GENESIS_HASH
    assert second.entry.prev_hash == first.entry.entry_hash
    for entry in (first.entry, second.entry):
        assert entry.entry_hash == compute_entry_hash(entry.hashed_fields(), entry.prev_hash)
        assert key.verify_key.verify(entry_message(entry.entry_hash), entry.signature)
        assert entry.created_at == timestamp(FIXED) == "2025-03-01T06:00:00.000000Z"
        assert entry.result_hash is None
    assert acc.budget(DATASET).spent == Fraction(1, 5)  # type: ignore[union-attr]


def test_charging_the_same_release_id_twice_charges_once(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    first = acc.charge(request(1, Fraction(1, 4)))
    again = acc.charge(request(1, Fraction(1, 4)))
    assert first.fresh and not again.fresh and again.entry == first.entry
    state = acc.budget(DATASET)
    assert state is not None and state.spent == Fraction(1, 4) and state.releases == 1


def test_budget_boundary_is_exact(engine: Engine, key: SigningKey) -> None:
    """Tumult-style: a budget of 2 refuses 2.000000001 and accepts exactly 2."""
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(2)))
    with pytest.raises(InsufficientBudget) as err:
        acc.charge(request(1, Fraction("2.000000001")))
    assert err.value.asked == Fraction("2.000000001") and err.value.remaining == 2
    assert acc.budget(DATASET).spent == 0  # type: ignore[union-attr]
    assert acc.charge(request(2, Fraction(2))).fresh
    with pytest.raises(BudgetExhaustedError):
        acc.charge(request(3, Fraction(1, 10**12)))
    assert acc.budget(DATASET).spent == 2  # type: ignore[union-attr]


def test_exhausted_message_says_what_is_asked_and_left(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1, 10), Decimal("1"), Decimal("1e-7")))
    acc.charge(request(1, Fraction(1, 20)))
    with pytest.raises(BudgetExhaustedError) as err:
        acc.charge(request(2, Fraction(3, 40)))
    message = str(err.value)
    assert message.startswith("budget exhausted: asked ρ=3/40 (0.075; ε≈")
    assert "remaining ρ=1/20 (0.05; ε≈" in message and "δ=1E-7" in message
    assert err.value.exit_code == 3
    with engine.connect() as conn:
        assert len(conn.execute(select(ledger_entries)).all()) == 1


def test_require_refuses_a_plan_larger_than_what_is_left(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    acc.charge(request(1, Fraction(3, 4)))
    assert acc.require(DATASET, Fraction(1, 4)).remaining == Fraction(1, 4)
    with pytest.raises(InsufficientBudget, match=r"asked ρ=1/2 .*remaining ρ=1/4"):
        acc.require(DATASET, Fraction(1, 2))


def test_budgets_are_per_dataset(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget("a", BudgetCap(Fraction(1)))
    acc.open_budget("b", BudgetCap(Fraction(1, 2)))
    acc.charge(request(1, Fraction(1, 2), dataset="a"))
    acc.charge(request(2, Fraction(1, 2), dataset="b"))
    acc.charge(request(3, Fraction(1, 4), dataset="a"))
    with engine.connect() as conn:
        states = {b.dataset_id: b for b in read_budgets(conn)}
    assert states["a"].spent == Fraction(3, 4) and states["a"].releases == 2
    assert states["b"].remaining == 0 and states["b"].releases == 1


def _files(text: str) -> list[PublishedFile]:
    data = text.encode()
    return [PublishedFile(f"q--{text}.csv", sha256_hex(data), data)]


def test_next_attempt_replays_recorded_and_skips_lost_charges(engine: Engine,
                                                              key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    first = acc.next_attempt(DATASET, "run", "q", PLAN_HASH)
    assert (first.status, first.attempt, first.lost) == ("new", 0, 0)
    # Charged, then the task died before recording: the next attempt is a new release.
    acc.charge(ChargeRequest(DATASET, first.release_id, PLAN_HASH, "{}", "gaussian (zCDP)",
                             Fraction(1, 10), "cd" * 32))
    retry = acc.next_attempt(DATASET, "run", "q", PLAN_HASH)
    assert (retry.status, retry.attempt, retry.lost) == ("new", 1, 1)
    assert retry.release_id != first.release_id
    charged = acc.charge(ChargeRequest(DATASET, retry.release_id, PLAN_HASH, "{}",
                                       "gaussian (zCDP)", Fraction(1, 10), "cd" * 32))
    acc.record_result(charged.entry, _files("x"))
    replay = acc.next_attempt(DATASET, "run", "q", PLAN_HASH)
    assert (replay.status, replay.release_id) == ("recorded", retry.release_id)
    assert acc.budget(DATASET).spent == Fraction(1, 5)  # type: ignore[union-attr]


def test_record_result_signs_links_and_is_idempotent(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    entry = acc.charge(request(1, Fraction(1, 10))).entry
    stored = acc.record_result(entry, _files("first"))
    assert stored == acc.record_result(entry, _files("second"))  # the first result stays
    with engine.connect() as conn:
        linked = conn.execute(select(ledger_entries.c.result_hash)).scalar_one()
        rows = conn.execute(select(release_results)).all()
    assert linked == stored.result_hash == sha256_hex(stored.result_json) and len(rows) == 1
    result = acc.stored_result(entry.release_id)
    assert result.files[0].content == b"first" and result.entry_hash == entry.entry_hash


def test_a_tampered_stored_result_is_not_republished(engine: Engine, key: SigningKey) -> None:
    acc = accountant(engine, key)
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    entry = acc.charge(request(1, Fraction(1, 10))).entry
    stored = acc.record_result(entry, _files("first"))
    forged = stored.result_json.replace(sha256_hex(b"first"), sha256_hex(b"forged"))
    with engine.begin() as conn:
        conn.execute(update(release_results).values(result_json=forged,
                                                    result_hash=sha256_hex(forged)))
    with pytest.raises(AuditFailure, match="cannot be republished"):
        acc.stored_result(entry.release_id)


def test_display_helpers() -> None:
    assert decimal_text(Fraction(1, 8)) == "0.125"
    assert epsilon_equivalent(Fraction(0), 1e-7) == 0.0
    # ρ = ε²/2 (pure ε-DP implies zCDP) gives back more than ε: the conversion is conservative.
    assert epsilon_equivalent(Fraction(1, 2), 1e-7) > 1
    assert describe_rho(Fraction(1, 20), None) == "ρ=1/20 (0.05)"
    with pytest.raises(ValueError):
        epsilon_equivalent(Fraction(1), 0)
    with pytest.raises(PlanError):
        BudgetCap(Fraction(0))
