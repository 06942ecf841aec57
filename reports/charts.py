"""Inline SVG charts: bars with error bars, trends with an uncertainty band, budget steps.

Why hand-written SVG: a report must open offline and from an email attachment, so no
JavaScript library and no CDN. Every chart is a static ``<svg>`` with a ``<title>`` (screen
readers, hover tooltips) and explicit width/height, built from numbers already chosen by the
caller; every text is escaped here. Uncertain values are drawn, never hidden: a flagged bar
is pale with a dashed outline, a flagged point is hollow.

>>> svg = bar_chart([BarGroup("Paris", (Bar(120.0, 80.0, 160.0, note="120 ± 40"),))],
...                 title="Supporters", fmt=lambda v: f"{v:.0f}")
>>> svg.startswith("<svg") and "120 ± 40" in svg and "<script" not in svg
True
>>> nice_ticks(0, 97)
[0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

Formatter = Callable[[float], str]

#: Okabe–Ito: distinguishable by colour-blind readers, and in grey print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F7F7F",
           "#000000")
_INK = "#222"
_GRID = "#e3e3e3"
_CHAR = 7.0  # average width of a 12px sans-serif character, to size label columns


@dataclass(frozen=True)
class Bar:
    """One estimate with its 95 % interval; ``note`` is its text (``1 234 ± 56``)."""

    estimate: float
    low: float
    high: float
    note: str = ""
    flagged: bool = False
    series: int = 0


@dataclass(frozen=True)
class BarGroup:
    """A labelled row of a bar chart: one bar, or one per series (grouped bars)."""

    label: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Point:
    """One step of a trend: its axis ``tick``, full ``label`` for the tooltip, and interval."""

    tick: str
    label: str
    estimate: float
    low: float
    high: float
    note: str = ""
    flagged: bool = False


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _f(value: float) -> str:
    """A coordinate: one decimal is plenty at screen resolution."""
    return f"{value:.1f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart) covering ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high < low:
        low, high = high, low
    if high == low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    steps = max(1, round((last - first) / step))
    return [round(first + i * step, 12) + 0.0 for i in range(steps + 1)]


def _domain(low: float, high: float) -> tuple[float, float, list[float]]:
    """The axis range and its ticks: up to a round tick at the top, and exactly down to a
    negative minimum at the bottom (noise can push an estimate a little below zero, which
    should not waste a whole tick step of the chart)."""
    ticks = nice_ticks(low, high)
    if low < 0 < ticks[-1] and ticks[0] < low:
        return low, ticks[-1], [t for t in ticks if t >= low]
    return ticks[0], ticks[-1], ticks


def _open(width: float, height: float, title: str, css_class: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" '
            f'viewBox="0 0 {_f(width)} {_f(height)}" width="{_f(width)}" height="{_f(height)}" '
            f'role="img"><title>{_e(title)}</title>')


def _legend(labels: Sequence[str], left: float, right: float, y: float) -> tuple[str, float]:
    """Colour keys, wrapped onto several lines when needed; returns the SVG and its bottom."""
    parts = []
    x = left
    for index, label in enumerate(labels):
        item = 26 + _CHAR * len(label)
        if x > left and x + item > right:
            x, y = left, y + 18
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{_f(x)}" y="{_f(y - 9)}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{_f(x + 14)}" y="{_f(y)}">{_e(label)}</text>')
        x += item
    return "".join(parts), y + 10


def bar_chart(groups: Sequence[BarGroup], *, title: str, fmt: Formatter, width: int = 760,
              series_labels: Sequence[str] = (), show_notes: bool = True) -> str:
    """Horizontal bars with 95 % error bars, one row per group (grouped when several series).

    Horizontal, because département and result names are long and read best on the left.
    """
    bars = [b for g in groups for b in g.bars]
    lows = [min(b.low, b.estimate) for b in bars] + [0.0]
    highs = [max(b.high, b.estimate) for b in bars] + [0.0]
    lo, hi, ticks = _domain(min(lows), max(highs))
    label_w = min(250.0, max(40.0, _CHAR * max((len(g.label) for g in groups), default=4) + 4))
    note_w = (min(190.0, _CHAR * max((len(b.note) for b in bars), default=0) + 28)
              if show_notes else 10.0)
    left, right = label_w + 12, width - note_w
    legend, top = _legend(series_labels, left, width - 4, 16) if series_labels else ("", 0.0)
    top += 12
    bar_h, bar_gap, group_gap = 14.0, 2.0, 9.0
    height = top + sum(len(g.bars) * (bar_h + bar_gap) - bar_gap + group_gap for g in groups)
    plot_bottom = height
    height += 26

    def x(value: float) -> float:
        return left + (value - lo) / (hi - lo) * (right - left)

    out = [_open(width, height, title, "bar-chart"), legend]
    for tick in ticks:
        out.append(f'<line x1="{_f(x(tick))}" x2="{_f(x(tick))}" y1="{_f(top - 4)}" '
                   f'y2="{_f(plot_bottom)}" stroke="{_GRID}"/>'
                   f'<text x="{_f(x(tick))}" y="{_f(plot_bottom + 16)}" '
                   f'text-anchor="middle" class="tick">{_e(fmt(tick))}</text>')
    zero = x(0.0)
    out.append(f'<line x1="{_f(zero)}" x2="{_f(zero)}" y1="{_f(top - 4)}" '
               f'y2="{_f(plot_bottom)}" stroke="{_INK}"/>')
    y = top
    for group in groups:
        block = len(group.bars) * (bar_h + bar_gap) - bar_gap
        out.append(f'<text x="{_f(label_w)}" y="{_f(y + block / 2 + 4)}" text-anchor="end" '
                   f'class="label">{_e(group.label)}</text>')
        for bar in group.bars:
            colour = PALETTE[bar.series % len(PALETTE)]
            x0, x1 = sorted((zero, x(bar.estimate)))
            mid = y + bar_h / 2
            style = (f'fill="{colour}" fill-opacity="0.3" stroke="{colour}" '
                     'stroke-dasharray="3 2"' if bar.flagged else f'fill="{colour}"')
            out.append(f'<g class="bar{" flagged" if bar.flagged else ""}">'
                       f'<title>{_e(group.label)}: {_e(bar.note)}</title>'
                       f'<rect x="{_f(x0)}" y="{_f(y)}" width="{_f(max(x1 - x0, 1.0))}" '
                       f'height="{_f(bar_h)}" {style}/>'
                       f'<path d="M{_f(x(bar.low))} {_f(mid)}H{_f(x(bar.high))}'
                       f'M{_f(x(bar.low))} {_f(mid - 4)}V{_f(mid + 4)}'
                       f'M{_f(x(bar.high))} {_f(mid - 4)}V{_f(mid + 4)}" '
                       f'stroke="{_INK}" stroke-width="1.3" fill="none"/>')
            if show_notes:
                mark = " ⚠" if bar.flagged else ""
                out.append(f'<text x="{_f(right + 8)}" y="{_f(mid + 4)}" class="note">'
                           f'{_e(bar.note + mark)}</text>')
            out.append("</g>")
            y += bar_h + bar_gap
        y += group_gap - bar_gap
    out.append("</svg>")
    return "".join(out)


def trend_chart(points: Sequence[Point], *, title: str, fmt: Formatter, width: int = 760,
                height: int = 280) -> str:
    """A line of estimates over time inside a shaded band from the 95 % intervals."""
    lows = [min(p.low, p.estimate) for p in points] + [0.0]
    highs = [max(p.high, p.estimate) for p in points] + [0.0]
    lo, hi, ticks = _domain(min(lows), max(highs))
    left = 14.0 + _CHAR * max(len(fmt(t)) for t in ticks)
    right = width - 6.0 - _CHAR * len(points[-1].tick) / 2 if points else width - 16.0
    top, bottom = 12.0, height - 34.0
    count = len(points)

    def x(index: int) -> float:
        return (left + right) / 2 if count == 1 else left + index * (right - left) / (count - 1)

    def y(value: float) -> float:
        return bottom - (value - lo) / (hi - lo) * (bottom - top)

    out = [_open(width, height, title, "trend-chart")]
    for tick in ticks:
        out.append(f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(y(tick))}" '
                   f'y2="{_f(y(tick))}" stroke="{_GRID}"/><text x="{_f(left - 6)}" '
                   f'y="{_f(y(tick) + 4)}" text-anchor="end" class="tick">{_e(fmt(tick))}</text>')
    every = max(1, math.ceil(count / 12))
    for index, point in enumerate(points):
        if index % every == 0 or index == count - 1:
            out.append(f'<text x="{_f(x(index))}" y="{_f(bottom + 16)}" text-anchor="middle" '
                       f'class="tick">{_e(point.tick)}</text>')
    if points:
        upper = [f"{_f(x(i))},{_f(y(p.high))}" for i, p in enumerate(points)]
        lower = [f"{_f(x(i))},{_f(y(p.low))}" for i, p in reversed(list(enumerate(points)))]
        if count == 1:  # a band needs some width to be seen
            upper = [f"{_f(x(0) - 6)},{_f(y(points[0].high))}",
                     f"{_f(x(0) + 6)},{_f(y(points[0].high))}"]
            lower = [f"{_f(x(0) + 6)},{_f(y(points[0].low))}",
                     f"{_f(x(0) - 6)},{_f(y(points[0].low))}"]
        out.append(f'<polygon class="band" points="{" ".join(upper + lower)}" '
                   f'fill="{PALETTE[0]}" fill-opacity="0.18" stroke="none"/>')
        line = " ".join(f"{_f(x(i))},{_f(y(p.estimate))}" for i, p in enumerate(points))
        out.append(f'<polyline class="line" points="{line}" fill="none" stroke="{PALETTE[0]}" '
                   'stroke-width="2"/>')
    out.append(f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(y(0.0))}" y2="{_f(y(0.0))}" '
               f'stroke="{_INK}"/>')
    for index, point in enumerate(points):
        fill = "#fff" if point.flagged else PALETTE[0]
        mark = " ⚠" if point.flagged else ""
        out.append(f'<g class="point{" flagged" if point.flagged else ""}">'
                   f'<title>{_e(point.label)}: {_e(point.note + mark)}</title>'
                   f'<circle cx="{_f(x(index))}" cy="{_f(y(point.estimate))}" r="3.5" '
                   f'fill="{fill}" stroke="{PALETTE[0]}" stroke-width="1.5"/></g>')
    out.append("</svg>")
    return "".join(out)


def cumulative_chart(steps: Sequence[tuple[int, float]], *, cap: float, title: str,
                     fmt: Formatter, cap_label: str, x_label: str, width: int = 760,
                     height: int = 260) -> str:
    """Budget spent after each ledger entry (a staircase), against the cap (a dashed line).

    While less than a quarter of the cap is spent, the axis stops above the spending (so the
    staircase can be read) and the cap is named at the top, marked as off the scale (↑).
    """
    top, bottom, right = 14.0, height - 44.0, width - 20.0
    last_seq = max((s for s, _ in steps), default=1)
    first_seq = min((s for s, _ in steps), default=1) - 1
    spent = max((v for _, v in steps), default=0.0)
    cap_on_scale = spent == 0 or cap <= 4 * spent
    y_ticks = nice_ticks(0.0, (max(cap, spent) * 1.04 if cap_on_scale else spent * 1.15)
                         or 1.0)
    x_ticks = [t for t in nice_ticks(first_seq, max(last_seq, first_seq + 1), 6)
               if t == int(t)]
    left = 14.0 + _CHAR * max(len(fmt(t)) for t in y_ticks)

    def x(seq: float) -> float:
        span = x_ticks[-1] - x_ticks[0] or 1.0
        return left + (seq - x_ticks[0]) / span * (right - left)

    def y(value: float) -> float:
        return bottom - value / y_ticks[-1] * (bottom - top)

    out = [_open(width, height, title, "cumulative-chart")]
    for tick in y_ticks:
        out.append(f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(y(tick))}" '
                   f'y2="{_f(y(tick))}" stroke="{_GRID}"/><text x="{_f(left - 6)}" '
                   f'y="{_f(y(tick) + 4)}" text-anchor="end" class="tick">{_e(fmt(tick))}</text>')
    for tick in x_ticks:
        out.append(f'<text x="{_f(x(tick))}" y="{_f(bottom + 16)}" text-anchor="middle" '
                   f'class="tick">{int(tick)}</text>')
    out.append(f'<text x="{_f((left + right) / 2)}" y="{_f(bottom + 34)}" text-anchor="middle" '
               f'class="axis-label">{_e(x_label)}</text>')
    path = [f"M{_f(x(first_seq))} {_f(y(0.0))}"]
    for seq, value in steps:
        path.append(f"H{_f(x(seq))}V{_f(y(value))}")
    out.append(f'<path class="steps" d="{"".join(path)}" fill="none" stroke="{PALETTE[0]}" '
               'stroke-width="2"/>')
    cap_y = y(cap) if cap_on_scale else top
    line = (f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(cap_y)}" y2="{_f(cap_y)}" '
            f'stroke="{PALETTE[5]}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            if cap_on_scale else "")
    arrow = "" if cap_on_scale else " ↑"
    out.append(f'<g class="cap"><title>{_e(cap_label)}: {_e(fmt(cap))}</title>{line}'
               f'<text x="{_f(right)}" y="{_f(cap_y - 5 if cap_on_scale else cap_y + 8)}" '
               f'text-anchor="end" fill="{PALETTE[5]}">{_e(cap_label)} {_e(fmt(cap))}{arrow}'
               "</text></g>")
    out.append(f'<line x1="{_f(left)}" x2="{_f(right)}" y1="{_f(bottom)}" y2="{_f(bottom)}" '
               f'stroke="{_INK}"/>')
    out.append("</svg>")
    return "".join(out)


def gauge(fraction: float, *, title: str, text: str, width: int = 320,
          height: int = 22) -> str:
    """A filled bar showing how much of a budget is used (orange past 80 %, red at 100 %)."""
    share = min(max(fraction, 0.0), 1.0)
    colour = PALETTE[5] if share >= 1 else PALETTE[1] if share >= 0.8 else PALETTE[2]
    return (_open(width, height, title, "gauge")
            + f'<rect x="0.5" y="0.5" width="{_f(width - 1)}" height="{_f(height - 1)}" '
            f'fill="#f4f4f4" stroke="#bbb"/>'
            f'<rect x="1" y="1" width="{_f((width - 2) * share)}" height="{_f(height - 2)}" '
            f'fill="{colour}"/><text x="{_f(width / 2)}" y="{_f(height / 2 + 4)}" '
            f'text-anchor="middle" class="gauge-text">{_e(text)}</text></svg>')
