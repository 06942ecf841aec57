"""Retiring an old master key version: refused while stored rows use it, allowed after rekey."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from privacy.keys import read_key_file, write_new_key_file
from tests.helpers.reexport import reexport
from transforms.synth import SynthConfig, generate_campaign

runner = CliRunner()


@pytest.fixture
def key_file(isoloir_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "master.key"
    write_new_key_file(path)
    monkeypatch.delenv("ISOLOIR_MASTER_KEY", raising=False)
    monkeypatch.setenv("ISOLOIR_KEY_FILE", str(path))
    return path


def test_retire_refuses_while_used_then_rekey_frees_it(key_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    generate_campaign(SynthConfig(people=300, seed=4), out)
    people = out / "nationbuilder_people.csv"
    history = out / "van_contact_history.txt"
    loaded = runner.invoke(app, ["ingest", str(people), str(history), "--json"])
    assert loaded.exit_code == 0, loaded.output
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0

    refused = runner.invoke(app, ["keys", "retire", "--version", "1"])
    assert refused.exit_code == 1
    assert "identifier_links" in refused.output and "keys rekey" in refused.output
    current = runner.invoke(app, ["keys", "retire", "--version", "2"])
    assert current.exit_code == 2 and "current key version" in current.output
    assert read_key_file(key_file).key_ids == ("k1", "k2")

    moved = runner.invoke(app, ["keys", "rekey", str(people), str(history), "--json"])
    assert moved.exit_code == 0, moved.output
    usage = json.loads(moved.stdout)["older_key_usage"]["k1"]
    assert usage == {"identifier_links": 0, "objections": 0, "people_rows": 0,
                     "contacts": 0, "donations": 0}
    retired = runner.invoke(app, ["keys", "retire", "--version", "1", "--json"])
    assert retired.exit_code == 0, retired.output
    assert read_key_file(key_file).key_ids == ("k2",)

    # the same supporters, exported again after the old key is gone: still the same persons
    again = runner.invoke(app, ["ingest", str(reexport(people, tmp_path / people.name, seed=1)),
                                "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["files"][0]["persons_new"] == 0
