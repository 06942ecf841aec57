"""An export file as the reader takes it: a text file as it is, or a workbook's sheet as CSV.

Every reader of a landing file (the DAG's tasks, ``isoloir ingest`` and ``validate``) opens
it with :func:`open_export`, which detects its profile (saying which columns decided) and,
for an ``.xlsx`` workbook, converts the sheet to a private CSV for the time of the reading
(:mod:`transforms.workbook`). The rest of the reading (:func:`transforms.read.plan_read`) is
the same for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from transforms.read import (
    Detection,
    FileDialect,
    ReadPlan,
    detect_source,
    named_profile,
    plan_read,
    remember_report,
    sniff_dialect,
)
from transforms.sources import SourceProfile
from transforms.workbook import is_workbook, sheet_as_csv

#: Suffixes of the files read from landing/ (text exports and Excel workbooks).
EXPORT_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm")


@dataclass(frozen=True)
class OpenedExport:
    """A landing file ready to read: ``path`` is what the CSV reader reads (the file itself,
    or its sheet converted, under the same name), ``original`` the file that landed."""

    original: Path
    path: Path
    detection: Detection
    sheet: str | None = None

    @property
    def profile(self) -> SourceProfile:
        return self.detection.profile

    @property
    def label(self) -> str:
        """``file · profile``: how a task instance or a log line names this file."""
        return f"{self.original.name} · {self.profile.name}"

    def sniff(self) -> FileDialect:
        """The file's dialect (a workbook's: its format and sheet, then the CSV's)."""
        dialect = sniff_dialect(self.path, self.profile)
        if self.sheet is not None:
            dialect = replace(dialect, container="xlsx", sheet=self.sheet)
        return dialect

    def plan(self, chunk_rows: int, *, validate: bool = False,
             reference_date: date | None = None) -> ReadPlan:
        """:func:`transforms.read.plan_read` of the file, its report saying how the profile
        was chosen (and kept as the original file's last read report)."""
        plan = plan_read(self.path, self.profile, self.sniff(), chunk_rows, validate=validate,
                         reference_date=reference_date)
        report = replace(plan.report, detection=self.detection.to_dict())
        plan = replace(plan, report=report)
        remember_report(self.original, report)
        return plan


@contextmanager
def open_export(path: Path, source: str = "auto", *, work_dir: Path) -> Iterator[OpenedExport]:
    """Open ``path`` for reading with profile ``source`` (``auto``, a built-in name or a YAML
    path). A workbook's sheet (the profile's ``sheet``, else the first) is converted under
    ``work_dir`` and deleted when the ``with`` block ends; raises
    :class:`core.errors.InputFileError` naming the file and the rule."""
    if not is_workbook(path):
        yield OpenedExport(path, path, detect_source(path, source))
        return
    sheet = named_profile(source).sheet if source != "auto" else None
    with sheet_as_csv(path, work_dir, sheet) as converted:
        detection = detect_source(converted.path, source)
        wanted = detection.profile.sheet
        if wanted is None or wanted == converted.sheet:
            yield OpenedExport(path, converted.path, detection, converted.sheet)
            return
    with sheet_as_csv(path, work_dir, wanted) as converted:  # a detected profile's own sheet
        yield OpenedExport(path, converted.path, detect_source(converted.path, source),
                           converted.sheet)
