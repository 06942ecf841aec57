"""The strategist report: every published query's latest release, as charts a person reads.

It is built from ``published/`` only (never the warehouse): what the campaign team sees is
exactly what was released, with its uncertainty. Each number reads ``estimate ± half-width``
(the 95 % interval); a value whose interval is wider than the value itself is flagged "too
uncertain to act on" rather than hidden, because hiding small cells would itself be a
(non-private, misleading) choice made on the data. A plain-language box explains the noise,
and a footer ties each section to its ledger entry so an auditor can check it.

Layouts follow the groups a query publishes:

* no group: one number, large;
* one time column (week, month): a trend with its uncertainty band;
* one other column: horizontal bars with error bars, and a table (départements sorted by
  estimate, with their names); a département table also gets a map of metropolitan France
  (:mod:`reports.choropleth`: uncertain cells hatched, overseas départements as insets);
* a weekly trend of counts or sums also gets its week-over-week changes: the difference of
  consecutive published weeks, with the interval of that difference (the two weeks' noise
  is independent, so the half-widths combine as √(h₁² + h₂²)) and a plain word: up, down,
  or no measurable difference;
* two columns: grouped bars for the first groups, and a cross table of all of them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.geography import Geography, load_geography
from core.settings import Settings
from reports.charts import Bar, BarGroup, Point, bar_chart, trend_chart
from reports.choropleth import CREDIT_URL, MapCell, choropleth_svg
from reports.html import Markup, esc, join, page, table, tag, write_html
from reports.i18n import NBSP, Translator, translator
from reports.published import PublishedRelease, latest_releases

log = logging.getLogger(__name__)

DEFAULT_NAME = "strategist_report.html"
#: Group columns whose keys have a natural order (shown in that order, not by estimate).
ORDERED = frozenset({"age_band", "support_level", "week", "month"})
TIME = frozenset({"week", "month"})
#: Above this many rows, a bar chart shows the first ones and the table all of them.
CHART_MAX_BARS = 25
CHART_TOP = 20
_MATRIX_BARS = 40


# --------------------------------------------------------------------------- numbers

@dataclass(frozen=True)
class Display:
    """How a query's numbers read: counts, euros (published in cents) or percentages."""

    kind: Literal["count", "euro", "percent", "value"]
    decimals: int = 0
    scale: float = 1.0

    def value(self, tr: Translator, value: float | None) -> str:
        if value is None:
            return "—"
        text = tr.number(value * self.scale, self.decimals)
        if self.kind == "euro":
            return f"{text}{NBSP}€" if tr.lang == "fr" else f"€{text}"
        if self.kind == "percent":
            return f"{text}{NBSP}%" if tr.lang == "fr" else f"{text}%"
        return text

    def spread(self, tr: Translator, halfwidth: float | None) -> str:
        if self.kind == "percent" and halfwidth is not None:
            return tr.number(halfwidth * self.scale, self.decimals) + NBSP + (
                "pt" if tr.lang == "fr" else "pts")
        return self.value(tr, halfwidth)

    def pm(self, tr: Translator, estimate: float | None, halfwidth: float | None) -> str:
        """``1 234 ± 56``: no-break spaces, so the pair never wraps."""
        return f"{self.value(tr, estimate)}{NBSP}±{NBSP}{self.spread(tr, halfwidth)}"

    def interval(self, tr: Translator, low: float | None, high: float | None) -> str:
        sep = " ; " if tr.lang == "fr" else ", "
        return f"[{self.value(tr, low)}{sep}{self.value(tr, high)}]"


def display_for(release: PublishedRelease) -> Display:
    """Pick units from the query: euros for cent amounts, percent for 0–1 rates."""
    value = release.value_column or ""
    clip = release.meta.get("clipping")
    if value.endswith("_cents"):
        return Display("euro", 0, 0.01)
    if release.measure == "mean" and isinstance(clip, list) and [float(c) for c in clip] == [
            0.0, 1.0]:
        return Display("percent", 1, 100.0)
    if release.measure == "mean":
        return Display("value", 2)
    return Display("count", 0)


