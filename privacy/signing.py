"""The ledger's Ed25519 signing key: created once, kept apart from the master key and the DB.

Why a signature: the ledger lives in the warehouse database, so whoever administers the
database could rewrite it and recompute every hash. The private half of this key is held by
the release pipeline only (a file with mode 0600, outside the database); auditors get the
public half (``<key file>.pub``), which is all ``isoloir audit verify`` needs.

Both halves are PEM files (PKCS#8 and SubjectPublicKeyInfo). A key id, the first 16 hex
digits of the SHA-256 of the raw 32-byte public key, is recorded in every ledger entry so a
rotated key can be told apart.

Rotation (:func:`rotate_signing_key`) never loses a public half: the old one is kept beside
the key as ``<key file>.<old key id>.pub`` (a *retired* public key), the old private half is
moved aside as ``<key file>.<old key id>.retired`` (or destroyed, for a leaked key), and a new
key takes the configured path. Entries from then on carry the new key id; a
:class:`VerifyKeyring` of every public half verifies the whole ledger.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> info = create_signing_key(folder / "ledger.key")
>>> key = load_signing_key(info.path)
>>> verify = load_verify_key(info.public_path)
>>> verify.verify(b"entry", key.sign(b"entry")), verify.verify(b"other", key.sign(b"entry"))
(True, False)
>>> key.key_id == verify.key_id == info.key_id
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import KeyMaterialError

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".pub"
RETIRED_SUFFIX = ".retired"
KEY_ID_HEX = 16
_KEY_ID = re.compile(rf"^[0-9a-f]{{{KEY_ID_HEX}}}$")


@dataclass(frozen=True)
class SigningKeyInfo:
    """Where a new signing key was written, and its id (safe to log and show)."""

    path: Path
    public_path: Path
    key_id: str


@dataclass(frozen=True)
class VerifyKey:
    """The public half: verifies ledger signatures; holds nothing secret."""

    public: Ed25519PublicKey = field(repr=False)
    key_id: str

    def verify(self, data: bytes, signature: str) -> bool:
        """True when ``signature`` (base64) is this key's signature of ``data``."""
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
            self.public.verify(raw, data)
        except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """The private half. Its bytes never appear in ``repr``, logs or exceptions."""

    private: Ed25519PrivateKey = field(repr=False)
    key_id: str

    def sign(self, data: bytes) -> str:
        """Ed25519 signature of ``data``, base64 text (as stored in the ledger)."""
        return base64.b64encode(self.private.sign(data)).decode("ascii")

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.private.public_key(), self.key_id)


def public_key_path(path: Path) -> Path:
    """The public half's file, written beside the private key: ``<key file>.pub``."""
    return path.with_name(path.name + PUBLIC_SUFFIX)


