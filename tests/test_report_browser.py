"""Both reports in a real browser: headless Chromium (Debian ``chromium`` + ``chromium-driver``).

What a reader would notice is asserted: no console error (Chromium also logs malformed SVG
attributes there), every section and every chart laid out with a non-zero size, and all of it
with the network switched off (CDP ``Network.emulateNetworkConditions``), with not one request
leaving the file. A screenshot of each report is saved under ``ISOLOIR_HOME/artifacts/``.

``python -m tests.test_report_browser docs/screenshots`` makes the README's screenshots from
demo-like data (the default plan through the stand-in engine of ``tests.test_reports``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings, load_settings
from privacy.cadence import forecast
from privacy.plan import Plan, load_plan
from privacy.signing import create_signing_key
from reports.auditor import write_auditor_report
from reports.strategist import write_strategist_report
from tests.test_reports import GENERATED, _add_ingested_file, demo_plan, publish

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--hide-scrollbars")

pytestmark = pytest.mark.slow


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return f"{' and '.join(missing)} not installed" if missing else None


@dataclass(frozen=True)
class ReportFiles:
    settings: Settings
    strategist: Path
    strategist_en: Path
    auditor: Path

    @property
    def artifacts(self) -> Path:
        return self.settings.home / "artifacts"


def build_reports(home: Path, plan: Plan | None = None, runs: int = 2) -> ReportFiles:
    """Publish ``runs`` releases of ``plan`` and write the three report files."""
    settings = load_settings({"ISOLOIR_HOME": str(home),
                              "ISOLOIR_SIGNING_KEY_FILE": str(home / "keys" / "signing.key")})
    settings.ensure_dirs()
    create_signing_key(settings.signing_key_file)
    publish(settings, runs=runs, plan=plan)
    _add_ingested_file(settings)
    return ReportFiles(
        settings=settings,
        strategist=write_strategist_report(settings, generated_at=GENERATED),
        strategist_en=write_strategist_report(
            settings, lang="en", out=settings.reports / "strategist_report.en.html",
            generated_at=GENERATED),
        auditor=write_auditor_report(settings, generated_at=GENERATED))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    return build_reports(tmp_path_factory.mktemp("browser") / "home", demo_plan())


def start_browser(user_data: Path, width: int = 1200, height: int = 1600) -> Any:
    """Headless Chromium driven by the Debian chromedriver (selenium-manager never runs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={user_data}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    # The network is off for the whole session: the reports must not need it.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = _browser_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI needs them for the real-browser tests "
                        "(scripts/test-setup.sh installs chromium and chromium-driver)")
        pytest.skip(f"{reason}; install the Debian packages chromium and chromium-driver")
    driver = start_browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class Visit:
    console_errors: list[str]
    external_requests: list[str]
    resources: int


def visit(driver: Any, path: Path) -> Visit:
    """Open ``path`` offline; return its console errors and any request beyond the file."""
    driver.get_log("browser")  # forget what earlier pages logged
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    resources = int(driver.execute_script(
        "return performance.getEntriesByType('resource').length"))
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("file:", "data:", "about:")):
                requests.append(url)
    return Visit(errors, requests, resources)


#: Each strategist section's box, its chart's box, and the widths of the chart's marks.
LAYOUT = """
return Array.from(document.querySelectorAll("section.report-section")).map(s => {
  const box = s.getBoundingClientRect();
  const charts = s.querySelectorAll("svg.chart");
  const chart = charts.length ? charts[0].getBoundingClientRect() : {width: 0, height: 0};
  const marks = Array.from(s.querySelectorAll("g.bar rect, polyline.line"))
    .map(m => m.getBoundingClientRect().width);
  return {name: s.dataset.query, width: box.width, height: box.height, charts: charts.length,
          chart_width: chart.width, chart_height: chart.height, marks: marks};
});
"""


def _size(element: Any) -> tuple[float, float]:
    rect = element.rect
    return rect["width"], rect["height"]


def assert_rendered(element: Any, what: str) -> None:
    width, height = _size(element)
    assert element.is_displayed() and width > 0 and height > 0, f"{what} is not rendered"


