"""The ``isoloir`` command: one group per concern, each in its own module.

Exit codes: 0 ok, 1 failure, 2 bad input, 3 budget exhausted, 4 audit failure.
"""

from __future__ import annotations

from core.memory import return_freed_memory

return_freed_memory()  # before anything imports Polars (see core/memory.py)

from cli.app import app  # noqa: E402

__all__ = ["app"]


def _register() -> None:
    # Each command module adds its commands to `app`; heavy imports wait until a command runs.
    import cli.audit
    import cli.demo
    import cli.doctor
    import cli.dp_audit
    import cli.erasure
    import cli.identity
    import cli.ingest
    import cli.keys
    import cli.plan
    import cli.profiles
    import cli.release
    import cli.report
    import cli.synth
    import cli.validate  # noqa: F401


_register()

if __name__ == "__main__":
    app()
