"""What every command shares: settings, logging, error rendering and exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from core.errors import EXIT_FAILURE, IsoloirError
from core.settings import Settings, load_settings

console = Console(stderr=False)
err_console = Console(stderr=True)

T = TypeVar("T")


def setup_logging(level: str) -> None:
    """Route library logs to stderr through rich; never to stdout, which `--json` owns."""
    root = logging.getLogger()
    if any(isinstance(h, RichHandler) for h in root.handlers):
        root.setLevel(level)
        return
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("great_expectations", "opendp", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def settings_or_exit() -> Settings:
    """Load settings, turning a bad variable into exit code 2 with the variable's name."""
    with handled_errors():
        settings = load_settings()
        setup_logging(settings.log_level)
        return settings
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def handled_errors(as_json: bool = False) -> Iterator[None]:
    """Render Isoloir errors as one actionable line and exit with their documented code."""
    try:
        yield
    except IsoloirError as err:
        if as_json:
            emit_json({"ok": False, "error": type(err).__name__, "message": str(err),
                       "exit_code": err.exit_code})
        else:
            err_console.print(f"[bold red]error:[/] {err}", markup=True, highlight=False)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(EXIT_FAILURE) from None


def run_or_exit(fn: Callable[[], T], as_json: bool = False) -> T:
    with handled_errors(as_json):
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def emit_json(payload: Any) -> None:
    """Write one JSON document to stdout (for scripts); exact values are strings."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
