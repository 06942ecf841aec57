"""`isoloir release` and `isoloir budget`: publish the plan's DP aggregates; show the budget,
its forecast, and (``budget recompute-cap``) convert a dataset's declared cap again.

Exit codes: 0 ok, 2 bad input (plan, option), 3 budget exhausted (nothing charged).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.app import app
from cli.common import console, emit_json, handled_errors, settings_or_exit

if TYPE_CHECKING:
    from privacy.ledger import RunRecord


@app.command("release")
def release(
    plan_file: Annotated[Path | None, typer.Option(
        "--plan", help="Release plan YAML (default: ISOLOIR_PLAN, else the packaged default "
        "plan).", dir_okay=False)] = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", help="Run id the release ids derive from (default: cli-<today, UTC>, so a "
        "second run the same day republishes that day's releases at no cost).")] = None,
    query: Annotated[list[str] | None, typer.Option(
        "--query", help="Release only this query of the plan (repeatable), as its own run: "
        "the default run id becomes cli-<today>+<query>+...")] = None,
    csv_sep: Annotated[str, typer.Option(
        "--csv-sep", help="CSV separator: ';' (French Excel, decimal comma) or ','.")] = ";",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Charge, compute and publish the plan's queries (one run) as DP tables in published/.

    The run is admitted whole: the cost of all its queries is charged to the privacy ledger
    in one transaction before any noise is drawn. Exit 3, with what the run needs and what is
    left, when the budget cannot cover the whole run: then nothing is charged or published.
    """
    if csv_sep not in (";", ","):
        raise typer.BadParameter("must be ';' or ','", param_hint="--csv-sep")
    settings = settings_or_exit()
    with handled_errors(as_json):
        from privacy.plan import load_plan
        from privacy.publish import CsvFormat
        from privacy.release import ReleasedQuery, default_run_id, run_release

        plan = load_plan(plan_file or settings.plan_file)
        today = datetime.now(UTC).date()  # the CLI's logical date: today, read here, once
        rid = run_id if run_id is not None else default_run_id(today, query)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=as_json,
                      transient=True) as progress:
            task = progress.add_task(f"release {plan.dataset_id} ({rid})",
                                     total=len(set(query)) if query else len(plan.releases))

            def advance(_: ReleasedQuery) -> None:
                progress.advance(task)

            summary = run_release(settings, plan, rid, logical_date=today,
                                  csv_format=CsvFormat(";" if csv_sep == ";" else ","),
                                  on_release=advance, queries=query)
    if as_json:
        emit_json({"ok": True} | summary.to_dict())
        return
    table = Table(title=f"release {summary.run_id} — dataset {summary.dataset_id}")
    for col in ("query", "status", "release id", "seq", "cost ρ"):
        table.add_column(col, justify="right" if col in ("seq", "cost ρ") else "left")
    for r in summary.releases:
        table.add_row(r.query, r.status, r.release_id, str(r.ledger_seq), r.cost_rho)
    console.print(table)
    console.print(f"charged ρ={summary.charged_rho} now ({summary.charged} charged, "
                  f"{summary.replayed} replayed at no cost); spent ρ={summary.spent_rho} of "
                  f"{summary.cap_rho}, remaining ρ={summary.remaining_rho}", highlight=False)
    console.print(f"published to {summary.published_dir}", highlight=False)


def _amounts(cap: Fraction, spent: Fraction, delta: Decimal | None) -> dict[str, Any]:
    from privacy.accountant import decimal_text, epsilon_equivalent
    from privacy.ledger import fraction_text

    values = {"cap": cap, "spent": spent, "remaining": cap - spent}
    return {
        **{k: fraction_text(v) for k, v in values.items()},
        "decimal": {k: decimal_text(v) for k, v in values.items()},
        "epsilon": None if delta is None else {
            "delta": str(delta),
            **{k: f"{epsilon_equivalent(v, delta):.6g}" for k, v in values.items()}},
    }


