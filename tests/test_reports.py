"""Strategist and auditor reports: content, formats, escaping, privacy, and their CLI commands.

Inputs are made the way production makes them: :func:`privacy.release.run_release` charges
the ledger, records signed results and writes ``published/``; only the DP engine is a
deterministic stand-in (:class:`DemoEngine`), so tests know every published number.
"""

from __future__ import annotations

import ast
import itertools
import json
import random
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, event, insert, text
from typer.testing import CliRunner

from cli.main import app
from core.geography import load_geography
from core.settings import Settings, load_settings
from privacy.plan import Plan, Query, parse_plan, public_keys
from privacy.release import ReleaseSummary, run_release
from privacy.signing import create_signing_key, public_key_path
from reports.auditor import write_auditor_report
from reports.charts import nice_ticks
from reports.i18n import LANGS, UnsupportedLanguage, check_lang, message_keys, translator
from reports.published import latest_releases
from reports.strategist import Cell, Display, write_strategist_report
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import (
    contacts,
    donations,
    identifier_links,
    ingested_files,
    persons,
)

ROOT = Path(__file__).resolve().parents[1]
GENERATED = datetime(2026, 3, 10, 8, 30, tzinfo=UTC)
NBSP = "\u00a0"
runner = CliRunner()


# --------------------------------------------------------------------------- inputs

def demo_plan(title_suffix: str = "") -> Plan:
    """Six queries, one per report layout: map-like ranking, trend, matrix, rate, euros."""
    def q(name: str, title: str, title_fr: str, **rest: Any) -> dict[str, Any]:
        return {"name": name, "title": title + title_suffix, "title_fr": title_fr + title_suffix,
                "share": "1/6", **rest}

    one = {"max_groups": 1, "max_rows_per_group": 1}
    return parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person",
        "cap": {"epsilon": 8, "delta": "1e-7"}, "per_run": {"rho": "1/250"},
        "cadence": "daily", "period": ["2026-01-01", "2026-03-31"],
        "releases": [
            q("supporters_by_departement", "Supporters by département",
              "Sympathisants par département", measure="count", table="persons",
              group_by=["departement"], bounds=one),
            q("contacts_by_week", "Contact attempts by week", "Tentatives par semaine",
              measure="count", table="contacts", group_by=["week"],
              bounds={"max_groups": 8, "max_rows_per_group": 2},
              min_group_size_note="Noise sigma about 220 attempts per week."),
            q("age_band_by_support_level", "Age band × support level",
              "Tranche d'âge × niveau de soutien", measure="histogram", table="persons",
              group_by=["age_band", "support_level"], bounds=one),
            q("email_opt_in_rate", "Email opt-in rate", "Taux de consentement aux courriels",
              measure="mean", table="persons", value="email_opt_in", clip=[0, 1], bounds=one),
            q("donations_total_by_region", "Total donated by région",
              "Total des dons par région", measure="sum", table="donations",
              value="amount_cents", clip=[0, 100000], group_by=["region"],
              bounds={"max_groups": 1, "max_rows_per_group": 6}),
            q("contacts_by_result", "Contact attempts by result",
              "Tentatives de contact par résultat", measure="histogram", table="contacts",
              group_by=["result"], bounds={"max_groups": 3, "max_rows_per_group": 2}),
        ]})


@dataclass(frozen=True)
class DemoData:
    tables: dict[str, Path]
    snapshot_hash: str


@dataclass(frozen=True)
class DemoResult:
    mechanism: str
    table: pl.DataFrame
    metadata: dict[str, Any]


