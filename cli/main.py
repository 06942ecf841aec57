"""The ``isoloir`` command: one group per concern, each in its own module.

Exit codes: 0 ok, 1 failure, 2 bad input, 3 budget exhausted, 4 audit failure.
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


def _register() -> None:
    # Each command module adds its commands to `app`; heavy imports wait until a command runs.
    from cli import audit, demo, ingest, keys, release  # noqa: F401
    from cli import doctor, report  # noqa: F401
    from cli import synth  # noqa: F401
    from cli import validate  # noqa: F401


_register()

if __name__ == "__main__":
    app()
