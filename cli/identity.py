"""`isoloir audit identity`: measure the identity split rate the guarantee statement quotes."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.audit import audit_app
from cli.common import console, emit_json, handled_errors, settings_or_exit


@audit_app.command("identity")
def identity(
    people: Annotated[int, typer.Option(help="Size of the synthetic campaign measured.",
                                        min=100, max=2_000_000)] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic campaign.", min=0)] = 2026,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure how often identity resolution splits a human in two, on synthetic data.

    Generates a campaign, ingests it through the real pipeline into a throw-away warehouse
    under a throw-away key, and compares resolved persons with the generator's humans.
    Records the result in $ISOLOIR_HOME/audit/identity_split.json, which the auditor
    report's guarantee statement quotes. Touches neither the campaign's warehouse nor keys.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from pipeline.identity_check import measure_identity_split
        from privacy.identity_audit import write_identity_split

        settings.ensure_dirs()
        with console.status(f"measuring identity resolution on {people:,} synthetic people"):
            result = measure_identity_split(settings, people=people, seed=seed)
        path = write_identity_split(settings.home / "audit", result)
    if as_json:
        emit_json({"ok": True, "file": str(path)} | result.to_dict())
        return
    console.print(f"{result.humans:,} synthetic humans resolved to {result.persons:,} persons: "
                  f"{result.split_humans:,} split in two or more ({result.split_rate:.2%}), "
                  f"{result.merged_persons:,} persons holding several humans "
                  f"({result.merge_rate:.2%}). Recorded in {path}", highlight=False)
