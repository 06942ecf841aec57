"""The Typer application object, alone, so command modules can import it without cycles.

Command modules do ``from cli.app import app``; :mod:`cli.main` imports them all (that is
where the ``isoloir`` entry point and ``python -m cli.main`` start).
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="isoloir",
    help="Privacy-preserving supporter analytics: pseudonymize campaign exports, publish only "
    "differentially private aggregates, and audit the privacy budget.\n\n"
    "Exit codes: 0 ok, 1 failure, 2 bad input, 3 budget exhausted, 4 audit failure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("version")
def version() -> None:
    """Print the installed Isoloir version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("isoloir"))
