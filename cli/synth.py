"""`isoloir synth`: write a synthetic campaign (each tool's export in its own dialect)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cli.app import app
from cli.common import console, emit_json, handled_errors, settings_or_exit

_DATE = ["%Y-%m-%d"]


@app.command("synth")
def synth(
    people: Annotated[int, typer.Option(help="Synthetic supporters (NationBuilder rows).",
                                        min=1)],
    seed: Annotated[int, typer.Option(help="Generator seed: same seed, byte-identical files.",
                                      min=0)] = 2026,
    out: Annotated[Path | None, typer.Option(
        help="Folder to write into (default: ISOLOIR_HOME/landing; the ground truth then "
        "goes to ISOLOIR_HOME/synth/ so that it is never ingested).",
        file_okay=False)] = None,
    contacts_per_person: Annotated[float, typer.Option(
        help="Mean canvass attempts per canvassed person (heavy-tailed).", min=1.0,
        max=100.0)] = 5.0,
    start: Annotated[datetime | None, typer.Option(
        formats=_DATE, help="First day of the campaign (default 2026-01-05).")] = None,
    end: Annotated[datetime | None, typer.Option(
        formats=_DATE, help="Last day of the campaign (default 2026-06-28).")] = None,
    all_sources: Annotated[bool, typer.Option(
        "--all-sources", help="Also write the other tools' exports of the same people "
        "(Action Network, Action Populaire, NationBuilder contacts and donations, VAN My "
        "Voters); the ground truth describes the four core exports only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Generate synthetic campaign exports plus an exact ground-truth file (tests only).

    Writes nationbuilder_people.csv (UTF-8 BOM), van_contact_history.txt (tab),
    porte_a_porte.csv (cp1252, ';', decimal comma) and donations.csv, with the same people
    written differently across files, and ground_truth.json with exact aggregates of those
    four. With --all-sources, the same people also appear in action_network_people.csv,
    action_populaire.csv, nationbuilder_contacts.csv, nationbuilder_donations.csv and
    van_my_voters.txt (for reading tests; not in the ground truth, so comparisons with it
    use the four core files only).
    """
    from transforms.synth import (
        DEFAULT_END,
        DEFAULT_START,
        GROUND_TRUTH_FILE,
        SynthConfig,
        generate_campaign,
    )

    truth_target: Path | None = None
    if out is None:
        settings = settings_or_exit()
        settings.ensure_dirs()
        out = settings.landing
        truth_target = settings.home / "synth" / GROUND_TRUTH_FILE
    with handled_errors(as_json):
        config = SynthConfig(
            people=people, seed=seed, contacts_per_person=contacts_per_person,
            start=start.date() if start else DEFAULT_START,
            end=end.date() if end else DEFAULT_END, extra_sources=all_sources,
        )
        began = time.perf_counter()
        with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                      disable=as_json, transient=True) as progress:
            task = progress.add_task("people", total=people)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            manifest = generate_campaign(config, out, progress=advance)
        elapsed = time.perf_counter() - began
        truth = manifest.ground_truth
        if truth_target is not None:  # keep it out of the landing zone
            truth_target.parent.mkdir(parents=True, exist_ok=True)
            truth = truth.replace(truth_target)
    if as_json:
        emit_json({"ok": True, "seconds": round(elapsed, 2)} | manifest.to_dict()
                  | {"ground_truth": str(truth)})
        return
    table = Table("file", "profile", "rows", "sha256")
    for f in manifest.files:
        table.add_row(f.name, f.profile, f"{f.rows:,}", f.sha256[:16])
    console.print(table)
    console.print(f"{people:,} people in {elapsed:.1f} s → {out}")
    console.print(f"ground truth (tests and benchmarks only, never ingest it): {truth}",
                  soft_wrap=True, highlight=False)
