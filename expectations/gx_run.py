"""Run a suite of :class:`~expectations.rules.Rule` through Great Expectations, keeping no value.

Each rule becomes the GX expectation with the same semantics, marked blocking (severity
``critical``) or warn-only (``warning``) with the mark also in its ``meta`` so Data Docs show it.
The batch is validated with ``{"result_format": "SUMMARY", "partial_unexpected_count": 0}``
(a bare SUMMARY would keep sample values), then the result is *scrubbed* before it is stored:

* GX fingerprints a pandas batch with an unkeyed MD5 of its content
  (``batch_markers.pandas_data_fingerprint``): an unkeyed hash of identifiers, so it is removed;
* any key that can carry values (``partial_unexpected_list``, ``unexpected_list``...) is removed
  even if empty;
* exception messages are replaced by the exception's type (pandas quotes values in them).

Only then is the result written to the validation store and rendered into Data Docs, so
neither the JSON nor the HTML can hold a supporter's value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import InvariantViolation
from core.settings import Settings
from expectations.context import DATASOURCE_NAME, SITE_NAME, data_docs_dir, open_context
from expectations.rules import Rule

log = logging.getLogger(__name__)

RESULT_FORMAT: Mapping[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
VALUE_KEYS = frozenset({
    "partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list",
    "unexpected_list", "unexpected_index_list", "unexpected_index_query", "unexpected_rows",
    "unexpected_index_column_names",
})
_TABLE_OBSERVED_OK = frozenset({"expect_table_row_count_to_be_between",
                                "expect_table_columns_to_match_set",
                                "expect_table_columns_to_be_in_allow_list",
                                "expect_table_columns_to_exclude_set"})
_DEFAULT_NOTES: Mapping[str, str] = {
    "row_count_min": "the batch has rows.",
    "columns_present": "the required columns are present.",
    "columns_allowed": "no column outside the allow-list.",
    "columns_excluded": "none of the forbidden columns.",
    "not_null": "no missing value.",
    "match_regex": "every value has the declared shape.",
    "not_match_regex": "no value has the forbidden shape.",
    "not_match_regex_list": "no value matches a forbidden pattern.",
    "in_codes": "values come from the official code list.",
    "in_set": "values come from the declared set.",
    "unique": "no value appears twice.",
    "date_format": "every value is a date: ISO 8601, or day/month/year in the file's order.",
    "amount_rule": "every amount parses, and none is negative.",
    "min_value": "no value below the minimum.",
}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class GxRun:
    """What GX said, per rule key, and where the evidence is (paths relative to ISOLOIR_HOME)."""

    success: Mapping[str, bool]
    rows: int
    result_path: str
    data_docs: str


def run_suite(rules: Sequence[Rule], suite_name: str, frame: pd.DataFrame, *, settings: Settings,
              file_name: str, total_rows: int, run_time: datetime | None = None) -> GxRun:
    """Validate ``frame`` (the whole batch, or a sample of it) and store a value-free result."""
    gx = _gx()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = open_context(settings)
    # Built whole, then saved once: add_expectation on a suite whose name is already stored
    # would rewrite the store's JSON at every call.
    suite = context.suites.add_or_update(gx.ExpectationSuite(
        name=suite_name, expectations=[to_expectation(rule) for rule in rules]))

    asset = context.data_sources.add_pandas(DATASOURCE_NAME).add_dataframe_asset(name=suite_name)
    batch = asset.add_batch_definition_whole_dataframe("frame").get_batch(
        batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format=dict(RESULT_FORMAT))

    when = run_time or datetime.now(UTC)
    sampled = len(frame) < total_rows
    batch_name = f"sample-{len(frame)}-of-{total_rows}-rows" if sampled else f"all-{total_rows}-rows"
    run_id = RunIdentifier(run_name=_safe(file_name), run_time=when)
    scrub(result)
    result.meta["run_id"] = run_id
    result.meta["validation_time"] = when
    result.meta["isoloir"] = {
        "file": file_name, "rows_validated_by_gx": len(frame), "rows_in_batch": total_rows,
        "sampled": sampled,
        "blocking_gate": "Isoloir's vectorized checks over every row (same rules, same regexes)",
    }
    suite_id = ExpectationSuiteIdentifier(name=suite_name)
    result_id = ValidationResultIdentifier(expectation_suite_identifier=suite_id, run_id=run_id,
                                           batch_identifier=batch_name)
    context.validation_results_store.set(result_id, result)
    context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=[result_id, suite_id])

    success: dict[str, bool] = {}
    for evr in result.results:
        key = evr.expectation_config.meta.get("isoloir_rule")
        if key is None:
            raise InvariantViolation(f"GX result without isoloir_rule in suite {suite_name}")
        success[str(key)] = bool(evr.success)
    stored = Path(settings.gx_home, "validations", *suite_name.split("."), run_id.to_tuple()[0],
                  run_id.to_tuple()[1], f"{batch_name}.json")
    return GxRun(success=success, rows=len(frame),
                 result_path=_relative(stored, settings.home),
                 data_docs=_relative(data_docs_dir(settings) / "index.html", settings.home))


def to_expectation(rule: Rule) -> Any:
    """The GX expectation that checks exactly what ``rule`` checks."""
    gx = _gx()
    from expectations import gx_custom

    E = gx.expectations
    mark = "BLOCKING" if rule.blocking else "WARN-ONLY"
    consequence = ("A failure quarantines the whole file." if rule.blocking
                   else "A failure is reported in the run summary; the file still loads.")
    where = f" on column {rule.column}" if rule.column else ""
    description = f"{mark} · {rule.name}{where}: {rule.note or _DEFAULT_NOTES[rule.kind]}"
    common: dict[str, Any] = {
        "meta": {"isoloir_rule": rule.key, "blocking": rule.blocking},
        "severity": "critical" if rule.blocking else "warning",
        "description": description.replace("$", ""),  # GX renders it as a $-template
        "notes": consequence,
        "catch_exceptions": True,
    }
    col: dict[str, Any] = {"column": rule.column} if rule.column else {}
    mostly: dict[str, Any] = {"mostly": rule.mostly} if rule.mostly < 1.0 else {}
    kind = rule.kind
    if kind == "row_count_min":
        minimum = int(rule.min_value if rule.min_value is not None else 1)
        return E.ExpectTableRowCountToBeBetween(min_value=minimum, **common)
    if kind == "columns_present":
        return E.ExpectTableColumnsToMatchSet(column_set=list(rule.values), exact_match=False,
                                              **common)
    if kind == "columns_allowed":
        return gx_custom.ExpectTableColumnsToBeInAllowList(allowed=list(rule.values), **common)
    if kind == "columns_excluded":
        return gx_custom.ExpectTableColumnsToExcludeSet(forbidden=list(rule.values), **common)
    if kind == "not_null":
        return E.ExpectColumnValuesToNotBeNull(**col, **common)
    if kind == "match_regex":
        return E.ExpectColumnValuesToMatchRegex(**col, regex=rule.regex, **mostly, **common)
    if kind == "not_match_regex":
        return E.ExpectColumnValuesToNotMatchRegex(**col, regex=rule.regex, **mostly, **common)
    if kind == "not_match_regex_list":
        return E.ExpectColumnValuesToNotMatchRegexList(**col, regex_list=list(rule.regex_list),
                                                       **mostly, **common)
    if kind == "in_codes":
        return gx_custom.ExpectColumnValuesToBeInCodeList(**col, code_list=str(rule.code_list),
                                                          **mostly, **common)
    if kind == "in_set":
        return E.ExpectColumnValuesToBeInSet(**col, value_set=list(rule.values), **mostly,
                                             **common)
    if kind == "unique":
        return E.ExpectColumnValuesToBeUnique(**col, **mostly, **common)
    if kind == "date_format":
        return gx_custom.ExpectColumnValuesToBeDatesInFormat(
            **col, date_format=str(rule.strftime_format), date_order=rule.date_order or "",
            **mostly, **common)
    if kind == "amount_rule":
        return gx_custom.ExpectColumnValuesToKeepAmountRule(
            **col, decimal=str(rule.decimal), amount_rule=str(rule.amount_rule), **mostly,
            **common)
    if kind == "min_value":
        return E.ExpectColumnValuesToBeBetween(**col, min_value=rule.min_value, **mostly,
                                               **common)
    raise ValueError(f"no GX expectation for rule kind {kind}")  # pragma: no cover


def scrub(result: Any) -> None:
    """Remove from a GX suite result everything that could carry or fingerprint a value."""
    markers = result.meta.get("batch_markers")
    if isinstance(markers, dict):
        markers.pop("pandas_data_fingerprint", None)
    for evr in result.results:
        details = evr.result if isinstance(evr.result, dict) else {}
        for key in VALUE_KEYS & set(details):
            details.pop(key)
        kind = evr.expectation_config.type
        if "observed_value" in details and kind not in _TABLE_OBSERVED_OK:
            details.pop("observed_value")
        info = evr.exception_info or {}
        if info.get("raised_exception"):
            evr.exception_info = {
                "raised_exception": True, "exception_traceback": None,
                "exception_message": "exception raised inside GX; message withheld because it "
                                     "may quote values",
            }


def _gx() -> Any:
    from expectations.context import import_gx

    return import_gx()


def _safe(name: str) -> str:
    return _UNSAFE_NAME.sub("_", name).strip("._") or "batch"


def _relative(path: Path, home: Path) -> str:
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)
