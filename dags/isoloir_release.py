"""Isoloir release: DP aggregates from the warehouse, charged to the privacy ledger, then reports.

Wiring only: every task body is a plain function of ``pipeline.tasks``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from core.memory import return_freed_memory

return_freed_memory()  # before a task imports Polars (see core/memory.py)

WAREHOUSE = Asset("isoloir://warehouse")
PUBLISHED = Asset("isoloir://published")

DOC = """
### Isoloir release

Runs when `isoloir://warehouse` is updated, and daily. Steps: **release** (the plan's DP
queries, each charged to the privacy ledger *before* noise is drawn) → **validate published**
(GX published suite) → **reports** (strategist and auditor HTML) → **audit verify**.

* Each query has a cadence (daily, weekly, monthly in the plan): a run releases only the
  queries whose period (the day, ISO week or month of the run's logical date) has no release
  yet; the others are listed as `skipped`. Several runs a day charge a daily query once, and
  a weekly query once a week.
* Release ids derive from the run id and the query: a retry returns the stored result and
  charges nothing, so retries never draw fresh noise.
* `budget exhausted` means the dataset's lifetime cap is spent: nothing more can be
  published for it. Do not raise the cap; ask the DPO.
* `max_active_runs=1`, but the ledger refuses overspending even without it.
* Emits `isoloir://published`.
"""

DEFAULT_ARGS = {
    "owner": "isoloir",
    "retries": int(os.environ.get("ISOLOIR_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("ISOLOIR_RETRY_DELAY_SECONDS", "60"))),
}


@dag(
    dag_id="isoloir_release",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(os.environ.get("ISOLOIR_RELEASE_CRON", "0 6 * * *"),
                                       timezone="UTC"),
        assets=WAREHOUSE),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["isoloir", "release", "differential-privacy"],
    doc_md=DOC,
)
def isoloir_release() -> None:
    @task(doc_md="Charges and runs every query of the plan; writes published/ (DP outputs only). "
          "The release ids derive from the run id, or from `run_key` in the run's conf.")
    def release(**context: Any) -> dict[str, Any]:
        from pipeline.tasks import release_plan, task_settings

        dag_run = context.get("dag_run")
        conf = getattr(dag_run, "conf", None) or {}
        run_key = str(conf.get("run_key") or context["run_id"])
        # An asset-triggered run has no logical date in Airflow 3: its date is when it runs.
        logical_date = context.get("logical_date") or getattr(dag_run, "run_after", None)
        return release_plan(task_settings(), run_id=run_key, logical_date=logical_date,
                            only_due=True)

    @task(doc_md="Published suite (GX): accuracy columns, public keys only, counts ≥ 0.")
    def validate_published(summary: dict[str, Any]) -> dict[str, Any]:
        from pipeline.tasks import task_settings, validate_published_files

        return validate_published_files(summary, task_settings())

    @task(doc_md="Renders the strategist and auditor HTML reports.")
    def reports(summary: dict[str, Any]) -> dict[str, Any]:
        from pipeline.tasks import render_reports, task_settings

        return render_reports(summary, task_settings())

    @task(outlets=[PUBLISHED], doc_md="Recomputes the ledger chain, signatures and file hashes.")
    def audit_verify(summary: dict[str, Any]) -> dict[str, Any]:
        from pipeline.tasks import task_settings, verify_ledger

        return verify_ledger(summary, task_settings())

    audit_verify(reports(validate_published(release())))  # type: ignore[arg-type]


isoloir_release()
