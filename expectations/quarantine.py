"""Quarantine: a failing file is moved whole out of landing/, with a report that holds no value.

The report (JSON for scripts, HTML for people) says which expectation broke, on which column,
how many values and what share failed, and the first row numbers to look at. It never quotes a
value: the people who read it must not see a supporter's data. The raw file itself stays in
quarantine/ (a private folder, like landing/) for the data engineer to fix or delete.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import Settings
from expectations.outcome import ValidationOutcome

log = logging.getLogger(__name__)

REPORT_JSON = ".report.json"
REPORT_HTML = ".report.html"


def quarantine_file(path: Path, outcome: ValidationOutcome, settings: Settings, *,
                    when: datetime | None = None) -> Path:
    """Move ``path`` into quarantine/ and write ``<name>.report.json`` and ``.report.html``.

    A name already in quarantine gets a numbered suffix (``file.1.csv``), so an earlier
    rejected file and its report are never overwritten. Returns the quarantined path.
    """
    folder = settings.quarantine
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    target = _free_name(folder, path.name)
    shutil.move(str(path), target)
    target.chmod(0o600)
    report = quarantine_report(outcome, original=path.name, quarantined=target.name,
                               when=when or datetime.now(UTC))
    _report_path(target, REPORT_JSON).write_text(
        json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _report_path(target, REPORT_HTML).write_text(render_html(report), encoding="utf-8")
    log.warning("quarantined %s as %s: %s", path.name, target.name,
                outcome.first_failure_message() or "no blocking failure")
    return target


def report_paths(quarantined: Path) -> tuple[Path, Path]:
    """The JSON and HTML reports written next to a quarantined file."""
    return _report_path(quarantined, REPORT_JSON), _report_path(quarantined, REPORT_HTML)


def quarantine_report(outcome: ValidationOutcome, *, original: str, quarantined: str,
                      when: datetime) -> dict[str, Any]:
    """The report's content: rules, columns, counts, percentages, row numbers; no value."""
    return {
        "file": original,
        "quarantined_as": quarantined,
        "quarantined_at": when.isoformat(timespec="seconds"),
        "suite": outcome.suite,
        "success": outcome.success,
        "message": outcome.first_failure_message(),
        "rows": outcome.rows,
        "blocking_failures": [r.to_dict() for r in outcome.blocking_failures()],
        "warnings": [r.to_dict() for r in outcome.warnings()],
        "rules_checked": len(outcome.results),
        "gx_validation_result": outcome.gx_result,
        "gx_rows": outcome.gx_rows,
        "data_docs": outcome.data_docs,
        "note": "Counts and row numbers only: open the quarantined file itself (private folder) "
                "to see the values.",
    }


def render_html(report: dict[str, Any]) -> str:
    """A small standalone page; every field is escaped."""
    e = html.escape

    def rows(items: list[dict[str, Any]]) -> str:
        if not items:
            return "<p>None.</p>"
        head = ("<tr><th>rule</th><th>column</th><th>failing</th><th>checked</th><th>%</th>"
                "<th>first rows</th><th>detail</th></tr>")
        body = "".join(
            f"<tr><td><code>{e(str(r['rule']))}</code></td><td>{e(str(r['column'] or '—'))}</td>"
            f"<td>{int(r['unexpected_count'])}</td><td>{int(r['element_count'])}</td>"
            f"<td>{float(r['unexpected_percent']):.2f}</td>"
            f"<td>{e(', '.join(str(x) for x in r['first_rows']))}</td>"
            f"<td>{e(str(r['detail']))}</td></tr>" for r in items)
        return f"<table>{head}{body}</table>"

    links = ""
    if report.get("gx_validation_result"):
        links += (f"<p>Great Expectations validation result: "
                  f"<code>{e(str(report['gx_validation_result']))}</code> "
                  f"({int(report.get('gx_rows') or 0)} rows seen by GX).</p>")
    if report.get("data_docs"):
        links += f"<p>Data Docs: <code>{e(str(report['data_docs']))}</code></p>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Quarantine report: {e(str(report['file']))}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left}th{background:#f3f3f3}.bad{color:#a00}</style></head><body>"
        f"<h1>{e(str(report['file']))} was quarantined</h1>"
        f"<p class='bad'>{e(str(report['message']))}</p>"
        f"<p>Suite <code>{e(str(report['suite']))}</code>, {int(report['rows'])} rows, "
        f"{int(report['rules_checked'])} rules checked, quarantined at "
        f"{e(str(report['quarantined_at']))} as <code>{e(str(report['quarantined_as']))}</code>."
        "</p><h2>Blocking failures</h2>" + rows(report["blocking_failures"]) +
        "<h2>Warnings</h2>" + rows(report["warnings"]) + links +
        f"<p><small>{e(str(report['note']))}</small></p></body></html>\n"
    )


def _report_path(target: Path, suffix: str) -> Path:
    return target.with_name(target.name + suffix)


def _free_name(folder: Path, name: str) -> Path:
    candidate = folder / name
    stem, dot, ext = name.partition(".")
    n = 1
    while candidate.exists() or _report_path(candidate, REPORT_JSON).exists():
        candidate = folder / (f"{stem}.{n}{dot}{ext}" if dot else f"{name}.{n}")
        n += 1
    return candidate
