"""The ledger's Ed25519 signing key: created once, kept apart from the master key and the DB.

Why a signature: the ledger lives in the warehouse database, so whoever administers the
database could rewrite it and recompute every hash. The private half of this key is held by
the release pipeline only (a file with mode 0600, outside the database); auditors get the
public half (``<key file>.pub``), which is all ``isoloir audit verify`` needs.

Both halves are PEM files (PKCS#8 and SubjectPublicKeyInfo). A key id, the first 16 hex
digits of the SHA-256 of the raw 32-byte public key, is recorded in every ledger entry so a
rotated key can be told apart.

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
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import KeyMaterialError

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".pub"
KEY_ID_HEX = 16


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
