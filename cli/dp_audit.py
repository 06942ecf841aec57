"""`isoloir audit dp`: the empirical privacy audit of the release path (``make audit``).

Runs :mod:`privacy.audit_dp` on the plan in force, prints one line per audited query
(trials, the ε the ledger declares, the empirical lower bound) and records the results in
``$ISOLOIR_HOME/audit/dp_audit.json`` for the auditor report. Exit codes: 0 every lower
bound is within its declared ε, 4 any is above (a privacy bug), 2 bad input.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.audit import audit_app
from cli.common import console, emit_json, err_console, handled_errors, settings_or_exit
from core.errors import EXIT_AUDIT_FAILURE


def _bound(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


@audit_app.command("dp")
def dp_audit(
    trials: Annotated[int, typer.Option(
        "--trials", min=20, help="Releases per dataset (D and D′) and query; 30 % choose the "
        "test, 70 % estimate it. Default 10,000: a noise-halving bug is then caught.")] = 10_000,
    families: Annotated[bool, typer.Option(
        "--families", help="Audit one query per mechanism family (6) instead of every query "
        "of the plan.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Release each query many times on neighbouring data; bound ε from below (0.95).

    Exits 4 when a lower bound exceeds the ε the ledger declares for the release's ρ.
    """
    settings = settings_or_exit()
    with handled_errors(as_json):
        from pipeline.dp_audit import run_dp_audit

        report, path = run_dp_audit(settings, trials=trials,
                                    scope="families" if families else "all")
    if as_json:
        emit_json(report.to_dict() | {"record": str(path)})
    else:
        for r in report.results:
            mark = "[green]✓[/]" if r.passed else "[bold red]✗[/]"
            console.print(
                f"{mark} {r.family:<14} {r.query:<28} {r.trials} trials  ρ={r.rho}  "
                f"δ={r.test_delta:g}: ε declared {r.test_epsilon_declared:.3f}, lower bound "
                f"{_bound(r.test_epsilon_lower)}  (δ={r.plan_delta:g}: "
                f"{r.epsilon_declared:.3f} / {_bound(r.epsilon_lower)})", highlight=False,
                soft_wrap=True)
        console.print(f"DP audit {'passed' if report.ok else 'FAILED'} in {report.seconds} s; "
                      f"recorded in {path}", highlight=False, soft_wrap=True)
    if not report.ok:
        if not as_json:
            err_console.print("[bold red]✗[/] an empirical lower bound exceeds the declared ε: "
                              "the release path leaks more than the ledger charges",
                              highlight=False)
        raise typer.Exit(EXIT_AUDIT_FAILURE)
