"""Validate a batch: the raw suite on arrival, the pseudonymized suite before load, the published
suite before release. What the DAG tasks and the CLI call.

How a validation runs:

1. the suite's factory declares the rules for this batch (:mod:`expectations.suites`);
2. the **fast path** checks every rule over every row with vectorized pandas/pyarrow code
   (:func:`expectations.rules.check`): this is the blocking gate, about 1 CPU-second per
   million raw rows and 1.1-1.5 per million pseudonymized rows (``benchmarks/bench_validate.py``);
3. **Great Expectations** runs the same rules as GX expectations (same regexes, same code
   lists) and stores a value-free validation result plus Data Docs under ISOLOIR_HOME. Up to
   ``gx_max_rows`` rows it sees the whole batch, and its verdict must equal the fast path's
   (a disagreement is a bug: :class:`~core.errors.InvariantViolation`). Above, it sees a
   deterministic sample (evenly spaced rows plus the first failing rows of each rule) and the
   Data Docs say so: GX costs 12-15 CPU-seconds per million rows (and ~10 s to import), too
   slow to gate big files.

Nothing here logs, stores or raises a value: only rule names, columns, counts, row numbers.

>>> import pandas as pd
>>> from transforms.sources import DONATIONS
>>> from core.settings import load_settings
>>> frame = pd.DataFrame({"source_id": ["d1", "d2"], "amount": ["12.50", "-3"],
...                       "donation_date": ["2026-01-05", "2026-01-06"], "method": ["card", "card"],
...                       "row_number": [2, 3]})
>>> outcome = validate_raw(frame, ["donor_id", "amount", "date", "method"], DONATIONS,
...                        "dons.csv", load_settings({"ISOLOIR_HOME": "/nonexistent"}), gx=False)
>>> outcome.success, outcome.first_failure_message()
(False, "dons.csv: amount_non_negative on 'amount': 1 of 2 failing (50.00 %); first rows 3")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import InvariantViolation
from core.settings import Settings
from expectations.context import build_data_docs
from expectations.outcome import RuleResult, ValidationFailed, ValidationOutcome
from expectations.quarantine import quarantine_file
from expectations.rules import check
from expectations.suites import (
    DEFAULT_EMAIL_THRESHOLD,
    Suite,
    pseudonymized_suite,
    published_suite,
    raw_suite,
)
from transforms.read import ReadReport
from transforms.sources import SourceProfile

__all__ = [
    "GX_MAX_ROWS", "RuleResult", "ValidationFailed", "ValidationOutcome", "build_data_docs",
    "enforce", "quarantine_file", "validate_published", "validate_pseudonymized", "validate_raw",
]

log = logging.getLogger(__name__)

#: Up to this many rows GX validates the whole batch; above, a deterministic sample this big.
GX_MAX_ROWS = 20_000
ROW_NUMBER = "row_number"


def validate_raw(frame: pd.DataFrame, header: Sequence[str], profile: SourceProfile,
                 file_name: str, settings: Settings, *,
                 email_threshold: float = DEFAULT_EMAIL_THRESHOLD, gx: bool = True,
                 gx_max_rows: int = GX_MAX_ROWS, run_time: datetime | None = None,
                 reading: ReadReport | None = None) -> ValidationOutcome:
    """The raw suite of ``profile`` over a frame read from an export.

    ``frame`` has the profile's internal field names (values str or None) and ``row_number``
    (the line in the file); ``header`` is the file's raw header, which decides whether the
    required columns are present. Rules and results name the raw columns.

    ``reading`` is what :func:`transforms.read.plan_read` established about the file: its
    header under the profile's column names (aliases resolved; it replaces ``header``), each
    date column's day/month order and the decimal mark, which the date and amount rules then
    use. A date column whose order no value decided adds a warn-only ``date_order_assumed``
    result, and the outcome carries the reading (dialect, aliased and ignored columns).
    """
    orders: Mapping[str, str] | None = None
    decimal = None
    if reading is not None:
        header = reading.header
        orders, decimal = reading.field_orders, reading.dialect.decimal
    checked = raw_checked_frame(frame, header, profile)
    rows = _row_numbers(frame, first=2)
    suite = raw_suite(profile, header, email_threshold=email_threshold, date_orders=orders,
                      decimal=decimal)
    outcome = _validate(suite, checked, rows, file_name, settings, gx=gx,
                        gx_max_rows=gx_max_rows, run_time=run_time)
    if reading is None:
        return outcome
    assumed = tuple(
        RuleResult("date_order_assumed", column, blocking=False, success=False,
                   unexpected_count=0, element_count=0, unexpected_percent=0.0,
                   detail=f"no value decides between dd/mm and mm/dd: {label} assumed "
                          f"(the profile's order)")
        for column, label in reading.assumed_date_orders().items())
    return replace(outcome, results=outcome.results + assumed, reading=reading.to_dict())


def validate_pseudonymized(frame: pd.DataFrame, kind: str, file_name: str, settings: Settings, *,
                           gx: bool = True, gx_max_rows: int = GX_MAX_ROWS,
                           run_time: datetime | None = None) -> ValidationOutcome:
    """The pseudonymized suite over a staged frame (or rows shaped like a warehouse table).

    Row numbers in results are 1-based positions in the frame.
    """
    checked = frame.drop(columns=[ROW_NUMBER]) if ROW_NUMBER in frame.columns else frame
    rows = _row_numbers(frame, first=1)
    suite = pseudonymized_suite(kind, [str(c) for c in checked.columns])
    return _validate(suite, checked, rows, file_name, settings, gx=gx, gx_max_rows=gx_max_rows,
                     run_time=run_time)


def validate_published(frame: pd.DataFrame, metadata: Mapping[str, Any], file_name: str,
                       settings: Settings, *, gx: bool = True,
                       run_time: datetime | None = None) -> ValidationOutcome:
    """The published suite over one release table and its JSON metadata.

    Row numbers in results are 1-based data rows of the table.
    """
    numeric = [str(c) for c in frame.columns
               if pd.api.types.is_numeric_dtype(frame[c]) and not
               pd.api.types.is_bool_dtype(frame[c])]
    suite = published_suite(metadata, [str(c) for c in frame.columns], numeric)
    rows = np.arange(1, len(frame) + 1)
    return _validate(suite, frame, rows, file_name, settings, gx=gx, gx_max_rows=GX_MAX_ROWS,
                     run_time=run_time)


def enforce(outcome: ValidationOutcome, settings: Settings,
            path: Path | None = None) -> ValidationOutcome:
    """Let a passing batch through (warnings and all); quarantine ``path`` and raise otherwise.

    Raises :class:`ValidationFailed` naming the file, the first broken rule and its first row.
    """
    if outcome.success:
        for warning in outcome.warnings():
            log.warning("%s: warn-only rule failed: %s", outcome.file_name, warning.describe())
        return outcome
    quarantined = None
    if path is not None and path.exists():
        quarantined = quarantine_file(path, outcome, settings).name
    raise ValidationFailed.from_outcome(outcome, quarantined=quarantined)


def raw_checked_frame(frame: pd.DataFrame, header: Sequence[str],
                      profile: SourceProfile) -> pd.DataFrame:
    """The frame as the raw suite sees it: raw column names, only columns present in the header.

    Required raw columns that feed no internal field are represented by empty columns, so
    their presence is judged from the header alone.
    """
    present = set(header)
    renames = {field: raw for field, raw in profile.fields.items()
               if raw in present and field in frame.columns}
    checked = frame[list(renames)].rename(columns=renames).reset_index(drop=True)
    mapped = set(renames.values())
    for raw in profile.required:
        if raw in present and raw not in mapped:
            checked[raw] = pd.Series([None] * len(checked), dtype=object)
    return checked


def _row_numbers(frame: pd.DataFrame, *, first: int) -> np.ndarray:
    if ROW_NUMBER in frame.columns:
        return frame[ROW_NUMBER].to_numpy(dtype=np.int64)
    return np.arange(first, first + len(frame), dtype=np.int64)


def _validate(suite: Suite, frame: pd.DataFrame, rows: np.ndarray, file_name: str,
              settings: Settings, *, gx: bool, gx_max_rows: int,
              run_time: datetime | None) -> ValidationOutcome:
    started = time.perf_counter()
    frame = frame.reset_index(drop=True)
    cache: dict[str, Any] = {}
    results = tuple(check(rule, frame, rows, cache=cache) for rule in suite.rules)
    del cache
    success = not any(r.blocking and not r.success for r in results)
    gx_rows = gx_result = data_docs = None
    if gx:
        from expectations.gx_run import run_suite

        sample = gx_sample(frame, rows, results, gx_max_rows)
        run = run_suite(suite.rules, suite.name, frame.iloc[sample] if sample is not None else frame,
                        settings=settings, file_name=file_name, total_rows=len(frame),
                        run_time=run_time)
        if sample is None:
            _agree(suite, results, run.success)
        gx_rows, gx_result, data_docs = run.rows, run.result_path, run.data_docs
    outcome = ValidationOutcome(suite=suite.name, file_name=file_name, success=success,
                                results=results, rows=len(frame), gx_rows=gx_rows,
                                gx_result=gx_result, data_docs=data_docs,
                                seconds=time.perf_counter() - started)
    log.info("%s: suite %s on %d rows: %s (%d blocking failures, %d warnings) in %.2f s",
             file_name, suite.name, len(frame), "pass" if success else "FAIL",
             len(outcome.blocking_failures()), len(outcome.warnings()), outcome.seconds)
    return outcome


def gx_sample(frame: pd.DataFrame, rows: np.ndarray, results: Sequence[RuleResult],
              max_rows: int) -> np.ndarray | None:
    """Positions GX validates for a big frame (None: the whole frame).

    Deterministic: the first failing rows of every rule (so Data Docs show each failure) and
    evenly spaced rows to fill up to ``max_rows``.
    """
    if len(frame) <= max_rows:
        return None
    flagged_rows = [r for result in results for r in result.first_rows]
    flagged = np.flatnonzero(np.isin(rows, flagged_rows))[:max_rows // 2]
    spaced = np.linspace(0, len(frame) - 1, num=max_rows - len(flagged)).astype(np.int64)
    return np.unique(np.concatenate([flagged, spaced]))


def _agree(suite: Suite, results: Sequence[RuleResult], gx_success: Mapping[str, bool]) -> None:
    """On a whole-frame run, GX and the fast path must reach the same verdict on every rule."""
    for rule, result in zip(suite.rules, results, strict=True):
        verdict = gx_success.get(rule.key)
        if verdict is None:
            raise InvariantViolation(f"suite {suite.name}: GX did not report rule {rule.key}")
        if verdict != result.success:
            raise InvariantViolation(
                f"suite {suite.name}: GX says {'pass' if verdict else 'fail'} and the fast path "
                f"says {'pass' if result.success else 'fail'} for rule {rule.key}")
