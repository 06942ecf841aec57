"""The identity split rate: measured against the generator's humans, recorded, and sensitive."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import pipeline.identity_check as identity_check
from cli.main import app
from core.settings import load_settings
from privacy.identity_audit import read_identity_split
from transforms.synth import SynthConfig, generate_campaign, human_source_ids


def test_doctests() -> None:
    assert doctest.testmod(identity_check).failed == 0


def test_every_id_in_the_exports_belongs_to_a_generated_human(tmp_path: Path) -> None:
    config = SynthConfig(people=800, seed=21)
    generate_campaign(config, tmp_path)
    humans = human_source_ids(config)
    van = pl.read_csv(tmp_path / "van_contact_history.txt", separator="\t",
                      infer_schema=False).get_column("VanID")
    fr = pl.read_csv(tmp_path / "porte_a_porte.csv", separator=";", infer_schema=False,
                     encoding="utf8-lossy").get_column("id_contact")
    assert ("van:" + van).is_in(humans.get_column("van").implode()).all()
    assert ("pap:" + fr).is_in(humans.get_column("pap").implode()).all()


def test_the_cli_measures_and_records_it(isoloir_home: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "identity", "--people", "3000", "--seed", "5",
                                      "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["humans"] > 2900  # a few humans have no row with a lawful basis
    assert payload["split_rate"] < 0.01 and payload["merge_rate"] < 0.05
    recorded = read_identity_split(load_settings().home / "audit")
    assert recorded is not None and recorded.humans == payload["humans"]
    assert recorded.split_humans == payload["split_humans"]


def test_a_split_is_caught(isoloir_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Power: resolution that ignores e-mails and phones splits humans across tools."""
    from privacy import identity

    real = identity.index_identifier_slices

    def source_ids_only(slices, n_rows):  # type: ignore[no-untyped-def]
        def blanked():  # type: ignore[no-untyped-def]
            return (ids.with_columns(pl.lit(None, dtype=pl.String).alias(c)
                                     for c in ("id_email", "id_phone", "id_phone2"))
                    for ids in slices())
        return real(blanked, n_rows)

    monkeypatch.setattr("pipeline.ingest.index_identifier_slices", source_ids_only)
    settings = load_settings()
    settings.ensure_dirs()
    broken = identity_check.measure_identity_split(settings, people=1500, seed=5)
    assert broken.split_rate > 0.3  # VAN and door-to-door ids never meet NationBuilder's
