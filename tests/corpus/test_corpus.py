"""Issue #15 corpus: every built-in profile's export, as sent and as re-saved, loads the same.

The corpus is generated at test time by the synthetic exporter (no real data is committed):
for every built-in profile, the export in its tool's own dialect, then re-saved by French
Excel (cp1252, ``;``, CRLF, decimal comma), as Excel's UTF-16 "Unicode text" (tab), as an
``.xlsx`` workbook (numbers, dates and booleans as typed cells), with ISO 8601 dates and with
dd/mm dates. Each file is detected as its profile by ``auto`` and loaded through
``pipeline.ingest.ingest_file`` into a fresh SQLite warehouse, which must hold exactly what the
original's holds: the same row counts per table and the same histogram of every attribute.
The synthetic people include a canary identity, and some exports an unread free-text column
naming it: no canary may reach the warehouse, the load results, the logs or ISOLOIR_HOME.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.settings import load_settings
from pipeline.ingest import ingest_file
from privacy.keys import Keyring
from tests.helpers import exports
from tests.helpers.resave import resave
from transforms.read import last_read_report
from transforms.sources import BUILTIN_PROFILES
from transforms.synth import CanaryPerson, SynthConfig, generate_campaign
from warehouse import store
from warehouse.db import make_engine
from warehouse.schema import contacts, donations, identifier_links, people_rows, persons

pytest.importorskip("openpyxl")

VARIANTS = ("original", "french_excel", "utf16_tab", "xlsx", "iso_dates", "ddmm_dates")
NOW = datetime(2026, 7, 1, tzinfo=UTC)
_C = exports.CANARIES[0]
CANARY = CanaryPerson(_C.first, _C.last, _C.email, _C.phone_national, _C.street)
#: Columns that name the file, the load or a random id, not the content (event ids, link and
#: people-row pseudonyms and fingerprints are keyed hashes of normalized values: compared;
#: ``raw_key`` hashes the record as written, so a re-save whose text differs keys differently).
_BOOKKEEPING = re.compile(r"file|sha256|_at$|loaded|^person_id$|^raw_key$")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("corpus")
    manifest = generate_campaign(SynthConfig(people=300, seed=15, chunk_people=1_000,
                                             canaries=(CANARY,), extra_sources=True), out)
    files = {f.profile: f.path for f in manifest.files}
    assert set(files) == set(BUILTIN_PROFILES)  # every built-in profile has a synthetic export
    return files


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    return Keyring.from_bytes({1: bytes(range(32))})


def _content(url: str) -> tuple[dict[str, int], dict[str, Counter[Any]]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = store.table_counts(conn)
        hist: dict[str, Counter[Any]] = {}
        for table in (persons, contacts, donations, identifier_links, people_rows):
            rows = conn.execute(select(table)).mappings().all()
            for column in table.columns:
                if not _BOOKKEEPING.search(column.name):
                    hist[f"{table.name}.{column.name}"] = Counter(r[column.name] for r in rows)
        swept = repr(conn.execute(select(persons)).all()) + \
            repr(conn.execute(select(contacts)).all()) + repr(conn.execute(select(donations)).all())
    engine.dispose()
    assert exports.find_canaries(swept) == []
    return counts, hist


def _load(path: Path, home: Path, keyring: Keyring,
          caplog: pytest.LogCaptureFixture) -> tuple[dict[str, Any], tuple[Any, Any]]:
    settings = load_settings({"ISOLOIR_HOME": str(home)})
    settings.ensure_dirs()
    url = f"sqlite:///{home / 'warehouse.db'}"
    engine = make_engine(url)
    with caplog.at_level(logging.DEBUG):
        result = ingest_file(path, settings, engine, keyring, now=NOW)
    engine.dispose()
    report = last_read_report(path)
    shown = result.to_dict() | {"reading": report.to_dict() if report else None}
    assert exports.find_canaries(json.dumps(shown, default=str)) == []
    assert exports.find_canaries(caplog.text) == []
    for item in home.rglob("*"):
        if item.is_file() and item.name != "warehouse.db":
            assert exports.find_canaries(item.read_bytes()) == [], item
    assert list((settings.work / "workbooks").iterdir()) == []  # conversions deleted
    return shown, _content(url)


@pytest.fixture(scope="module")
def originals() -> dict[str, Any]:
    """The original export's warehouse content per profile, loaded by the first test."""
    return {}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("profile", sorted(BUILTIN_PROFILES))
def test_every_variant_loads_the_same_warehouse(campaign: dict[str, Path], keyring: Keyring,
                                                originals: dict[str, Any], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture, profile: str,
                                                variant: str) -> None:
    source = campaign[profile]
    spec = BUILTIN_PROFILES[profile]
    if profile not in originals:
        shown, content = _load(source, tmp_path / "original", keyring, caplog)
        originals[profile] = content
        assert shown["source"] == profile
    path = source if variant == "original" else \
        resave(source, spec, variant, tmp_path / "variants")
    if profile != "nationbuilder_contacts":  # its rows hold ids only
        assert exports.find_canaries(source.read_bytes())  # the sweep below means something
    shown, content = _load(path, tmp_path / "home", keyring, caplog)
    detection = shown["reading"]["profile_detection"]
    assert shown["source"] == profile and detection["profile"] == profile
    assert detection["decided_by"] and not detection["requested"]
    if variant == "xlsx":
        assert shown["reading"]["dialect"]["format"] == "xlsx"
    counts, hist = content
    want_counts, want_hist = originals[profile]
    assert counts == want_counts
    assert counts["persons"] > 0 and (spec.kind == "people" or counts[spec.kind] > 0)
    assert hist == want_hist
