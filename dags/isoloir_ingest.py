"""Isoloir ingestion: landing/ → validated, pseudonymized rows in the secure warehouse.

Wiring only: every task body is a plain function of ``pipeline.tasks``. No database access,
no Variables and no heavy imports at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task, task_group
from airflow.sdk.exceptions import AirflowSkipException

WAREHOUSE = Asset("isoloir://warehouse")

DOC = """
### Isoloir ingestion

Every run lists the exports waiting in `ISOLOIR_HOME/landing/` and maps one task group per
file: **validate raw → pseudonymize → validate pseudonymized → load → remove raw file**.

* A file that breaks a blocking expectation is **moved to `quarantine/`** with a JSON and HTML
  report (rules, columns, counts, row numbers; never values). Its remaining tasks are
  *skipped*; the other files carry on. Read the report, fix the export, drop it in again.
* Loads are keyed by the file's SHA-256: a retry, or the same file dropped twice, is a no-op.
* Only paths, counts and hashes travel through XCom.
* Emits `isoloir://warehouse` when at least one file loaded; the release DAG runs on it.

On call: a failed `load` is safe to clear and retry. Keys come from the secrets backend
(`isoloir_master_key`) or `ISOLOIR_KEY_FILE`; the warehouse from connection `isoloir_warehouse`.
"""

DEFAULT_ARGS = {
    "owner": "isoloir",
    "retries": int(os.environ.get("ISOLOIR_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("ISOLOIR_RETRY_DELAY_SECONDS", "60"))),
}


def _skip_unless_valid(previous: dict[str, Any]) -> None:
    if previous.get("status") != "valid":
        raise AirflowSkipException(f"{previous.get('file') or previous.get('file_name')}: "
                                   f"{previous.get('status')} ({previous.get('rule', 'no rule')})")


@dag(
    dag_id="isoloir_ingest",
    schedule=os.environ.get("ISOLOIR_INGEST_SCHEDULE", "*/15 * * * *"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["isoloir", "ingest", "pii-secure-zone"],
    doc_md=DOC,
)
def isoloir_ingest() -> None:
    @task(doc_md="Lists export files waiting in landing/ (paths only).")
    def list_files() -> list[str]:
        from pipeline.tasks import list_landing_files, task_settings

        return list_landing_files(task_settings(), min_age_seconds=float(
            os.environ.get("ISOLOIR_LANDING_MIN_AGE_SECONDS", "0")))

    @task_group(group_id="file")
    def per_file(path: str) -> Any:
        @task(doc_md="Raw suite (GX). A failing file is quarantined, not loaded.")
        def validate_raw(path: str) -> dict[str, Any]:
            from pipeline.tasks import task_settings, validate_raw_file

            return validate_raw_file(path, task_settings())

        @task(doc_md="Normalizes and pseudonymizes into the secure staging area.")
        def pseudonymize(checked: dict[str, Any]) -> dict[str, Any]:
            _skip_unless_valid(checked)
            from pipeline.tasks import pseudonymize_file, task_settings

            return pseudonymize_file(checked, task_settings())

        @task(doc_md="Pseudonymized suite (GX): no identifier pattern, allow-listed columns only.")
        def validate_pseudonymized(prepared: dict[str, Any]) -> dict[str, Any]:
            from pipeline.tasks import task_settings, validate_staged_file

            return validate_staged_file(prepared, task_settings())

        @task(doc_md="Loads one file in one transaction, keyed by its SHA-256 (retry-safe).")
        def load(prepared: dict[str, Any]) -> dict[str, Any]:
            _skip_unless_valid(prepared)
            from pipeline.tasks import load_file, task_settings

            return load_file(prepared, task_settings())

        @task(doc_md="Deletes the raw export from landing/ (or keeps it if ISOLOIR_RETAIN_RAW).")
        def remove_raw(loaded: dict[str, Any]) -> dict[str, Any]:
            from pipeline.tasks import remove_raw_file, task_settings

            return remove_raw_file(loaded, task_settings())

        return remove_raw(load(validate_pseudonymized(pseudonymize(validate_raw(path)))))  # type: ignore[arg-type]

    @task(outlets=[WAREHOUSE], trigger_rule="none_failed",
          doc_md="Run summary; emits isoloir://warehouse only if a file loaded.")
    def announce(results: list[dict[str, Any]] | None) -> dict[str, Any]:
        from pipeline.tasks import summarize_ingest

        summary = summarize_ingest(results)
        if summary["files_loaded"] == 0:
            raise AirflowSkipException("no file loaded: no warehouse update to announce")
        return summary

    announce(per_file.expand(path=list_files()))  # type: ignore[arg-type]


isoloir_ingest()