@dataclass(frozen=True)
class Cell:
    """One published row: its group keys and its estimate with the 95 % interval."""

    keys: tuple[Any, ...]
    estimate: float | None
    low: float | None
    high: float | None
    halfwidth: float | None

    @property
    def uncertain(self) -> bool:
        """The interval is wider than the estimate (or a number is missing)."""
        if self.estimate is None or self.low is None or self.high is None:
            return True
        return self.high - self.low > abs(self.estimate)

    def bar(self, display: Display, tr: Translator, series: int = 0) -> Bar:
        s = display.scale
        est = (self.estimate or 0.0) * s
        return Bar(estimate=est, low=(self.low if self.low is not None else 0.0) * s,
                   high=(self.high if self.high is not None else 0.0) * s,
                   note=display.pm(tr, self.estimate, self.halfwidth), flagged=self.uncertain,
                   series=series)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def cells_of(release: PublishedRelease) -> list[Cell]:
    """The cells as shown: the bias-aware estimate and interval when the table has them
    (count + the DP estimate of the rows its bounds cut), else the estimate as published."""
    prefix = "bias_aware_" if release.rows and "bias_aware_estimate" in release.rows[0] else ""
    return [Cell(keys=tuple(row.get(c) for c in release.group_by),
                 estimate=_number(row.get(f"{prefix}estimate")),
                 low=_number(row.get(f"{prefix}ci95_low")),
                 high=_number(row.get(f"{prefix}ci95_high")),
                 halfwidth=_number(row.get(f"{prefix}ci95_halfwidth")))
            for row in release.rows]


def _cut_note(release: PublishedRelease, tr: Translator) -> Markup:
    """What the bounds left out, measured under DP, said next to the table (principle 12)."""
    cut = release.meta.get("rows_cut")
    if not isinstance(cut, Mapping) or not cut.get("measured"):
        return Markup("")
    bounds = release.meta.get("bounds") or {}
    groups, per = bounds.get("max_groups"), bounds.get("max_rows_per_group")
    text = (f"{per} row(s) × {groups} cell(s)" if tr.lang == "en"
            else f"{per} ligne(s) × {groups} case(s)")
    estimate = _number(cut.get("estimate")) or 0.0
    half = _number(cut.get("ci95_halfwidth")) or 0.0
    share = _number(cut.get("share_estimate"))
    aware = bool(release.rows) and "bias_aware_estimate" in release.rows[0]
    if aware and share is not None:
        first = tr.t("cut_share", share=tr.number(share * 100, 0) + (NBSP + "%"
                                                                 if tr.lang == "fr" else "%"),
                     bounds=text, half=tr.number(half, 0))
    else:
        first = tr.t("cut_rows", rows=tr.number(max(estimate, 0.0), 0),
                     half=tr.number(half, 0), bounds=text)
    more_bound = cut.get("bound") or {}
    more = (f"{per} + {more_bound.get('max_rows_per_group')} row(s) per cell"
            if tr.lang == "en" else
            f"{per} + {more_bound.get('max_rows_per_group')} ligne(s) par case")
    return tag("p", first + " " + tr.t("cut_rest", more=more), class_="note cut")


# --------------------------------------------------------------------------- labels

def group_label(column: str, key: Any, tr: Translator, geo: Geography,
                short: bool = False) -> str:
    """A group key as a strategist reads it: ``75 Paris``, ``mars 2026``, ``1 · soutien fort``."""
    if key is None:
        return "—"
    text = str(key)
    if column == "departement":
        name = geo.departements.get(text)
        return f"{text} {name}" if name else text
    if column == "region":
        return geo.regions.get(text, text)
    if column == "commune":
        commune = geo.communes.get(text)
        return f"{commune.name} ({text})" if commune else text
    if column == "age_band":
        return tr.age_band(text)
    if column == "support_level":
        return tr.support_level(key)
    if column == "result":
        return tr.result(text)
    if column == "channel":
        return tr.channel(text)
    if column == "week":
        return tr.week(text, short)
    if column == "month":
        return tr.month(text)
    if column == "quantile":
        return f"q{float(key) * 100:g}"
    return text


