"""Isoloir maintenance: erasure/objection requests, then the retention purge, then the DPO report.

Wiring only: every task body is a plain function of ``pipeline.maintenance``. No database
access, no Variables and no heavy imports at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from core.memory import return_freed_memory

return_freed_memory()  # before a task imports Polars (see core/memory.py)

DOC = """
### Isoloir maintenance (GDPR)

Daily. Steps: **requests → purge → report**.

* **requests**: every request file dropped in `ISOLOIR_HOME/requests/` (CSV with a header:
  `email`, `phone`, `source_id`, `reason`; see the README) is honoured: the persons it names
  are deleted from the warehouse (person, contacts, donations, identifier links) and all
  their pseudonyms, under every key version, go on the objection list. The file is then
  **deleted**. A malformed file is moved to `quarantine/` as
  `erasure-request-<time>-<n>.csv` with a `.report.json` naming the line and the rule.
* **purge**: persons inactive for more than `ISOLOIR_RETENTION_DAYS` (default 1095) and raw
  files older than `ISOLOIR_RAW_RETENTION_DAYS` (default 30) in `processed/` and
  `quarantine/` are deleted.
* **report**: `reports/maintenance_report.html` and `.json` for the DPO: per month, requests
  received, persons erased, rows purged, raw files deleted. Counts only.

Only counts travel through XCom: request files may be named after a person, so not even
their names do. Everything is idempotent: clearing a failed task and rerunning it is safe.
Published DP releases are never touched (they are not personal data).
"""

DEFAULT_ARGS = {
    "owner": "isoloir",
    "retries": int(os.environ.get("ISOLOIR_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("ISOLOIR_RETRY_DELAY_SECONDS", "60"))),
}


@dag(
    dag_id="isoloir_maintenance",
    schedule=os.environ.get("ISOLOIR_MAINTENANCE_CRON", "0 3 * * *"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["isoloir", "maintenance", "gdpr", "pii-secure-zone"],
    doc_md=DOC,
)
def isoloir_maintenance() -> None:
    @task(doc_md="Honours the erasure/objection request files in requests/, then deletes them.")
    def requests(**context: Any) -> dict[str, Any]:
        from pipeline.maintenance import run_date, run_requests
        from pipeline.tasks import task_settings

        return run_requests(task_settings(), now=run_date(context.get("logical_date")))

    @task(doc_md="Retention: deletes inactive persons and raw files kept too long.")
    def purge(handled: dict[str, Any], **context: Any) -> dict[str, Any]:
        from pipeline.maintenance import run_date, run_purge
        from pipeline.tasks import task_settings

        return run_purge(task_settings(), now=run_date(context.get("logical_date")))

    @task(doc_md="Writes the DPO's maintenance report (JSON and HTML, counts only).")
    def report(handled: dict[str, Any], purged: dict[str, Any],
               **context: Any) -> dict[str, Any]:
        from pipeline.maintenance import run_date, run_report
        from pipeline.tasks import task_settings

        return run_report(task_settings(), now=run_date(context.get("logical_date")),
                          steps={"requests": handled, "purge": purged})

    handled = requests()
    report(handled, purge(handled))  # type: ignore[arg-type]


isoloir_maintenance()
