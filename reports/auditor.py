"""The auditor report: the privacy budget, every release, and whether the ledger verifies.

A DPO or a CNIL inspector checks three things: that the budget cap held (cap, spent,
remaining, and how it was spent over time), that every release was charged and signed (one
row per ledger entry: cost, mechanism, plan hash, result hash, signature status), and that
nothing was altered afterwards (the result of ``audit verify``, run here with the public key
only). It reads the ledger tables, the ``published/`` folder, the erasure log (counts of
erasures and retention purges per month) and, for the master key ids in use, the ``key_id``
column of ``ingested_files``; never a supporter's row, and never a key.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.errors import KeyMaterialError, PlanError
from core.settings import Settings
from privacy.accountant import BudgetState, decimal_text, epsilon_equivalent, read_budgets
from privacy.audit import AuditProblem, AuditReport, verify
from privacy.cadence import forecast
from privacy.conversion import CONVERSION_NAMES, conversion_of
from privacy.identity_audit import IdentitySplit, read_identity_split
from privacy.ledger import LedgerEntry, entry_message, fraction_text, read_entries
from privacy.plan import Plan, load_plan
from privacy.signing import VerifyKeyring, installed_verify_keys
from reports.charts import cumulative_chart, gauge
from reports.dp_audit import dp_audit_section, read_dp_audit
from reports.guarantee import guarantee_section
from reports.html import BR, Markup, esc, join, page, table, tag, write_html
from reports.i18n import Translator, translator
from reports.maintenance import erasure_section, read_months
from warehouse.db import make_engine
from warehouse.erasure import MonthSummary
from warehouse.schema import ingested_files, ledger_entries

if TYPE_CHECKING:
    from privacy.audit_dp import RecordedAudit

log = logging.getLogger(__name__)

DEFAULT_NAME = "audit_report.html"
_SHORT_HASH = 16


@dataclass(frozen=True)
class AuditInputs:
    """Everything the auditor report shows, read once (ids, hashes, exact budgets)."""

    budgets: tuple[BudgetState, ...]
    entries: tuple[LedgerEntry, ...]
    master_key_ids: tuple[tuple[str, int], ...] | None  # (key id, files); None: not readable
    verify_key: VerifyKeyring | None  # the current public half and every retired one
    verify_error: str | None
    audit: AuditReport | None
    data_docs: Path
    warehouse: str
    erasure_months: tuple[MonthSummary, ...] | None = ()  # None: not readable
    dp_audit: RecordedAudit | None = None  # the last `isoloir audit dp` record, if any
    dp_audit_error: str | None = None
    identity_split: IdentitySplit | None = None  # the last `isoloir audit identity`, if any
    plan: Plan | None = None  # the plan whose cadences the forecast follows (None: unreadable)


def read_audit_inputs(settings: Settings, engine: Engine | None = None) -> AuditInputs:
    """Read the ledger and run ``audit verify`` with the public signing key (read-only).

    Works with the auditor's own login on PostgreSQL, which may read the ledger tables and
    nothing else: the master key ids (from ``ingested_files``) are then shown as unreadable.
    """
    budgets: list[BudgetState] = []
    entries: list[LedgerEntry] = []
    master: tuple[tuple[str, int], ...] | None = ()
    erasures: tuple[MonthSummary, ...] | None = ()
    has_ledger = False
    if engine is None and not _sqlite_missing(settings.warehouse_url):
        engine = make_engine(settings.warehouse_url)
    if engine is not None and inspect(engine).has_table(ledger_entries.name):
        has_ledger = True
        with engine.connect() as conn:
            budgets = read_budgets(conn)
            entries = read_entries(conn)
        master = _master_key_ids(engine)
        months = read_months(engine)
        erasures = None if months is None else tuple(months)
    key: VerifyKeyring | None = None
    error: str | None = None
    try:
        key = installed_verify_keys(settings.signing_key_file)
    except KeyMaterialError as err:
        error = str(err)
    audit: AuditReport | None = None
    if key is not None and engine is not None and has_ledger:
        audit = verify(engine, key, settings.published)
    elif key is not None:
        error = f"no ledger in {settings.warehouse_url_safe} yet"
    try:
        plan: Plan | None = load_plan(settings.plan_file)
    except PlanError:
        plan = None
    dp_audit, dp_audit_error = read_dp_audit(settings.home)
    return AuditInputs(budgets=tuple(budgets), entries=tuple(entries),
                       master_key_ids=master, verify_key=key, verify_error=error,
                       audit=audit, data_docs=settings.reports / "data_docs" / "index.html",
                       warehouse=settings.warehouse_url_safe, erasure_months=erasures,
                       dp_audit=dp_audit, dp_audit_error=dp_audit_error,
                       identity_split=read_identity_split(settings.home / "audit"),
                       plan=plan)


def _master_key_ids(engine: Engine) -> tuple[tuple[str, int], ...] | None:
    """Master key ids of ingested files and how many files each loaded; ``None`` when these
    credentials may not read ``ingested_files`` (the auditor role on PostgreSQL)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(ingested_files.c.key_id, func.count())
                                .group_by(ingested_files.c.key_id)
                                .order_by(ingested_files.c.key_id)).all()
    except (ProgrammingError, OperationalError):  # permission denied, or no such table
        log.info("master key ids not readable with these credentials")
        return None
    return tuple((str(key_id), int(count)) for key_id, count in rows)


