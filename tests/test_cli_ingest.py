import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.helpers import exports

runner = CliRunner()


def test_ingest_happy_path_json_and_reload(isoloir_home: Path, tmp_path: Path) -> None:
    f = exports.nationbuilder_people(tmp_path / "nationbuilder_people.csv", extra_rows=5)
    result = runner.invoke(app, ["ingest", str(f), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    [loaded] = payload["files"]
    assert payload["ok"] and loaded["status"] == "loaded"
    assert loaded["rows_read"] == 7 and loaded["rows_loaded"] == 7 and loaded["persons_new"] == 7
    again = runner.invoke(app, ["ingest", str(f)])
    assert again.exit_code == 0 and "already loaded" in again.output


def test_rejected_file_exits_2_naming_file_line_rule_never_the_value(isoloir_home: Path,
                                                                     tmp_path: Path) -> None:
    bad = tmp_path / "donations.csv"
    bad.write_text("donor_id,amount,date,method\n1,12.00,2026-01-02,card\n"
                   "2,12.00,31/31/2026,card\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(bad), "--source", "donations"])
    assert result.exit_code == 2
    assert "donations.csv" in result.output and "row 3" in result.output
    assert "date" in result.output and "31/31/2026" not in result.output
    as_json = runner.invoke(app, ["ingest", str(bad), "--json"])
    assert as_json.exit_code == 2
    failure = json.loads(as_json.stdout)["failures"][0]
    assert failure["file"] == "donations.csv" and "31/31/2026" not in failure["message"]


def test_missing_key_stops_before_reading(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ISOLOIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ISOLOIR_MASTER_KEY", raising=False)
    monkeypatch.delenv("ISOLOIR_KEY_FILE", raising=False)
    f = exports.donations(tmp_path / "donations.csv")
    result = runner.invoke(app, ["ingest", str(f)])
    assert result.exit_code == 2 and "no master key" in result.output


def test_demo_refuses_a_bad_size() -> None:
    result = runner.invoke(app, ["demo", "--people", "5"])
    assert result.exit_code == 2


def test_console_script_stages_a_large_file_on_worker_processes(isoloir_home: Path,
                                                               tmp_path: Path) -> None:
    """The installed `isoloir` command spawns staging processes (they import its module)."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("isoloir")
    assert script.exists(), "the isoloir command is installed by `make install`"
    f = exports.nationbuilder_people(tmp_path / "nationbuilder_people.csv", extra_rows=60)
    env = dict(os.environ, ISOLOIR_CHUNK_ROWS="20", ISOLOIR_INGEST_PROCESSES="2",
               ISOLOIR_LOG_LEVEL="INFO")
    done = subprocess.run([str(script), "ingest", str(f), "--json"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [loaded] = json.loads(done.stdout)["files"]
    assert loaded["rows_read"] == 62 and loaded["rows_loaded"] == 62
    assert "4 chunks on 2 processes" in " ".join(done.stderr.split())  # rich wraps lines
    assert all(c.email not in done.stdout + done.stderr for c in exports.CANARIES)
