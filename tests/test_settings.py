from pathlib import Path

import pytest

from core.errors import SettingsError
from core.settings import load_settings


def test_defaults_put_everything_under_home(tmp_path: Path) -> None:
    s = load_settings({"ISOLOIR_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.warehouse_url == f"sqlite:///{tmp_path.resolve() / 'warehouse.db'}"
    assert s.landing == s.home / "landing"
    assert s.signing_key_file == s.home / "keys" / "isoloir-signing.key"


def test_bad_warehouse_url_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ISOLOIR_WAREHOUSE_URL"):
        load_settings({"ISOLOIR_HOME": str(tmp_path), "ISOLOIR_WAREHOUSE_URL": "mysql://x"})
    with pytest.raises(SettingsError, match="ISOLOIR_WAREHOUSE_URL"):
        load_settings({"ISOLOIR_HOME": str(tmp_path), "ISOLOIR_WAREHOUSE_URL": "::nonsense"})


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SettingsError, match="ISOLOIR_HOME"):
        load_settings({"ISOLOIR_HOME": str(f)})


def test_bad_log_level_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ISOLOIR_LOG_LEVEL"):
        load_settings({"ISOLOIR_HOME": str(tmp_path), "ISOLOIR_LOG_LEVEL": "LOUD"})


def test_signing_key_defaults_beside_master_key_file(tmp_path: Path) -> None:
    s = load_settings({"ISOLOIR_HOME": str(tmp_path), "ISOLOIR_KEY_FILE": str(tmp_path / "k" / "m.key")})
    assert s.signing_key_file == (tmp_path / "k" / "isoloir-signing.key").resolve()


def test_warehouse_password_never_in_repr(tmp_path: Path) -> None:
    s = load_settings({"ISOLOIR_HOME": str(tmp_path),
                       "ISOLOIR_WAREHOUSE_URL": "postgresql://isoloir:s3cretpw@db:5432/wh"})
    assert "s3cretpw" not in repr(s)
    assert "s3cretpw" not in s.warehouse_url_safe and "***" in s.warehouse_url_safe


def test_ingest_processes_defaults_to_two_at_most_and_rejects_nonsense(tmp_path: Path) -> None:
    import os

    assert load_settings({"ISOLOIR_HOME": str(tmp_path)}).ingest_processes == \
        min(2, os.cpu_count() or 1)
    assert load_settings({"ISOLOIR_HOME": str(tmp_path),
                          "ISOLOIR_INGEST_PROCESSES": "3"}).ingest_processes == 3
    for variable in ("ISOLOIR_INGEST_PROCESSES", "ISOLOIR_CHUNK_ROWS"):
        for bad in ("0", "-1", "two"):
            with pytest.raises(SettingsError, match=variable):
                load_settings({"ISOLOIR_HOME": str(tmp_path), variable: bad})
