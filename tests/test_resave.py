"""Issue #15: the same export, re-saved by other tools, reads to exactly the same content.

Every built-in profile's synthetic export is re-saved in each variant of
``tests.helpers.resave`` (French Excel, Excel's UTF-16 "Unicode text", no BOM, ``|``, ISO dates,
dd/mm and mm/dd dates, re-typed headers plus an unknown column); each variant must be
detected as the same profile and normalize to the same frame as the original, read in
several chunks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.resave import EXTRA_COLUMN, VARIANTS, resave
from transforms.normalize import normalize_chunk
from transforms.read import detect_profile, plan_read, read_chunk
from transforms.sources import BUILTIN_PROFILES, SourceProfile
from transforms.synth import SynthConfig, generate_campaign

PROFILES = ("nationbuilder_people", "van_contacts", "fr_canvass", "donations")
CHUNK_ROWS = 40  # several chunks per file: decisions must be the file's, not a chunk's


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("campaign")
    manifest = generate_campaign(SynthConfig(people=400, seed=15, chunk_people=400), out)
    return {f.profile: f.path for f in manifest.files}


def normalized(path: Path, profile: SourceProfile) -> tuple[pd.DataFrame, dict[str, object]]:
    plan = plan_read(path, profile, chunk_rows=CHUNK_ROWS, validate=True)
    frames = [normalize_chunk(read_chunk(plan, k), profile, path.name)[0]
              for k in range(plan.chunks)]
    assert plan.chunks > 1
    return pd.concat(frames, ignore_index=True), plan.report.to_dict()


@pytest.fixture(scope="module")
def originals(exports: dict[str, Path]) -> dict[str, pd.DataFrame]:
    return {p: normalized(path, BUILTIN_PROFILES[p])[0] for p, path in exports.items()}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", PROFILES)
def test_a_resaved_export_normalizes_to_the_same_content(
        exports: dict[str, Path], originals: dict[str, pd.DataFrame], tmp_path: Path,
        name: str, variant: str) -> None:
    profile = BUILTIN_PROFILES[name]
    path = resave(exports[name], profile, variant, tmp_path)
    assert detect_profile(path) is profile
    frame, report = normalized(path, profile)
    expected = originals[name]
    assert len(frame) == len(expected) > CHUNK_ROWS
    pd.testing.assert_frame_equal(frame, expected)
    dialect = report["dialect"]
    assert isinstance(dialect, dict)
    if variant == "french_excel":
        assert (dialect["encoding"], dialect["delimiter"], dialect["line_ending"],
                dialect["bom"]) == ("cp1252", "';'", "CRLF", False)
        if name == "donations":
            assert dialect["decimal"] == ","
    if variant == "utf16_tab":
        assert (dialect["encoding"], dialect["delimiter"], dialect["bom"]) == \
            ("utf-16-le", "tab", True)
    if variant == "pipe":
        assert dialect["delimiter"] == "'|'"
    if variant == "aliased_headers":
        assert EXTRA_COLUMN in report["columns_ignored"]  # listed by name, never read
        assert report["columns_aliased"]


def test_date_orders_are_decided_per_file_and_column(exports: dict[str, Path],
                                                     tmp_path: Path) -> None:
    profile = BUILTIN_PROFILES["nationbuilder_people"]
    ddmm = resave(exports["nationbuilder_people"], profile, "ddmm_dates", tmp_path)
    report = plan_read(ddmm, profile).report
    assert {c: d.to_dict() for c, d in report.dates.items()} == {
        "born_at": {"order": "dd/mm", "assumed": False},
        "created_at": {"order": "dd/mm", "assumed": False}}
    iso = resave(exports["nationbuilder_people"], profile, "iso_dates", tmp_path)
    assert plan_read(iso, profile).report.dates == {}  # no numeric date: no order to decide


def test_the_unknown_column_is_never_read(exports: dict[str, Path], tmp_path: Path) -> None:
    profile = BUILTIN_PROFILES["van_contacts"]
    path = resave(exports["van_contacts"], profile, "aliased_headers", tmp_path)
    plan = plan_read(path, profile)
    assert EXTRA_COLUMN not in plan.include
    assert plan.report.aliases == {"Zip5": "ZIP", "Email": "Courriel"}
    assert plan.report.ignored[-1] == EXTRA_COLUMN
    chunk = read_chunk(plan, 0)
    assert not chunk.astype(str).apply(lambda c: c.str.contains("texte libre")).any().any()