@dataclass
class DemoEngine:
    """Stand-in for privacy.engine: plausible, seeded numbers for every public key.

    Some cells are small next to their half-width (so the report must flag them), and a
    few estimates are negative, as Gaussian noise makes them.
    """

    seed: int = 7
    queries: list[str] = field(default_factory=list)

    def snapshot(self, engine: Any, work_dir: Path) -> DemoData:
        path = work_dir / "snapshot.parquet"
        pl.DataFrame({"x": [1]}).write_parquet(path)
        return DemoData({"persons": path}, "ab" * 32)

    def mechanism(self, query: Query) -> str:
        return "gaussian (zCDP)"

    def run_query(self, query: Query, plan: Plan, data: DemoData, rho: Fraction) -> DemoResult:
        self.queries.append(query.name)
        owner = next((q for q in plan.releases
                      if q.hierarchy and query in q.level_queries()[:-1]), None)
        if owner is not None:  # a hierarchy's upper level: its leaf's sums, plus noise
            return self._upper_level(query, owner.level_queries()[-1], plan, data, rho)
        rng = random.Random(self.seed * 1_000_003 + zlib.crc32(query.name.encode()))
        combos = list(itertools.product(*(public_keys(plan, c) for c in query.group_by)))
        n = len(combos)
        if query.measure == "mean":
            estimates, halfwidth = [rng.uniform(0.2, 0.6) for _ in combos], 0.01
        elif query.measure == "sum":
            estimates, halfwidth = [rng.uniform(2e6, 2.5e7) for _ in combos], 6.3e6
        elif query.group_by == ("week",):
            estimates = [3000 + 150 * i + rng.gauss(0, 150) for i in range(n)]
            halfwidth = 430.0
        else:
            estimates, halfwidth = [rng.lognormvariate(5.5, 1.2) - 60 for _ in combos], 76.0
        groups = {c: [k[i] for k in combos] for i, c in enumerate(query.group_by)}
        table = pl.DataFrame({**groups, "estimate": estimates, "ci95_halfwidth": [halfwidth] * n,
                              "noise_scale": [halfwidth / 1.96] * n})
        if query.measure == "quantile":  # one row per group and quantile, as privacy.engine
            table = pl.concat([table.with_columns(
                pl.lit(q).alias("quantile"), (pl.col("estimate") * (0.5 + q)).alias("estimate"))
                for q in query.quantiles])
        return DemoResult("gaussian (zCDP)", table, {"post_processing": ["none"]})

    def _upper_level(self, query: Query, leaf: Query, plan: Plan, data: DemoData,
                     rho: Fraction) -> DemoResult:
        table = self.run_query(leaf, plan, data, rho).table
        self.queries.pop()
        if "region" in query.group_by:
            table = table.with_columns(pl.col("departement").replace_strict(
                dict(load_geography().departement_region)).alias("region"))
        sums = (table.group_by(list(query.group_by)).agg(pl.col("estimate").sum())
                if query.group_by else table.select(pl.col("estimate").sum()))
        if query.group_by:
            combos = list(itertools.product(*(public_keys(plan, c) for c in query.group_by)))
            keys = pl.DataFrame({c: [k[i] for k in combos]
                                 for i, c in enumerate(query.group_by)})
            sums = keys.join(sums, on=list(query.group_by), how="left").fill_null(0.0)
        rng = random.Random(self.seed * 1_000_003 + zlib.crc32(query.name.encode()))
        noisy = sums.with_columns(
            (pl.col("estimate") + pl.Series([rng.gauss(0, 40) for _ in range(sums.height)]))
            .alias("estimate"), pl.lit(76.0).alias("ci95_halfwidth"),
            pl.lit(76.0 / 1.96).alias("noise_scale"))
        return DemoResult("gaussian (zCDP)", noisy, {"post_processing": ["none"]})

    def postprocess(self, result: DemoResult) -> pl.DataFrame:
        return result.table


def publish(settings: Settings, *, runs: int = 1, plan: Plan | None = None,
            seed: int = 7) -> list[ReleaseSummary]:
    """Release the demo plan ``runs`` times (one run per day from 2026-03-01)."""
    plan = plan or demo_plan()
    return [run_release(settings, plan, f"run-{day}",
                        logical_date=datetime(2026, 3, 1 + day, 4, tzinfo=UTC),
                        dp_engine=DemoEngine(seed + day)) for day in range(runs)]


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    settings = load_settings()
    create_signing_key(settings.signing_key_file)
    return settings


# --------------------------------------------------------------------------- a small DOM

_VOID = {"meta", "br", "link", "img", "input", "hr", "col", "source", "wbr"}


@dataclass
class Node:
    """Just enough of a DOM to read tables and sections back from a report."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str | None = None, class_: str | None = None,
                 **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            classes = child.attrs.get("class", "").split()
            if (tag is None or child.tag == tag) and (class_ is None or class_ in classes) \
                    and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                found.append(child)
            found.extend(child.find_all(tag, class_, **attrs))
        return found

    def find(self, tag: str | None = None, class_: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, class_, **attrs)
        assert found, f"no <{tag} class={class_} {attrs}>"
        return found[0]

    def rows(self) -> list[list[str]]:
        """Cell texts of a table's body rows."""
        return [[td.text() for td in tr.find_all("td")]
                for tr in self.find("tbody").find_all("tr")]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                del self.stack[index:]
                return
        raise AssertionError(f"</{tag}> closes nothing")

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(document: str) -> Node:
    builder = _Builder()
    builder.feed(document)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def section(dom: Node, query: str) -> Node:
    return dom.find("section", data_query=query)