def capture(driver: Any, target: Path) -> Path:
    """A PNG of the first screen of the page (a full-page capture of a long report takes
    seconds and megabytes; the sections' sizes are asserted instead)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(target))
    return target


# --------------------------------------------------------------------------- tests

def test_strategist_report_renders_offline_without_errors(browser: Any,
                                                          reports: ReportFiles) -> None:
    from selenium.webdriver.common.by import By

    seen = visit(browser, reports.strategist)
    assert seen.console_errors == []
    assert seen.external_requests == [] and seen.resources == 0
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    assert_rendered(browser.find_element(By.CSS_SELECTOR, "aside.explainer"), "explainer")
    sections = browser.execute_script(LAYOUT)  # one round trip for every section's boxes
    assert [s["name"] for s in sections] == [q.name for q in demo_plan().releases]
    for part in sections:
        assert part["width"] > 0 and part["height"] > 0, f"section {part['name']}"
        assert part["charts"] == 1, part["name"]  # one chart (and maybe a map: below)
        assert part["chart_width"] > 300 and part["chart_height"] > 40, part["name"]
        assert part["marks"] and min(part["marks"]) > 0, f"empty chart in {part['name']}"
    assert_rendered(browser.find_element(By.CSS_SELECTOR, "polygon.band"), "uncertainty band")
    flags = browser.find_elements(By.CSS_SELECTOR, "table .badge.warn")
    assert flags and all(f.is_displayed() for f in flags[:5])
    assert "trop incertain pour agir" in flags[0].text
    assert_rendered(browser.find_element(By.CSS_SELECTOR, "footer#provenance"), "footer")
    shot = capture(browser, reports.artifacts / "strategist_report.png")
    assert shot.stat().st_size > 10_000


#: Every shape of each département map, as laid out: code, state, fill, size.
MAP_SHAPES = """
return Array.from(document.querySelectorAll("svg.choropleth")).map(svg => ({
  query: svg.closest("section").dataset.query,
  width: svg.getBoundingClientRect().width,
  shapes: Array.from(svg.querySelectorAll(".dep")).map(e => {
    const box = e.getBoundingClientRect();
    return {code: e.dataset.dep, state: e.dataset.state, tag: e.tagName,
            fill: getComputedStyle(e).fill, width: box.width, height: box.height};
  }),
  insets: Array.from(svg.querySelectorAll("g.overseas text")).map(t => t.textContent),
}));
"""


@pytest.mark.parametrize(("lang", "words"), [
    ("fr", {"hausse", "baisse", "pas de différence mesurable"}),
    ("en", {"increase", "decrease", "no measurable difference"})])
def test_departement_map_and_week_over_week_render(browser: Any, reports: ReportFiles,
                                                   lang: str, words: set[str]) -> None:
    from selenium.webdriver.common.by import By

    seen = visit(browser, reports.strategist if lang == "fr" else reports.strategist_en)
    assert seen.console_errors == [] and seen.external_requests == []
    maps = browser.execute_script(MAP_SHAPES)
    assert [m["query"] for m in maps] == ["supporters_by_departement"]
    (drawn,) = maps
    assert drawn["width"] > 300
    shapes = drawn["shapes"]
    metro = [s for s in shapes if s["tag"] == "path"]
    overseas = [s for s in shapes if s["tag"] == "rect"]
    assert len(metro) == 96 and {"2A", "2B", "75", "13"} <= {s["code"] for s in metro}
    assert [s["code"] for s in overseas] == ["971", "972", "973", "974", "976"]
    assert [t.split(" ")[0] for t in drawn["insets"]] == ["971", "972", "973", "974", "976"]
    assert all(s["width"] > 0 and s["height"] > 0 for s in shapes)
    # Uncertain cells are hatched (the pattern), never a colour of the scale, and they are
    # exactly the rows the table flags.
    hatched = {s["code"] for s in shapes if s["state"] == "uncertain"}
    assert hatched and all("hatch" in s["fill"] for s in shapes if s["state"] == "uncertain")
    assert all(s["fill"].startswith("rgb(") for s in shapes if s["state"].startswith("c"))
    section = browser.find_element(By.CSS_SELECTOR,
                                   'section[data-query="supporters_by_departement"]')
    flagged = {row.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text.split(" ")[0]
               for row in section.find_elements(By.CSS_SELECTOR, "table tr.uncertain")}
    assert hatched == flagged
    # Week-over-week: one row per pair of consecutive published weeks, with a plain word.
    weekly = browser.find_element(By.CSS_SELECTOR, 'section[data-query="contacts_by_week"]')
    rows = weekly.find_elements(By.CSS_SELECTOR, ".wow-block tbody tr")
    weeks = weekly.find_elements(By.CSS_SELECTOR, "details tbody tr")
    assert len(rows) == len(weeks) - 1 > 0
    readings = {r.find_element(By.CSS_SELECTOR, ".badge").text for r in rows}
    assert readings and readings <= words
    assert_rendered(weekly.find_element(By.CSS_SELECTOR, ".wow-block table"), "week-over-week")
    credit = browser.find_element(By.CSS_SELECTOR, "footer .credit").text
    assert "Victor Cazanave" in credit and "CC BY 4.0" in credit


def test_english_strategist_report_renders(browser: Any, reports: ReportFiles) -> None:
    from selenium.webdriver.common.by import By

    seen = visit(browser, reports.strategist_en)
    assert seen.console_errors == [] and seen.external_requests == []
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.CSS_SELECTOR, "aside.explainer h2").text == \
        "Why are these numbers noisy?"
    for chart in browser.find_elements(By.CSS_SELECTOR, "section.report-section svg.chart"):
        assert_rendered(chart, "chart")
    capture(browser, reports.artifacts / "strategist_report.en.png")


def test_auditor_report_renders_offline_without_errors(browser: Any,
                                                       reports: ReportFiles) -> None:
    from selenium.webdriver.common.by import By

    seen = visit(browser, reports.auditor)
    assert seen.console_errors == []
    assert seen.external_requests == [] and seen.resources == 0
    for section_id in ("verify", "budgets", "releases", "data-docs", "keys"):
        assert_rendered(browser.find_element(By.ID, section_id), f"section {section_id}")
    assert browser.find_element(By.ID, "verify").get_attribute("data-status") == "ok"
    budgets = browser.find_element(By.ID, "budgets")
    for chart in budgets.find_elements(By.CSS_SELECTOR, "svg.cumulative-chart, svg.gauge"):
        assert_rendered(chart, "budget chart")
    # The conversion used for the dataset's cap, and the forecast of its end.
    conversion = budgets.find_element(By.CSS_SELECTOR, ".conversion")
    assert conversion.get_attribute("data-conversion") == "cks-2020"
    assert "Canonne–Kamath–Steinke 2020" in conversion.text
    forecast_note = budgets.find_element(By.CSS_SELECTOR, "p.forecast")
    assert_rendered(forecast_note, "forecast")
    (state,) = read_budgets_of(reports.settings)
    expected = forecast(load_plan(), state.remaining, GENERATED.date())
    assert forecast_note.get_attribute("data-exhausted-on") == expected.exhausted_on
    assert expected.exhausted_on is not None and expected.exhausted_on in forecast_note.text
    steps = budgets.find_element(By.CSS_SELECTOR, "svg.cumulative-chart path.steps")
    assert _size(steps)[0] > 100  # the staircase spans the chart
    rows = browser.find_elements(By.CSS_SELECTOR, "#releases tbody tr")
    assert len(rows) == 2 * len(demo_plan().releases)
    link = browser.find_element(By.CSS_SELECTOR, "#data-docs a")
    assert link.get_attribute("href").endswith("/reports/data_docs/index.html")
    capture(browser, reports.artifacts / "audit_report.png")
    assert (reports.artifacts / "audit_report.png").stat().st_size > 10_000


def read_budgets_of(settings: Settings) -> list[Any]:
    from privacy.accountant import read_budgets
    from warehouse.db import make_engine

    with make_engine(settings.warehouse_url).connect() as conn:
        return read_budgets(conn)


# --------------------------------------------------------------------------- README images

def make_screenshots(target: Path) -> list[Path]:
    """The README's screenshots: the first screen of each report, one weekly trend, a
    département map, week-over-week changes and the audit's budgets, on the default plan."""
    with tempfile.TemporaryDirectory(prefix="isoloir-shots-") as folder:
        files = build_reports(Path(folder) / "home", load_plan(), runs=3)
        driver = start_browser(Path(folder) / "profile", width=1000, height=1250)
        try:
            made = []
            for source, name in ((files.strategist, "strategist_report.png"),
                                 (files.strategist_en, "strategist_report_en.png"),
                                 (files.auditor, "audit_report.png")):
                seen = visit(driver, source)
                assert not seen.console_errors and not seen.external_requests
                made.append(capture(driver, target / name))
                if name == "strategist_report.png":  # and one trend, further down the page
                    from selenium.webdriver.common.by import By

                    trend = driver.find_element(
                        By.CSS_SELECTOR, 'section[data-query="contacts_by_week"] svg.chart')
                    driver.execute_script("arguments[0].scrollIntoView()", trend)
                    assert trend.screenshot(str(target / "strategist_trend.png"))
                    made.append(target / "strategist_trend.png")
                    for selector, shot in (
                            ('section[data-query="volunteers_by_departement"] figure.map',
                             "strategist_map.png"),
                            ('section[data-query="contacts_by_week"] .wow-block',
                             "strategist_week_over_week.png")):
                        element = driver.find_element(By.CSS_SELECTOR, selector)
                        driver.execute_script("arguments[0].scrollIntoView()", element)
                        assert element.screenshot(str(target / shot))
                        made.append(target / shot)
                if name == "audit_report.png":  # the budgets: conversion and forecast
                    from selenium.webdriver.common.by import By

                    budgets = driver.find_element(By.ID, "budgets")
                    driver.execute_script("arguments[0].scrollIntoView()", budgets)
                    assert budgets.screenshot(str(target / "audit_budget.png"))
                    made.append(target / "audit_budget.png")
        finally:
            driver.quit()
    return made


