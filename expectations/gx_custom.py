"""Isoloir's own GX expectations: official code lists and column allow-lists.

Imported only by :mod:`expectations.gx_run` (inside a function), because importing Great
Expectations takes seconds and DAG files must parse fast. Defining the classes registers them
with GX, once per process.

* ``ExpectColumnValuesToBeInCodeList``: values in a *named* official list (``"commune"``),
  resolved at run time by :func:`expectations.codes.code_mask`, so a suite never inlines 35 000
  commune codes and GX and the fast path share one implementation.
* ``ExpectTableColumnsToBeInAllowList``: no column outside the allow-list (GX's
  ``ExpectTableColumnsToMatchSet(exact_match=False)`` checks the opposite inclusion).
* ``ExpectTableColumnsToExcludeSet``: none of these columns (group granularity).
* ``ExpectColumnValuesToBeDatesInFormat`` and ``ExpectColumnValuesToKeepAmountRule``: dates and
  amounts judged by the normalizer's own parsers (:mod:`expectations.parsing`).

Results carry column names only, never values.
"""

from __future__ import annotations

from typing import Any, ClassVar

from great_expectations.execution_engine import ExecutionEngine, PandasExecutionEngine
from great_expectations.expectations.expectation import BatchExpectation, ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from expectations.codes import code_mask
from expectations.parsing import amount_rule_broken, unparseable_dates


class ColumnValuesInIsoloirCodeList(ColumnMapMetricProvider):
    """Metric: is each value in the named official list."""

    condition_metric_name = "column_values.in_isoloir_code_list"
    condition_value_keys = ("code_list",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: Any, code_list: str, **kwargs: Any) -> Any:
        return code_mask(column, code_list)


class ExpectColumnValuesToBeInCodeList(ColumnMapExpectation):
    """Expect every value to be an official code of the named list (COG, Isoloir vocabulary)."""

    code_list: str

    map_metric = "column_values.in_isoloir_code_list"
    success_keys = ("code_list", "mostly")
    args_keys = ("column", "code_list")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production",
                                                  "tags": ["isoloir"], "contributors": []}


class ColumnValuesParseAsIsoloirDates(ColumnMapMetricProvider):
    """Metric: does each value parse as a date in the profile's format (normalizer's parser)."""

    condition_metric_name = "column_values.parse_as_isoloir_dates"
    condition_value_keys = ("date_format", "date_order")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: Any, date_format: str, date_order: str = "", **kwargs: Any) -> Any:
        return ~unparseable_dates(column, date_format, date_order or None)


class ExpectColumnValuesToBeDatesInFormat(ColumnMapExpectation):
    """Expect every value to be a date as the normalizer parses dates: ISO 8601, numeric in the
    file's ``date_order`` (dmy | mdy, "" for the format's own), or ``date_format``."""

    date_format: str
    date_order: str = ""

    map_metric = "column_values.parse_as_isoloir_dates"
    success_keys = ("date_format", "date_order", "mostly")
    args_keys = ("column", "date_format", "date_order")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production",
                                                  "tags": ["isoloir"], "contributors": []}


class ColumnValuesKeepIsoloirAmountRule(ColumnMapMetricProvider):
    """Metric: does each value keep the amount rule (format, or sign) of the normalizer."""

    condition_metric_name = "column_values.keep_isoloir_amount_rule"
    condition_value_keys = ("decimal", "amount_rule")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: Any, decimal: str, amount_rule: Any, **kwargs: Any) -> Any:
        return ~amount_rule_broken(column, decimal, amount_rule)


class ExpectColumnValuesToKeepAmountRule(ColumnMapExpectation):
    """Expect no value to break ``amount_rule`` (``amount_format`` or ``negative_amount``)."""

    decimal: str
    amount_rule: str

    map_metric = "column_values.keep_isoloir_amount_rule"
    success_keys = ("decimal", "amount_rule", "mostly")
    args_keys = ("column", "decimal", "amount_rule")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production",
                                                  "tags": ["isoloir"], "contributors": []}


def _columns_result(columns: list[str], offending: list[str], key: str) -> dict[str, Any]:
    result: dict[str, Any] = {"observed_value": sorted(columns)}
    if offending:
        result["details"] = {key: sorted(offending)}
    return {"success": not offending, "result": result}


class ExpectTableColumnsToBeInAllowList(BatchExpectation):
    """Expect no column outside ``allowed``: a new free-text column can never slip through."""

    allowed: list[str]

    metric_dependencies = ("table.columns",)
    success_keys = ("allowed",)
    args_keys = ("allowed",)
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production",
                                                  "tags": ["isoloir"], "contributors": []}

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None,
                  execution_engine: ExecutionEngine | None = None) -> dict[str, Any]:
        columns = [str(c) for c in metrics["table.columns"]]
        allowed = set(self.allowed)
        return _columns_result(columns, [c for c in columns if c not in allowed], "not_allowed")


class ExpectTableColumnsToExcludeSet(BatchExpectation):
    """Expect none of ``forbidden`` among the columns (e.g. no commune-level groups)."""

    forbidden: list[str]

    metric_dependencies = ("table.columns",)
    success_keys = ("forbidden",)
    args_keys = ("forbidden",)
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production",
                                                  "tags": ["isoloir"], "contributors": []}

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None,
                  execution_engine: ExecutionEngine | None = None) -> dict[str, Any]:
        columns = [str(c) for c in metrics["table.columns"]]
        forbidden = set(self.forbidden)
        return _columns_result(columns, [c for c in columns if c in forbidden], "forbidden")