def _natural_key(key: Any) -> tuple[int, Any]:
    return (0, key) if isinstance(key, int | float) else (1, str(key))


def _by_estimate(cell: Cell) -> tuple[bool, float]:
    return (cell.estimate is None, -(cell.estimate or 0.0))


def _flag(tr: Translator, cell: Cell) -> Markup:
    if not cell.uncertain:
        return Markup("")
    return tag("span", "⚠ " + tr.t("uncertain"), class_="badge warn")


def _uncertain_summary(tr: Translator, cells: Sequence[Cell]) -> Markup:
    flagged = sum(1 for c in cells if c.uncertain)
    if not flagged:
        return Markup("")
    return tag("p", tr.t("uncertain_count", count=flagged, total=len(cells)), class_="note")


# --------------------------------------------------------------------------- layouts

Fmt = Callable[[float], str]


def _tick_format(display: Display, tr: Translator) -> Fmt:
    """Axis ticks in the section's unit, with only the decimals a tick needs."""
    def fmt(value: float) -> str:
        decimals = next((d for d in range(7) if abs(round(value, d) - value) < 1e-9), 6)
        return Display(display.kind, decimals, 1.0).value(tr, value)

    return fmt


def _scalar(release: PublishedRelease, cells: list[Cell], tr: Translator,
            display: Display, title: str) -> Markup:
    cell = cells[0]
    chart = bar_chart([BarGroup(tr.t("total_row"), (cell.bar(display, tr),))], title=title,
                      fmt=_tick_format(display, tr))
    return join([tag("p", display.pm(tr, cell.estimate, cell.halfwidth), class_="big"),
                 _flag(tr, cell), Markup(chart)])


def _trend(release: PublishedRelease, cells: list[Cell], tr: Translator, display: Display,
           geo: Geography, title: str) -> Markup:
    column = release.group_by[0]
    ordered = sorted(cells, key=lambda c: _natural_key(c.keys[0]))
    points = [Point(tick=group_label(column, c.keys[0], tr, geo, short=True),
                    label=group_label(column, c.keys[0], tr, geo),
                    estimate=(c.estimate or 0.0) * display.scale,
                    low=(c.low if c.low is not None else 0.0) * display.scale,
                    high=(c.high if c.high is not None else 0.0) * display.scale,
                    note=display.pm(tr, c.estimate, c.halfwidth), flagged=c.uncertain)
              for c in ordered]
    chart = trend_chart(points, title=title, fmt=_tick_format(display, tr))
    rows = [(group_label(column, c.keys[0], tr, geo), display.pm(tr, c.estimate, c.halfwidth),
             display.interval(tr, c.low, c.high), _flag(tr, c)) for c in ordered]
    listing = table([tr.column(column), tr.t("col_estimate"), tr.t("col_interval"),
                     tr.t("col_flag")], rows, numeric=(1, 2),
                    row_classes=["uncertain" if c.uncertain else "" for c in ordered])
    parts: list[object] = [Markup(chart)]
    if column == "week" and release.measure in ("count", "sum"):
        parts.append(_week_over_week(ordered, tr, display, geo))
    parts.append(_details(tr, len(rows), listing, open_=len(rows) <= 12))
    return join(parts)


@dataclass(frozen=True)
class Change:
    """The difference of two consecutive published weeks, with its 95 % half-width."""

    before: Cell
    after: Cell
    difference: float
    halfwidth: float

    @property
    def reading(self) -> Literal["up", "down", "flat"]:
        if self.difference - self.halfwidth > 0:
            return "up"
        if self.difference + self.halfwidth < 0:
            return "down"
        return "flat"