def _sqlite_missing(url: str) -> bool:
    """A SQLite warehouse that does not exist yet (connecting would create an empty file)."""
    parsed = make_url(url)
    database = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") \
        and not Path(database).is_file()


# --------------------------------------------------------------------------- numbers

def _rho(tr: Translator, value: Fraction | float, digits: int = 6) -> str:
    """An exact budget shown as a decimal (``0,004`` in French)."""
    text = decimal_text(value if isinstance(value, Fraction) else Fraction(value), digits)
    return text.replace(".", ",") if tr.lang == "fr" else text


def _epsilon(tr: Translator, rho: Fraction, delta: Decimal | None) -> str:
    if delta is None:
        return ""
    eps = epsilon_equivalent(rho, delta)
    text = f"{eps:.4g}"
    return f"ε ≈ {text.replace('.', ',') if tr.lang == 'fr' else text}"


def _exact(value: Fraction) -> Markup:
    """The exact rational the ledger holds (what ``audit verify`` sums)."""
    return tag("code", fraction_text(value), class_="hash")


def _short(value: str | None) -> Markup:
    if not value:
        return Markup("—")
    shown = value if len(value) <= _SHORT_HASH else value[:_SHORT_HASH] + "…"
    return tag("code", shown, class_="hash", title=value)


def _query_name(entry: LedgerEntry) -> str:
    try:
        document = json.loads(entry.query)
    except (TypeError, ValueError):
        return "?"
    return str(document.get("name", "?")) if isinstance(document, dict) else "?"


# --------------------------------------------------------------------------- sections

def _verify_section(inputs: AuditInputs, tr: Translator) -> Markup:
    audit = inputs.audit
    if audit is None:
        badge = tag("span", tr.t("verify_not_run"), class_="badge warn")
        body: list[object] = [tag("p", tr.t("verify_not_run_reason",
                                            reason=inputs.verify_error or "?"))]
    else:
        badge = tag("span", "✓ " + tr.t("verify_ok") if audit.ok else "✗ " +
                    tr.t("verify_failed"), class_="badge ok" if audit.ok else "badge bad")
        body = [tag("p", tr.t("verify_counts", entries=audit.entries, results=audit.results,
                              files=audit.files_checked, key=audit.verify_key_id))]
        first = audit.first_broken
        if first is not None:
            body.append(tag("p", tr.t("first_broken", problem=first.describe()),
                            class_="alert"))
            body.append(_problems(audit.problems, tr))
    return Markup(f'<section class="report-section" id="verify" data-status='
                  f'"{esc("not-run" if audit is None else "ok" if audit.ok else "failed")}">'
                  f"{tag('h2', join([tr.t('verify_title'), ' ', badge]))}{join(body)}"
                  "</section>")


def _problems(problems: Sequence[AuditProblem], tr: Translator) -> Markup:
    rows = [[p.kind, "" if p.seq is None else p.seq, p.release_id or "", p.file or "", p.detail]
            for p in problems]
    return table([tr.t("col_kind"), tr.t("col_seq"), tr.t("col_release"), tr.t("col_file"),
                  tr.t("col_detail")], rows, numeric=(1,))


