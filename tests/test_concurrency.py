"""Concurrency: processes race for a budget that fits exactly 3 of them.

* 8 processes race to open, then charge, a budget that fits exactly 3 charges;
* 8 processes release the default plan as 8 runs (different run ids, real OpenDP noise on a
  small warehouse) against a cap that fits exactly 3 runs: runs are admitted whole, so
  exactly 3 runs publish all their queries and 5 are refused (exit 3) having charged and
  published nothing, whichever order the transactions take.

Both on SQLite (BEGIN IMMEDIATE) and on PostgreSQL (SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
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


# --------------------------------------------------------------------------- whole runs

RUNS = 8
RUN_CAP = "3/250"  # the default plan spends ρ 1/250 per run: exactly three runs fit


def _release_run(env: Mapping[str, str], plan_path: str, n: int, start: Any,
                 results: Any) -> None:
    """One contender: release the plan as run ``run-n``; the gun fires once every contender
    has passed the early budget check and holds its snapshot, so all 8 meet in the
    admission transaction itself."""
    os.environ.update(env)
    from core.errors import BudgetExhaustedError, IsoloirError
    from core.settings import load_settings
    from privacy.plan import load_plan
    from privacy.release import OpenDPEngine, SnapshotLike, run_release
    from tests.test_release import LOGICAL

    class Gated(OpenDPEngine):
        def snapshot(self, engine: Any, work_dir: Path) -> SnapshotLike:
            taken = super().snapshot(engine, work_dir)
            results.put(("ready", n, ""))
            if not start.wait(300):
                raise RuntimeError("the starting gun never fired")
            return taken

    try:
        summary = run_release(load_settings(), load_plan(Path(plan_path)), f"run-{n}",
                              logical_date=LOGICAL, dp_engine=Gated())
        results.put(("released", n, (summary.charged, summary.replayed, summary.charged_rho)))
    except BudgetExhaustedError as err:
        results.put(("exhausted", n, (err.exit_code, str(err))))
    except IsoloirError as err:
        results.put(("error", n, f"{type(err).__name__}: {err}"))
    except Exception as err:  # any other outcome fails the test with its reason  # noqa: BLE001
        results.put(("error", n, f"{type(err).__name__}: {err}"))


def _run_whole_runs_race(tmp_path: Path) -> None:
    from core.settings import load_settings
    from privacy.audit import verify_settings
    from privacy.ledger import runs_of
    from privacy.plan import PERIOD_DAYS, load_plan, plan_hash
    from tests.test_release import _small_warehouse

    settings = load_settings()  # from the environment the fixtures set (children inherit it)
    create_signing_key(settings.signing_key_file)
    _small_warehouse(settings)
    document = yaml.safe_load((Path(__file__).parents[1] / "privacy" / "plans" / "default.yaml")
                              .read_text(encoding="utf-8"))
    document["cap"] = {"rho": RUN_CAP}
    for query in document["releases"]:  # every query daily: one run costs exactly per_run
        cadence = query.pop("cadence", "daily")
        query["share"] = str(Fraction(query["share"]) / PERIOD_DAYS[cadence])
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(document), encoding="utf-8")
    plan = load_plan(plan_path)
    assert len(plan.releases) == 14 and plan.per_run.cap_rho() * 3 == Fraction(RUN_CAP)

    ctx = mp.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    workers = [ctx.Process(target=_release_run,
                           args=(dict(os.environ), str(plan_path), n, start, results))
               for n in range(RUNS)]
    try:
        for w in workers:
            w.start()
        ready = [results.get(timeout=300) for _ in workers]
        assert [r for r in ready if r[0] != "ready"] == []
        start.set()
        outcomes = [results.get(timeout=600) for _ in workers]
        for w in workers:
            w.join(60)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
                w.join(10)
    assert [o for o in outcomes if o[0] == "error"] == []
    released = sorted(o[1] for o in outcomes if o[0] == "released")
    exhausted = {o[1]: o[2] for o in outcomes if o[0] == "exhausted"}
    assert len(released) == 3 and len(exhausted) == RUNS - 3
    assert all(o[2] == (14, 0, "1/250") for o in outcomes if o[0] == "released")
    for n, (code, message) in exhausted.items():
        assert code == 3
        assert f"budget exhausted: asked ρ=1/250 (0.004) for run 'run-{n}' (14 queries)" \
            in message and "nothing was charged and nothing published" in message

    with make_engine(settings.warehouse_url).connect() as conn:
        entries = read_entries(conn)
        (budget,) = read_budgets(conn)
    assert budget.spent == budget.cap.rho == Fraction(RUN_CAP)
    # Each winner's 14 entries are one admission, consecutive in the chain; no loser has any.
    runs = runs_of(entries)
    assert sorted(r.run_id for r in runs) == [f"run-{n}" for n in released]
    assert all((r.releases, r.admissions, r.unfinished, r.cost) == (14, 1, 0, Fraction(1, 250))
               for r in runs)
    for run in runs:
        mine = [e for e in entries if e.run_id == run.run_id]
        assert [e.seq for e in mine] == list(range(mine[0].seq, mine[0].seq + 14))
        assert [(e.run_part, e.run_size) for e in mine] == [(p, 14) for p in range(1, 15)]
    # Every table of every winner is published (3 files each; a hierarchy one table per
    # level, under its query's release id); nothing of any loser.
    phash = plan_hash(plan)
    published = {p.name for p in settings.published.iterdir()}
    expected = {f"{table}--{release_id(plan.dataset_id, f'run-{n}', q.name, phash, attempt=0)}"
                f".{ext}" for n in released for q in plan.releases
                for table in q.table_names() for ext in ("csv", "parquet", "json")}
    assert published == expected and len(published) == 3 * 19 * 3
    assert verify_settings(settings).ok


def test_eight_runs_of_the_default_plan_race_on_sqlite(isoloir_home: Path,
                                                      tmp_path: Path) -> None:
    _run_whole_runs_race(tmp_path)


@pytest.mark.postgres
def test_eight_runs_of_the_default_plan_race_on_postgresql(isoloir_home: Path, pg_url: str,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", pg_url)
    _run_whole_runs_race(tmp_path)