budget_app = typer.Typer(
    help="Show each dataset's privacy budget, runs and forecast; recompute-cap converts a "
    "declared (ε, δ) cap again.", invoke_without_command=True)
app.add_typer(budget_app, name="budget")


@budget_app.callback()
def budget(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print budgets as JSON.")] = False,
    plan_file: Annotated[Path | None, typer.Option(
        "--plan", help="Plan whose cadences the forecast uses (default: ISOLOIR_PLAN, else the "
        "packaged default plan).", dir_okay=False)] = None,
) -> None:
    """Show each dataset's privacy budget (cap, spent, remaining, releases), its runs, and the
    forecast: the day the cap runs out at the plan's cadences.

    Values are exact ρ-zCDP (fractions "p/q"), with a decimal and an (ε, δ) rendering. A run
    is one run id: its queries, total ρ and when it was admitted. The cap's conversion says
    how the declared (ε, δ) became ρ (tight CKS 2020 for new datasets, loose Bun–Steinke 2016
    for datasets opened before it, until `isoloir budget recompute-cap`).
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_exit()
    with handled_errors(as_json):
        from cli.runtime import warehouse_engine
        from privacy.accountant import read_budgets
        from privacy.ledger import read_entries, runs_of

        with warehouse_engine(settings).connect() as conn:
            states = read_budgets(conn)
            runs = runs_of(read_entries(conn))
        plan = _forecast_plan(plan_file or settings.plan_file)
    today = datetime.now(UTC).date()  # the CLI's "as of": today, read here, once
    datasets: list[dict[str, Any]] = []
    for s in states:
        mine = [r for r in runs if r.dataset_id == s.dataset_id]
        datasets.append({"dataset_id": s.dataset_id, "unit": "rho-zCDP",
                         "releases": s.releases, "created_at": s.created_at,
                         "declared_cap": {"epsilon": None if s.cap.epsilon is None
                                          else str(s.cap.epsilon),
                                          "delta": None if s.cap.delta is None
                                          else str(s.cap.delta)},
                         "conversion": _conversion(s.cap.rho, s.cap.epsilon, s.cap.delta),
                         "forecast": _forecast(plan, s.dataset_id, s.remaining, today),
                         "runs": [_run_json(r, s.cap.delta) for r in mine]}
                        | _amounts(s.cap.rho, s.spent, s.cap.delta))
    if as_json:
        emit_json({"datasets": datasets})
        return
    if not datasets:
        console.print("no privacy budget opened yet: the first `isoloir release` opens it")
        return
    table = Table(title="privacy budgets (ρ-zCDP, exact; ε at the declared δ)")
    for col in ("dataset", "cap", "spent", "remaining", "ε spent / cap", "releases", "runs"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for d in datasets:
        eps = d["epsilon"]
        table.add_row(d["dataset_id"], f"{d['cap']} ({d['decimal']['cap']})",
                      f"{d['spent']} ({d['decimal']['spent']})",
                      f"{d['remaining']} ({d['decimal']['remaining']})",
                      "—" if eps is None else f"{eps['spent']} / {eps['cap']}",
                      str(d["releases"]), str(len(d["runs"])))
    console.print(table)
    for d in datasets:
        if not d["runs"]:
            continue
        listing = Table(title=f"runs of {d['dataset_id']} (oldest first)")
        for col in ("run id", "admitted at", "queries", "ρ", "releases", "note"):
            listing.add_column(col, justify="right" if col in ("ρ", "releases") else "left")
        for r in d["runs"]:
            notes = []
            if r["admissions"] > 1:
                notes.append(f"{r['admissions']} admissions")
            if r["unfinished"]:
                notes.append(f"{r['unfinished']} charged without result")
            listing.add_row(r["run_id"], r["first_at"][:19].replace("T", " "),
                            ", ".join(r["queries"]), r["rho"], str(r["releases"]),
                            "; ".join(notes))
        console.print(listing)
    for d in datasets:
        conv, fc = d["conversion"], d["forecast"]
        console.print(f"{d['dataset_id']}: cap converted by {conv['name']}", highlight=False)
        if fc is not None and fc["exhausted_on"] is not None:
            console.print(f"{d['dataset_id']}: at the plan's cadences (ρ={fc['per_day_rho']} a "
                          f"day on average) the cap runs out on {fc['exhausted_on']} "
                          f"({fc['days_left']} days from {fc['as_of']})", highlight=False)


@budget_app.command("recompute-cap")
def recompute_cap(
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Dataset whose cap to convert again (default: every dataset with a "
        "declared (ε, δ)).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what changed as JSON.")] = False,
) -> None:
    """Convert a dataset's declared (ε, δ) cap with the tight conversion (CKS 2020), and
    record the change in the ledger.

    An existing dataset keeps the cap it was opened with until this is run. The new cap and
    the old are written, signed, in a zero-cost ledger entry (mechanism "cap recompute") in
    the same transaction as the change, so `isoloir audit verify` and the auditor report see
    it. A dataset already at the tight cap is left as it is. Exit 2 for an unknown dataset or
    a cap declared in ρ.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from cli.runtime import warehouse_engine
        from core.errors import PlanError
        from privacy.accountant import Accountant, read_budgets
        from privacy.signing import load_signing_key

        engine = warehouse_engine(settings)
        with engine.connect() as conn:
            states = read_budgets(conn)
        if dataset is not None:
            states = [s for s in states if s.dataset_id == dataset]
            if not states:
                raise PlanError(f"no dataset {dataset!r} has a budget; `isoloir budget` "
                                "lists them")
        else:
            states = [s for s in states if s.cap.epsilon is not None]
        accountant = Accountant(engine, load_signing_key(settings.signing_key_file))
        changes = [accountant.recompute_cap(s.dataset_id) for s in states]
    if as_json:
        emit_json({"ok": True, "changes": [c.to_dict() for c in changes]})
        return
    if not changes:
        console.print("no dataset with a declared (ε, δ) cap: nothing to recompute")
    for c in changes:
        if c.changed:
            assert c.entry is not None
            console.print(f"{c.dataset_id}: cap ρ {c.from_rho} ({c.from_conversion}) → "
                          f"{c.to_rho} ({c.to_conversion}); recorded in the ledger, seq "
                          f"{c.entry.seq}", highlight=False)
        else:
            console.print(f"{c.dataset_id}: cap already ρ {c.to_rho} ({c.to_conversion}); "
                          "nothing changed", highlight=False)