def _conversion(budget: BudgetState, tr: Translator) -> Markup:
    code = conversion_of(budget.cap.rho, budget.cap.epsilon, budget.cap.delta)
    return tag("span", tr.t("conversion", name=CONVERSION_NAMES[code]), class_="conversion",
               data_conversion=code)


def _forecast(budget: BudgetState, plan: Plan | None, tr: Translator, as_of: date) -> Markup:
    """The day the cap runs out at the plan's cadences, for the plan's dataset."""
    if plan is None or plan.dataset_id != budget.dataset_id:
        return Markup("")
    fc = forecast(plan, budget.remaining, as_of)
    if fc.exhausted_on is None:
        return Markup("")
    cadences = ", ".join(f"{tr.t('cadence_' + c)}: {len(names)}"
                         for c, names in fc.cadences.items())
    return tag("p", tr.t("forecast", date=fc.exhausted_on, days=fc.days_left, as_of=fc.as_of,
                         rho=_rho(tr, Fraction(fc.per_day_rho)), cadences=cadences),
               class_="note forecast", data_dataset=budget.dataset_id,
               data_exhausted_on=fc.exhausted_on)


def _budget_section(inputs: AuditInputs, tr: Translator, as_of: date | None = None) -> Markup:
    head = tag("h2", tr.t("budgets_title"))
    if not inputs.budgets:
        return Markup(f'<section class="report-section" id="budgets">{head}'
                      f"{tag('p', tr.t('no_budgets'))}</section>")
    rows = []
    for b in inputs.budgets:
        cap = join([f"ρ ≈ {_rho(tr, b.cap.rho)}", BR, _exact(b.cap.rho)])
        if b.cap.epsilon is not None and b.cap.delta is not None:
            cap = join([cap, BR, tr.t("declared_as", epsilon=b.cap.epsilon,
                                      delta=str(b.cap.delta).lower())])
        cap = join([cap, BR, _conversion(b, tr)])
        spent = join([f"ρ ≈ {_rho(tr, b.spent)}", BR, _exact(b.spent), BR,
                      _epsilon(tr, b.spent, b.cap.delta)])
        remaining = join([f"ρ ≈ {_rho(tr, b.remaining)}", BR, _exact(b.remaining)])
        used = float(b.spent / b.cap.rho) if b.cap.rho else 0.0
        percent = tr.number(100 * used, 1) + ("\u00a0%" if tr.lang == "fr" else "%")
        rows.append([b.dataset_id, cap, spent, remaining,
                     Markup(gauge(used, title=f"{b.dataset_id}: {percent}", text=percent,
                                  width=160)), b.releases])
    listing = table([tr.t("col_dataset"), tr.t("col_cap"), tr.t("col_spent"),
                     tr.t("col_remaining"), tr.t("col_used"), tr.t("col_releases")], rows,
                    numeric=(5,))
    charts = [_consumption(b, inputs.entries, tr) for b in inputs.budgets]
    forecasts = [] if as_of is None else [_forecast(b, inputs.plan, tr, as_of)
                                          for b in inputs.budgets]
    return Markup(f'<section class="report-section" id="budgets">{head}{listing}'
                  f"{join(forecasts)}{join(charts)}</section>")


def _consumption(budget: BudgetState, entries: Sequence[LedgerEntry], tr: Translator) -> Markup:
    total = Fraction(0)
    steps: list[tuple[int, float]] = []
    for entry in entries:
        if entry.dataset_id != budget.dataset_id:
            continue
        try:
            total += entry.cost
        except ValueError:  # a malformed cost: the audit section names it
            continue
        steps.append((entry.seq, float(total)))
    title = tr.t("consumption_title", dataset=budget.dataset_id)
    chart = cumulative_chart(steps, cap=float(budget.cap.rho), title=title,
                             fmt=lambda v: _rho(tr, v, 4), cap_label=tr.t("chart_cap"),
                             x_label=tr.t("chart_axis_seq"))
    note = " · ".join(x for x in (f"ρ = {_rho(tr, total)} / {_rho(tr, budget.cap.rho)}",
                                  _epsilon(tr, total, budget.cap.delta)) if x)
    return join([Markup(f'<figure class="consumption" data-dataset="{esc(budget.dataset_id)}">'),
                 tag("h3", title), Markup(chart), tag("p", note, class_="note"),
                 Markup("</figure>")])