def key_id_of(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def create_signing_key(path: Path) -> SigningKeyInfo:
    """Create a new Ed25519 key at ``path`` (mode 0600) and its public half at ``path.pub``.

    Refuses to overwrite either file: replacing the key would orphan every past signature.
    """
    public_path = public_key_path(path)
    for existing in (path, public_path):
        if existing.exists():
            raise KeyMaterialError(f"signing key file {existing} already exists; refusing to "
                                   "overwrite it (past ledger signatures depend on it)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as err:
        raise KeyMaterialError(f"signing key file {path} already exists") from err
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    path.chmod(0o600)
    public = private.public_key()
    public_path.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    public_path.chmod(0o644)
    key_id = key_id_of(public)
    log.info("created ledger signing key %s (id %s)", path, key_id)
    return SigningKeyInfo(path=path, public_path=public_path, key_id=key_id)


def load_signing_key(path: Path) -> SigningKey:
    """Load the private half; refuses a file readable by group or others."""
    if not path.is_file():
        raise KeyMaterialError(f"signing key file {path} does not exist; create it with "
                               "`isoloir keys init` (ISOLOIR_SIGNING_KEY_FILE)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyMaterialError(f"signing key file {path} has mode {mode:o}; it must be private "
                               "to its owner (chmod 600)")
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise KeyMaterialError(f"signing key file {path} is not a PEM private key") from err
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyMaterialError(f"signing key file {path} does not hold an Ed25519 key")
    return SigningKey(private, key_id_of(private.public_key()))


def load_verify_key(path: Path) -> VerifyKey:
    """Load the public half. ``path`` may be the ``.pub`` file or the private key's path
    (then ``<path>.pub`` is read: an auditor never needs the private half)."""
    if path.suffix != PUBLIC_SUFFIX and public_key_path(path).is_file():
        path = public_key_path(path)
    if not path.is_file():
        raise KeyMaterialError(f"public signing key {path} does not exist; ask the pipeline "
                               "operator for the .pub file beside ISOLOIR_SIGNING_KEY_FILE")
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as err:
        raise KeyMaterialError(f"{path} is not a PEM public key") from err
    if not isinstance(public, Ed25519PublicKey):
        raise KeyMaterialError(f"{path} does not hold an Ed25519 public key")
    return VerifyKey(public, key_id_of(public))


# --------------------------------------------------------------------------- several keys

@dataclass(frozen=True)
class VerifyKeyring:
    """Every public key an auditor holds, by key id: a ledger signed by successive keys
    verifies entry by entry with the key each entry names."""

    keys: tuple[VerifyKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyMaterialError("no public signing key given")
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise KeyMaterialError("a public signing key is given twice")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in self.keys)

    def get(self, key_id: str) -> VerifyKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def signer(self, data: bytes, signature: str) -> str | None:
        """The id of the held key whose signature ``signature`` is, or None."""
        return next((k.key_id for k in self.keys if k.verify(data, signature)), None)


def retired_public_key_path(path: Path, key_id: str) -> Path:
    """Where rotation keeps a retired key's public half: ``<key file>.<key id>.pub``."""
    return path.with_name(f"{path.name}.{key_id}{PUBLIC_SUFFIX}")


def retired_public_keys(path: Path) -> list[Path]:
    """The retired public halves kept beside the signing key ``path``, oldest name first."""
    if not path.parent.is_dir():
        return []
    found = []
    for candidate in sorted(path.parent.iterdir()):
        name = candidate.name
        if not (name.startswith(path.name + ".") and name.endswith(PUBLIC_SUFFIX)):
            continue
        middle = name[len(path.name) + 1:-len(PUBLIC_SUFFIX)]
        if _KEY_ID.match(middle) and candidate.is_file():
            found.append(candidate)
    return found


def load_verify_keys(paths: Iterable[Path]) -> VerifyKeyring:
    """A keyring from ``.pub`` files, private key paths (their ``.pub`` is read) or folders
    (every ``*.pub`` in them). The same key given twice counts once."""
    keys: dict[str, VerifyKey] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix == PUBLIC_SUFFIX and p.is_file())
            if not files:
                raise KeyMaterialError(f"folder {path} holds no .pub file")
        else:
            files = [path]
        for file in files:
            key = load_verify_key(file)
            keys.setdefault(key.key_id, key)
    return VerifyKeyring(tuple(keys.values()))


def installed_verify_keys(path: Path) -> VerifyKeyring:
    """The current public half of the signing key ``path`` and every retired one beside it."""
    return load_verify_keys([public_key_path(path), *retired_public_keys(path)])


@dataclass(frozen=True)
class SigningKeyRotation:
    """What :func:`rotate_signing_key` did (paths and ids only)."""

    old_key_id: str
    new: SigningKeyInfo
    retired_public: Path
    retired_private: Path | None  # None when the old private half was destroyed or missing


def rotate_signing_key(path: Path, *, destroy_old: bool = False) -> SigningKeyRotation:
    """Replace the signing key at ``path`` by a new one, keeping the old public half.

    The old public half is copied to ``<path>.<old id>.pub`` first (refused if it cannot be);
    the old private half is moved to ``<path>.<old id>.retired`` (mode 0600) or, with
    ``destroy_old`` (a leaked key must never sign again), deleted. A missing old private half
    (a lost key) is fine: only its public half is needed, for past entries.
    """
    public = public_key_path(path)
    if not public.is_file():
        raise KeyMaterialError(f"public signing key {public} does not exist; without it past "
                               "ledger entries could not be verified, so the key is not rotated "
                               "(restore it from the auditors' copy first)")
    old = load_verify_key(public)
    if path.is_file() and load_signing_key(path).key_id != old.key_id:
        raise KeyMaterialError(f"{public.name} is not the public half of {path.name}; "
                               "refusing to rotate a mismatched pair")
    kept = retired_public_key_path(path, old.key_id)
    if kept.exists() and load_verify_key(kept).key_id != old.key_id:
        raise KeyMaterialError(f"{kept} exists and holds another key")
    shutil.copyfile(public, kept)
    kept.chmod(0o644)
    staging = path.with_name(f".{path.name}.new")
    for leftover in (staging, public_key_path(staging)):
        leftover.unlink(missing_ok=True)
    fresh = create_signing_key(staging)
    retired: Path | None = None
    if path.is_file():
        if destroy_old:
            path.unlink()
        else:
            retired = path.with_name(f"{path.name}.{old.key_id}{RETIRED_SUFFIX}")
            os.replace(path, retired)
            retired.chmod(0o600)
    os.replace(fresh.path, path)
    os.replace(fresh.public_path, public)
    log.info("rotated ledger signing key %s: %s -> %s (old public half kept as %s)", path,
             old.key_id, fresh.key_id, kept.name)
    return SigningKeyRotation(old_key_id=old.key_id,
                              new=SigningKeyInfo(path, public, fresh.key_id),
                              retired_public=kept, retired_private=retired)


def verify_keys_or(keys: VerifyKey | VerifyKeyring | Sequence[VerifyKey]) -> VerifyKeyring:
    """A keyring from one key, several, or a keyring (what the audit accepts)."""
    if isinstance(keys, VerifyKeyring):
        return keys
    if isinstance(keys, VerifyKey):
        return VerifyKeyring((keys,))
    return VerifyKeyring(tuple(keys))
