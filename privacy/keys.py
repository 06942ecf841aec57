"""The keyring: the master key, purpose keys derived from it, and keyed pseudonyms.

``pseudonym = "k<n>:" + base32(HMAC-SHA256(K_purpose, kind || 0x00 || normalized value))[:240 bits]``
with ``K_purpose = HKDF-SHA256(master_n, info="isoloir/<dataset>/<purpose>/v<n>")``.

Why keyed: a plain hash of an email is reversible by dictionary (EDPB 01/2025), so no unkeyed
hash of an identifier exists anywhere in Isoloir. Why per purpose: two datasets, or two key
versions, yield unlinkable pseudonyms. Why the key id in the pseudonym: rotation is designed
in; a pseudonym says which key made it.

The master key comes, in this order, from a secret held by the orchestrator (the Airflow
connection ``isoloir_master_key``, looked up by :mod:`pipeline.connections` and handed in as
``secret``), ``ISOLOIR_MASTER_KEY`` (base64), or ``ISOLOIR_KEY_FILE``. This module never asks
Airflow itself: privacy primitives do not know who schedules them. Key objects never show
their bytes: not in ``repr``, logs, exceptions or XCom.

>>> ring = Keyring.from_bytes({1: bytes(range(32))})
>>> p = ring.pseudonymizer("campaign", "identity")
>>> p.pseudonymize_one("email", "jeanne@example.fr").startswith("k1:")
True
>>> "jeanne" in repr(p) or "000102" in repr(ring)
False
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import KeyMaterialError
from core.settings import ENV_KEY_FILE, ENV_MASTER_KEY, Settings

log = logging.getLogger(__name__)

KEY_BYTES = 32
MASTER_KEY_CONN_ID = "isoloir_master_key"  # the orchestrator secret that may hold the key
_DIGEST_BYTES = 30  # 240 bits: a multiple of 5 bytes, so base32 needs no padding (48 chars)
_B32_CHARS = _DIGEST_BYTES * 8 // 5
PSEUDONYM_RE = re.compile(r"^k[0-9]+:[a-z2-7]{48}$")
_FILE_LINE = re.compile(r"^k([0-9]+)\s+([A-Za-z0-9+/=]+)$")
_FILE_HEADER = "# isoloir master keyring v1: one 'k<n> <base64 32 bytes>' line per key version"


@dataclass(frozen=True)
class MasterKey:
    """One version of the master key. Its bytes never appear in ``repr`` or ``str``."""

    version: int
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise KeyMaterialError("key versions start at 1")
        if len(self.material) != KEY_BYTES:
            raise KeyMaterialError(f"a master key must be exactly {KEY_BYTES} bytes")

    @property
    def key_id(self) -> str:
        return f"k{self.version}"

    def __str__(self) -> str:
        return f"MasterKey({self.key_id})"


@dataclass(frozen=True)
class Keyring:
    """All master key versions; the highest is current, older ones stay for reading."""

    keys: Mapping[int, MasterKey] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyMaterialError("the keyring is empty")

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids}, current={self.current.key_id})"

    @classmethod
    def from_bytes(cls, materials: Mapping[int, bytes]) -> Keyring:
        return cls({v: MasterKey(v, m) for v, m in materials.items()})

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self.keys[v].key_id for v in sorted(self.keys))

    @property
    def current(self) -> MasterKey:
        return self.keys[max(self.keys)]

    def purpose_key(self, dataset: str, purpose: str, version: int | None = None) -> bytes:
        """Derive the key for one dataset and purpose (HKDF-SHA256; info names both and the version)."""
        master = self.current if version is None else self.keys.get(version)
        if master is None:
            raise KeyMaterialError(f"key version k{version} is not in the keyring")
        info = f"isoloir/{dataset}/{purpose}/v{master.version}".encode()
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(
            master.material)

    def pseudonymizer(self, dataset: str, purpose: str, version: int | None = None) -> Pseudonymizer:
        master = self.current if version is None else self.keys[version]
        return Pseudonymizer(master.key_id, self.purpose_key(dataset, purpose, master.version))


class Pseudonymizer:
    """Keyed pseudonyms for one dataset and purpose. Reuses one HMAC object (``copy`` per value)."""

    __slots__ = ("_base", "key_id")

    def __init__(self, key_id: str, purpose_key: bytes) -> None:
        self.key_id = key_id
        self._base = hmac.HMAC(purpose_key, hashes.SHA256())

    def __repr__(self) -> str:
        return f"Pseudonymizer({self.key_id})"

    def digest(self, message: bytes) -> bytes:
        h = self._base.copy()
        h.update(message)
        return h.finalize()

    def pseudonymize_one(self, kind: str, value: str) -> str:
        return self.pseudonymize_many(kind, [value])[0]

    def pseudonymize_many(self, kind: str, values: Iterable[str]) -> list[str]:
        """Pseudonymize normalized values of one kind (``email``, ``phone``, ``source_id``...).

        The kind is part of the message, so an email and a phone that happen to be equal
        strings never collide.
        """
        body = self._pseudonym_bytes(kind, pa.array(list(values), type=pa.string()))
        text, width = body.tobytes().decode("ascii"), body.shape[1]
        return [text[i:i + width] for i in range(0, len(text), width)]

    def pseudonymize_array(self, kind: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonyms of an Arrow string array (nulls stay null), as an Arrow string array.

        The bulk path: no Python string object is made per pseudonym (they are laid out as
        fixed-width Arrow strings).
        """
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        values = values.cast(pa.string())
        valid = values.drop_null() if values.null_count else values
        body = self._pseudonym_bytes(kind, valid)
        offsets = np.arange(len(valid) + 1, dtype=np.int32) * body.shape[1]
        dense = pa.Array.from_buffers(pa.string(), len(valid),
                                      [None, pa.py_buffer(offsets), pa.py_buffer(body)])
        if not values.null_count:
            return dense
        # scatter back into place: the k-th valid value goes where the k-th non-null was
        is_valid = values.is_valid().to_numpy(zero_copy_only=False)
        position = np.cumsum(is_valid) - 1
        return dense.take(pa.array(position, mask=~is_valid))

    def _pseudonym_bytes(self, kind: str, values: pa.Array) -> np.ndarray:
        """The pseudonyms of non-null ``values`` as ASCII rows of one width (uint8 matrix).

        Messages are built by Arrow; each needs one ``copy``/``update``/``finalize`` of the
        reused HMAC (the Python floor); the 240-bit digests are base32-encoded together.
        """
        prefix = pa.scalar(kind.encode() + b"\x00", pa.binary())
        messages = pc.binary_join_element_wise(prefix, values.cast(pa.binary()), b"")
        base = self._base

        def mac(message: bytes) -> bytes:
            h = base.copy()
            h.update(message)
            return h.finalize()

        n = len(values)
        digests = np.frombuffer(b"".join(map(mac, messages.to_pylist())), dtype=np.uint8)
        width = len(self.key_id) + 1 + _B32_CHARS
        body = np.empty((n, width), dtype=np.uint8)
        body[:, :width - _B32_CHARS] = np.frombuffer(self.key_id.encode() + b":", dtype=np.uint8)
        if n:
            truncated = digests.reshape(n, -1)[:, :_DIGEST_BYTES]
            body[:, width - _B32_CHARS:] = _base32_symbols(truncated).reshape(n, _B32_CHARS)
        return body


