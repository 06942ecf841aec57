"""Task bodies of the Airflow DAGs: plain, typed functions that tests call without Airflow.

Each takes and returns small JSON-able dicts (paths, counts, hashes, ids) because that is
all that may travel through XCom: never rows, identifiers or keys. Each is a transaction
keyed by its input (the file's SHA-256, the release id), so an Airflow retry is safe.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import InputFileError
from core.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: Text exports and Excel workbooks (``transforms.exports.EXPORT_SUFFIXES``).
LANDING_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm")
QUARANTINED = "quarantined"
VALID = "valid"


def task_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for a task: the warehouse comes from the Airflow connection when one exists."""
    from pipeline.connections import warehouse_url_from_airflow

    settings = load_settings(environ)
    url = warehouse_url_from_airflow(os.environ if environ is None else environ)
    if url:
        settings = replace(settings, warehouse_url=url)
    settings.ensure_dirs()
    return settings


# ------------------------------------------------------------------------ ingestion

def list_landing_files(settings: Settings, *, min_age_seconds: float = 0.0,
                       now: float | None = None) -> list[str]:
    """Files waiting in landing/, oldest name first; hidden and partial files are ignored.

    ``min_age_seconds`` leaves alone a file still being copied in.
    """
    settings.ensure_dirs()
    import time

    at = time.time() if now is None else now
    found = []
    for path in sorted(settings.landing.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in LANDING_SUFFIXES:
            continue
        if at - path.stat().st_mtime < min_age_seconds:
            continue
        found.append(str(path))
    log.info("%d file(s) waiting in landing/", len(found))
    return found


def validate_raw_file(path: str, settings: Settings, *, source: str = "auto") -> dict[str, Any]:
    """Run the raw suite; a failing file is moved to quarantine/ with a report (a branch, not a crash).

    The result names the file, its profile and how it was detected (``profile_detection``:
    column names only) and, in ``label``, ``file · profile`` for the task instance's name.
    """
    from expectations.validate import quarantine_file, validate_raw
    from pipeline.ingest import workbook_dir
    from transforms.exports import open_export
    from transforms.read import read_chunk, sha256_file

    file = Path(path)
    sha = sha256_file(file)
    if _already_loaded(settings, sha):
        return {"file": file.name, "path": path, "status": "already_loaded", "sha256": sha}
    try:
        with open_export(file, source, work_dir=workbook_dir(settings)) as opened:
            profile = opened.profile
            plan = opened.plan(settings.chunk_rows, validate=True)
            log.info("%s: profile %s", file.name, opened.detection.describe())
            header = list(plan.report.header)  # aliases resolved to the profile's names
            warnings: list[str] = []
            chunks = (read_chunk(plan, k) for k in range(plan.chunks))
            for batch in _validation_batches(chunks):
                outcome = validate_raw(batch, header, profile, file.name, settings,
                                       reading=plan.report)
                warnings.extend(r.rule for r in outcome.warnings())
                if not outcome.success:
                    break
        if not outcome.success:
            report = quarantine_file(file, outcome, settings)
            log.error("quarantined %s: %s", file.name, outcome.first_failure_message())
            return {"file": file.name, "path": path, "status": QUARANTINED, "sha256": sha,
                    "source": profile.name, "label": opened.label,
                    "rule": outcome.first_failure_message(), "quarantine": str(report)}
    except InputFileError as err:
        report = _quarantine_input_error(file, err, settings)
        log.error("quarantined %s: %s", file.name, err)
        return {"file": file.name, "path": path, "status": QUARANTINED, "sha256": sha,
                "rule": str(err), "quarantine": str(report)}
    return {"file": file.name, "path": path, "status": VALID, "sha256": sha,
            "source": profile.name, "label": opened.label, "warnings": sorted(set(warnings)),
            "dialect": plan.report.dialect.to_dict(),
            "profile_detection": opened.detection.to_dict()}


#: Rows validated together: whole files up to this size, so file-wide rules (unique source
#: ids) see every row; larger files are validated in batches of this size to bound memory.
VALIDATION_BATCH_ROWS = 1_000_000


def _validation_batches(chunks: Iterable[Any]) -> Iterable[Any]:
    import pandas as pd

    pending: list[Any] = []
    rows = 0
    for chunk in chunks:
        pending.append(chunk)
        rows += len(chunk)
        if rows >= VALIDATION_BATCH_ROWS:
            yield pd.concat(pending, ignore_index=True)
            pending, rows = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True)


def _read_header(file: Path, encoding: str, delimiter: str) -> list[str]:
    import csv

    with file.open(encoding=encoding, newline="") as handle:
        return next(csv.reader(handle, delimiter=delimiter), [])


