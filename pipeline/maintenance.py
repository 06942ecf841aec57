"""Task bodies of the daily maintenance DAG (``dags/isoloir_maintenance.py``).

Three steps, each a plain function a test calls without Airflow, each returning counts
only (a request file may be named after the person who sent it, so not even file names
travel through XCom):

1. :func:`run_requests`: honour every erasure/objection request file in ``requests/``,
   then delete it (a malformed one goes to ``quarantine/`` under a neutral name);
2. :func:`run_purge`: the retention purge (inactive persons, raw files kept too long);
3. :func:`run_report`: the DPO's report, ``reports/maintenance_report.{json,html}``.

Every step is idempotent: a retry finds the requests already honoured (and their files
gone), and the purge finds nothing more to remove.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)


def run_date(logical_date: datetime | None) -> datetime:
    """The run's "now": Airflow's logical date when there is one, else the clock, in UTC."""
    at = logical_date or datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from warehouse.db import ensure_schema, make_engine

    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    return engine


def run_requests(settings: Settings, *, now: datetime) -> dict[str, Any]:
    """Honour the request files waiting in ``requests/``; counts only."""
    from pipeline.connections import load_master_keyring
    from pipeline.erasure import process_request_folder, request_files

    if not request_files(settings):
        log.info("no request file waiting in requests/")
        return {"files_processed": 0, "files_rejected": 0, "requests": 0, "persons": 0,
                "rows": 0}
    keyring = load_master_keyring(settings)
    result = process_request_folder(settings, _engine(settings), keyring, now=now)
    total = result.forget.total
    return {"files_processed": result.files_processed, "files_rejected": result.files_rejected,
            "requests": total.requests, "requests_unmatched": total.requests_unmatched,
            "persons": total.persons, "rows": total.rows}


def run_purge(settings: Settings, *, now: datetime) -> dict[str, Any]:
    """The retention purge; counts only (file names stay out of XCom)."""
    from pipeline.retention import purge

    return purge(settings, _engine(settings), now=now).counts()


def run_report(settings: Settings, *, now: datetime,
               steps: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Write the DPO's maintenance report (JSON and HTML, counts only); return its paths."""
    from reports.maintenance import write_maintenance_report

    report = write_maintenance_report(settings, _engine(settings), generated_at=now,
                                      run={k: dict(v) for k, v in (steps or {}).items()})
    return report.to_dict()