def week_over_week(cells: Sequence[Cell]) -> list[Change]:
    """Consecutive weeks' differences (post-processing of published values only).

    Each week's count carries its own, independent Gaussian noise, so the difference's
    95 % half-width is √(h₁² + h₂²) of the two published half-widths.

    >>> a = Cell(("2026-W01",), 100.0, 60.0, 140.0, 40.0)
    >>> b = Cell(("2026-W02",), 200.0, 170.0, 230.0, 30.0)
    >>> (c,) = week_over_week([a, b]); (c.difference, c.halfwidth, c.reading)
    (100.0, 50.0, 'up')
    """
    ordered = [c for c in cells if c.estimate is not None and c.halfwidth is not None]
    changes = []
    for before, after in zip(ordered, ordered[1:], strict=False):
        assert before.estimate is not None and after.estimate is not None
        assert before.halfwidth is not None and after.halfwidth is not None
        changes.append(Change(before, after, after.estimate - before.estimate,
                              math.hypot(before.halfwidth, after.halfwidth)))
    return changes


def _week_over_week(cells: Sequence[Cell], tr: Translator, display: Display,
                    geo: Geography) -> Markup:
    changes = week_over_week(cells)
    if not changes:
        return Markup("")
    words = {"up": tr.t("wow_up"), "down": tr.t("wow_down"), "flat": tr.t("wow_flat")}
    rows = []
    for c in changes:
        sign = "+" if c.difference > 0 else ""
        rows.append([f"{group_label('week', c.before.keys[0], tr, geo, short=True)} → "
                     f"{group_label('week', c.after.keys[0], tr, geo, short=True)}",
                     f"{sign}{display.pm(tr, c.difference, c.halfwidth)}",
                     tag("span", words[c.reading], class_=f"badge wow-{c.reading}")])
    listing = table([tr.t("wow_col_weeks"), tr.t("wow_col_change"), tr.t("wow_col_reading")],
                    rows, numeric=(1,), row_classes=[f"wow {c.reading}" for c in changes])
    return join([Markup('<div class="wow-block">'), tag("h3", tr.t("wow_title")), listing,
                 tag("p", tr.t("wow_note"), class_="note"), Markup("</div>")])


def _ranking(release: PublishedRelease, cells: list[Cell], tr: Translator, display: Display,
             geo: Geography, title: str) -> Markup:
    column = release.group_by[0]
    by_estimate = column not in ORDERED
    ordered = sorted(cells, key=_by_estimate if by_estimate else
                     (lambda c: _natural_key(c.keys[0])))
    shown = ordered[:CHART_TOP] if len(ordered) > CHART_MAX_BARS else ordered
    figure = _map(release, cells, tr, display, geo, title) if column == "departement" else None
    chart = bar_chart([BarGroup(group_label(column, c.keys[0], tr, geo),
                                (c.bar(display, tr),)) for c in shown],
                      title=title, fmt=_tick_format(display, tr))
    parts: list[object] = [] if figure is None else [figure]
    parts.append(Markup(chart))
    if len(shown) < len(ordered):
        parts.append(tag("p", tr.t("chart_top", count=len(shown), total=len(ordered)),
                         class_="note"))
    headers: list[str] = [tr.column(column), tr.t("col_estimate"), tr.t("col_interval"),
                          tr.t("col_flag")]
    rows: list[list[object]] = [[group_label(column, c.keys[0], tr, geo),
                                 display.pm(tr, c.estimate, c.halfwidth),
                                 display.interval(tr, c.low, c.high), _flag(tr, c)]
                                for c in ordered]
    numeric: tuple[int, ...] = (1, 2)
    if by_estimate:
        headers.insert(0, tr.t("col_rank"))
        rows = [[index, *row] for index, row in enumerate(rows, 1)]
        numeric = (0, 2, 3)
    classes = ["uncertain" if c.uncertain else "" for c in ordered]
    parts.append(table(headers, rows, numeric=numeric, row_classes=classes))
    return join(parts)


