"""Property tests of the glue the DP audit relies on (issue 17), with Hypothesis.

1. For random persons and random bounds, no person's bounded contribution exceeds what the
   engine declares to OpenDP: cells ≤ num_groups, frame rows per cell ≤ per_group, counted
   rows ≤ R, values and totals inside the clip that OpenDP's sums are declared with. The
   bounded frame is :func:`privacy.bounding.bound_contributions` run as the engine runs it,
   checked equal to the frame the real :func:`privacy.engine.compile_query` hands to OpenDP.
2. The published metadata never carries a number computed from the data outside DP: every
   number in the JSON file :mod:`privacy.publish` writes for a real release (real engine,
   real accountant and ledger) on random small data is a plan constant, a count of public
   keys, the ledger position, an accuracy figure of the OpenDP measurement (which depends on
   the plan and ρ only: the same on other data), or a DP output in the published table.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import privacy.engine as engine
from core.settings import load_settings
from core.vocabulary import months
from privacy.plan import Plan, _jsonable, parse_plan, query_cost
from warehouse.reader import SNAPSHOT_SCHEMAS

PERIOD = ("2026-01-01", "2026-06-30")
MONTHS = months(*(datetime.fromisoformat(d).date() for d in PERIOD))
REGIONS = ("11", "24", "84", "93")


def _plan(measure: str, groups: int, limit: int, clip_hi: int, group_by: list[str]) -> Plan:
    query: dict[str, Any] = {
        "name": "q", "title": "t", "title_fr": "t", "measure": measure, "table": "donations",
        "group_by": group_by, "share": 1,
        "bounds": {"max_groups": groups if group_by else 1, "max_rows_per_group": limit}}
    if measure in ("sum", "mean", "quantile"):
        query |= {"value": "amount_cents", "clip": [0, clip_hi]}
    if measure == "quantile":
        query["quantiles"] = [0.5]
    return parse_plan({"dataset_id": "props", "privacy_unit": "person",
                       "cap": {"epsilon": 8, "delta": "1e-7"}, "per_run": {"rho": "1/2"},
                       "cadence": "test", "period": list(PERIOD), "releases": [query]})


def _donations(persons: list[list[tuple[int, int, int]]]) -> pl.DataFrame:
    """Snapshot rows person by person: (month index, région index, amount)."""
    rows = [{"person_key": key, "amount_cents": amount, "month": MONTHS[m % len(MONTHS)],
             "method": "card", "recurring": False, "region": REGIONS[r % len(REGIONS)],
             "departement": "75", "commune": None}
            for key, gifts in enumerate(persons) for m, r, amount in gifts]
    return pl.DataFrame(rows, schema=dict(SNAPSHOT_SCHEMAS["donations"]))


def _snapshot(directory: Path, frame: pl.DataFrame) -> engine.ReleaseData:
    directory.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(directory / "donations.parquet")
    return engine.ReleaseData(tables={"donations": directory / "donations.parquet"},
                              snapshot_hash="props")


gift = st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(-500, 900_000))
persons_strategy = st.lists(st.lists(gift, min_size=0, max_size=25), min_size=1, max_size=12)
measures = st.sampled_from(["count", "histogram", "sum", "mean", "quantile"])


@settings(max_examples=40, deadline=None)
@given(persons=persons_strategy, measure=measures, groups=st.integers(1, 4),
       limit=st.integers(1, 4), clip_hi=st.integers(1, 60_000),
       group_by=st.sampled_from([["month"], ["region"], ["region", "month"], []]))
def test_no_person_exceeds_what_is_declared_to_opendp(
        persons: list[list[tuple[int, int, int]]], measure: str, groups: int, limit: int,
        clip_hi: int, group_by: list[str]) -> None:
    if measure == "histogram" and not group_by:
        group_by = ["month"]
    frame = _donations(persons)
    if frame.height == 0:
        return
    plan = _plan(measure, groups, limit, clip_hi, group_by)
    query = plan.releases[0]
    with tempfile.TemporaryDirectory() as directory:
        data = _snapshot(Path(directory), frame)
        compiled = engine.compile_query(query, plan, data, query_cost(plan, query))
        cells = engine.cell_keys(plan, query)
        spec = engine._spec(query)
        bounded = engine.bound_contributions(
            engine.load_rows(query, data, cells), bounds=query.bounds, n_cells=cells.n_cells,
            shape="rows" if spec.shape == "rows" else "aggregate", clipping=spec.clipping)
    # What this test inspects is exactly what OpenDP received (person key aside).
    assert bounded.select(spec.columns).equals(compiled.frame)
    by_cell, overall = compiled.declared
    assert list(by_cell.by) == ["cell"] and not list(overall.by)
    assert by_cell.num_groups == query.bounds.max_groups
    assert overall.per_group == by_cell.per_group * by_cell.num_groups
    if bounded.height == 0:
        return
    per_cell = bounded.group_by("person_key", "cell").len()
    per_person = bounded.group_by("person_key").agg(cells=pl.col("cell").n_unique(),
                                                    rows=pl.len())
    assert int(per_person["cells"].max()) <= by_cell.num_groups  # type: ignore[arg-type]
    assert int(per_cell["len"].max()) <= by_cell.per_group  # type: ignore[arg-type]
    assert int(per_person["rows"].max()) <= overall.per_group  # type: ignore[arg-type]
    lo, hi = 0, clip_hi
    if spec.shape == "rows":  # quantile: each row is one value, clipped to [lo, hi]
        assert by_cell.per_group == limit
        assert bounded["value"].is_between(lo, hi).all()
        return
    assert by_cell.per_group == 1
    assert bounded["n"].is_between(1, limit).all()  # the count OpenDP sums over (0, R)
    if measure == "sum":
        assert bounded["total"].is_between(lo, hi).all()
    elif measure == "mean":  # numerator declared as (R·lo, R·hi), rows clipped one by one
        assert bounded["total"].is_between(limit * lo, limit * hi).all()
        assert (bounded["total"] <= bounded["n"] * hi).all()


# ----------------------------------------------------------------------------- metadata

def _numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every JSON number (not bool) with its key path."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int | float):
        yield path, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")


def _plan_numbers(plan: Plan) -> set[float]:
    found = {v for _, v in _numbers(_jsonable(plan))}

    def fractions(value: Any) -> Iterator[float]:  # shares and ρ are "p/q" text in the plan
        if isinstance(value, str) and "/" in value:
            try:
                yield float(Fraction(value))
            except (ValueError, ZeroDivisionError):
                return
        elif isinstance(value, dict):
            for item in value.values():
                yield from fractions(item)
        elif isinstance(value, list):
            for item in value:
                yield from fractions(item)

    found |= set(fractions(_jsonable(plan)))
    query = plan.releases[0]
    found |= {float(query_cost(plan, query)), float(plan.per_run.cap_rho())}
    found |= {float(b) for b in query.clip_bounds()} if query.value else set()
    return found


def _allowed(plan: Plan, accuracy: set[float], table: pl.DataFrame, seq: int) -> set[float]:
    query = plan.releases[0]
    keys = {float(len(engine.public_keys(plan, c))) for c in query.group_by}
    cells = float(engine.cell_keys(plan, query).n_cells)
    published = {float(v) for column, dtype in table.schema.items() if dtype.is_numeric()
                 for v in table[column].drop_nulls().to_list()}
    constants = {engine.ALPHA, float(engine.N_CANDIDATES), float(engine.QUANTILE_WINDOW)}
    return (_plan_numbers(plan) | keys | {cells, float(table.height), float(seq)} | constants
            | accuracy | published)


def _contains(allowed: set[float], value: float) -> bool:
    return value in allowed or any(math.isclose(value, a, rel_tol=1e-12, abs_tol=1e-12)
                                   for a in allowed)


def _accuracy_elsewhere(plan: Plan, directory: Path) -> set[float]:
    """Accuracy figures of the same measurement compiled on *other* data (nothing shared)."""
    other = _donations([[(i % 6, i % 4, 1000 + 37 * i)] * (1 + i % 3) for i in range(50)])
    query = plan.releases[0]
    result = engine.run_query(query, plan, _snapshot(directory, other), query_cost(plan, query))
    return {v for _, v in _numbers(_accuracy_figures(result.metadata))}


def _accuracy_figures(metadata: Any) -> Any:
    """The parts of the engine's metadata that describe OpenDP's measurement."""
    from privacy.publish import jsonable

    doc = jsonable(metadata)
    return {"aggregates": doc["aggregates"], "rho_opendp": doc["rho_opendp"]}


class _Engine:
    """A DPEngine for run_release: the real engine, on this test's snapshot."""

    def __init__(self, frame: pl.DataFrame, directory: Path) -> None:
        self.frame, self.directory = frame, directory

    def snapshot(self, db: Any, work_dir: Path) -> engine.ReleaseData:
        return _snapshot(work_dir / "snap", self.frame)

    def mechanism(self, query: Any) -> str:
        return engine.mechanism_name(query)

    def run_query(self, query: Any, plan: Plan, data: Any, rho: Fraction) -> Any:
        return engine.run_query(query, plan, data, rho)

    def postprocess(self, result: Any) -> pl.DataFrame:
        return engine.postprocess(result)