_B32_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)


def _base32_symbols(data: np.ndarray) -> np.ndarray:
    """RFC 4648 base32 (lowercase, no padding) of uint8 rows whose width is a multiple of 5.

    Vectorized on uint8 (each 5-byte group gives 8 five-bit symbols): CPython's
    ``base64.b32encode`` is pure Python and was the bottleneck.
    """
    b = np.ascontiguousarray(data).reshape(-1, 5)
    out = np.empty((b.shape[0], 8), dtype=np.uint8)
    out[:, 0] = b[:, 0] >> 3
    out[:, 1] = ((b[:, 0] & 7) << 2) | (b[:, 1] >> 6)
    out[:, 2] = (b[:, 1] >> 1) & 31
    out[:, 3] = ((b[:, 1] & 1) << 4) | (b[:, 2] >> 4)
    out[:, 4] = ((b[:, 2] & 15) << 1) | (b[:, 3] >> 7)
    out[:, 5] = (b[:, 3] >> 2) & 31
    out[:, 6] = ((b[:, 3] & 3) << 3) | (b[:, 4] >> 5)
    out[:, 7] = b[:, 4] & 31
    return _B32_ALPHABET[out.ravel()]


# ------------------------------------------------------------------ loading the master key

def load_keyring(settings: Settings, environ: Mapping[str, str] | None = None, *,
                 secret: str | None = None) -> Keyring:
    """Find the master key (orchestrator secret, then env, then key file) or stop with a clear error.

    ``secret`` is the password of the Airflow connection ``isoloir_master_key`` when the caller
    found one; it wins because a production worker holds the key there. Called before any row
    is read, so a missing or malformed key never leaves work half done.
    """
    env = os.environ if environ is None else environ
    if secret is not None and secret.strip():
        return _parse_env_value(secret.strip(), MASTER_KEY_CONN_ID)
    raw = env.get(ENV_MASTER_KEY, "").strip()
    if raw:
        return _parse_env_value(raw, ENV_MASTER_KEY)
    if settings.key_file is not None:
        return read_key_file(settings.key_file)
    raise KeyMaterialError(
        f"no master key: set {ENV_KEY_FILE} to a key file (create one with `isoloir keys init`), "
        f"or {ENV_MASTER_KEY} to a base64-encoded 32-byte key, or define the Airflow connection "
        f"{MASTER_KEY_CONN_ID!r}")