if __name__ == "__main__":
    for made_path in make_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else
                                           "docs/screenshots")):
        print(f"{made_path} ({made_path.stat().st_size // 1024} KB)")


def test_auditor_report_opens_with_a_computed_guarantee_statement(
        browser: Any, reports: ReportFiles) -> None:
    """The statement's ε comes from the ledger and the split rate from a real measurement."""
    from selenium.webdriver.common.by import By

    from pipeline.dp_audit import run_dp_audit
    from pipeline.identity_check import measure_identity_split
    from privacy.accountant import epsilon_equivalent, read_budgets
    from privacy.identity_audit import write_identity_split
    from warehouse.db import make_engine

    settings = reports.settings
    measured = measure_identity_split(settings, people=1200, seed=9)
    write_identity_split(settings.home / "audit", measured)
    audited, _ = run_dp_audit(settings, trials=40, scope="families")  # the table, for real
    with make_engine(settings.warehouse_url).connect() as conn:
        [budget] = read_budgets(conn)
    assert budget.cap.delta is not None and budget.spent > 0
    expected = epsilon_equivalent(budget.spent, budget.cap.delta)
    for lang, words in (("fr", "d'un facteur au plus e^"), ("en", "at most a factor of e^")):
        page = write_auditor_report(settings, lang=lang, generated_at=GENERATED,
                                    out=settings.reports / f"audit_{lang}.html")
        seen = visit(browser, page)
        assert seen.console_errors == [] and seen.external_requests == []
        section = browser.find_element(By.ID, "guarantee")
        assert_rendered(section, "guarantee statement")
        first = browser.find_element(By.CSS_SELECTOR, "section.report-section")
        assert first.get_attribute("id") == "guarantee"  # the report opens with it
        statement = section.find_element(By.CSS_SELECTOR, "p.statement")
        assert float(statement.get_attribute("data-spent-epsilon")) == \
            pytest.approx(expected, abs=1e-6)
        shown = f"{expected:.2f}".replace(".", "," if lang == "fr" else ".")
        assert f"e^{shown}" in statement.text and words in statement.text
        split = section.find_element(By.CSS_SELECTOR, "li.identity-split")
        assert float(split.get_attribute("data-split-rate")) == \
            pytest.approx(measured.split_rate, abs=1e-6)
        rate = f"{100 * measured.split_rate:.2f}".replace(".", "," if lang == "fr" else ".")
        assert rate in split.text
        table = browser.find_element(By.ID, "dp-audit")
        assert_rendered(table, "empirical privacy audit table")
        assert table.get_attribute("data-status") == ("ok" if audited.ok else "failed")
        assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(audited.results)
