"""`isoloir doctor`: each check passes on a ready installation and names what is wrong otherwise.

The Airflow check runs a real DagBag in a child process (two tests); the others replace it
with a stand-in so they stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from typer.testing import CliRunner

import cli.doctor as doctor
from cli.doctor import (
    Check,
    check_budget,
    check_dags,
    check_signing_key,
    check_warehouse,
    dag_parse_check,
)
from cli.main import app
from core.settings import Settings, load_settings
from privacy.keys import write_new_key_file
from privacy.signing import create_signing_key, public_key_path
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import SCHEMA_VERSION, privacy_budgets

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ready installation: key file (0600), signing key, warehouse with its schema."""
    home = tmp_path / "home"
    monkeypatch.setenv("ISOLOIR_HOME", str(home))
    monkeypatch.delenv("ISOLOIR_MASTER_KEY", raising=False)
    monkeypatch.delenv("ISOLOIR_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("ISOLOIR_PLAN", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_ISOLOIR_MASTER_KEY", raising=False)
    monkeypatch.setenv("ISOLOIR_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    monkeypatch.setenv("ISOLOIR_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing.key"))
    settings = load_settings()
    settings.ensure_dirs()
    write_new_key_file(tmp_path / "keys" / "master.key")
    create_signing_key(settings.signing_key_file)
    ensure_schema(make_engine(settings.warehouse_url))
    monkeypatch.setattr(doctor, "check_dags",
                        lambda s: Check("airflow dags", "ok", "stand-in: not parsed"))
    return home


def run_doctor() -> tuple[int, dict[str, dict[str, str]], str]:
    done = runner.invoke(app, ["doctor", "--json"])
    payload = json.loads(done.stdout)
    assert payload["ok"] is (done.exit_code == 0)
    return done.exit_code, {c["name"]: c for c in payload["checks"]}, done.stdout


def test_a_ready_installation_is_all_ok(home: Path) -> None:
    code, checks, _ = run_doctor()
    assert code == 0
    assert list(checks) == ["master key", "signing key", "warehouse", "airflow dags",
                            "privacy budget"]
    assert {c["status"] for c in checks.values()} == {"ok"}
    assert "mode 0600" in checks["master key"]["detail"]
    assert "key ids k1" in checks["master key"]["detail"]
    assert f"schema version {SCHEMA_VERSION}" in checks["warehouse"]["detail"]
    table = runner.invoke(app, ["doctor"])
    assert table.exit_code == 0 and "privacy budget" in table.stdout


def test_a_key_file_readable_by_others_fails_without_showing_the_key(home: Path) -> None:
    key_file = home.parent / "keys" / "master.key"
    key_file.chmod(0o644)
    code, checks, output = run_doctor()
    assert code == 1
    assert checks["master key"]["status"] == "fail"
    assert "0644" in checks["master key"]["detail"] and "chmod 600" in checks["master key"][
        "detail"]
    assert key_file.read_text().split()[-1] not in output


def test_missing_or_loose_signing_keys_fail(home: Path) -> None:
    settings = load_settings()
    settings.signing_key_file.chmod(0o640)
    assert check_signing_key(settings).status == "fail"
    settings.signing_key_file.unlink()
    only_public = check_signing_key(settings)
    assert only_public.status == "warn" and "public half" in only_public.detail
    public_key_path(settings.signing_key_file).unlink()
    missing = check_signing_key(settings)
    assert missing.status == "fail" and "keys init" in missing.detail
    code, checks, _ = run_doctor()
    assert code == 1 and checks["signing key"]["status"] == "fail"


def test_no_master_key_at_all_fails(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISOLOIR_KEY_FILE")
    code, checks, _ = run_doctor()
    assert code == 1
    assert checks["master key"]["status"] == "fail"
    assert "keys init" in checks["master key"]["detail"]


def test_a_warehouse_not_created_yet_is_a_warning_and_is_not_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLOIR_HOME", str(tmp_path / "fresh"))
    monkeypatch.delenv("ISOLOIR_WAREHOUSE_URL", raising=False)
    settings = load_settings()
    assert check_warehouse(settings).status == "warn"
    assert check_budget(settings).status == "warn"
    assert not (tmp_path / "fresh" / "warehouse.db").exists()


def test_an_unreachable_warehouse_fails_and_hides_its_password(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL",
                       "postgresql://isoloir:s3cret-pw@127.0.0.1:9/isoloir?connect_timeout=2")
    code, checks, output = run_doctor()
    assert code == 1
    assert checks["warehouse"]["status"] == "fail"
    assert "unreachable" in checks["warehouse"]["detail"]
    assert checks["privacy budget"]["status"] == "warn"
    assert "s3cret-pw" not in output


def test_another_schema_version_fails(home: Path) -> None:
    settings = load_settings()
    with make_engine(settings.warehouse_url).begin() as conn:
        conn.execute(text("UPDATE schema_info SET version = 99"))
    result = check_warehouse(settings)
    assert result.status == "fail" and "99" in result.detail


def _set_budget(settings: Settings, spent: str) -> None:
    with make_engine(settings.warehouse_url).begin() as conn:
        conn.execute(insert(privacy_budgets).values(
            dataset_id="campaign", cap_rho="1/1", cap_epsilon="", cap_delta="",
            spent_rho=spent, created_at="2026-03-01T00:00:00Z"))


def test_budget_status_ok_low_and_exhausted(home: Path) -> None:
    settings = load_settings()
    _set_budget(settings, "1/10")
    ok = check_budget(settings)
    assert ok.status == "ok" and "225 run(s) of the plan left" in ok.detail  # 0.9 / 0.004
    with make_engine(settings.warehouse_url).begin() as conn:
        conn.execute(text("UPDATE privacy_budgets SET spent_rho = '19/20'"))
    assert check_budget(settings).status == "warn"
    with make_engine(settings.warehouse_url).begin() as conn:
        conn.execute(text("UPDATE privacy_budgets SET spent_rho = '999/1000'"))
    exhausted = check_budget(settings)
    assert exhausted.status == "fail" and "cannot be afforded" in exhausted.detail
    code, checks, _ = run_doctor()
    assert code == 1 and checks["privacy budget"]["status"] == "fail"


@pytest.mark.slow
def test_the_real_dags_parse(home: Path) -> None:
    real = check_dags(load_settings())  # a real DagBag, in a child process
    assert real.status == "ok", real.detail
    assert "isoloir_ingest" in real.detail and "isoloir_release" in real.detail


def test_dag_import_errors_and_crashes_are_named(tmp_path: Path) -> None:
    probe = "ISOLOIR_DAGBAG" + json.dumps({
        "dags": ["isoloir_ingest"],
        "errors": {"/dags/broken_dag.py": "RuntimeError: this DAG file is broken"}})
    broken = dag_parse_check(tmp_path, 0, f"log line\n{probe}\n", "")
    assert broken.status == "fail"
    assert "broken_dag.py" in broken.detail and "this DAG file is broken" in broken.detail
    crashed = dag_parse_check(tmp_path, 1, "", "Traceback...\nModuleNotFoundError: airflow")
    assert crashed.status == "fail" and "ModuleNotFoundError" in crashed.detail
    empty = dag_parse_check(tmp_path, 0, "ISOLOIR_DAGBAG" + json.dumps({"dags": [],
                                                                      "errors": {}}), "")
    assert empty.status == "fail" and "no DAG" in empty.detail
