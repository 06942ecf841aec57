"""What a validation found: per-rule counts and row numbers, never a value.

These objects travel: into quarantine reports, the run summary, XCom (``to_dict``), the CLI.
So they hold only rule names, column names, counts, percentages and row numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import InputFileError


@dataclass(frozen=True)
class RuleResult:
    """The result of one rule over one frame.

    ``element_count`` is how many values the rule looked at (non-null values for a column
    rule, rows or columns for a table rule); ``unexpected_percent`` is relative to it.
    ``first_rows`` are row numbers (the file's line numbers for raw files), at most a few.
    ``detail`` is a value-free explanation (e.g. the names of missing columns).
    """

    rule: str
    column: str | None
    blocking: bool
    success: bool
    unexpected_count: int
    element_count: int
    unexpected_percent: float
    first_rows: tuple[int, ...] = ()
    detail: str = ""

    def __post_init__(self) -> None:
        if self.unexpected_count < 0 or self.element_count < 0:
            raise ValueError("counts cannot be negative")

    @property
    def where(self) -> str:
        return f"{self.rule} on {self.column!r}" if self.column else self.rule

    def describe(self) -> str:
        """One line for a person: rule, column, how many failed, first rows."""
        text = f"{self.where}: {self.unexpected_count} of {self.element_count} failing " \
               f"({self.unexpected_percent:.2f} %)"
        if self.detail:
            text += f"; {self.detail}"
        if self.first_rows:
            text += "; first rows " + ", ".join(str(r) for r in self.first_rows)
        return text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_rows"] = list(self.first_rows)
        return data


@dataclass(frozen=True)
class ValidationOutcome:
    """All rule results of one suite over one file or frame.

    ``success`` means no *blocking* rule failed; warn-only failures are in :meth:`warnings`.
    ``gx_rows`` is how many rows Great Expectations saw (the whole frame, or a deterministic
    sample of a big one), ``gx_result`` the stored GX validation result (relative to
    ISOLOIR_HOME) and ``data_docs`` the Data Docs index; all three are empty when GX did not run.
    """

    suite: str
    file_name: str
    success: bool
    results: tuple[RuleResult, ...]
    rows: int = 0
    gx_rows: int | None = None
    gx_result: str | None = None
    data_docs: str | None = None
    seconds: float = 0.0
    #: What reading the file established (dialect, aliased and ignored columns, date
    #: orders): value-free, from ``transforms.read.ReadReport.to_dict``.
    reading: Mapping[str, Any] | None = None

    def blocking_failures(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if r.blocking and not r.success)

    def warnings(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if not r.blocking and not r.success)

    def first_failure(self) -> RuleResult | None:
        failures = self.blocking_failures()
        return failures[0] if failures else None

    def first_failure_message(self) -> str:
        """The file and the first broken blocking rule (with its first row), or '' if none."""
        first = self.first_failure()
        if first is None:
            return ""
        more = len(self.blocking_failures()) - 1
        text = f"{self.file_name}: {first.describe()}"
        if more:
            text += f" (and {more} more blocking rule{'s' if more > 1 else ''})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (XCom-safe: no values, only counts and row numbers)."""
        return {
            "suite": self.suite, "file_name": self.file_name, "success": self.success,
            "rows": self.rows, "gx_rows": self.gx_rows, "gx_result": self.gx_result,
            "data_docs": self.data_docs, "seconds": round(self.seconds, 3),
            "blocking_failures": len(self.blocking_failures()),
            "warnings": len(self.warnings()),
            "results": [r.to_dict() for r in self.results],
            **({"reading": dict(self.reading)} if self.reading is not None else {}),
        }


class ValidationFailed(InputFileError):
    """A file broke a blocking expectation (and was quarantined, when a path was given).

    Build it with :meth:`from_outcome`: the message then names the file, the first broken rule
    and column, and its first row; never a value. ``outcome`` keeps every rule's counts for the
    run summary. The plain constructor is :class:`InputFileError`'s (file, rule, detail, row,
    column).
    """

    def __init__(self, file: str, rule: str, detail: str = "", row: int | None = None,
                 column: str | None = None, *, outcome: ValidationOutcome | None = None,
                 quarantined: str | None = None) -> None:
        super().__init__(file, rule, detail, row=row, column=column)
        self.outcome = outcome
        self.quarantined = quarantined

    @classmethod
    def from_outcome(cls, outcome: ValidationOutcome,
                     quarantined: str | None = None) -> ValidationFailed:
        first = outcome.first_failure()
        if first is None:
            raise ValueError("ValidationFailed needs an outcome with a blocking failure")
        detail = (f"{first.unexpected_count} of {first.element_count} failing "
                  f"({first.unexpected_percent:.2f} %)")
        if first.detail:
            detail += f"; {first.detail}"
        more = len(outcome.blocking_failures()) - 1
        if more:
            detail += f"; {more} more blocking rule{'s' if more > 1 else ''} broken"
        if quarantined:
            detail += f"; file quarantined as {quarantined}"
        row = first.first_rows[0] if first.first_rows else None
        return cls(outcome.file_name, first.rule, detail, row=row, column=first.column,
                   outcome=outcome, quarantined=quarantined)