def read_table(settings: Settings, query: str) -> pl.DataFrame:
    [release] = [r for r in latest_releases(settings.published) if r.query_name == query]
    return pl.read_parquet(settings.published / release.table_file)


# --------------------------------------------------------------------------- i18n, numbers

@pytest.mark.parametrize("module", ["reports.i18n", "reports.charts", "reports.html"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_both_languages_have_every_message_and_unknown_ones_are_refused() -> None:
    assert LANGS == ("fr", "en")
    assert message_keys("fr") == message_keys("en")
    with pytest.raises(UnsupportedLanguage) as caught:
        check_lang("de")
    assert caught.value.exit_code == 2


def test_numbers_read_as_each_language_writes_them() -> None:
    fr, en = translator("fr"), translator("en")
    count = Display("count")
    assert count.pm(fr, 1234.4, 56.2) == f"1{NBSP}234{NBSP}±{NBSP}56"
    assert count.pm(en, 1234.4, 56.2) == f"1,234{NBSP}±{NBSP}56"
    assert count.pm(fr, -12.0, 76.0) == f"\u221212{NBSP}±{NBSP}76"
    euros = Display("euro", 0, 0.01)
    assert euros.pm(fr, 123456, 6300) == f"1{NBSP}235{NBSP}€{NBSP}±{NBSP}63{NBSP}€"
    assert euros.value(en, 123456) == "€1,235"
    rate = Display("percent", 1, 100.0)
    assert rate.pm(fr, 0.4736, 0.0081) == f"47,4{NBSP}%{NBSP}±{NBSP}0,8{NBSP}pt"
    assert rate.pm(en, 0.4736, 0.0081) == f"47.4%{NBSP}±{NBSP}0.8{NBSP}pts"
    assert fr.month("2026-03") == "mars 2026" and en.month("2026-03") == "Mar 2026"
    assert fr.week("2026-W05", short=True) == "S05" and en.week("2026-W05", short=True) == "W05"


def test_a_cell_is_too_uncertain_when_its_interval_is_wider_than_the_estimate() -> None:
    assert not Cell((), 100.0, 50.0, 150.0, 50.0).uncertain  # width 100 = estimate: usable
    assert Cell((), 100.0, 49.0, 151.0, 51.0).uncertain
    assert Cell((), -10.0, -86.0, 66.0, 76.0).uncertain
    assert Cell((), None, None, None, None).uncertain


def test_axis_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 0.0041) == [0, 0.001, 0.002, 0.003, 0.004, 0.005]
    ticks = nice_ticks(-130, 2950)
    assert ticks[0] <= -130 and ticks[-1] >= 2950


# --------------------------------------------------------------------------- strategist

def test_strategist_report_has_one_section_per_query_from_its_latest_release(
        settings: Settings) -> None:
    first, second = publish(settings, runs=2)
    path = write_strategist_report(settings, generated_at=GENERATED)
    assert path == settings.reports / "strategist_report.html"
    document = path.read_text(encoding="utf-8")
    dom = parse_html(document)
    assert dom.find("html").attrs["lang"] == "fr"
    sections = dom.find_all("section", class_="report-section")
    assert [s.attrs["data-query"] for s in sections] == [q.name for q in demo_plan().releases]
    for released in second.releases:  # the latest release of each query, in the footer
        assert released.release_id in document
    for released in first.releases:  # older releases are not shown
        assert released.release_id not in document
    footer = dom.find("footer")
    assert second.plan_hash[:16] in footer.text() and "2026-03-02" in footer.text()
    def maps(s: Any) -> int:
        return sum(1 for svg in s.find_all("svg") if "choropleth" in svg.attrs.get("class", ""))

    assert all(len(s.find_all("svg")) - maps(s) == 1 for s in sections)  # one chart each
    one_column = {q.name: q.group_by for q in demo_plan().releases}
    assert all(maps(s) == (one_column[s.attrs["data-query"]] == ("departement",))
               for s in sections)  # and a map for each one-column département table
    assert "Victor Cazanave" in footer.text() and "CC BY 4.0" in footer.text()
    assert "Pourquoi ces chiffres sont-ils bruités" in dom.find("aside", class_="explainer").text()
    assert "2026-03-10 08:30 UTC" in dom.find("header").text()


def test_departement_table_is_sorted_by_estimate_with_names(settings: Settings) -> None:
    publish(settings)
    dom = parse_html(write_strategist_report(settings, generated_at=GENERATED).read_text())
    rows = section(dom, "supporters_by_departement").find("table").rows()
    table = read_table(settings, "supporters_by_departement").sort("estimate", descending=True)
    geo = load_geography()
    assert len(rows) == table.height == len(geo.departements) == 101
    fr = translator("fr")
    for rank, (row, expected) in enumerate(zip(rows, table.iter_rows(named=True),
                                               strict=True), 1):
        code = expected["departement"]
        assert row[0] == str(rank)
        assert row[1] == f"{code} {geo.departements[code]}"
        assert row[2] == Display("count").pm(fr, expected["estimate"],
                                             expected["ci95_halfwidth"])
    assert rows[0][1] != rows[1][1]


def test_uncertain_cells_are_flagged_not_hidden(settings: Settings) -> None:
    publish(settings)
    dom = parse_html(write_strategist_report(settings, generated_at=GENERATED).read_text())
    table = read_table(settings, "supporters_by_departement")
    flagged = table.filter((pl.col("ci95_high") - pl.col("ci95_low")) > pl.col("estimate").abs())
    assert 0 < flagged.height < table.height  # the demo has both kinds
    part = section(dom, "supporters_by_departement")
    rows = part.find("table").rows()
    assert len(rows) == table.height  # nothing hidden
    marked = [r for r in rows if "trop incertain pour agir" in r[-1]]
    assert len(marked) == flagged.height
    assert len(part.find_all("tr", class_="uncertain")) == flagged.height
    top = table.sort("estimate", descending=True).head(20)  # the chart shows the first 20
    in_chart = top.filter((pl.col("ci95_high") - pl.col("ci95_low")) > pl.col("estimate").abs())
    assert len(part.find("svg").find_all("g", class_="flagged")) == in_chart.height
    assert f"{flagged.height} valeur(s) sur 101 trop incertaine(s)" in part.text()


def test_layouts_trend_matrix_rate_and_euros(settings: Settings) -> None:
    publish(settings)
    dom = parse_html(write_strategist_report(settings, generated_at=GENERATED).read_text())
    weeks = section(dom, "contacts_by_week")
    assert weeks.find("svg").attrs["class"] == "chart trend-chart"
    assert weeks.find("polygon", class_="band") is not None
    week_rows = weeks.find("table").rows()
    assert [r[0] for r in week_rows] == sorted(r[0] for r in week_rows)  # in time order
    matrix = section(dom, "age_band_by_support_level")
    header = [th.text() for th in matrix.find("thead").find_all("th")]
    assert header[1:] == [translator("fr").support_level(level) for level in range(1, 6)]
    assert [r[0] for r in matrix.find("table").rows()][0] == "18–24 ans"
    rate = section(dom, "email_opt_in_rate")
    assert re.fullmatch(rf"\d+,\d{NBSP}%{NBSP}±{NBSP}\d,\d{NBSP}pt",
                        rate.find("p", class_="big").text())
    money = section(dom, "donations_total_by_region")
    assert "Unité : euros" in money.text()
    assert all(r[2].endswith(f"{NBSP}€") for r in money.find("table").rows())
    assert "Île-de-France" in money.text()


def test_a_hierarchy_shows_consistent_tables_that_add_up(settings: Settings) -> None:
    """Issue 16: the supporters hierarchy publishes national, région and département tables
    under their stable names; the report shows the consistent values (which add up), with
    the recomputed intervals, and a map for the département level."""
    one = {"max_groups": 1, "max_rows_per_group": 1}
    plan = parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person", "cap": {"rho": "1/2"},
        "per_run": {"rho": "1/100"}, "cadence": "daily",
        "period": ["2026-01-01", "2026-03-31"],
        "releases": [{"name": "supporters_by_departement", "title": "Supporters by département",
                      "title_fr": "Sympathisants par département", "measure": "count",
                      "table": "persons", "group_by": ["departement"], "bounds": one,
                      "share": "1", "hierarchy": [
                          {"level": "national", "share": "1/24", "name": "supporters_national",
                           "title": "Supporters (national)",
                           "title_fr": "Sympathisants (France entière)"},
                          {"level": "region", "share": "7/24", "name": "supporters_by_region",
                           "title": "Supporters by région",
                           "title_fr": "Sympathisants par région"},
                          {"level": "departement", "share": "16/24"}]}]})
    publish(settings, plan=plan)
    dom = parse_html(write_strategist_report(settings, generated_at=GENERATED).read_text())
    national = read_table(settings, "supporters_national")
    region = read_table(settings, "supporters_by_region")
    dep = read_table(settings, "supporters_by_departement")
    assert national["estimate"].sum() == region["estimate"].sum() == dep["estimate"].sum()
    fr = translator("fr")
    assert Display("count").pm(fr, national["estimate"][0], national["ci95_halfwidth"][0]) \
        in section(dom, "supporters_national").text()
    rows = section(dom, "supporters_by_region").find("table").rows()
    shown = {r[1]: r[2] for r in rows}
    geo = load_geography()
    for row in region.iter_rows(named=True):
        name = geo.regions[row["region"]]
        assert any(label.endswith(name) for label in shown)
        assert Display("count").pm(fr, row["estimate"], row["ci95_halfwidth"]) in [
            v for label, v in shown.items() if label.endswith(name)]
    assert section(dom, "supporters_by_departement").find_all("figure", class_="map")


