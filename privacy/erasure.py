"""Pseudonyms of an erasure or objection request, under every key version of the keyring.

A person loaded before a key rotation is linked in ``identifier_links`` under the key that
was current then (``k1:...``); a later export names them under the new key (``k2:...``).
A request must find the first and stop the second, so its identifiers are pseudonymized
with every version the keyring holds, for the identity purpose of the dataset, exactly as
ingest does (:data:`privacy.pseudonymize.PURPOSE_IDENTITY`; the kind is part of the
message, so an e-mail and a source id never collide).

The identifiers come in already normalized (``transforms.requests`` applies ingest's own
normalizers): a pseudonym of a value written differently would match nobody.

>>> from privacy.keys import Keyring
>>> ring = Keyring.from_bytes({1: bytes(32), 2: bytes(range(32))})
>>> found = request_pseudonyms(ring, "campaign", [("email", "jeanne@example.fr")])
>>> sorted(p[:3] for p in found)
['k1:', 'k2:']
>>> found == request_pseudonyms(ring, "campaign", [("email", "jeanne@example.fr")] * 2)
True
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby

from privacy.keys import Keyring
from privacy.pseudonymize import PURPOSE_IDENTITY

#: The identifier kinds a request may name (those ingest links persons by).
REQUEST_KINDS = ("email", "phone", "source_id")


def request_pseudonyms(keyring: Keyring, dataset: str,
                       identifiers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Identity pseudonyms of ``(kind, normalized value)`` pairs under every key version."""
    pairs = sorted(set(identifiers))
    unknown = {kind for kind, _ in pairs if kind not in REQUEST_KINDS}
    if unknown:
        raise ValueError(f"identifier kinds must be among {REQUEST_KINDS}, got {sorted(unknown)}")
    found: set[str] = set()
    for version in sorted(keyring.keys):
        pseudonymizer = keyring.pseudonymizer(dataset, PURPOSE_IDENTITY, version)
        for kind, group in groupby(pairs, key=lambda pair: pair[0]):
            found.update(pseudonymizer.pseudonymize_many(kind, [value for _, value in group]))
    return frozenset(found)
