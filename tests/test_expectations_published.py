"""The published suite: what strategists see carries its error bars and ledger entry, groups come
from public key sets only, counts are integers >= 0, nothing is finer than the plan allows.

Tables are shaped by the release engineer's own ``privacy.publish.published_table``, and the
metadata has the keys ``privacy.release`` writes (``release_id``, ``query``, ``measure``,
``group_by``), so the suite is tested against the real format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from core.settings import Settings, load_settings
from expectations.suites import published_suite
from expectations.validate import validate_published
from privacy.publish import published_table

RELEASE = "r-3f9a0c61d2b4e8f70a1b"
OFFLINE = load_settings({"ISOLOIR_HOME": "/nonexistent/isoloir"})  # gx=False never touches it


def release(group_by: tuple[str, ...] = ("departement",), measure: str = "count",
            groups: dict[str, list[Any]] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A post-processed DP table made publishable, and its metadata."""
    keys = groups or {"departement": ["01", "2A", "2B", "75", "974"]}
    n = len(next(iter(keys.values())))
    engine_table = pl.DataFrame({**keys, "estimate": [float(10 * i) for i in range(n)],
                                 "ci95_halfwidth": [4.0] * n, "noise_scale": [2.0] * n,
                                 "ci95_low": [max(0.0, 10.0 * i - 4) for i in range(n)],
                                 "ci95_high": [10.0 * i + 4 for i in range(n)]})
    table = published_table(engine_table, group_by, release_id=RELEASE,
                            mechanism="gaussian (zCDP)", budget_share=0.25)
    query = {"name": "supporters_by_departement", "measure": measure, "table": "persons",
             "group_by": list(group_by)}
    metadata = {"release_id": RELEASE, "ledger_seq": 7, "query_name": query["name"],
                "query": query, "query_canonical": json.dumps(query, sort_keys=True),
                "measure": measure, "group_by": list(group_by), "mechanism": "gaussian (zCDP)",
                "created_at": "2026-03-02T04:00:00+00:00"}
    return table.to_pandas(), metadata


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    s = load_settings()
    s.ensure_dirs()
    return s


def failures(frame: pd.DataFrame, metadata: dict[str, Any]) -> list[tuple[str, str | None]]:
    outcome = validate_published(frame, metadata, "t.parquet", OFFLINE, gx=False)
    return [(r.rule, r.column) for r in outcome.blocking_failures()]


def test_a_real_shaped_release_passes_fast_path_and_gx(settings: Settings) -> None:
    frame, metadata = release()
    outcome = validate_published(frame, metadata, "supporters--r.parquet", settings)
    assert outcome.success, outcome.first_failure_message()
    assert outcome.suite == "published.supporters_by_departement"
    assert outcome.gx_rows == len(frame)


def test_a_histogram_by_week_and_support_level_passes() -> None:
    frame, metadata = release(("week", "support_level"), "histogram",
                              {"week": ["2026-W05"] * 5, "support_level": [1, 2, 3, 4, 5]})
    assert failures(frame.assign(share=0.2), metadata) == []


def test_every_accuracy_column_and_the_ledger_entry_are_required() -> None:
    frame, metadata = release()
    for column in ("ci95_halfwidth", "ci95_low", "ci95_high", "noise_scale", "mechanism",
                   "budget_share", "ledger_entry"):
        broken = failures(frame.drop(columns=[column]), metadata)
        assert broken[0] == ("accuracy_columns_present", None), column


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda f: f.assign(ci95_halfwidth=[4.0, None, 4.0, 4.0, 4.0]),
     [("not_null", "ci95_halfwidth")]),
    (lambda f: f.assign(ledger_entry=[RELEASE] * 4 + [None]), [("not_null", "ledger_entry")]),
    (lambda f: f.assign(ledger_entry="r-someotherrelease"),
     [("ledger_entry_matches", "ledger_entry")]),
    (lambda f: f.assign(noise_scale=-1.0), [("non_negative", "noise_scale")]),
    (lambda f: f.assign(estimate=[0.0, 10.0, -3.0, 30.0, 40.0]),
     [("count_non_negative", "estimate"), ("count_integer", "estimate")]),
    (lambda f: f.assign(estimate=[0.0, 10.5, 20.0, 30.0, 40.0]), [("count_integer", "estimate")]),
    (lambda f: f.assign(departement=["01", "2A", "2B", "75", "99"]),
     [("group_key_public", "departement")]),
    (lambda f: f.assign(note=["", "", "voir Mme Zorglub, 06 71 82 93 04", "", ""]),
     [("columns_allowed", None), ("no_personal_data", "note")]),
])
def test_each_published_rule_broken_alone(mutate: Callable[[pd.DataFrame], pd.DataFrame],
                                          expected: list[tuple[str, str | None]]) -> None:
    frame, metadata = release()
    assert failures(mutate(frame), metadata) == expected


def test_negative_zero_is_an_integer_count() -> None:
    frame, metadata = release()
    assert failures(frame.assign(estimate=[-0.0, 10.0, 20.0, 30.0, 40.0]), metadata) == []


def test_sums_and_means_may_be_fractional() -> None:
    frame, metadata = release(measure="mean")
    assert failures(frame.assign(estimate=[0.5, 1.25, 2.0, 3.0, 4.0]), metadata) == []


def test_commune_groups_need_the_metadata_to_allow_them() -> None:
    frame, metadata = release(("commune",), groups={"commune": ["75111", "2A004", "97411"]})
    assert failures(frame, metadata) == [("min_granularity", None)]
    assert failures(frame, metadata | {"allow_commune": True}) == []
    assert failures(frame, metadata | {"finest_geography": "departement"}) == \
        [("min_granularity", None)]
    assert failures(frame, metadata | {"finest_geography": "commune"}) == []


def test_circonscriptions_are_allowed_by_default_and_checked() -> None:
    frame, metadata = release(("circonscription",), groups={"circonscription": ["75-01", "2A-01"]})
    assert failures(frame, metadata) == []
    frame["circonscription"] = ["75-01", "75-99"]
    assert failures(frame, metadata) == [("group_key_public", "circonscription")]


def test_a_numeric_column_declared_as_a_group_is_not_a_public_key() -> None:
    frame, metadata = release(("age",), groups={"age": [23, 67]})
    assert failures(frame, metadata) == [("columns_allowed", None)]


def test_weeks_come_from_the_declared_period_when_there_is_one() -> None:
    frame, metadata = release(("week",), groups={"week": ["2026-W05", "2026-W40"]})
    assert failures(frame, metadata) == []
    period = {"period": ["2026-01-01", "2026-06-30"]}
    assert failures(frame, metadata | period) == [("group_key_public", "week")]


def test_extra_numeric_measures_are_allowed_text_is_not() -> None:
    frame, metadata = release(measure="mean")
    extra = frame.assign(numerator=1.0, denominator=2.0, numerator_ci975_halfwidth=0.1)
    suite = published_suite(metadata, list(extra.columns),
                            ["estimate", "numerator", "denominator", "numerator_ci975_halfwidth"])
    allowed = next(r for r in suite.rules if r.name == "columns_allowed").values
    assert {"numerator", "denominator", "numerator_ci975_halfwidth"} <= set(allowed)
    assert failures(extra, metadata) == []
