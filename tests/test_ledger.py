"""Ledger formats and the Ed25519 signing key: ids, hashes and signatures are what they claim."""

from __future__ import annotations

import stat
from fractions import Fraction
from pathlib import Path

import pytest

from core.errors import KeyMaterialError
from privacy.ledger import (
    GENESIS_HASH,
    PublishedFile,
    ReleaseResult,
    canonical_json,
    check_file_hashes,
    compute_entry_hash,
    fraction_text,
    hashed_fields,
    parse_result,
    release_id,
    sha256_hex,
)
from privacy.signing import (
    create_signing_key,
    key_id_of,
    load_signing_key,
    load_verify_key,
    public_key_path,
)

PLAN_HASH = "ab" * 32


def test_release_id_is_deterministic_and_depends_on_every_input() -> None:
    base = release_id("campaign", "2025-03-01", "supporters", PLAN_HASH, attempt=0)
    assert base == release_id("campaign", "2025-03-01", "supporters", PLAN_HASH, attempt=0)
    assert base.startswith("r-") and len(base) == 2 + 24
    variants = {
        release_id("other", "2025-03-01", "supporters", PLAN_HASH, attempt=0),
        release_id("campaign", "2025-03-02", "supporters", PLAN_HASH, attempt=0),
        release_id("campaign", "2025-03-01", "volunteers", PLAN_HASH, attempt=0),
        release_id("campaign", "2025-03-01", "supporters", "cd" * 32, attempt=0),
        release_id("campaign", "2025-03-01", "supporters", PLAN_HASH, attempt=1),
    }
    assert base not in variants and len(variants) == 5
    # Joining fields cannot collide: ("a-b", "c") and ("a", "b-c") differ.
    assert release_id("a-b", "c", "q", PLAN_HASH, attempt=0) != \
        release_id("a", "b-c", "q", PLAN_HASH, attempt=0)
    with pytest.raises(ValueError):
        release_id("campaign", "run", "q", PLAN_HASH, attempt=-1)


def test_fraction_text_is_exact_and_canonical() -> None:
    assert fraction_text(Fraction(2)) == "2/1"
    assert fraction_text(Fraction(2, 4)) == "1/2"
    assert Fraction(fraction_text(Fraction(1, 3))) == Fraction(1, 3)


def _fields(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = dict(seq=1, dataset_id="campaign", release_id="r-" + "0" * 24,
                                   plan_hash=PLAN_HASH, query='{"name":"q"}',
                                   mechanism="gaussian (zCDP)", cost_rho="1/20",
                                   snapshot_hash="cd" * 32, signing_key_id="0123456789abcdef",
                                   created_at="2025-03-01T00:00:00.000000Z")
    base.update(overrides)
    return hashed_fields(**base)  # type: ignore[arg-type]


def test_entry_hash_covers_every_field_and_the_previous_hash() -> None:
    reference = compute_entry_hash(_fields(), GENESIS_HASH)
    assert reference == sha256_hex(canonical_json(_fields()) + GENESIS_HASH)
    changed = {"seq": 2, "dataset_id": "x", "release_id": "r-" + "1" * 24, "plan_hash": "0" * 64,
               "query": "{}", "mechanism": "laplace", "cost_rho": "2/40",
               "snapshot_hash": "0" * 64, "signing_key_id": "f" * 16,
               "created_at": "2025-03-02T00:00:00.000000Z"}
    for column, value in changed.items():
        assert compute_entry_hash(_fields(**{column: value}), GENESIS_HASH) != reference, column
    assert compute_entry_hash(_fields(), "1" * 64) != reference


def test_result_document_round_trips_and_detects_bad_bytes() -> None:
    content = b"estimate\n1\n"
    good = PublishedFile("q--r.csv", sha256_hex(content), content)
    result = ReleaseResult("r-x", 3, "ab" * 32, (good,))
    again = parse_result(result.document())
    assert again == result and check_file_hashes(again) is None
    bad = ReleaseResult("r-x", 3, "ab" * 32, (PublishedFile("q--r.csv", "0" * 64, content),))
    assert check_file_hashes(bad) == "q--r.csv"
    with pytest.raises(ValueError):
        parse_result('{"release_id": "r-x"}')


def test_signing_key_file_modes_public_half_and_key_id(tmp_path: Path) -> None:
    info = create_signing_key(tmp_path / "keys" / "ledger.key")
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert info.public_path == public_key_path(info.path) == tmp_path / "keys" / "ledger.key.pub"
    assert b"PRIVATE" not in info.public_path.read_bytes()
    key = load_signing_key(info.path)
    verify = load_verify_key(info.public_path)
    assert key.key_id == verify.key_id == info.key_id == key_id_of(verify.public)
    assert len(info.key_id) == 16
    signature = key.sign(b"entry")
    assert verify.verify(b"entry", signature)
    assert not verify.verify(b"entrY", signature)
    assert not verify.verify(b"entry", "not base64!")
    assert "PRIVATE" not in repr(key) and "Ed25519PrivateKey" not in repr(key)
    # The private key's path is accepted too: only its .pub neighbour is read.
    assert load_verify_key(info.path).key_id == info.key_id


def test_signing_key_refuses_to_overwrite_and_rejects_bad_files(tmp_path: Path) -> None:
    info = create_signing_key(tmp_path / "ledger.key")
    before = info.path.read_bytes()
    with pytest.raises(KeyMaterialError, match="already exists"):
        create_signing_key(info.path)
    assert info.path.read_bytes() == before
    info.path.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="mode 644"):
        load_signing_key(info.path)
    with pytest.raises(KeyMaterialError, match="does not exist"):
        load_signing_key(tmp_path / "missing.key")
    with pytest.raises(KeyMaterialError, match="does not exist"):
        load_verify_key(tmp_path / "missing.key.pub")
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(KeyMaterialError, match="not a PEM public key"):
        load_verify_key(junk)


def test_another_key_does_not_verify(tmp_path: Path) -> None:
    one = load_signing_key(create_signing_key(tmp_path / "one.key").path)
    two = load_verify_key(create_signing_key(tmp_path / "two.key").public_path)
    assert one.key_id != two.key_id
    assert not two.verify(b"entry", one.sign(b"entry"))