def _map(release: PublishedRelease, cells: list[Cell], tr: Translator, display: Display,
         geo: Geography, title: str) -> Markup:
    """The choropleth of a one-column département table (published values only)."""
    values = {str(c.keys[0]): MapCell(
        None if c.estimate is None else c.estimate * display.scale,
        group_label("departement", c.keys[0], tr, geo),
        display.pm(tr, c.estimate, c.halfwidth), c.uncertain) for c in cells}
    names = {code: f"{code} {name}" for code, name in geo.departements.items()}
    svg = choropleth_svg(values, title=tr.t("map_title", title=title),
                         legend_uncertain=tr.t("uncertain"), legend_blank=tr.t("map_blank"),
                         fmt=lambda v: Display(display.kind, display.decimals, 1.0).value(tr, v),
                         map_id=f"map-{release.query_name}",
                         names=names)
    return join([Markup(f'<figure class="map" data-query="{esc(release.query_name)}">'),
                 Markup(svg), tag("figcaption", tr.t("map_note"), class_="note"),
                 Markup("</figure>")])


def _matrix(release: PublishedRelease, cells: list[Cell], tr: Translator, display: Display,
            geo: Geography, title: str) -> Markup:
    outer_col, inner_col = release.group_by[0], release.group_by[1]
    inner_keys = sorted({c.keys[1] for c in cells}, key=_natural_key)
    totals: dict[Any, float] = {}
    for c in cells:
        totals[c.keys[0]] = totals.get(c.keys[0], 0.0) + (c.estimate or 0.0)
    if outer_col in ORDERED:
        outer_keys = sorted(totals, key=_natural_key)
    else:
        outer_keys = sorted(totals, key=lambda k: (-totals[k], _natural_key(k)))
    grid = {(c.keys[0], c.keys[1]): c for c in cells}
    limit = max(3, _MATRIX_BARS // max(len(inner_keys), 1))
    charted = outer_keys[:limit]
    groups = [BarGroup(group_label(outer_col, o, tr, geo),
                       tuple(grid[(o, i)].bar(display, tr, series=n)
                             for n, i in enumerate(inner_keys) if (o, i) in grid))
              for o in charted]
    chart = bar_chart(groups, title=title, fmt=_tick_format(display, tr),
                      series_labels=[group_label(inner_col, i, tr, geo) for i in inner_keys])
    parts: list[object] = [Markup(chart)]
    if len(charted) < len(outer_keys):
        parts.append(tag("p", tr.t("chart_top", count=len(charted), total=len(outer_keys)),
                         class_="note"))
    rows = []
    for o in outer_keys:
        row: list[object] = [group_label(outer_col, o, tr, geo)]
        for i in inner_keys:
            found = grid.get((o, i))
            if found is None:
                row.append("—")
                continue
            mark = tag("span", "⚠", class_="badge warn", title=tr.t("uncertain")) \
                if found.uncertain else ""
            row.append(join([display.pm(tr, found.estimate, found.halfwidth), " ", mark]))
        rows.append(row)
    headers = [f"{tr.column(outer_col)} \\ {tr.column(inner_col)}",
               *(group_label(inner_col, i, tr, geo) for i in inner_keys)]
    listing = table(headers, rows, numeric=tuple(range(1, len(headers))))
    parts.append(_details(tr, len(rows), listing, open_=len(rows) <= 30))
    return join(parts)


def _long(release: PublishedRelease, cells: list[Cell], tr: Translator, display: Display,
          geo: Geography, title: str) -> Markup:
    columns = release.group_by

    def label(c: Cell) -> str:
        return " · ".join(group_label(col, k, tr, geo) for col, k in zip(columns, c.keys,
                                                                          strict=True))

    ordered = sorted(cells, key=_by_estimate)
    shown = ordered[:CHART_TOP]
    chart = bar_chart([BarGroup(label(c), (c.bar(display, tr),)) for c in shown],
                      title=title, fmt=_tick_format(display, tr))
    rows = [[*(group_label(col, k, tr, geo) for col, k in zip(columns, c.keys, strict=True)),
             display.pm(tr, c.estimate, c.halfwidth), display.interval(tr, c.low, c.high),
             _flag(tr, c)] for c in ordered]
    headers = [*(tr.column(c) for c in columns), tr.t("col_estimate"), tr.t("col_interval"),
               tr.t("col_flag")]
    listing = table(headers, rows, numeric=(len(columns), len(columns) + 1))
    return join([Markup(chart), _details(tr, len(rows), listing, open_=len(rows) <= 30)])


def _details(tr: Translator, count: int, content: Markup, open_: bool) -> Markup:
    attr = " open" if open_ else ""
    return Markup(f"<details{attr}><summary>{esc(tr.t('table_all', count=count))}</summary>"
                  f"{content}</details>")


# --------------------------------------------------------------------------- page

def _measure_text(release: PublishedRelease, display: Display, tr: Translator) -> str:
    measure = release.measure
    key = {"count": "measure_count", "sum": "measure_sum", "histogram": "measure_histogram",
           "quantile": "measure_quantile"}.get(measure, "measure_mean")
    query = release.meta.get("query")
    if measure == "quantile" and isinstance(query, Mapping) and query.get("quantiles") not in (
            None, [0.5]):
        key = "measure_quantiles"
    if measure == "mean" and display.kind == "percent":
        key = "measure_rate"
    unit = {"euro": "unit_euro", "percent": "unit_percent", "value": "unit_value"}.get(
        display.kind, "unit_count")
    return f"{tr.t(key)} · {tr.t(unit)}"


def _section(release: PublishedRelease, anchor: str, tr: Translator, geo: Geography) -> Markup:
    title = release.title(tr.lang)
    head = tag("h2", title)
    if release.problem is not None:
        key = {"missing": "missing_file", "integrity": "integrity_error"}.get(
            release.problem, "malformed_file")
        body: object = tag("p", tr.t(key, file=release.table_file), class_="alert")
        return Markup(f'<section class="report-section problem" id="{esc(anchor)}" '
                      f'data-query="{esc(release.query_name)}">{head}{body}</section>')
    display = display_for(release)
    cells = cells_of(release)
    sub = tag("p", _measure_text(release, display, tr), class_="sub")
    note = release.meta.get("query", {}).get("min_group_size_note") \
        if isinstance(release.meta.get("query"), Mapping) else None
    if not cells:
        body = tag("p", "—")
    elif not release.group_by:
        body = _scalar(release, cells, tr, display, title)
    elif len(release.group_by) == 1 and release.group_by[0] in TIME:
        body = _trend(release, cells, tr, display, geo, title)
    elif len(release.group_by) == 1:
        body = _ranking(release, cells, tr, display, geo, title)
    elif len(release.group_by) == 2:
        body = _matrix(release, cells, tr, display, geo, title)
    else:
        body = _long(release, cells, tr, display, geo, title)
    parts: list[object] = [head, sub, _cut_note(release, tr), _uncertain_summary(tr, cells),
                           body]
    if note and tr.lang == "en":  # plans write their notes in English: no mixed languages
        parts.append(tag("p", str(note), class_="note"))
    return Markup(f'<section class="report-section" id="{esc(anchor)}" '
                  f'data-query="{esc(release.query_name)}">{join(parts)}</section>')


def _day(timestamp: str) -> str:
    return timestamp[:10] if len(timestamp) >= 10 else timestamp or "—"


def _cost(release: PublishedRelease) -> str:
    rho = release.meta.get("rho")
    eps = release.meta.get("epsilon_equivalent")
    delta = release.meta.get("delta")
    text = f"ρ = {rho}" if rho else "—"
    if eps and delta:
        text += f" (ε ≈ {eps}, δ = {delta})"
    return text


def _footer(releases: Sequence[PublishedRelease], tr: Translator) -> Markup:
    rows = [[release.title(tr.lang), _day(release.created_at),
             tag("span", str(release.meta.get("plan_hash", "—"))[:16] + "…",
                 class_="hash", title=str(release.meta.get("plan_hash", ""))),
             join([f"n° {release.ledger_seq} · " if tr.lang == "fr" else
                   f"seq {release.ledger_seq} · ", tag("code", release.release_id)]),
             _cost(release)] for release in releases]
    listing = table([tr.t("col_release"), tr.t("col_date"), tr.t("col_plan"),
                     tr.t("col_ledger"), tr.t("col_cost")], rows)
    return join([Markup('<footer class="page" id="provenance">'), tag("h2", tr.t("footer_title")),
                 listing, tag("p", tr.t("footer_note"), class_="note"),
                 tag("p", f"{tr.t('map_credit')} ({CREDIT_URL})", class_="note credit"),
                 Markup("</footer>")])


def _explainer(tr: Translator) -> Markup:
    return join([Markup('<aside class="explainer" id="noise">'), tag("h2", tr.t("noise_title")),
                 tag("p", tr.t("noise_p1")), tag("p", tr.t("noise_p2")),
                 tag("p", tr.t("noise_p3")), Markup("</aside>")])


def render_strategist_report(releases: Sequence[PublishedRelease], *, lang: str,
                             generated_at: datetime) -> str:
    """The whole HTML page for ``releases`` (see :func:`latest_releases`)."""
    tr = translator(lang)
    geo = load_geography()
    datasets = sorted({str(r.meta.get("dataset_id", "?")) for r in releases}) or ["—"]
    latest = max((r.created_at for r in releases), default="")
    header = [tag("h1", tr.t("strategist_title")),
              tag("p", tr.t("strategist_lead", dataset=", ".join(datasets)), class_="sub"),
              tag("p", " · ".join([tr.t("generated", date=_stamp(generated_at)),
                                   tr.t("data_as_of", date=_day(latest)),
                                   tr.t("releases_count", count=len(releases))]),
                  class_="meta")]
    anchors = [f"release-{index}" for index in range(1, len(releases) + 1)]
    parts: list[object] = [Markup('<header class="page">'), join(header), Markup("</header>"),
                           _explainer(tr)]
    if releases:
        items = join(tag("li", Markup(f'<a href="#{a}">{esc(r.title(tr.lang))}</a>'))
                     for a, r in zip(anchors, releases, strict=True))
        parts.append(Markup(f'<nav class="toc"><h2>{esc(tr.t("contents"))}</h2>'
                            f"<ol>{items}</ol></nav>"))
        parts.extend(_section(r, a, tr, geo) for a, r in zip(anchors, releases, strict=True))
        parts.append(_footer(releases, tr))
    else:
        parts.append(tag("p", tr.t("no_releases"), class_="alert"))
    return page(title=tr.t("strategist_title"), lang=tr.lang, body=join(parts))


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_strategist_report(settings: Settings, *, lang: str = "fr", out: Path | None = None,
                            generated_at: datetime | None = None) -> Path:
    """Write the strategist report (default ``reports/strategist_report.html``); return its path.

    ``generated_at`` is the date printed on the report; by default the time it is written.
    Raises :class:`~reports.i18n.UnsupportedLanguage` (exit 2) for a language other than fr/en.
    """
    translator(lang)  # refuse a bad language before reading anything
    releases = latest_releases(settings.published)
    moment = generated_at or datetime.now(UTC)
    document = render_strategist_report(releases, lang=lang, generated_at=moment)
    target = write_html(out or settings.reports / DEFAULT_NAME, document)
    log.info("strategist report (%s, %d releases) written to %s", lang, len(releases), target)
    return target
