"""`isoloir release` and `isoloir budget`: publish the plan's DP aggregates; show the budget.

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


@app.command("budget")
def budget(
    as_json: Annotated[bool, typer.Option("--json", help="Print budgets as JSON.")] = False,
) -> None:
    """Show each dataset's privacy budget (cap, spent, remaining, releases) and its runs.

    Values are exact ρ-zCDP (fractions "p/q"), with a decimal and an (ε, δ) rendering. A run
    is one run id: its queries, total ρ and when it was admitted.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from cli.runtime import warehouse_engine
        from privacy.accountant import read_budgets
        from privacy.ledger import read_entries, runs_of

        with warehouse_engine(settings).connect() as conn:
            states = read_budgets(conn)
            runs = runs_of(read_entries(conn))
    datasets: list[dict[str, Any]] = []
    for s in states:
        mine = [r for r in runs if r.dataset_id == s.dataset_id]
        datasets.append({"dataset_id": s.dataset_id, "unit": "rho-zCDP",
                         "releases": s.releases, "created_at": s.created_at,
                         "declared_cap": {"epsilon": None if s.cap.epsilon is None
                                          else str(s.cap.epsilon),
                                          "delta": None if s.cap.delta is None
                                          else str(s.cap.delta)},
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


def _run_json(run: RunRecord, delta: Decimal | None) -> dict[str, Any]:
    """A run as ``budget --json`` shows it: exact ρ, its decimal and (ε, δ) renderings."""
    from privacy.accountant import decimal_text, epsilon_equivalent

    return run.to_dict() | {"rho_decimal": decimal_text(run.cost),
                            "epsilon": None if delta is None
                            else f"{epsilon_equivalent(run.cost, delta):.6g}"}
