import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISOLOIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ISOLOIR_MASTER_KEY", raising=False)
    monkeypatch.setenv("ISOLOIR_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    monkeypatch.delenv("ISOLOIR_SIGNING_KEY_FILE", raising=False)
    return tmp_path


def test_keys_init_creates_0600_keys_and_refuses_to_overwrite(env: Path) -> None:
    result = runner.invoke(app, ["keys", "init", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    master, signing = Path(payload["master_key_file"]), Path(payload["signing_key_file"])
    assert master == env / "keys" / "master.key"
    assert signing == env / "keys" / "isoloir-signing.key"
    for path in (master, signing):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Path(payload["signing_public_key_file"]).exists()
    key_bytes = master.read_text().split()[-1]
    assert key_bytes not in result.stdout
    again = runner.invoke(app, ["keys", "init"])
    assert again.exit_code == 2
    assert "refusing to overwrite" in again.output


def test_keys_show_lists_ids_only(env: Path) -> None:
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    shown = runner.invoke(app, ["keys", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert payload["master_key_ids"] == ["k1", "k2"] and payload["current_master_key_id"] == "k2"
    assert len(payload["signing_key_id"]) == 16
    for line in (env / "keys" / "master.key").read_text().splitlines()[1:]:
        assert line.split()[1] not in shown.stdout


def test_keys_show_without_key_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLOIR_HOME", str(tmp_path))
    monkeypatch.delenv("ISOLOIR_MASTER_KEY", raising=False)
    monkeypatch.delenv("ISOLOIR_KEY_FILE", raising=False)
    result = runner.invoke(app, ["keys", "show"])
    assert result.exit_code == 2
    assert "keys init" in result.output


def test_help_lists_every_command_with_one_line_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "keys", "demo", "version"):
        assert command in result.output