def _quarantine_input_error(file: Path, err: InputFileError, settings: Settings) -> Path:
    """Quarantine a file that could not even be parsed, with a report of the rule (no values)."""
    import html
    import json

    settings.quarantine.mkdir(parents=True, exist_ok=True)
    target = settings.quarantine / file.name
    number = 0
    while target.exists():  # never overwrite an earlier rejected file or its report
        number += 1
        target = settings.quarantine / f"{file.stem}.{number}{file.suffix}"
    if file.exists():
        shutil.move(str(file), target)
    report = {"file": file.name, "quarantined_as": target.name, "suite": "file format",
              "success": False,
              "results": [{"rule": err.rule, "column": err.column, "blocking": True,
                           "first_rows": [err.row] if err.row is not None else []}],
              "message": str(err)}
    (settings.quarantine / f"{target.name}.report.json").write_text(
        json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    (settings.quarantine / f"{target.name}.report.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>Quarantine report</title>"
        f"<h1>{html.escape(file.name)} quarantined</h1><p>Rule <code>{html.escape(err.rule)}</code>"
        f" broken.</p><p>{html.escape(str(err))}</p>", encoding="utf-8")
    return target


def _already_loaded(settings: Settings, sha: str) -> bool:
    from warehouse import store
    from warehouse.db import ensure_schema, make_engine

    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    with engine.connect() as conn:
        return store.already_loaded(conn, sha) is not None


def pseudonymize_file(checked: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Normalize and pseudonymize a validated file into the secure staging area."""
    from pipeline.connections import load_master_keyring
    from pipeline.ingest import prepare_file
    from warehouse import store
    from warehouse.db import make_engine

    keyring = load_master_keyring(settings)
    engine = make_engine(settings.warehouse_url)
    with engine.connect() as conn:
        objections = store.objection_pseudonyms(conn)
    prepared = prepare_file(Path(checked["path"]), settings, keyring,
                            source=str(checked["source"]), objections=objections, engine=engine)
    return prepared.to_dict() | {"path": checked["path"], "warnings": checked.get("warnings", [])}


def validate_staged_file(prepared: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Run the pseudonymized suite on the staged rows; on failure quarantine the raw file."""
    from expectations.validate import quarantine_file, validate_pseudonymized
    from pipeline.ingest import PreparedFile, read_staged

    info = PreparedFile.from_dict({k: v for k, v in prepared.items()
                                   if k in PreparedFile.__dataclass_fields__})
    outcome = validate_pseudonymized(read_staged(info), info.kind, info.file_name, settings)
    if not outcome.success:
        Path(info.staged_path).unlink(missing_ok=True)
        report = quarantine_file(Path(prepared["path"]), outcome, settings)
        log.error("quarantined %s after pseudonymization: %s", info.file_name,
                  outcome.first_failure_message())
        return dict(prepared) | {"status": QUARANTINED, "rule": outcome.first_failure_message(),
                                 "quarantine": str(report)}
    warnings = list(prepared.get("warnings", [])) + [r.rule for r in outcome.warnings()]
    return dict(prepared) | {"status": VALID, "warnings": sorted(set(warnings))}


def load_file(prepared: Mapping[str, Any], settings: Settings, *,
              now: datetime | None = None) -> dict[str, Any]:
    """Load the staged rows in one transaction (a retry of a loaded file is a no-op)."""
    from pipeline.connections import load_master_keyring
    from pipeline.ingest import PreparedFile, drop_staged, load_prepared, prepare_file
    from pipeline.unchanged import StaleStagingError
    from warehouse.db import ensure_schema, make_engine

    info = PreparedFile.from_dict({k: v for k, v in prepared.items()
                                   if k in PreparedFile.__dataclass_fields__})
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    if not Path(info.staged_path).exists():
        with engine.connect() as conn:
            from warehouse import store

            if store.already_loaded(conn, info.sha256) is None:
                raise FileNotFoundError(f"staged rows of {info.file_name} are gone; "
                                        "clear the task to prepare the file again")
    keyring = load_master_keyring(settings)
    warnings = {"rules": list(prepared.get("warnings", []))}
    try:
        result = load_prepared(info, engine, keyring, now=now, warnings=warnings)
    except StaleStagingError:
        # Records skipped as unchanged were changed or removed since staging (another file
        # of the run was loaded first): stage the raw file again, against today's warehouse.
        log.info("%s: staged again, the warehouse changed under its skipped records",
                 info.file_name)
        drop_staged(info)
        with engine.connect() as conn:
            from warehouse import store

            objections = store.objection_pseudonyms(conn)
        again = prepare_file(Path(prepared["path"]), settings, keyring, source=info.source,
                             dataset=info.dataset, objections=objections, engine=engine)
        result = load_prepared(again, engine, keyring, now=now, warnings=warnings)
    return result.to_dict() | {"path": prepared["path"]}


def remove_raw_file(loaded: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Delete the raw export from landing/ once loaded (unless ISOLOIR_RETAIN_RAW is set)."""
    path = Path(loaded["path"])
    if settings.retain_raw:
        kept = settings.home / "processed" / path.name
        kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            shutil.move(str(path), kept)
        return dict(loaded) | {"raw": "retained"}
    path.unlink(missing_ok=True)
    return dict(loaded) | {"raw": "deleted"}


def summarize_ingest(results: Iterable[Mapping[str, Any]] | None,
                     checked: Iterable[Any] = ()) -> dict[str, Any]:
    """Counts for the run summary (files loaded, quarantined, rows, persons); no values.

    ``None`` is what Airflow hands over when landing/ was empty (nothing was mapped).
    ``checked`` holds the per-file outputs of the validation tasks (each a dict, a list of
    dicts, or ``None``): a file any of them quarantined counts as quarantined, and the
    summary then says ``"<q> of <n> files quarantined: see quarantine/"`` (file names and
    counts only).
    """
    rows = [r for r in (results or []) if r]
    seen: dict[str, str] = {}  # file name -> its worst validation status
    for outputs in checked:
        items = [outputs] if isinstance(outputs, Mapping) else list(outputs or [])
        for item in items:
            if not isinstance(item, Mapping):
                continue
            name = str(item.get("file") or item.get("file_name") or "")
            if item.get("status") == QUARANTINED or name not in seen:
                seen[name] = str(item.get("status"))
    quarantined = sorted(n for n, status in seen.items() if status == QUARANTINED)
    summary: dict[str, Any] = {
        "files_total": len(seen) or len(rows),
        "files_loaded": sum(1 for r in rows if r.get("status") == "loaded"),
        "files_already_loaded": sum(1 for r in rows if r.get("status") == "already_loaded"),
        "files_quarantined": len(quarantined),
        "quarantined": quarantined,
        "rows_loaded": sum(int(r.get("rows_loaded", 0)) for r in rows),
        "rows_excluded": sum(int(r.get("rows_excluded", 0)) for r in rows),
        "persons_new": sum(int(r.get("persons_new", 0)) for r in rows),
        "persons_merged": sum(int(r.get("persons_merged", 0)) for r in rows),
        "files": [r.get("file_name") for r in rows],
    }
    if quarantined:
        summary["quarantine_message"] = (f"{len(quarantined)} of {summary['files_total']} "
                                         f"file{'s' if summary['files_total'] > 1 else ''} "
                                         "quarantined: see quarantine/")
        log.warning("%s (%s)", summary["quarantine_message"], ", ".join(quarantined))
    log.info("ingest summary: %s", summary)
    return summary


# ------------------------------------------------------------------------ release

def release_plan(settings: Settings, *, run_id: str, logical_date: datetime | None = None,
                 plan_path: Path | None = None,
                 queries: list[str] | None = None, only_due: bool = False) -> dict[str, Any]:
    """Release the plan (or the named queries) as one run, admitted whole: all its queries are
    charged in one transaction or none is; returns release ids and published paths.

    ``only_due`` (the release DAG): release only the queries whose cadence period (day, ISO
    week, month of ``logical_date``) holds no release yet; the others are listed in the
    summary's ``skipped``. An Airflow retry of the same run id republishes what was recorded
    and charges nothing for it, so the task is safe to retry.
    """
    from privacy.plan import load_plan
    from privacy.release import run_release

    plan = load_plan(plan_path or settings.plan_file)
    summary = run_release(settings, plan, run_id, logical_date=logical_date, queries=queries,
                          only_due=only_due)
    return _as_dict(summary)


def _as_dict(value: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        data = asdict(value)
    elif hasattr(value, "model_dump"):
        data = value.model_dump(mode="json")
    else:
        data = dict(value)
    import json

    return dict(json.loads(json.dumps(data, default=str)))


def published_tables(settings: Settings) -> list[tuple[Path, Path]]:
    """(table, metadata) pairs in published/: each release's Parquet file and its JSON."""
    pairs = []
    for meta in sorted(settings.published.glob("*.json")):
        table = meta.with_suffix(".parquet")
        if table.exists():
            pairs.append((table, meta))
    return pairs


def validate_published_files(summary: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Run the published suite on every published table; a failure stops the release run."""
    import json

    import pandas as pd

    from expectations.validate import ValidationFailed, validate_published

    checked = 0
    for table, meta in published_tables(settings):
        outcome = validate_published(pd.read_parquet(table),
                                     json.loads(meta.read_text(encoding="utf-8")), table.name,
                                     settings)
        if not outcome.success:
            raise ValidationFailed.from_outcome(outcome)
        checked += 1
    return dict(summary) | {"published_validated": checked}


def render_reports(summary: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Strategist and auditor HTML reports, from published tables and the ledger only."""
    from reports.auditor import write_auditor_report
    from reports.strategist import write_strategist_report

    strategist = write_strategist_report(settings)
    auditor = write_auditor_report(settings)
    return dict(summary) | {"strategist_report": str(strategist), "auditor_report": str(auditor)}


def verify_ledger(summary: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """`audit verify` as a task: fails loudly, naming the first broken entry."""
    from privacy.audit import verify_settings

    report = verify_settings(settings)  # raises AuditFailure naming the first broken entry
    return dict(summary) | {"audit": report.to_dict()}