def _forecast_plan(path: Path | None) -> Any:
    """The plan the forecast follows, or None when it cannot be read (said in the output)."""
    from core.errors import PlanError
    from privacy.plan import load_plan

    try:
        return load_plan(path)
    except PlanError:
        return None


def _forecast(plan: Any, dataset_id: str, remaining: Fraction,
              today: Any) -> dict[str, Any] | None:
    from privacy.cadence import forecast

    if plan is None or plan.dataset_id != dataset_id:
        return None
    return forecast(plan, remaining, today).to_dict()


def _conversion(rho: Fraction, epsilon: Decimal | None, delta: Decimal | None) -> dict[str, Any]:
    from privacy.conversion import CONVERSION_NAMES, conversion_of

    code = conversion_of(rho, epsilon, delta)
    return {"code": code, "name": CONVERSION_NAMES[code]}


def _run_json(run: RunRecord, delta: Decimal | None) -> dict[str, Any]:
    """A run as ``budget --json`` shows it: exact ρ, its decimal and (ε, δ) renderings."""
    from privacy.accountant import decimal_text, epsilon_equivalent

    return run.to_dict() | {"rho_decimal": decimal_text(run.cost),
                            "epsilon": None if delta is None
                            else f"{epsilon_equivalent(run.cost, delta):.6g}"}
