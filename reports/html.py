"""The page both reports share: one self-contained HTML file with its CSS inlined.

Why one file and no external resource: a strategist opens the report offline or from an
email attachment, and a report that fetched a font or a script would also tell a third party
when it was read. Text is escaped by default: a plain ``str`` is always escaped, and only
:class:`Markup` (HTML this package built itself) is inserted as is.

>>> str(cell("<b>"))
'&lt;b&gt;'
>>> str(cell(Markup("<b>ok</b>")))
'<b>ok</b>'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path


class Markup(str):
    """HTML built by this package (already escaped): inserted without escaping again."""

    __slots__ = ()


BR = Markup("<br>")


def esc(value: object) -> Markup:
    """Escape any value for HTML text and attributes (quotes included)."""
    if isinstance(value, Markup):
        return value
    return Markup(escape(str(value), quote=True))


def cell(value: object) -> Markup:
    return esc(value)


def join(parts: Iterable[object]) -> Markup:
    """Concatenate fragments, escaping those that are not :class:`Markup`."""
    return Markup("".join(esc(p) for p in parts))


def tag(name: str, content: object = "", **attrs: object) -> Markup:
    """``<name attr="...">content</name>``; attribute values are escaped; ``class_`` → class."""
    rendered = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"'
                       for k, v in attrs.items() if v is not None)
    return Markup(f"<{name}{rendered}>{esc(content)}</{name}>")


def table(headers: Sequence[object], rows: Iterable[Sequence[object]], *,
          class_: str = "data", numeric: Sequence[int] = (),
          row_classes: Sequence[str] | None = None) -> Markup:
    """A table; columns listed in ``numeric`` are right-aligned (``num`` class)."""
    head = "".join(f'<th{" class=num" if i in numeric else ""} scope="col">{esc(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for index, row in enumerate(rows):
        klass = f' class="{esc(row_classes[index])}"' if row_classes and row_classes[index] \
            else ""
        cells = "".join(f'<td{" class=num" if i in numeric else ""}>{esc(v)}</td>'
                        for i, v in enumerate(row))
        body.append(f"<tr{klass}>{cells}</tr>")
    return Markup(f'<table class="{esc(class_)}"><thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(body)}</tbody></table>')


CSS = """
:root { color-scheme: light; --ink: #222; --muted: #5f6368; --line: #d9d9d9; --accent: #0072B2;
  --warn-bg: #fff4e0; --warn: #8a4b00; --bad-bg: #fde8e6; --bad: #a50e0e; --ok-bg: #e6f4ea;
  --ok: #137333; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; color: var(--ink); background: #fafafa; }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 48px; background: #fff; }
header.page { border-bottom: 3px solid var(--accent); margin-bottom: 20px; }
h1 { font-size: 1.6em; margin: 0 0 6px; }
h2 { font-size: 1.25em; margin: 0 0 4px; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
.meta, .sub, .note { color: var(--muted); font-size: 0.9em; margin: 2px 0; }
section.report-section { border-top: 1px solid var(--line); padding: 18px 0 10px; }
.explainer { background: #eef5fb; border-left: 4px solid var(--accent); padding: 10px 16px;
  margin: 16px 0; border-radius: 4px; }
.explainer h2 { font-size: 1.1em; }
nav.toc ol { columns: 2; margin: 6px 0 0; padding-left: 22px; font-size: 0.92em; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 10px 0; font-size: 12px;
  font-family: inherit; }
svg.chart text { fill: var(--ink); }
svg.chart text.tick, svg.chart text.note, svg.chart text.axis-label { fill: var(--muted); }
svg.choropleth { display: block; max-width: 100%; height: auto; margin: 10px 0;
  font-family: inherit; }
svg.choropleth .dep:hover { stroke: #222; stroke-width: 1.2; }
figure.map { margin: 0; }
.badge.wow-up { background: #e6f2ea; color: #1d6b3a; }
.badge.wow-down { background: #fbeaea; color: #9b2c2c; }
.badge.wow-flat { background: #eee; color: #555; }
svg.gauge { display: inline-block; vertical-align: middle; font-size: 12px; }
table.data { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 0.9em; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 4px 8px;
  text-align: left; vertical-align: top; }
table.data th { background: #f3f3f3; }
table.data .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.uncertain td { color: var(--muted); }
table.compact { font-size: 0.8em; }
tr.problem td { background: var(--bad-bg); }
.wide { overflow-x: auto; }
.nowrap { white-space: nowrap; }
figure.consumption { margin: 12px 0; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 0.82em;
  white-space: nowrap; }
.badge.warn { background: var(--warn-bg); color: var(--warn); }
.badge.bad { background: var(--bad-bg); color: var(--bad); }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.big { font-size: 2em; font-weight: 600; margin: 6px 0; }
.alert { padding: 8px 12px; border-radius: 4px; background: var(--bad-bg); color: var(--bad); }
code, .hash { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 0.85em; word-break: break-all; }
details > summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
footer.page { border-top: 3px solid var(--accent); margin-top: 24px; padding-top: 12px; }
@media print { body { background: #fff; } main { max-width: none; } details { display: block; } }
"""


def page(*, title: str, lang: str, body: Markup) -> str:
    """A complete HTML document: inline CSS, no script, no external resource.

    The Content-Security-Policy forbids the browser to load anything from anywhere, so even
    a value that slipped past escaping could not fetch or run code.
    """
    policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return ("<!DOCTYPE html>\n"
            f'<html lang="{esc(lang)}"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")


def write_html(target: Path, document: str) -> Path:
    """Write atomically (a hidden partial file renamed into place): a reader never sees half
    a report, and a failed run leaves the previous one in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(document, encoding="utf-8")
    os.replace(partial, target)
    return target
