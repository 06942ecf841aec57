"""`isoloir validate FILE`: run the raw suite on one export and print what it found.

A check, not an ingest: the file stays where it is and nothing is loaded. The summary names
rules, columns, counts and row numbers, never a value. Exit 2 when a blocking rule fails
(or the file is not even well-formed CSV), 0 otherwise (warnings included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.app import app
from cli.common import console, emit_json, handled_errors, settings_or_exit
from core.errors import EXIT_BAD_INPUT
from expectations.outcome import ValidationOutcome


@app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(
        help="Export file to check (CSV/TSV/TXT, or an .xlsx workbook).", exists=True,
        dir_okay=False, readable=True)],
    source: Annotated[str, typer.Option(
        "--source", help="Source profile: auto, a built-in profile (isoloir profiles lists them), "
        "or a path to a YAML profile.")] = "auto",
    email_threshold: Annotated[float, typer.Option(
        "--email-threshold", min=0.01, max=1.0,
        help="Share of well-formed emails required (0.98: at most 2 % malformed).")] = 0.98,
    gx: Annotated[bool, typer.Option(
        "--gx/--no-gx", help="Also record the run with Great Expectations (validation result "
        "and Data Docs under ISOLOIR_HOME/reports/data_docs).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Check an export against its source profile's raw suite (the file is not moved or loaded).

    Prints each rule with its column, whether it blocks, how many values fail and the first
    rows to look at. Exits 2 on a blocking failure.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        import pandas as pd

        from expectations.validate import validate_raw
        from pipeline.ingest import workbook_dir
        from transforms.exports import open_export
        from transforms.read import read_chunk

        with open_export(file, source, work_dir=workbook_dir(settings)) as opened:
            profile = opened.profile
            plan = opened.plan(settings.chunk_rows, validate=True)
            chunks = [read_chunk(plan, k) for k in range(plan.chunks)]
        frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
        del chunks
        outcome = validate_raw(frame, list(plan.report.header), profile, file.name, settings,
                               email_threshold=email_threshold, gx=gx, reading=plan.report)
    if as_json:
        emit_json({"ok": outcome.success, "profile": profile.name,
                   "profile_detection": opened.detection.to_dict(),
                   "dialect": plan.report.dialect.to_dict(), **outcome.to_dict()})
    else:
        _render(outcome, profile.name)
        console.print(f"profile {opened.detection.describe()}", highlight=False)
    if not outcome.success:
        raise typer.Exit(EXIT_BAD_INPUT)


def _render(outcome: ValidationOutcome, profile: str) -> None:
    table = Table(title=f"{outcome.file_name}: suite {outcome.suite} ({profile}), "
                        f"{outcome.rows} rows")
    for name, justify in (("", "left"), ("rule", "left"), ("column", "left"),
                          ("blocks", "left"), ("failing", "right"), ("% failing", "right"),
                          ("first rows", "left"), ("detail", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in outcome.results:
        mark = "[green]✓[/]" if r.success else ("[bold red]✗[/]" if r.blocking else "[yellow]![/]")
        table.add_row(mark, r.rule, r.column or "—", "yes" if r.blocking else "warn",
                      f"{r.unexpected_count}/{r.element_count}",
                      f"{r.unexpected_percent:.2f}", ", ".join(str(x) for x in r.first_rows),
                      r.detail)
    console.print(table)
    reading = outcome.reading or {}
    if reading:
        dialect = reading.get("dialect", {})
        console.print("read as " + ", ".join(f"{k} {v}" for k, v in dialect.items()),
                      highlight=False)
        for column, alias in dict(reading.get("columns_aliased", {})).items():
            console.print(f"column {column!r} found as {alias!r}", highlight=False)
        ignored = list(reading.get("columns_ignored", []))
        if ignored:
            console.print(f"{len(ignored)} column(s) ignored, never read: "
                          + ", ".join(repr(c) for c in ignored), highlight=False)
    if outcome.success:
        warned = len(outcome.warnings())
        console.print("[green]PASS[/]: no blocking rule failed"
                      + (f" ({warned} warn-only rule{'s' if warned > 1 else ''} failed)"
                         if warned else ""), highlight=False)
    else:
        console.print(f"[bold red]FAIL[/]: {outcome.first_failure_message()}", highlight=False)
    if outcome.data_docs:
        console.print(f"Data Docs: {outcome.data_docs} (under ISOLOIR_HOME; GX saw "
                      f"{outcome.gx_rows} of {outcome.rows} rows)", highlight=False)