def test_several_quantiles_per_group_are_shown_side_by_side(settings: Settings) -> None:
    plan = parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person", "cap": {"rho": "1/2"},
        "per_run": {"rho": "1/100"}, "cadence": "daily",
        "period": ["2026-01-01", "2026-03-31"],
        "releases": [{"name": "donation_quartiles_by_region", "title": "Donation quartiles",
                      "title_fr": "Quartiles des dons", "measure": "quantile",
                      "table": "donations", "value": "amount_cents", "clip": [0, 100000],
                      "quantiles": [0.25, 0.5, 0.75], "group_by": ["region"],
                      "bounds": {"max_groups": 1, "max_rows_per_group": 6}, "share": "1"}]})
    publish(settings, plan=plan)
    dom = parse_html(write_strategist_report(settings, generated_at=GENERATED).read_text())
    part = section(dom, "donation_quartiles_by_region")
    assert "Quantiles estimés" in part.text()
    header = [th.text() for th in part.find("thead").find_all("th")]
    assert header == ["Région \\ Quantile", "q25", "q50", "q75"]
    assert len(part.find("tbody").find_all("tr")) == 18


def test_english_report_translates_titles_labels_and_numbers(settings: Settings) -> None:
    publish(settings)
    path = write_strategist_report(settings, lang="en", out=settings.home / "en.html",
                                   generated_at=GENERATED)
    document = path.read_text(encoding="utf-8")
    dom = parse_html(document)
    assert dom.find("html").attrs["lang"] == "en"
    assert "Why are these numbers noisy?" in document
    assert "Supporters by département" in document and "Sympathisants" not in document
    assert "too uncertain to act on" in document and "trop incertain" not in document
    assert "Noise sigma about 220 attempts per week." in section(dom, "contacts_by_week").text()
    french = write_strategist_report(settings, generated_at=GENERATED).read_text()
    assert "Noise sigma" not in french  # the plan's notes are English: not in French
    rows = section(dom, "supporters_by_departement").find("table").rows()
    assert re.fullmatch(rf"[\d,]+{NBSP}±{NBSP}76", rows[0][2])
    with pytest.raises(UnsupportedLanguage):
        write_strategist_report(settings, lang="de")