def _release(plan: Plan, frame: pl.DataFrame, home: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    from privacy.release import run_release
    from privacy.signing import create_signing_key

    env = {"ISOLOIR_HOME": str(home),
           "ISOLOIR_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
           "ISOLOIR_SIGNING_KEY_FILE": str(home / "keys" / "signing.key"),
           "PATH": os.environ.get("PATH", "")}
    config = load_settings(env)
    create_signing_key(config.signing_key_file)
    summary = run_release(config, plan, "props-run", logical_date=datetime(2026, 3, 2, tzinfo=UTC),
                          dp_engine=_Engine(frame, home))
    (released,) = summary.releases
    files = {Path(name).suffix: config.published / name for name in released.files}
    return json.loads(files[".json"].read_text(encoding="utf-8")), pl.read_parquet(
        files[".parquet"])


def leaked_numbers(metadata: dict[str, Any], allowed: set[float]) -> list[tuple[str, float]]:
    return [(path, value) for path, value in _numbers(metadata)
            if not _contains(allowed, value)]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(persons=st.lists(st.lists(gift, min_size=1, max_size=15), min_size=3, max_size=25),
       measure=measures, groups=st.integers(1, 3), limit=st.integers(1, 3),
       clip_hi=st.integers(100, 60_000), group_by=st.sampled_from([["month"], ["region"]]))
def test_published_metadata_holds_no_number_computed_from_the_data_outside_dp(
        persons: list[list[tuple[int, int, int]]], measure: str, groups: int, limit: int,
        clip_hi: int, group_by: list[str]) -> None:
    plan = _plan(measure, groups, limit, clip_hi, group_by)
    frame = _donations(persons)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        metadata, table = _release(plan, frame, root / "home")
        accuracy = _accuracy_elsewhere(plan, root / "other")
    allowed = _allowed(plan, accuracy, table, metadata["ledger_seq"])
    assert leaked_numbers(metadata, allowed) == []
    # Teeth: the data's own exact figures would be flagged if they ever appeared.
    exact = {"rows": float(frame.height), "amount": float(frame["amount_cents"].sum())}
    for name, value in exact.items():
        if not _contains(allowed, value):
            assert leaked_numbers(metadata | {f"leak_{name}": value}, allowed) != []


def test_the_metadata_check_flags_an_exact_count(tmp_path: Path) -> None:
    """The check can fail: an exact row count slipped into the metadata is named."""
    plan = _plan("count", 2, 2, 100, ["month"])
    frame = _donations([[(i % 6, 0, 500)] * (1 + i % 4) for i in range(41)])
    metadata, table = _release(plan, frame, tmp_path / "home")
    allowed = _allowed(plan, _accuracy_elsewhere(plan, tmp_path / "other"), table,
                       metadata["ledger_seq"])
    assert leaked_numbers(metadata, allowed) == []
    assert not _contains(allowed, float(frame.height))
    tampered = metadata | {"engine": metadata["engine"] | {"rows_in": frame.height}}
    assert leaked_numbers(tampered, allowed) == [("engine.rows_in", float(frame.height))]


def test_numbers_walks_nested_json() -> None:
    doc = {"a": [1, {"b": 2.5}], "c": True, "d": "3", "e": None}
    assert list(_numbers(doc)) == [("a[0]", 1.0), ("a[1].b", 2.5)]
