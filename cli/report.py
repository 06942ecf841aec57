"""`isoloir report` (strategist HTML) and `isoloir audit report` (auditor HTML).

Both write one self-contained HTML file (no CDN, opens offline) and print its path.
Exit codes: 0 written, 2 bad input (e.g. ``--lang de``), 4 (`audit report` only) when the
report was written but the ledger does not verify: the report says where it breaks.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.audit import audit_app
from cli.common import console, emit_json, err_console, handled_errors, settings_or_exit
from core.errors import EXIT_AUDIT_FAILURE


class Language(StrEnum):
    """Report languages: French (the campaign teams') by default, or English."""

    fr = "fr"
    en = "en"


LangOption = Annotated[Language, typer.Option("--lang", help="Report language: fr or en.",
                                              case_sensitive=False)]
OutOption = Annotated[Path | None, typer.Option(
    "--out", help="Where to write the HTML file (default: ISOLOIR_HOME/reports/...).",
    dir_okay=False, writable=True)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("report")
def report(lang: LangOption = Language.fr, out: OutOption = None,
           as_json: JsonOption = False) -> None:
    """Write the strategist report: each published table's latest release as charts.

    Every number reads "estimate ± half-width" (95 % interval); values too uncertain to act
    on are flagged, not hidden. Built from published/ only.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from reports.published import latest_releases
        from reports.strategist import write_strategist_report

        path = write_strategist_report(settings, lang=lang.value, out=out)
        releases = len(latest_releases(settings.published))
    if as_json:
        emit_json({"ok": True, "report": str(path), "lang": lang.value, "releases": releases})
        return
    console.print(f"strategist report ({lang.value}, {releases} release(s)): {path}",
                  highlight=False, soft_wrap=True)


@audit_app.command("report")
def audit_report(out: OutOption = None, lang: LangOption = Language.fr,
                 as_json: JsonOption = False) -> None:
    """Write the auditor report: budget per dataset, every release, audit verify, key ids.

    Needs only the public half of the signing key. Exits 4 when the ledger does not verify
    (the report is written all the same and shows the first broken entry).
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from reports.auditor import produce_auditor_report

        written = produce_auditor_report(settings, out=out, lang=lang.value)
    failed = written.status == "failed"
    if as_json:
        emit_json({"ok": not failed, "report": str(written.path), "audit": written.status,
                   "entries": written.entries, "lang": lang.value})
    else:
        console.print(f"auditor report ({written.entries} ledger entries, audit "
                      f"{written.status}): {written.path}", highlight=False, soft_wrap=True)
        if written.audit is not None and failed:
            err_console.print(f"[bold red]✗[/] {written.audit.summary()}", highlight=False)
    if failed:
        raise typer.Exit(EXIT_AUDIT_FAILURE)