def _signature(entry: LedgerEntry, ring: VerifyKeyring | None, tr: Translator,
               verified: bool) -> Markup:
    """The entry's signature status; ``verified`` when ``audit verify`` found nothing wrong
    with this entry (it checked the signature already: no need to check it twice)."""
    if ring is None:
        return tag("span", tr.t("sig_unchecked"), class_="badge warn")
    key = ring.get(entry.signing_key_id)
    if key is None:
        return tag("span", tr.t("sig_other_key", key=entry.signing_key_id), class_="badge bad")
    if verified or key.verify(entry_message(entry.entry_hash), entry.signature):
        return tag("span", "✓ " + tr.t("sig_valid"), class_="badge ok")
    return tag("span", "✗ " + tr.t("sig_invalid"), class_="badge bad")


def _releases_section(inputs: AuditInputs, tr: Translator) -> Markup:
    head = tag("h2", tr.t("releases_title"))
    if not inputs.entries:
        return Markup(f'<section class="report-section" id="releases">{head}'
                      f"{tag('p', tr.t('no_entries'))}</section>")
    deltas = {b.dataset_id: b.cap.delta for b in inputs.budgets}
    problems: dict[int, list[str]] = {}
    if inputs.audit is not None:
        for problem in inputs.audit.problems:
            if problem.seq is not None:
                problems.setdefault(problem.seq, []).append(problem.detail)
    several = len({e.dataset_id for e in inputs.entries}) > 1
    rows = []
    classes = []
    for e in inputs.entries:
        try:
            cost: object = join([tag("span", f"ρ = {e.cost_rho}", class_="nowrap"), BR,
                                 tag("span", _epsilon(tr, e.cost, deltas.get(e.dataset_id)),
                                     class_="nowrap")])
        except ValueError:
            cost = tag("code", e.cost_rho)
        if inputs.audit is None:
            audit: object = "—"
        elif e.seq in problems:
            audit = tag("span", "✗ " + "; ".join(problems[e.seq]), class_="badge bad")
        else:
            audit = tag("span", "✓ " + tr.t("audit_clean"), class_="badge ok")
        result = _short(e.result_hash) if e.result_hash else tag(
            "span", tr.t("no_result"), class_="badge warn")
        query = join([_query_name(e), BR, tag("code", e.release_id, class_="hash")])
        row: list[object] = [e.seq, e.created_at[:16].replace("T", " "), query, e.mechanism,
                             cost, _short(e.plan_hash), result,
                             _signature(e, inputs.verify_key, tr, verified=inputs.audit
                                        is not None and e.seq not in problems), audit]
        if several:
            row.insert(2, e.dataset_id)
        rows.append(row)
        classes.append("problem" if e.seq in problems else "")
    headers = [tr.t("col_seq"), tr.t("col_date"), tr.t("col_query"), tr.t("col_mechanism"),
               tr.t("col_cost"), tr.t("col_plan"), tr.t("col_result"), tr.t("col_signature"),
               tr.t("col_audit")]
    if several:
        headers.insert(2, tr.t("col_dataset"))
    listing = table(headers, rows, numeric=(0,), row_classes=classes, class_="data compact")
    return Markup(f'<section class="report-section" id="releases">{head}'
                  f'<div class="wide">{listing}</div></section>')


def _data_docs_section(inputs: AuditInputs, tr: Translator, out: Path) -> Markup:
    relative = Path(os.path.relpath(inputs.data_docs, out.parent)).as_posix()
    link = tag("a", tr.t("data_docs_link"), href=quote(relative))
    parts: list[object] = [tag("h2", tr.t("data_docs_title")), tag("p", tr.t("data_docs_note")),
                           Markup("<p>"), link]
    if not inputs.data_docs.is_file():
        parts.append(" " + tr.t("data_docs_missing"))
    parts.append(Markup("</p>"))
    return Markup(f'<section class="report-section" id="data-docs">{join(parts)}</section>')


