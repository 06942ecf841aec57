"""The DPO's maintenance report: erasure requests, erasures and retention purges per month.

It is built from the ``erasure_log`` (:func:`warehouse.erasure.monthly_summary`), which
holds dates, reasons and counts only: no identifier, no pseudonym, no file name. So the
report, JSON and HTML, can go to a DPO or an inspector as it is. The same monthly table
is a section of the auditor report (:func:`erasure_section`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.settings import Settings
from reports.html import Markup, join, page, table, tag, write_html
from reports.i18n import Translator, translator
from warehouse.erasure import MonthSummary, monthly_summary, summary_totals

log = logging.getLogger(__name__)

HTML_NAME = "maintenance_report.html"
JSON_NAME = "maintenance_report.json"
COLUMNS = ("requests", "requests_unmatched", "persons_erased", "rows_erased", "persons_purged",
           "rows_purged", "raw_files_deleted", "request_files_rejected")


def read_months(engine: Engine) -> list[MonthSummary] | None:
    """The monthly summary, or ``None`` when these credentials may not read the log."""
    from sqlalchemy import inspect

    try:
        if not inspect(engine).has_table("erasure_log"):
            return []
        with engine.connect() as conn:
            return monthly_summary(conn)
    except (ProgrammingError, OperationalError):  # permission denied, or no such table yet
        log.info("erasure log not readable with these credentials")
        return None


def erasure_table(months: Sequence[MonthSummary], tr: Translator) -> Markup:
    """One row per month and a total row; numbers formatted for the language."""
    rows: list[list[str]] = []
    for m in months:
        rows.append([m.month] + [tr.number(getattr(m, c)) for c in COLUMNS])
    totals = summary_totals(months)
    rows.append([tr.t("total")] + [tr.number(totals[c]) for c in COLUMNS])
    headers = [tr.t("col_month")] + [tr.t(f"col_{c}") for c in COLUMNS]
    return table(headers, rows, numeric=tuple(range(1, len(headers))))


def erasure_section(months: Sequence[MonthSummary] | None, tr: Translator) -> Markup:
    """The "erasures, objections and retention" section (auditor and maintenance reports)."""
    parts: list[object] = [tag("h2", tr.t("erasures_title")), tag("p", tr.t("erasures_note"),
                                                                  class_="note")]
    if months is None:
        parts.append(tag("p", tr.t("erasures_unreadable")))
    elif not months:
        parts.append(tag("p", tr.t("erasures_none")))
    else:
        parts.append(Markup(f'<div class="wide">{erasure_table(months, tr)}</div>'))
    return Markup(f'<section class="report-section" id="erasures">{join(parts)}</section>')


@dataclass(frozen=True)
class MaintenanceReport:
    html: Path
    json: Path
    months: int

    def to_dict(self) -> dict[str, Any]:
        return {"html": str(self.html), "json": str(self.json), "months": self.months}


def write_maintenance_report(settings: Settings, engine: Engine, *, generated_at: datetime,
                             lang: str = "fr", run: dict[str, Any] | None = None
                             ) -> MaintenanceReport:
    """Write ``reports/maintenance_report.{json,html}``; ``run`` adds this run's counts."""
    tr = translator(lang)
    months = read_months(engine) or []
    if generated_at.tzinfo is None:
        generated_at = generated_at.replace(tzinfo=UTC)
    stamp = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    document = {
        "generated_at": generated_at.astimezone(UTC).isoformat(timespec="seconds"),
        "retention_days": settings.retention_days,
        "raw_retention_days": settings.raw_retention_days,
        "months": [m.to_dict() for m in months],
        "totals": summary_totals(months),
        "this_run": dict(run or {}),
    }
    settings.reports.mkdir(parents=True, exist_ok=True)
    json_path = settings.reports / JSON_NAME
    partial = json_path.with_name(f".{JSON_NAME}.partial")
    partial.write_text(json.dumps(document, indent=2, sort_keys=True), encoding="utf-8")
    partial.replace(json_path)
    header = join([Markup('<header class="page">'), tag("h1", tr.t("maintenance_title")),
                   tag("p", tr.t("maintenance_lead", days=settings.retention_days,
                                 raw_days=settings.raw_retention_days), class_="sub"),
                   tag("p", tr.t("generated", date=stamp), class_="meta"),
                   Markup("</header>")])
    html_path = write_html(settings.reports / HTML_NAME,
                           page(title=tr.t("maintenance_title"), lang=tr.lang,
                                body=join([header, erasure_section(months, tr)])))
    log.info("maintenance report (%d month(s)) written to %s", len(months), html_path)
    return MaintenanceReport(html=html_path, json=json_path, months=len(months))
