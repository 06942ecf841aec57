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

from core.memory import return_freed_memory

return_freed_memory()  # before a task imports Polars (see core/memory.py)

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
* Each mapped task instance is named `<file> · <profile>` (e.g.
  `load [van_contact_history.txt · van_contacts]`); a quarantined file says so.
* `announce` ends a run in which files were quarantined with a count, e.g.
  "1 of 5 files quarantined: see quarantine/" (log line and the asset event's extra).

On call: a failed `load` is safe to clear and retry. Keys come from the secrets backend
(`isoloir_master_key`) or `ISOLOIR_KEY_FILE`; the warehouse from connection `isoloir_warehouse`.
"""

DEFAULT_ARGS = {
    "owner": "isoloir",
    "retries": int(os.environ.get("ISOLOIR_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("ISOLOIR_RETRY_DELAY_SECONDS", "60"))),
}


#: Each mapped task instance is named after its file and profile (set by ``_label``), e.g.
#: ``file.load [van_contact_history.txt · van_contacts]``.
LABEL = "{{ isoloir_file_label }}"


def _label(previous: dict[str, Any] | str) -> None:
    """Name this task instance ``<file> · <profile>`` (or ``· quarantined``): names only."""
    from airflow.sdk import get_current_context

    if isinstance(previous, str):
        text = os.path.basename(previous)
    else:
        name = previous.get("file") or previous.get("file_name") or \
            os.path.basename(str(previous.get("path", "")))
        kind = previous.get("source") or previous.get("status") or "?"
        text = str(previous.get("label") or f"{name} · {kind}")
        if previous.get("status") == "quarantined" and "quarantined" not in text:
            text += " · quarantined"
    get_current_context()["isoloir_file_label"] = text  # type: ignore[typeddict-unknown-key]


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
        @task(map_index_template=LABEL,
              doc_md="Raw suite (GX). A failing file is quarantined, not loaded.")
        def validate_raw(path: str) -> dict[str, Any]:
            from pipeline.tasks import task_settings, validate_raw_file

            _label(path)
            checked = validate_raw_file(path, task_settings())
            _label(checked)
            return checked

        @task(map_index_template=LABEL,
              doc_md="Normalizes and pseudonymizes into the secure staging area.")
        def pseudonymize(checked: dict[str, Any]) -> dict[str, Any]:
            _label(checked)
            _skip_unless_valid(checked)
            from pipeline.tasks import pseudonymize_file, task_settings

            return pseudonymize_file(checked, task_settings())

        @task(map_index_template=LABEL,
              doc_md="Pseudonymized suite (GX): no identifier pattern, allow-listed columns only.")
        def validate_pseudonymized(prepared: dict[str, Any]) -> dict[str, Any]:
            from pipeline.tasks import task_settings, validate_staged_file

            _label(prepared)
            checked = validate_staged_file(prepared, task_settings())
            _label(checked)
            return checked

        @task(map_index_template=LABEL,
              doc_md="Loads one file in one transaction, keyed by its SHA-256 (retry-safe).")
        def load(prepared: dict[str, Any]) -> dict[str, Any]:
            _label(prepared)
            _skip_unless_valid(prepared)
            from pipeline.tasks import load_file, task_settings

            return load_file(prepared, task_settings())

        @task(map_index_template=LABEL,
              doc_md="Deletes the raw export from landing/ (or keeps it if ISOLOIR_RETAIN_RAW).")
        def remove_raw(loaded: dict[str, Any]) -> dict[str, Any]:
            from pipeline.tasks import remove_raw_file, task_settings

            _label(loaded)
            return remove_raw_file(loaded, task_settings())

        return remove_raw(load(validate_pseudonymized(pseudonymize(validate_raw(path)))))  # type: ignore[arg-type]

    @task(outlets=[WAREHOUSE], trigger_rule="none_failed",
          doc_md="Run summary (and how many files were quarantined); emits isoloir://warehouse "
                 "only if a file loaded.")
    def announce(results: list[dict[str, Any]] | None) -> dict[str, Any]:
        from airflow.sdk import get_current_context

        from pipeline.tasks import summarize_ingest

        context = get_current_context()
        checked = [context["ti"].xcom_pull(task_ids=t)
                   for t in ("file.validate_raw", "file.validate_pseudonymized")]
        summary = summarize_ingest(results, checked=checked)
        if summary["files_loaded"] == 0:
            raise AirflowSkipException(summary.get("quarantine_message")
                                       or "no file loaded: no warehouse update to announce")
        context["outlet_events"][WAREHOUSE].extra = {
            k: summary[k] for k in ("files_total", "files_loaded", "files_quarantined",
                                    "quarantined", "quarantine_message", "rows_loaded")
            if k in summary}
        return summary

    announce(per_file.expand(path=list_files()))  # type: ignore[arg-type]


isoloir_ingest()