def _keys_section(inputs: AuditInputs, tr: Translator) -> Markup:
    rows: list[list[object]] = []
    for key_id, files in inputs.master_key_ids or ():
        rows.append([tr.t("key_master"), tag("code", key_id), tr.t("key_files", count=files)])
    if inputs.master_key_ids is None:
        rows.append([tr.t("key_master"), "—", tr.t("key_unreadable")])
    elif not inputs.master_key_ids:
        rows.append([tr.t("key_master"), tr.t("key_none"), ""])
    signing = Counter(e.signing_key_id for e in inputs.entries)
    for key_id, count in sorted(signing.items()):
        rows.append([tr.t("key_signing"), tag("code", key_id),
                     tr.t("key_entries", count=count)])
    if not signing:
        rows.append([tr.t("key_signing"), tr.t("key_none"), ""])
    verify_id = ", ".join(inputs.verify_key.key_ids) if inputs.verify_key else None
    rows.append([tr.t("key_verify"), tag("code", verify_id) if verify_id else tr.t("key_none"),
                 inputs.verify_error if inputs.verify_key is None else ""])
    listing = table([tr.t("col_key_role"), tr.t("col_key_id"), tr.t("col_key_usage")], rows)
    return Markup(f'<section class="report-section" id="keys">{tag("h2", tr.t("keys_title"))}'
                  f"{listing}</section>")


def render_auditor_report(inputs: AuditInputs, *, lang: str, generated_at: datetime,
                          out: Path) -> str:
    """The whole HTML page; ``out`` is where it will be written (for the relative links)."""
    tr = translator(lang)
    if generated_at.tzinfo is None:
        generated_at = generated_at.replace(tzinfo=UTC)
    stamp = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = join([Markup('<header class="page">'), tag("h1", tr.t("auditor_title")),
                   tag("p", tr.t("auditor_lead"), class_="sub"),
                   tag("p", " · ".join([tr.t("generated", date=stamp),
                                        tr.t("warehouse", url=inputs.warehouse)]),
                       class_="meta"), Markup("</header>")])
    body = join([header, guarantee_section(inputs.budgets, inputs.identity_split, tr),
                 _verify_section(inputs, tr),
                 _budget_section(inputs, tr, generated_at.astimezone(UTC).date()),
                 _releases_section(inputs, tr), _data_docs_section(inputs, tr, out),
                 _keys_section(inputs, tr), erasure_section(inputs.erasure_months, tr),
                 dp_audit_section(inputs.dp_audit, inputs.dp_audit_error, tr)])
    return page(title=tr.t("auditor_title"), lang=tr.lang, body=body)


@dataclass(frozen=True)
class WrittenAuditReport:
    """Where the auditor report went, and what ``audit verify`` said (ok / failed / not run)."""

    path: Path
    audit: AuditReport | None
    entries: int

    @property
    def status(self) -> str:
        return "not run" if self.audit is None else "ok" if self.audit.ok else "failed"


def produce_auditor_report(settings: Settings, *, out: Path | None = None, lang: str = "fr",
                           generated_at: datetime | None = None) -> WrittenAuditReport:
    """Write the auditor report and return it with the audit's outcome (for the CLI)."""
    translator(lang)  # refuse a bad language before reading anything
    target = out or settings.reports / DEFAULT_NAME
    inputs = read_audit_inputs(settings)
    document = render_auditor_report(inputs, lang=lang,
                                     generated_at=generated_at or datetime.now(UTC),
                                     out=target.resolve())
    write_html(target, document)
    written = WrittenAuditReport(path=target, audit=inputs.audit, entries=len(inputs.entries))
    log.info("auditor report (%d ledger entries, audit %s) written to %s", written.entries,
             written.status, target)
    return written


def write_auditor_report(settings: Settings, *, out: Path | None = None, lang: str = "fr",
                         generated_at: datetime | None = None) -> Path:
    """Write the auditor report (default ``reports/audit_report.html``); return its path.

    The report is written whether or not the ledger verifies: a failed verification is
    exactly what an auditor must see. ``generated_at`` defaults to the time of writing.
    """
    return produce_auditor_report(settings, out=out, lang=lang, generated_at=generated_at).path
