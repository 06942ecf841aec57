"""`isoloir plan check`: what the plan will publish, before any budget is spent.

Exit codes: 0 ok (flags are advice), 2 bad input (plan, option).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.app import app
from cli.common import console, emit_json, handled_errors, settings_or_exit

plan_app = typer.Typer(help="Inspect a release plan before it spends budget.",
                       no_args_is_help=True)
app.add_typer(plan_app, name="plan")


@plan_app.command("check")
def check(
    plan_file: Annotated[Path | None, typer.Option(
        "--plan", help="Release plan YAML (default: ISOLOIR_PLAN, else the packaged default "
        "plan).", dir_okay=False)] = None,
    persons: Annotated[int | None, typer.Option(
        "--persons", min=1, help="Persons to plan for (default: the warehouse's count).")] = None,
    contacts: Annotated[int | None, typer.Option(
        "--contacts", min=0, help="Contact rows (default: the warehouse's count).")] = None,
    donations: Annotated[int | None, typer.Option(
        "--donations", min=0, help="Donation rows (default: the warehouse's count).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Expected 95 % half-width and bias of every query's cells at the warehouse's size.

    Uses table sizes only (given, or counted in the warehouse and shown to you alone) and,
    for the bias, the rows-cut share each query's last published release estimated under
    DP (already paid for): no noise is drawn, nothing is charged (cost: ρ = 0). Queries
    whose typical cell would be "trop incertain" (half-width ≥ the typical cell) are
    flagged, so the plan can be fixed before it spends.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from privacy.plan import load_plan
        from privacy.plan_check import Sizes, check_plan, last_releases

        plan = load_plan(plan_file or settings.plan_file)
        counted = {"persons": persons, "contacts": contacts, "donations": donations}
        source = "given"
        if None in counted.values():
            from cli.runtime import warehouse_engine
            from warehouse import store

            with warehouse_engine(settings).connect() as conn:
                stored = store.table_counts(conn)
            counted = {k: v if v is not None else int(stored.get(k, 0))
                       for k, v in counted.items()}
            source = "warehouse row counts (exact, shown to the operator only)"
        sizes = Sizes(**{k: int(v or 0) for k, v in counted.items()})
        checks = check_plan(plan, sizes, last_releases(settings.published,
                                                        plan.dataset_id))
    flagged = [c.query for c in checks if c.too_uncertain]
    if as_json:
        emit_json({"ok": True, "plan": plan.dataset_id, "sizes": vars(sizes),
                   "sizes_from": source, "cost_rho": "0", "queries": [c.to_json() for c in checks],
                   "too_uncertain": flagged})
        return
    table = Table(title=f"plan check — {plan.dataset_id} ({sizes.persons:,} persons, "
                        f"{sizes.contacts:,} contacts, {sizes.donations:,} donations)")
    for col in ("query", "bounds", "cells", "typical cell", "± 95 %", "bias", "flag"):
        table.add_column(col, justify="right" if col in ("cells", "typical cell", "± 95 %")
                         else "left")
    for c in checks:
        half = "—" if c.halfwidth is None else f"{c.halfwidth:,}"
        if c.halfwidth_max is not None:
            half += f" (≤ {c.halfwidth_max:,})"
        table.add_row(c.query, c.bounds, str(c.cells),
                      "—" if c.typical_cell is None else f"{c.typical_cell:,.0f}", half, c.bias,
                      "trop incertain" if c.too_uncertain else "")
    console.print(table)
    console.print(f"sizes: {source}; cost of this check: ρ = 0 (no noise drawn)",
                  highlight=False)
    if flagged:
        console.print(f"trop incertain: {', '.join(flagged)} — give them more budget share, "
                      "coarser groups, or drop them", highlight=False)
