import base64
import logging
import os
import stat
from pathlib import Path

import pytest

from core.errors import KeyMaterialError
from core.settings import load_settings
from privacy.keys import (
    PSEUDONYM_RE,
    Keyring,
    add_key_version,
    load_keyring,
    read_key_file,
    write_new_key_file,
)

KEY = bytes(range(32))


def test_pseudonyms_carry_key_id_and_are_deterministic() -> None:
    ring = Keyring.from_bytes({1: KEY})
    a = ring.pseudonymizer("campaign", "identity").pseudonymize_many("email", ["a@b.fr", "c@d.fr"])
    b = Keyring.from_bytes({1: KEY}).pseudonymizer("campaign", "identity").pseudonymize_many(
        "email", ["a@b.fr", "c@d.fr"])
    assert a == b
    assert all(PSEUDONYM_RE.match(p) for p in a)
    assert a[0] != a[1]


def test_known_answer_is_stable_across_machines() -> None:
    # A fixed vector: if this changes, every warehouse's identity links break.
    ring = Keyring.from_bytes({1: KEY})
    got = ring.pseudonymizer("campaign", "identity").pseudonymize_one("email", "jeanne@example.fr")
    import hmac as std_hmac
    from hashlib import sha256

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    purpose = HKDF(hashes.SHA256(), 32, None, b"isoloir/campaign/identity/v1").derive(KEY)
    digest = std_hmac.new(purpose, b"email\x00jeanne@example.fr", sha256).digest()[:30]
    assert got == "k1:" + base64.b32encode(digest).decode().lower()


def test_datasets_purposes_and_versions_are_unlinkable() -> None:
    ring = Keyring.from_bytes({1: KEY, 2: bytes(32)})
    value = "jeanne@example.fr"
    a = ring.pseudonymizer("campaign", "identity", 1).pseudonymize_one("email", value)
    b = ring.pseudonymizer("other-campaign", "identity", 1).pseudonymize_one("email", value)
    c = ring.pseudonymizer("campaign", "identity", 2).pseudonymize_one("email", value)
    d = ring.pseudonymizer("campaign", "person", 1).pseudonymize_one("email", value)
    assert len({a[3:], b[3:], c[3:], d[3:]}) == 4
    assert c.startswith("k2:") and ring.current.key_id == "k2"


def test_kind_separates_equal_strings() -> None:
    p = Keyring.from_bytes({1: KEY}).pseudonymizer("campaign", "identity")
    assert p.pseudonymize_one("email", "x") != p.pseudonymize_one("phone", "x")


def test_key_bytes_never_in_repr_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    ring = Keyring.from_bytes({1: KEY})
    hexkey, b64 = KEY.hex(), base64.b64encode(KEY).decode()
    shown = repr(ring) + str(ring.current) + repr(ring.current) + repr(ring.pseudonymizer("c", "p"))
    assert hexkey not in shown and b64 not in shown and "k1" in shown
    with pytest.raises(KeyMaterialError) as err:
        load_keyring(load_settings({"ISOLOIR_HOME": "/tmp"}), {"ISOLOIR_MASTER_KEY": b64[:-4]})
    assert b64[:-4] not in str(err.value)


def test_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    key = write_new_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(KeyMaterialError, match="already exists"):
        write_new_key_file(path)
    ring = read_key_file(path)
    assert ring.current.material == key.material
    add_key_version(path)
    assert read_key_file(path).key_ids == ("k1", "k2")


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    write_new_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        read_key_file(path)


@pytest.mark.parametrize("content", ["", "k1 notbase64!!\n", "k1 " + base64.b64encode(b"short").decode()])
def test_malformed_key_file_stops_with_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyMaterialError, match="ISOLOIR_KEY_FILE"):
        read_key_file(path)


def test_missing_key_names_every_way_to_provide_one(tmp_path: Path) -> None:
    settings = load_settings({"ISOLOIR_HOME": str(tmp_path)})
    with pytest.raises(KeyMaterialError) as err:
        load_keyring(settings, {})
    for name in ("ISOLOIR_KEY_FILE", "ISOLOIR_MASTER_KEY", "isoloir_master_key", "keys init"):
        assert name in str(err.value)


def test_env_key_wins_over_file_and_accepts_versioned_form(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    write_new_key_file(path)
    settings = load_settings({"ISOLOIR_HOME": str(tmp_path), "ISOLOIR_KEY_FILE": str(path)})
    ring = load_keyring(settings, {"ISOLOIR_MASTER_KEY": "k3:" + base64.b64encode(KEY).decode()})
    assert ring.key_ids == ("k3",)
    assert load_keyring(settings, {}).key_ids == ("k1",)
    logging.getLogger().info("ring %r", ring)


def test_arrow_bulk_path_equals_one_by_one_and_keeps_nulls_in_place() -> None:
    import pyarrow as pa

    p = Keyring.from_bytes({1: KEY}).pseudonymizer("campaign", "identity")
    values = ["a@b.fr", None, "c@d.fr", "a@b.fr", None]
    out = p.pseudonymize_array("email", pa.array(values)).to_pylist()
    assert out == [None if v is None else p.pseudonymize_one("email", v) for v in values]
    assert p.pseudonymize_array("email", pa.array([], pa.string())).to_pylist() == []
    assert p.pseudonymize_array("email", pa.array([None, None], pa.string())).to_pylist() == \
        [None, None]