def test_report_is_self_contained_and_escapes_published_text(settings: Settings) -> None:
    publish(settings, plan=demo_plan(title_suffix=' <img src=x onerror="alert(1)">'))
    document = write_strategist_report(settings, generated_at=GENERATED).read_text()
    assert "<img" not in document and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in document
    for forbidden in ("@import", "https://"):
        assert forbidden not in document, forbidden
    # url() only names a pattern of the page itself (the maps' hatching), never a resource.
    patterns = set(re.findall(r"url\(([^)]*)\)", document))
    assert patterns and all(re.fullmatch(r"#map-[a-z_]+-hatch", p) for p in patterns)
    elements = parse_html(document).find_all()
    assert not {e.tag for e in elements} & {"script", "link", "iframe", "img", "object", "embed"}
    assert not [e for e in elements if "src" in e.attrs or e.attrs.get("href", "#")[0] != "#"]
    assert set(re.findall(r"https?://[^\s\"'<>]+", document)) == {"http://www.w3.org/2000/svg"}
    policy = [e.attrs["content"] for e in elements
              if e.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert policy and policy[0].startswith("default-src 'none'")  # nothing loads, by mistake
    again = write_strategist_report(settings, generated_at=GENERATED).read_text()
    assert again == document  # same inputs, same bytes


def test_a_modified_published_table_is_reported_and_its_numbers_not_shown(
        settings: Settings) -> None:
    publish(settings)
    [release] = [r for r in latest_releases(settings.published)
                 if r.query_name == "contacts_by_week"]
    table = settings.published / release.table_file
    tampered = pl.read_parquet(table).with_columns(pl.col("estimate") * 10)
    tampered.write_parquet(table)
    dom = parse_html(write_strategist_report(settings, generated_at=GENERATED).read_text())
    part = section(dom, "contacts_by_week")
    assert "ne correspond pas à son empreinte" in part.text()
    assert not part.find_all("svg") and not part.find_all("table")
    assert section(dom, "supporters_by_departement").find_all("svg")  # the others still show


def test_an_empty_published_folder_gives_a_report_that_says_so(settings: Settings) -> None:
    document = write_strategist_report(settings, generated_at=GENERATED).read_text()
    assert "Aucune publication pour l'instant" in parse_html(document).find("main").text()


# --------------------------------------------------------------------------- auditor

def _add_ingested_file(settings: Settings, key_id: str = "k1", name: str = "export.csv",
                       details: str = "{}") -> None:
    with make_engine(settings.warehouse_url).begin() as conn:
        conn.execute(insert(ingested_files).values(
            sha256=zlib.crc32(name.encode()).to_bytes(4, "big").hex() * 8, file_name=name,
            source="nationbuilder_people", status="loaded", key_id=key_id,
            loaded_at="2026-03-01T03:00:00Z", details=details))


def test_auditor_report_shows_budget_releases_verification_docs_and_key_ids(
        settings: Settings) -> None:
    summaries = publish(settings, runs=2)
    _add_ingested_file(settings)
    path = write_auditor_report(settings, generated_at=GENERATED)
    assert path == settings.reports / "audit_report.html"
    document = path.read_text(encoding="utf-8")
    dom = parse_html(document)
    assert dom.find("section", id="verify").attrs["data-status"] == "ok"
    budgets = dom.find("section", id="budgets")
    spent = Fraction(summaries[-1].spent_rho)
    remaining = Fraction(summaries[-1].remaining_rho)
    assert spent == Fraction(2, 250)
    for exact in (summaries[-1].cap_rho, "1/125", f"{remaining.numerator}/"
                  f"{remaining.denominator}"):
        assert exact in budgets.text()
    assert "ε = 8, δ = 1e-7" in budgets.text()
    assert budgets.find("svg", class_="cumulative-chart") is not None
    rows = dom.find("section", id="releases").find("table").rows()
    entries = [r for s in summaries for r in s.releases]
    assert len(rows) == len(entries) == 12
    for row, released in zip(rows, entries, strict=True):
        assert row[0] == str(released.ledger_seq)
        assert released.query in row[2] and released.release_id in row[2]
        assert f"ρ = {released.cost_rho}" in row[4]
        assert released.result_hash[:16] in row[6]
        assert "valide" in row[7] and "ok" in row[8]
    docs = dom.find("section", id="data-docs").find("a")
    assert docs.attrs["href"] == "data_docs/index.html"
    keys = dom.find("section", id="keys").text()
    assert "k1" in keys and _signing_id(settings) in keys
    assert settings.signing_key_file.read_text() not in document
    for line in settings.signing_key_file.read_text().splitlines()[1:-1]:
        assert line not in document  # not a fragment of the private key either


def _signing_id(settings: Settings) -> str:
    from privacy.signing import load_verify_key

    return load_verify_key(settings.signing_key_file).key_id


def test_auditor_report_names_a_tampered_entry(settings: Settings) -> None:
    publish(settings)
    with make_engine(settings.warehouse_url).begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET mechanism = 'laplace' WHERE seq = 2"))
        conn.execute(text("UPDATE ledger_entries SET signature = (SELECT signature FROM "
                          "ledger_entries WHERE seq = 1) WHERE seq = 4"))
    dom = parse_html(write_auditor_report(settings, generated_at=GENERATED).read_text())
    verify = dom.find("section", id="verify")
    assert verify.attrs["data-status"] == "failed"
    assert "entry seq 2" in verify.text()
    releases = dom.find("section", id="releases")
    problems = releases.find_all("tr", class_="problem")
    assert [tr.find("td").text() for tr in problems] == ["2", "4"]
    signatures = {row[0]: row[7] for row in releases.find("table").rows()}
    assert "valide" in signatures["2"]  # its fields changed, its signature did not
    assert "invalide" in signatures["4"] and "invalide" not in signatures["3"]


def test_auditor_report_without_the_public_key_says_the_audit_did_not_run(
        settings: Settings) -> None:
    publish(settings)
    public_key_path(settings.signing_key_file).unlink()
    dom = parse_html(write_auditor_report(settings, lang="en",
                                          generated_at=GENERATED).read_text())
    verify = dom.find("section", id="verify")
    assert verify.attrs["data-status"] == "not-run" and "not run" in verify.text()
    assert "not checked" in dom.find("section", id="releases").text()


def test_auditor_report_on_an_empty_warehouse(settings: Settings) -> None:
    dom = parse_html(write_auditor_report(settings, generated_at=GENERATED).read_text())
    assert "Aucun budget ouvert" in dom.find("section", id="budgets").text()
    assert "Le registre est vide" in dom.find("section", id="releases").text()
    assert dom.find("section", id="verify").attrs["data-status"] == "not-run"
    assert not (settings.home / "warehouse.db").exists()  # a report creates no warehouse


@pytest.mark.postgres
def test_the_auditor_login_on_postgresql_can_write_the_report(
        pg_url: str, isoloir_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The auditor role reads the ledger tables only (warehouse.roles): that is enough."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from reports.auditor import produce_auditor_report
    from tests.conftest import PG_URL
    from warehouse.roles import AUDITOR_ROLE, apply_grants, create_login

    monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", pg_url)
    settings = load_settings()
    create_signing_key(settings.signing_key_file)
    publish(settings)
    _add_ingested_file(settings)
    schema = pg_url.rsplit("search_path%3D", 1)[1]
    published_schema, user = f"p_{uuid.uuid4().hex[:10]}", f"isoloir_t_{uuid.uuid4().hex[:8]}"
    admin = make_engine(pg_url)
    raw = PG_URL.replace("+psycopg", "")
    try:
        apply_grants(admin, schema, published_schema)
        create_login(admin, user, AUDITOR_ROLE, search_path=(schema,))
        monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", make_url(pg_url).set(username=user)
                           .render_as_string(hide_password=False))
        written = produce_auditor_report(load_settings(), generated_at=GENERATED)
        assert written.status == "ok" and written.entries == 6
        dom = parse_html(written.path.read_text(encoding="utf-8"))
        assert len(dom.find("section", id="releases").find("table").rows()) == 6
        assert "non lisible avec ces identifiants" in dom.find("section", id="keys").text()
    finally:
        admin.dispose()
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{published_schema}" CASCADE')
            conn.execute(f'DROP ROLE IF EXISTS "{user}"')


# --------------------------------------------------------------------------- privacy

FORBIDDEN_TABLES = ("persons", "contacts", "donations", "identifier_links")
_SQL_NAMING = re.compile(r"(?i)\b(from|join|into|update|table)\s+[\"'`]?(persons|contacts|"
                         r"donations|identifier_links)\b")


def test_report_modules_never_reference_supporter_tables() -> None:
    modules = sorted((ROOT / "reports").glob("*.py"))
    assert {m.name for m in modules} >= {"strategist.py", "auditor.py", "charts.py", "i18n.py"}
    for module in modules:
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in ast.walk(tree):
            where = f"{module.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module == "warehouse.schema":
                assert {a.name for a in node.names} <= {"ingested_files", "ledger_entries",
                                                        "privacy_budgets", "release_results"}, \
                    where
            if isinstance(node, ast.alias):
                assert node.name.rsplit(".", 1)[-1] not in FORBIDDEN_TABLES, where
            if isinstance(node, ast.Name):
                assert node.id not in FORBIDDEN_TABLES, where
            if isinstance(node, ast.Attribute):
                assert node.attr not in FORBIDDEN_TABLES, where
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not _SQL_NAMING.search(node.value), where
                assert node.value not in FORBIDDEN_TABLES, where


@contextmanager
def captured_sql() -> Iterator[list[str]]:
    """Every SQL statement any engine runs while the block runs."""
    statements: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", listener)


CANARIES = ("Jeanne-Canary-Dupont", "canary.jeanne@example.org", "+33612345678",
            "12 rue du Canari", "k1:canarypseudonymcanarypseudonymcanarypseudonym")


def _plant_canaries(settings: Settings) -> None:
    """Put recognizable personal-looking strings in every supporter table."""
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    name, email, phone, street, pseudonym = CANARIES
    with engine.begin() as conn:
        conn.execute(insert(persons).values(
            person_id=pseudonym, commune="75056", departement="75", region="11",
            age_band="25-34", support_level=1, first_file=name, last_file=email))
        conn.execute(insert(contacts).values(
            contact_id=phone, person_id=pseudonym, canvasser_id=name, source=street,
            week="2026-W09", channel="door", result="contacted", file_sha256=email))
        conn.execute(insert(donations).values(
            donation_id=email, person_id=pseudonym, source=name, amount_cents=4242,
            month="2026-03", file_sha256=phone))
        conn.execute(insert(identifier_links).values(
            pseudonym=pseudonym, kind="email", person_id=name, file_sha256=street))
    _add_ingested_file(settings, name=f"{name} {email}.csv",
                       details=json.dumps({"warning": f"{phone} {street}"}))


def test_reports_read_no_supporter_table_and_leak_no_canary(settings: Settings) -> None:
    publish(settings)
    with captured_sql() as before_sql:
        clean = write_strategist_report(settings, generated_at=GENERATED).read_text()
    assert before_sql == []  # the strategist report reads published/ only: no SQL at all
    _plant_canaries(settings)
    with captured_sql() as statements:
        strategist = write_strategist_report(settings, generated_at=GENERATED).read_text()
        auditor = write_auditor_report(settings, generated_at=GENERATED).read_text()
    assert strategist == clean  # the warehouse's content changes nothing
    assert statements, "the auditor report reads the ledger"
    for statement in statements:
        tables = set(re.findall(r"(?i)\b(?:from|join)\s+\"?(\w+)", statement))
        assert tables <= {"privacy_budgets", "ledger_entries", "release_results",
                          "erasure_log", "ingested_files", "schema_info", "sqlite_master",
                          "sqlite_temp_master"}, statement
    for document in (strategist, auditor):
        for canary in CANARIES:
            assert canary not in document
        assert "Canary" not in document and "canari" not in document.lower()


# --------------------------------------------------------------------------- CLI

def test_cli_report_happy_path_json_and_bad_language(settings: Settings) -> None:
    publish(settings)
    done = runner.invoke(app, ["report"])
    assert done.exit_code == 0, done.output
    assert (settings.reports / "strategist_report.html").is_file()
    out = settings.home / "out" / "rapport-en.html"
    done = runner.invoke(app, ["report", "--lang", "en", "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload == {"ok": True, "report": str(out), "lang": "en", "releases": 6}
    assert "Why are these numbers noisy?" in out.read_text(encoding="utf-8")
    bad = runner.invoke(app, ["report", "--lang", "de"])
    assert bad.exit_code == 2
    assert "--lang" in bad.output


def test_cli_audit_report_happy_path_json_failure_and_bad_language(
        settings: Settings) -> None:
    publish(settings)
    done = runner.invoke(app, ["audit", "report"])
    assert done.exit_code == 0, done.output
    assert (settings.reports / "audit_report.html").is_file()
    done = runner.invoke(app, ["audit", "report", "--json", "--lang", "en"])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["ok"] is True and payload["audit"] == "ok" and payload["entries"] == 6
    assert runner.invoke(app, ["audit", "report", "--lang", "de"]).exit_code == 2
    with make_engine(settings.warehouse_url).begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET cost_rho = '1/1000' WHERE seq = 1"))
    failed = runner.invoke(app, ["audit", "report", "--json"])
    assert failed.exit_code == 4
    payload = json.loads(failed.stdout)
    assert payload["ok"] is False and payload["audit"] == "failed"
    assert Path(payload["report"]).is_file()  # written all the same


def test_a_hierarchy_reads_coarsest_first(settings: Settings) -> None:
    """One release, three tables: national, then région, then département."""
    one = {"max_groups": 1, "max_rows_per_group": 1}
    levels = [{"level": "national", "share": "1/4", "name": "supporters_national",
               "title": "N", "title_fr": "N"},
              {"level": "region", "share": "1/4", "name": "supporters_by_region",
               "title": "R", "title_fr": "R"}, {"level": "departement", "share": "1/2"}]
    plan = parse_plan({
        "dataset_id": "campaign", "privacy_unit": "person", "cap": {"rho": "1/2"},
        "per_run": {"rho": "1/100"}, "cadence": "daily", "period": ["2026-01-01", "2026-03-31"],
        "releases": [{"name": "supporters_by_departement", "title": "D", "title_fr": "D",
                      "measure": "count", "table": "persons", "group_by": ["departement"],
                      "bounds": one, "share": "1", "hierarchy": levels}]})
    publish(settings, plan=plan)
    assert [r.query_name for r in latest_releases(settings.published)] == [
        "supporters_national", "supporters_by_region", "supporters_by_departement"]
