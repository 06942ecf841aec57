"""`isoloir ingest`: load landing files into the warehouse, pseudonymized, one transaction each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cli.app import app
from cli.common import console, emit_json, handled_errors, settings_or_exit
from core.errors import EXIT_BAD_INPUT, IsoloirError


@app.command("ingest")
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Export files to load (CSV/TSV/TXT, or .xlsx workbooks).",
                                                exists=True, dir_okay=False, readable=True)],
    source: Annotated[str, typer.Option(
        "--source", help="Source profile: auto, a built-in profile (isoloir profiles lists them), "
        "or a path to a YAML profile.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Pseudonymize and load export files; prints rows read, loaded (new or changed), unchanged
    (already in the warehouse: exports are snapshots), excluded, persons new/merged/withdrawn.

    A rejected file exits 2 with the file, the line and the rule broken (never the value);
    nothing of it is loaded. Loading the same file twice is a no-op that says so.
    """
    settings = settings_or_exit()
    results: list[dict[str, object]] = []
    failures: list[dict[str, object]] = []
    with handled_errors(as_json):
        from cli.runtime import warehouse_engine
        from pipeline.connections import load_master_keyring
        from pipeline.ingest import ingest_file
        from transforms.read import last_read_report

        keyring = load_master_keyring(settings)  # before any row is read
        engine = warehouse_engine(settings)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=as_json,
                      transient=True) as progress:
            for path in files:
                task = progress.add_task(f"ingest {path.name}", total=None)

                def advance(rows: int, task_id: TaskID = task) -> None:
                    progress.advance(task_id, rows)

                try:
                    result = ingest_file(path, settings, engine, keyring, source=source,
                                         progress=advance)
                except IsoloirError as err:
                    failures.append({"file": path.name, "error": type(err).__name__,
                                     "message": str(err), "exit_code": err.exit_code,
                                     "dialect": _dialect(path, source)})
                    continue
                report = last_read_report(path)
                results.append({**result.to_dict(), "dialect": _dialect(path, source),
                                "profile_detection": report.detection if report else None})
    if as_json:
        emit_json({"ok": not failures, "files": results, "failures": failures})
    else:
        _render(results, failures)
    if failures:
        raise typer.Exit(max(int(str(f["exit_code"])) for f in failures) or EXIT_BAD_INPUT)


def _dialect(path: Path, source: str) -> dict[str, object] | None:
    """How the file was read (encoding, delimiter, decimal, BOM, line ending): the reader's
    own report when it read the file in this process, else sniffed from the file's head;
    ``None`` when the file is gone or not even sniffable."""
    from transforms.read import detect_profile, last_read_report, sniff_dialect
    from transforms.workbook import is_workbook

    report = last_read_report(path)
    if report is not None:
        return report.dialect.to_dict()
    if is_workbook(path):
        return {"format": path.suffix.lower().lstrip(".")}  # not converted again to say so
    try:
        return sniff_dialect(path, detect_profile(path, source)).to_dict()
    except (IsoloirError, OSError):
        return None


def _render(results: list[dict[str, object]], failures: list[dict[str, object]]) -> None:
    if results:
        table = Table(title="ingested")
        for col in ("file", "status", "read", "loaded", "unchanged", "skipped", "excluded",
                    "unplaced",
                    "new persons", "merged", "withdrawn", "read as"):
            table.add_column(col, justify="left" if col in ("file", "status") else "right")
        for r in results:
            table.add_row(str(r["file_name"]), str(r["status"]), str(r["rows_read"]),
                          str(r["rows_loaded"]), str(r.get("rows_unchanged", 0)),
                          str(r.get("rows_skipped", 0)), str(r["rows_excluded"]), str(r["rows_unplaced"]),
                          str(r["persons_new"]), str(r["persons_merged"]),
                          str(r.get("persons_withdrawn", 0)), _short(r["dialect"]))
        console.print(table)
        for r in results:
            if r["status"] == "already_loaded":
                console.print(f"{r['file_name']}: already loaded (same SHA-256), nothing done")
    for f in failures:
        console.print(f"[bold red]rejected:[/] {f['message']}", highlight=False)


def _short(dialect: object) -> str:
    if not isinstance(dialect, dict):
        return "—"
    bom = " BOM" if dialect.get("bom") else ""
    return (f"{dialect.get('encoding')}{bom} {dialect.get('delimiter')} "
            f"dec {dialect.get('decimal')!s} {dialect.get('line_ending')}")
