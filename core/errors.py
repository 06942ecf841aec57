"""Error types shared across layers.

Every error carries a message meant for an engineer at 3 a.m.: what broke, where, and
what to do. None of them ever carries a supporter's value, a key, or a row: callers pass
file names, row numbers, column names and rule names only.

Exit codes (documented in README, stable for scripts): 0 ok, 1 failure, 2 bad input,
3 budget exhausted, 4 audit failure.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET_EXHAUSTED = 3
EXIT_AUDIT_FAILURE = 4


class IsoloirError(Exception):
    """Base of every error Isoloir raises on purpose."""

    exit_code: int = EXIT_FAILURE


class SettingsError(IsoloirError):
    """An environment variable or configuration value is missing or malformed."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class KeyMaterialError(IsoloirError):
    """The master or signing key is missing, unreadable or malformed.

    The message never contains key bytes.
    """

    exit_code = EXIT_BAD_INPUT


class InputFileError(IsoloirError):
    """A landing file breaks a rule. Names file, row and rule; never the offending value."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, file: str, rule: str, detail: str = "", row: int | None = None,
                 column: str | None = None) -> None:
        self.file = file
        self.rule = rule
        self.detail = detail
        self.row = row
        self.column = column
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        message = f"{where}: rule {rule!r} broken"
        if detail:
            message += f": {detail}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable with its fields, so an error raised in a worker process arrives whole."""
        return (type(self), (self.file, self.rule, self.detail, self.row, self.column))


class PlanError(IsoloirError):
    """A release plan is invalid; names the key path (``releases[3].bounds``) and why."""

    exit_code = EXIT_BAD_INPUT


class BudgetExhaustedError(IsoloirError):
    """The dataset's remaining privacy budget cannot cover the requested release."""

    exit_code = EXIT_BUDGET_EXHAUSTED


class AuditFailure(IsoloirError):
    """The ledger, a signature, or a published file does not verify."""

    exit_code = EXIT_AUDIT_FAILURE


class InvariantViolation(IsoloirError):
    """An internal invariant broke: this is a bug in Isoloir, please report it."""
