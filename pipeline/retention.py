"""Retention: purge inactive persons, and raw files kept too long.

Two limits (domain.md, "Retention"):

* ``ISOLOIR_RETENTION_DAYS`` (default 1095, the CNIL's three years after the last
  activity for contacts and prospects): a person whose last activity
  (:func:`warehouse.erasure.inactive_persons` says what counts) ended before
  ``now - limit`` is deleted everywhere, with their contacts, donations and identifier
  links. Their pseudonyms do **not** go on the objection list: they did not object, and a
  fresh activity in a later export may bring them back.
* ``ISOLOIR_RAW_RETENTION_DAYS`` (default 30): raw exports kept in ``processed/``
  (``ISOLOIR_RETAIN_RAW``) or rejected into ``quarantine/`` hold personal data; those
  older than the limit are deleted with their ``.report.json`` / ``.report.html``. A
  file's age counts from the later of its modification and status-change times, so a
  file moved into the zone today is not purged for having been written long ago.

``now`` is always a parameter: the CLI passes the clock, the DAG its run's date, tests a
fixed day. What was removed is logged in ``erasure_log`` as counts; file names are
returned to the caller (the CLI prints them) but never stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.settings import Settings
from warehouse import erasure
from warehouse.store import load_transaction

log = logging.getLogger(__name__)

REPORT_SUFFIXES = (".report.json", ".report.html")


@dataclass(frozen=True)
class PurgeResult:
    """What a purge removed (or, in a dry run, would remove)."""

    dry_run: bool
    cutoff: str  # first day still inside the inactivity limit (ISO date)
    raw_cutoff: str  # files older than this instant are deleted (ISO, UTC)
    persons: int = 0
    contacts: int = 0
    donations: int = 0
    identifier_links: int = 0
    raw_files: list[str] = field(default_factory=list)  # zone/name, e.g. quarantine/x.csv
    report_files: int = 0

    @property
    def rows(self) -> int:
        return self.persons + self.contacts + self.donations + self.identifier_links

    def counts(self) -> dict[str, Any]:
        """Counts only (for XCom and logs)."""
        return {"dry_run": self.dry_run, "cutoff": self.cutoff, "persons": self.persons,
                "rows": self.rows, "contacts": self.contacts, "donations": self.donations,
                "identifier_links": self.identifier_links, "raw_files": len(self.raw_files),
                "report_files": self.report_files}

    def to_dict(self) -> dict[str, Any]:
        return self.counts() | {"raw_cutoff": self.raw_cutoff, "raw_file_names": self.raw_files}


def purge(settings: Settings, engine: Engine, *, now: datetime,
          dry_run: bool = False) -> PurgeResult:
    """Delete inactive persons and old raw files; ``dry_run`` only counts."""
    cutoff = erasure.retention_cutoff(now, settings.retention_days)
    raw_cutoff = now - timedelta(days=settings.raw_retention_days)
    with load_transaction(engine) as conn:
        inactive = erasure.inactive_persons(conn, cutoff=cutoff)
        if dry_run:
            removed = erasure.count_rows(conn, inactive)
        else:
            removed = erasure.delete_persons(conn, inactive)
            if inactive:
                erasure.record(conn, at=now, reason="inactivity", counts=removed.to_dict())
    raw, reports = _old_raw_files(settings, raw_cutoff.timestamp())
    if not dry_run:
        for path in raw + reports:
            path.unlink(missing_ok=True)
        if raw:
            with load_transaction(engine) as conn:
                erasure.record(conn, at=now, reason="raw_files", counts={"files": len(raw)})
    names = [f"{p.parent.name}/{p.name}" for p in raw]
    result = PurgeResult(dry_run=dry_run, cutoff=cutoff.isoformat(),
                         raw_cutoff=raw_cutoff.isoformat(timespec="seconds"),
                         raw_files=names, report_files=len(reports), **removed.to_dict())
    log.info("%s %d inactive person(s) (%d rows, last activity before %s) and %d raw file(s) "
             "older than %d days", "would purge" if dry_run else "purged", result.persons,
             result.rows, result.cutoff, len(raw), settings.raw_retention_days)
    return result


def _old_raw_files(settings: Settings, before: float) -> tuple[list[Path], list[Path]]:
    """Raw files older than ``before`` (epoch seconds) in processed/ and quarantine/, and the
    reports that go with them (a report alone, older than the limit, goes too)."""
    raw: list[Path] = []
    reports: list[Path] = []
    for zone in (settings.processed, settings.quarantine):
        if not zone.is_dir():
            continue
        files = {p.name: p for p in zone.iterdir() if p.is_file()}
        for name, path in sorted(files.items()):
            if name.endswith(REPORT_SUFFIXES):
                owner = next(name[:-len(s)] for s in REPORT_SUFFIXES if name.endswith(s))
                if owner not in files and _age_mark(path) < before:
                    reports.append(path)
                continue
            companions = [files[name + s] for s in REPORT_SUFFIXES if name + s in files]
            if max([_age_mark(path)] + [_age_mark(c) for c in companions]) < before:
                raw.append(path)
                reports.extend(companions)
    return raw, reports


def _age_mark(path: Path) -> float:
    st = path.stat()
    return max(st.st_mtime, st.st_ctime)
