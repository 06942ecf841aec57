"""Concurrency: 8 processes race to open, then charge, a budget that fits exactly 3 charges.

Exactly 3 succeed, the 5 others get "budget exhausted", and the ledger sums to at most the
cap, on SQLite (BEGIN IMMEDIATE) and on PostgreSQL (SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import multiprocessing as mp
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from privacy.accountant import Accountant, BudgetCap, ChargeRequest, read_budgets
from privacy.audit import verify
from privacy.ledger import read_entries, release_id
from privacy.signing import create_signing_key, load_signing_key, load_verify_key
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import ledger_entries

DATASET = "campaign"
PROCESSES = 8
COST = Fraction(1, 10)
CAP = 3 * COST  # fits exactly three charges
PLAN_HASH = "ab" * 32


def _race(url: str, key_path: str, n: int, start: Any, results: Any) -> None:
    """One contender: wait for the starting gun, then charge once."""
    from core.errors import BudgetExhaustedError

    engine = make_engine(url)
    accountant = Accountant(engine, load_signing_key(Path(key_path)))
    rid = release_id(DATASET, "race", f"query_{n}", PLAN_HASH, attempt=0)
    results.put(("ready", n, ""))
    start.wait(180)
    try:
        accountant.open_budget(DATASET, BudgetCap(CAP))  # the first one creates it
        entry = accountant.charge(ChargeRequest(DATASET, rid, PLAN_HASH, "{}", "gaussian (zCDP)",
                                                COST, "cd" * 32)).entry
        results.put(("charged", n, entry.seq))
    except BudgetExhaustedError as err:
        results.put(("exhausted", n, str(err)))
    except Exception as err:  # any other outcome fails the test with its reason  # noqa: BLE001
        results.put(("error", n, f"{type(err).__name__}: {err}"))
    finally:
        engine.dispose()


def _run_race(url: str, tmp_path: Path) -> None:
    engine = make_engine(url)
    ensure_schema(engine)
    info = create_signing_key(tmp_path / "keys" / "ledger.key")

    ctx = mp.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    workers = [ctx.Process(target=_race, args=(url, str(info.path), n, start, results))
               for n in range(PROCESSES)]
    try:
        for w in workers:
            w.start()
        # Fire only when every contender is loaded and waiting: a real race, not a queue.
        ready = [results.get(timeout=180) for _ in workers]
        assert {r[0] for r in ready} == {"ready"}
        start.set()
        outcomes = [results.get(timeout=180) for _ in workers]
        for w in workers:
            w.join(60)
    finally:
        for w in workers:  # never leave a contender behind, even when the test fails
            if w.is_alive():
                w.terminate()
                w.join(10)
    assert [o for o in outcomes if o[0] == "error"] == []
    charged = [o for o in outcomes if o[0] == "charged"]
    exhausted = [o for o in outcomes if o[0] == "exhausted"]
    assert len(charged) == 3 and len(exhausted) == PROCESSES - 3
    assert sorted(o[2] for o in charged) == [1, 2, 3]
    assert all(o[2].startswith("budget exhausted: asked ρ=1/10") for o in exhausted)

    with engine.connect() as conn:
        entries = read_entries(conn)
        (budget,) = read_budgets(conn)
        assert len(conn.execute(select(ledger_entries)).all()) == 3
    assert sum((e.cost for e in entries), Fraction(0)) == budget.spent == CAP <= budget.cap.rho
    report = verify(engine, load_verify_key(info.public_path), tmp_path / "published")
    assert report.ok, report.problems
    engine.dispose()


def test_eight_processes_race_on_sqlite(tmp_path: Path) -> None:
    _run_race(f"sqlite:///{tmp_path / 'warehouse.db'}", tmp_path)


@pytest.mark.postgres
def test_eight_processes_race_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    _run_race(pg_url, tmp_path)
