"""`isoloir audit`: prove from the ledger that the budget held and every file was charged.

``audit verify`` needs only the public half of the signing key. Other audit commands (the
auditor's HTML report) register on :data:`audit_app` from their own module.
Exit codes: 0 everything verifies, 4 any failure (including a ledger that cannot be read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.common import console, emit_json, err_console, settings_or_exit
from core.errors import EXIT_AUDIT_FAILURE, IsoloirError

audit_app = typer.Typer(help="Verify the privacy ledger and the published files.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")

_SHOWN = 20


@audit_app.command("verify")
def verify(
    public_key: Annotated[list[Path] | None, typer.Option(
        "--public-key", help="A public signing key the auditor holds (repeatable; default: "
        "<ISOLOIR_SIGNING_KEY_FILE>.pub and the retired .pub files kept beside it).",
        dir_okay=False)] = None,
    public_keys: Annotated[Path | None, typer.Option(
        "--public-keys", help="A folder of public signing keys (*.pub): every key the ledger "
        "was signed with, after key rotations.", file_okay=False, exists=True)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the ledger's hash chain, signatures, totals and published files' hashes.

    Each entry is checked with the public key it names, among those given. Exits 0 when
    everything holds, 4 on any failure, naming the first broken entry (or the first entry
    signed by a key not given).
    """
    settings = settings_or_exit()
    try:
        from privacy.audit import verify_settings

        given = [*(public_key or []), *([public_keys] if public_keys is not None else [])]
        report = verify_settings(settings, public_keys=given or None, raise_on_failure=False)
    except IsoloirError as err:
        message = f"audit could not run: {err}"
        if as_json:
            emit_json({"ok": False, "error": type(err).__name__, "message": message,
                       "exit_code": EXIT_AUDIT_FAILURE})
        else:
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(EXIT_AUDIT_FAILURE) from None
    if as_json:
        emit_json(report.to_dict())
    elif report.ok:
        console.print(f"[green]✓[/] {report.summary()}", highlight=False)
        for d in report.datasets:
            console.print(f"  {d.dataset_id}: spent ρ={d.spent_rho} of {d.cap_rho} in "
                          f"{d.releases} releases", highlight=False)
    else:
        err_console.print(f"[bold red]✗[/] {report.summary()}", highlight=False)
        for problem in report.problems[:_SHOWN]:
            err_console.print(f"  - {problem.describe()}", highlight=False)
        if len(report.problems) > _SHOWN:
            err_console.print(f"  ... and {len(report.problems) - _SHOWN} more", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_AUDIT_FAILURE)
