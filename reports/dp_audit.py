"""The auditor report's "empirical privacy audit" section: the last ``isoloir audit dp``.

The section reads ``$ISOLOIR_HOME/audit/dp_audit.json`` (written by
:mod:`pipeline.dp_audit`) and shows, per audited query, the trials, the ε the ledger
declares for the audited ρ and the empirical lower bound, at the δ the test chose and at the
plan's δ. It is omitted when no audit was recorded; a malformed record is said, not hidden.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import IsoloirError
from reports.html import Markup, join, table, tag
from reports.i18n import Translator

if TYPE_CHECKING:  # the record's module imports OpenDP: only when a record is read
    from privacy.audit_dp import RecordedAudit


def read_dp_audit(home: Path) -> tuple[RecordedAudit | None, str | None]:
    """(the recorded audit or ``None``, an error message or ``None``)."""
    from privacy.audit_dp import read_record, record_path

    try:
        return read_record(record_path(home)), None
    except IsoloirError as err:
        return None, str(err)


def dp_audit_section(record: RecordedAudit | None, error: str | None,
                     tr: Translator) -> Markup:
    """The section, or nothing when no audit was ever recorded."""
    if error is not None:
        body: list[object] = [tag("p", tr.t("dp_audit_unreadable", reason=error),
                                  class_="alert")]
        status = "unreadable"
    elif record is None:
        return Markup("")
    else:
        status = "ok" if record.ok else "failed"
        badge = tag("span", "✓ " + tr.t("dp_audit_ok") if record.ok else
                    "✗ " + tr.t("dp_audit_failed"),
                    class_="badge ok" if record.ok else "badge bad")
        rows = [[r.family, tag("code", r.query), tr.number(r.trials), r.rho,
                 f"{r.test_delta:g}", tr.number(r.test_epsilon_declared, 3),
                 tr.number(r.test_epsilon_lower, 3), f"{r.plan_delta:g}",
                 tr.number(r.epsilon_declared, 3), tr.number(r.epsilon_lower, 3),
                 "✓" if r.passed else "✗"] for r in record.rows]
        body = [tag("p", join([tr.t("dp_audit_when", date=record.started_at,
                                    seconds=tr.number(record.seconds, 1)), " ", badge])),
                tag("p", tr.t("dp_audit_note"), class_="note"),
                Markup('<div class="wide">'),
                table([tr.t("col_dp_family"), tr.t("col_dp_query"), tr.t("col_dp_trials"), "ρ",
                       "δ", tr.t("col_dp_declared"), tr.t("col_dp_lower"),
                       tr.t("col_dp_plan_delta"),
                       tr.t("col_dp_declared"), tr.t("col_dp_lower"), ""],
                      rows, numeric=(2, 5, 6, 8, 9)),
                Markup("</div>")]
    head = tag("h2", tr.t("dp_audit_title"))
    return Markup(f'<section class="report-section" id="dp-audit" data-status="{status}">'
                  f"{head}{join(body)}</section>")
