"""Signing-key rotation, end to end through the CLI, as the README's procedure runs it.

A ledger signed by two successive keys verifies with both public halves, and fails (exit 4)
with one of them missing, naming the first entry it cannot check.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app
from core.errors import KeyMaterialError
from core.settings import load_settings
from privacy.signing import (
    create_signing_key,
    load_verify_key,
    load_verify_keys,
    public_key_path,
    retired_public_keys,
)
from tests.test_cli_release import PLAN
from tests.test_release import FakeEngine, published_bytes
from warehouse.db import make_engine
from warehouse.schema import ledger_entries

runner = CliRunner()


@pytest.fixture
def plan_file(isoloir_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    create_signing_key(load_settings().signing_key_file)
    monkeypatch.setattr("privacy.release.OpenDPEngine", FakeEngine)
    path = isoloir_home / "plan.yaml"
    path.write_text(yaml.safe_dump(dict(PLAN, cap={"rho": "1"})), encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def key_ids_by_seq() -> dict[int, str]:
    with make_engine(load_settings().warehouse_url).connect() as conn:
        return dict(conn.execute(select(ledger_entries.c.seq,
                                        ledger_entries.c.signing_key_id)).tuples().all())


def test_rotation_end_to_end(plan_file: Path, tmp_path: Path) -> None:
    key_file = load_settings().signing_key_file
    first_id = load_verify_key(public_key_path(key_file)).key_id
    assert invoke("release", "--plan", str(plan_file), "--run-id", "day-1")[0] == 0
    published_day1 = published_bytes(load_settings())

    code, rotated = invoke("keys", "rotate-signing")
    assert code == 0, rotated
    second_id = rotated["signing_key_id"]
    assert rotated["old_signing_key_id"] == first_id != second_id
    kept = Path(rotated["old_public_key_file"])
    assert kept == key_file.with_name(f"{key_file.name}.{first_id}.pub")
    assert load_verify_key(kept).key_id == first_id
    retired = Path(rotated["old_private_key"])
    assert retired.name == f"{key_file.name}.{first_id}.retired"
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert load_verify_key(public_key_path(key_file)).key_id == second_id
    assert invoke("keys", "show")[1]["signing_key_id"] == second_id

    # Entries from now on carry the new key id; a retry of an old run still republishes
    # (its stored result was signed by the retired key, whose public half is kept).
    assert invoke("release", "--plan", str(plan_file), "--run-id", "day-2")[0] == 0
    code, replay = invoke("release", "--plan", str(plan_file), "--run-id", "day-1")
    assert code == 0 and replay["replayed"] == 2, replay
    assert {k: v for k, v in published_bytes(load_settings()).items()
            if k in published_day1} == published_day1
    assert key_ids_by_seq() == {1: first_id, 2: first_id, 3: second_id, 4: second_id}

    # The installation verifies by default with the current and the retired public halves.
    code, report = invoke("audit", "verify")
    assert code == 0 and report["ok"], report
    assert report["signing_keys"] == [
        {"key_id": first_id, "entries": 2, "first_seq": 1, "last_seq": 2},
        {"key_id": second_id, "entries": 2, "first_seq": 3, "last_seq": 4}]
    plain = runner.invoke(app, ["audit", "verify"])
    assert plain.exit_code == 0
    assert f"key {first_id}: 2 entries (seq 1–2)" in " ".join(plain.output.split())

    # The auditor's own folder of public keys, or the keys one by one.
    auditor = tmp_path / "auditor-keys"
    auditor.mkdir()
    shutil.copy(kept, auditor / "2025-signing.pub")
    shutil.copy(public_key_path(key_file), auditor / "2026-signing.pub")
    assert invoke("audit", "verify", "--public-keys", str(auditor))[0] == 0
    assert invoke("audit", "verify", "--public-key", str(auditor / "2025-signing.pub"),
                  "--public-key", str(auditor / "2026-signing.pub"))[0] == 0

    # One half missing: exit 4, naming the first entry it cannot check.
    code, only_new = invoke("audit", "verify", "--public-key", str(auditor / "2026-signing.pub"))
    assert code == 4 and not only_new["ok"]
    assert only_new["first_broken"]["seq"] == 1
    assert f"signed by key '{first_id}', whose public half the auditor does not hold" in \
        only_new["first_broken"]["message"]
    code, only_old = invoke("audit", "verify", "--public-key", str(auditor / "2025-signing.pub"))
    assert code == 4 and only_old["first_broken"]["seq"] == 3
    (auditor / "2025-signing.pub").unlink()
    text = runner.invoke(app, ["audit", "verify", "--public-keys", str(auditor)])
    assert text.exit_code == 4 and "first broken: entry seq 1" in " ".join(text.output.split())


def test_a_leaked_key_is_destroyed_and_a_lost_one_rotated_from_its_public_half(
        plan_file: Path) -> None:
    key_file = load_settings().signing_key_file
    assert invoke("release", "--plan", str(plan_file), "--run-id", "day-1")[0] == 0
    code, leaked = invoke("keys", "rotate-signing", "--destroy-old")
    assert code == 0 and leaked["old_private_key"] == "destroyed"
    assert not key_file.with_name(f"{key_file.name}.{leaked['old_signing_key_id']}.retired") \
        .exists()
    assert invoke("release", "--plan", str(plan_file), "--run-id", "day-2")[0] == 0
    # Lost: only the public half is left. Rotation still keeps it and makes a new key.
    key_file.unlink()
    code, lost = invoke("keys", "rotate-signing")
    assert code == 0 and lost["old_private_key"] == "missing (lost)"
    assert invoke("release", "--plan", str(plan_file), "--run-id", "day-3")[0] == 0
    assert len(set(key_ids_by_seq().values())) == 3 and len(retired_public_keys(key_file)) == 2
    assert invoke("audit", "verify")[0] == 0


def test_rotation_refuses_without_the_public_half(plan_file: Path) -> None:
    key_file = load_settings().signing_key_file
    before = key_file.read_bytes()
    public_key_path(key_file).unlink()
    code, refused = invoke("keys", "rotate-signing")
    assert code == 2 and "public signing key" in refused["message"]
    assert key_file.read_bytes() == before and retired_public_keys(key_file) == []


def test_a_keyring_from_files_and_folders(tmp_path: Path) -> None:
    one = create_signing_key(tmp_path / "a" / "one.key")
    two = create_signing_key(tmp_path / "b" / "two.key")
    ring = load_verify_keys([tmp_path / "a", one.public_path, two.path])
    assert ring.key_ids == (one.key_id, two.key_id) and ring.get("0" * 16) is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(KeyMaterialError, match="holds no .pub file"):
        load_verify_keys([tmp_path / "empty"])
    with pytest.raises(KeyMaterialError, match="no public signing key"):
        load_verify_keys([])