def _parse_env_value(raw: str, where: str) -> Keyring:
    version = 1
    m = re.match(r"^k([0-9]+):(.+)$", raw)
    if m:
        version, raw = int(m.group(1)), m.group(2)
    return Keyring.from_bytes({version: _b64_key(raw, where)})


def _b64_key(text: str, where: str) -> bytes:
    try:
        material = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{where}: the master key is not valid base64") from None
    if len(material) != KEY_BYTES:
        raise KeyMaterialError(f"{where}: the master key must decode to {KEY_BYTES} bytes")
    return material


def read_key_file(path: Path) -> Keyring:
    """Read a keyring file; it must be a regular file readable by its owner only."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyMaterialError(f"{ENV_KEY_FILE}: key file {path} does not exist; create it with "
                               "`isoloir keys init`") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyMaterialError(f"{ENV_KEY_FILE}: {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyMaterialError(f"{ENV_KEY_FILE}: {path} is readable by others "
                               f"(mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {path}`")
    keys: dict[int, bytes] = {}
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _FILE_LINE.match(line)
        if not m:
            raise KeyMaterialError(f"{ENV_KEY_FILE}: {path} line {number} is not 'k<n> <base64>'")
        keys[int(m.group(1))] = _b64_key(m.group(2), f"{ENV_KEY_FILE}: {path} line {number}")
    if not keys:
        raise KeyMaterialError(f"{ENV_KEY_FILE}: {path} holds no key")
    return Keyring.from_bytes(keys)


def write_new_key_file(path: Path, *, version: int = 1) -> MasterKey:
    """Create a key file with a fresh random key, mode 0600; refuse to overwrite anything."""
    path.parent.mkdir(parents=True, exist_ok=True)
    material = os.urandom(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyMaterialError(f"{path} already exists; refusing to overwrite a key "
                               "(losing it breaks identity linkage)") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{_FILE_HEADER}\nk{version} {base64.b64encode(material).decode()}\n")
    os.chmod(path, 0o600)
    return MasterKey(version, material)


def add_key_version(path: Path) -> MasterKey:
    """Rotate: append a new, higher key version to an existing keyring file."""
    ring = read_key_file(path)
    version = max(ring.keys) + 1
    material = os.urandom(KEY_BYTES)
    with path.open("a", encoding="ascii") as handle:
        handle.write(f"k{version} {base64.b64encode(material).decode()}\n")
    return MasterKey(version, material)


def remove_key_version(path: Path, version: int) -> None:
    """Retire: drop key version ``version`` from a keyring file (never the current one).

    The caller proves first that nothing stored is keyed by it any more (``isoloir keys
    retire`` does); after that, pseudonyms under that version can never be made again. The
    file is rewritten through a 0600 temporary file and an atomic rename.
    """
    ring = read_key_file(path)
    if version not in ring.keys:
        raise KeyMaterialError(f"{path} holds no key version k{version}")
    if version == ring.current.version:
        raise KeyMaterialError(f"k{version} is the current key version; rotate first "
                               "(`isoloir keys rotate`), then retire the old one")
    lines = [f"k{v} {base64.b64encode(ring.keys[v].material).decode()}"
             for v in sorted(ring.keys) if v != version]
    temporary = path.with_name(f".{path.name}.retire")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("\n".join([_FILE_HEADER, *lines]) + "\n")
    os.replace(temporary, path)
