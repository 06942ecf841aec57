"""The privacy ledger: one hash-chained, signed entry per charged release.

What an entry proves, and how:

* ``entry_hash = sha256(canonical JSON of the entry's fields || prev_hash)``, where the fields
  are everything the entry states at charge time (seq, dataset, release id, plan hash, query,
  mechanism, exact cost, snapshot hash, key id, time). The first entry's ``prev_hash`` is 64
  zeros. Changing, deleting or reordering an entry breaks the chain at that entry.
* ``signature`` is Ed25519 over ``entry_hash``, by a key the database administrator does not
  hold, so recomputing the chain after an edit is not enough to forge it.
* A **run** is admitted whole: the entries of all its queries are appended in one
  transaction, consecutively, each stating ``run_id`` and its place in the admission
  (``run_part`` of ``run_size``). Those three fields are hashed with the rest, so the audit can
  prove that no admission was cut short (:mod:`privacy.audit`). Entries charged one
  by one (and every entry written before schema version 2) state no run and hash as before.
* The result does not exist yet when the release is charged (the charge comes before the
  noise), so ``result_hash`` is filled in later and is not part of ``entry_hash``. It is
  covered by a second signature: the ``release_results`` row holds the result document, whose
  JSON names the entry (``ledger_seq`` and ``entry_hash``) and the sha256 of every published
  file; its signature covers the release id, the result hash and the time it was recorded.
  The audit cross-checks the entry's ``result_hash`` with the signed result.

Exact numbers: costs are :class:`~fractions.Fraction` stored as text ``"p/q"``, never floats.
This module holds the formats and the pure functions; :mod:`privacy.accountant` is the only
code that writes these rows.

>>> release_id("campaign", "2025-03-01", "supporters_by_region", "ab" * 32, attempt=0)[:2]
'r-'
>>> fraction_text(Fraction(1, 20)), parse_fraction("1/20", "cost_rho")
('1/20', Fraction(1, 20))
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, select

from warehouse.schema import ledger_entries, release_results

GENESIS_HASH = "0" * 64
#: Mechanism of the zero-cost entry that records a change of a dataset's cap
#: (``isoloir budget recompute-cap``): the change sits in the hash chain, signed, where the
#: audit sees it; its ``query`` JSON says from which ρ and conversion to which.
CAP_CHANGE_MECHANISM = "cap recompute"
RELEASE_ID_HEX = 24
_ENTRY_DOMAIN = b"isoloir/ledger-entry/v1\n"
_RESULT_DOMAIN = b"isoloir/release-result/v1\n"


def canonical_json(value: Any) -> str:
    """The one JSON spelling hashed and signed: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def fraction_text(value: Fraction) -> str:
    """Exact text of a rational, always ``"p/q"`` (``"2/1"`` for two)."""
    return f"{value.numerator}/{value.denominator}"


def parse_fraction(text: str, column: str) -> Fraction:
    """Read an exact budget column; a malformed one is named, never guessed."""
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError, TypeError) as err:
        raise ValueError(f"{column} is not an exact fraction") from err
    return value


def release_id(dataset_id: str, run_id: str, query_name: str, plan_hash: str, *,
               attempt: int) -> str:
    """Deterministic id of one query of one run: the same inputs give the same id.

    ``attempt`` counts fresh attempts after a crash that left a charge without a result:
    the budget of the lost attempt stays spent and the next one gets a new id (and a new
    charge), so noise is never drawn again for free.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    digest = sha256_hex(canonical_json([dataset_id, run_id, query_name, plan_hash, attempt]))
    return "r-" + digest[:RELEASE_ID_HEX]


@dataclass(frozen=True)
class LedgerEntry:
    """One row of ``ledger_entries``, typed."""

    seq: int
    dataset_id: str
    release_id: str
    plan_hash: str
    query: str
    mechanism: str
    cost_rho: str  # exact "p/q" text, hashed as stored
    snapshot_hash: str
    result_hash: str | None
    prev_hash: str
    entry_hash: str
    signature: str
    signing_key_id: str
    created_at: str
    run_id: str | None = None
    run_part: int | None = None
    run_size: int | None = None

    @property
    def cost(self) -> Fraction:
        """The exact cost; ``ValueError`` when the stored text is not a fraction."""
        return parse_fraction(self.cost_rho, "cost_rho")

    def hashed_fields(self) -> dict[str, Any]:
        return hashed_fields(seq=self.seq, dataset_id=self.dataset_id,
                             release_id=self.release_id, plan_hash=self.plan_hash,
                             query=self.query, mechanism=self.mechanism, cost_rho=self.cost_rho,
                             snapshot_hash=self.snapshot_hash,
                             signing_key_id=self.signing_key_id, created_at=self.created_at,
                             run_id=self.run_id, run_part=self.run_part, run_size=self.run_size)

    @property
    def query_name(self) -> str:
        """The query's name from its canonical JSON (``?`` when the JSON has none)."""
        try:
            name = json.loads(self.query).get("name")
        except (ValueError, AttributeError):
            return "?"
        return str(name) if name is not None else "?"

    def row(self) -> dict[str, Any]:
        return {"seq": self.seq, "dataset_id": self.dataset_id, "release_id": self.release_id,
                "plan_hash": self.plan_hash, "query": self.query, "mechanism": self.mechanism,
                "cost_rho": self.cost_rho, "snapshot_hash": self.snapshot_hash,
                "result_hash": self.result_hash, "prev_hash": self.prev_hash,
                "entry_hash": self.entry_hash, "signature": self.signature,
                "signing_key_id": self.signing_key_id, "created_at": self.created_at,
                "run_id": self.run_id, "run_part": self.run_part, "run_size": self.run_size}


def hashed_fields(*, seq: int, dataset_id: str, release_id: str, plan_hash: str, query: str,
                  mechanism: str, cost_rho: str, snapshot_hash: str, signing_key_id: str,
                  created_at: str, run_id: str | None = None, run_part: int | None = None,
                  run_size: int | None = None) -> dict[str, Any]:
    """The fields an entry states at charge time (everything but the hashes and signature).

    The run fields are hashed as soon as any of them is set, so an entry charged outside a
    run keeps the hash it had before runs existed, and setting, clearing or changing any run
    field of a stored entry breaks its hash.
    """
    fields: dict[str, Any] = {"seq": seq, "dataset_id": dataset_id, "release_id": release_id,
                              "plan_hash": plan_hash, "query": query, "mechanism": mechanism,
                              "cost_rho": cost_rho, "snapshot_hash": snapshot_hash,
                              "signing_key_id": signing_key_id, "created_at": created_at}
    if run_id is not None or run_part is not None or run_size is not None:
        fields |= {"run_id": run_id, "run_part": run_part, "run_size": run_size}
    return fields


def compute_entry_hash(fields: Mapping[str, Any], prev_hash: str) -> str:
    """``sha256(canonical JSON of the fields || prev_hash)``."""
    return sha256_hex(canonical_json(dict(fields)) + prev_hash)


def entry_message(entry_hash: str) -> bytes:
    """The bytes an entry's signature covers (domain-separated from result signatures)."""
    return _ENTRY_DOMAIN + entry_hash.encode("ascii")


def entry_from_row(row: Any) -> LedgerEntry:
    """Type a stored row (values kept exactly as stored, so the audit hashes what is there)."""
    return LedgerEntry(seq=int(row["seq"]), dataset_id=row["dataset_id"],
                       release_id=row["release_id"], plan_hash=row["plan_hash"],
                       query=row["query"], mechanism=row["mechanism"],
                       cost_rho=str(row["cost_rho"]), snapshot_hash=row["snapshot_hash"],
                       result_hash=row["result_hash"], prev_hash=row["prev_hash"],
                       entry_hash=row["entry_hash"], signature=row["signature"],
                       signing_key_id=row["signing_key_id"], created_at=row["created_at"],
                       run_id=row.get("run_id"),
                       run_part=None if row.get("run_part") is None else int(row["run_part"]),
                       run_size=None if row.get("run_size") is None else int(row["run_size"]))


def read_entries(conn: Connection, dataset_id: str | None = None) -> list[LedgerEntry]:
    """Entries in chain order (by seq)."""
    query = select(ledger_entries).order_by(ledger_entries.c.seq)
    if dataset_id is not None:
        query = query.where(ledger_entries.c.dataset_id == dataset_id)
    return [entry_from_row(r._mapping) for r in conn.execute(query)]


@dataclass(frozen=True)
class RunRecord:
    """What the ledger says about one run id of one dataset (for ``isoloir budget``).

    ``admissions`` counts the transactions that admitted it: 1 for a run released in one go;
    more when a crash left queries without result and a retry charged them again, or when
    subsets of the plan were released under the same run id.
    """

    dataset_id: str
    run_id: str
    queries: tuple[str, ...]
    releases: int
    admissions: int
    cost: Fraction
    first_at: str
    last_at: str
    unfinished: int  # entries charged without a recorded result (a crash after the charge)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "run_id": self.run_id,
                "queries": list(self.queries), "releases": self.releases,
                "admissions": self.admissions, "rho": fraction_text(self.cost),
                "first_at": self.first_at, "last_at": self.last_at,
                "unfinished": self.unfinished}


def _cost_or_zero(entry: LedgerEntry) -> Fraction:
    """A display total must not crash on a tampered cost; ``audit verify`` names that entry."""
    try:
        return entry.cost
    except ValueError:
        return Fraction(0)


def runs_of(entries: list[LedgerEntry]) -> list[RunRecord]:
    """Group entries by (dataset, run id), in order of each run's first entry.

    Entries without a run (charged one by one, or before schema version 2) are left out.
    """
    groups: dict[tuple[str, str], list[LedgerEntry]] = {}
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.run_id is not None:
            groups.setdefault((entry.dataset_id, entry.run_id), []).append(entry)
    runs = []
    for (dataset, run), mine in groups.items():
        names = tuple(dict.fromkeys(e.query_name for e in mine))
        runs.append(RunRecord(
            dataset_id=dataset, run_id=run, queries=names, releases=len(mine),
            admissions=sum(1 for e in mine if e.run_part == 1),
            cost=sum((_cost_or_zero(e) for e in mine), Fraction(0)),
            first_at=mine[0].created_at, last_at=mine[-1].created_at,
            unfinished=sum(1 for e in mine if e.result_hash is None)))
    return runs


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class PublishedFile:
    """One file of a release: its name in ``published/``, sha256 and exact bytes."""

    name: str
    sha256: str
    content: bytes

    def to_json(self) -> dict[str, str]:
        return {"sha256": self.sha256, "content_b64": base64.b64encode(self.content).decode()}


@dataclass(frozen=True)
class ReleaseResult:
    """What a release produced, as stored (and signed) in ``release_results``.

    The published files' bytes are kept, so a retried release rewrites byte-identical files
    without drawing noise again.
    """

    release_id: str
    ledger_seq: int
    entry_hash: str
    files: tuple[PublishedFile, ...]

    def document(self) -> str:
        """Canonical JSON stored in ``result_json``; its sha256 is the result hash."""
        return canonical_json({"release_id": self.release_id, "ledger_seq": self.ledger_seq,
                               "entry_hash": self.entry_hash,
                               "files": {f.name: f.to_json() for f in self.files}})

    def file_hashes(self) -> dict[str, str]:
        return {f.name: f.sha256 for f in self.files}


def result_message(release_id: str, result_hash: str, recorded_at: str) -> bytes:
    """The bytes a result's signature covers."""
    return _RESULT_DOMAIN + canonical_json([release_id, result_hash, recorded_at]).encode()


def parse_result(result_json: str) -> ReleaseResult:
    """Read a stored result document; raises ``ValueError`` when it is malformed."""
    try:
        doc = json.loads(result_json)
        files = tuple(
            PublishedFile(name=str(name), sha256=str(info["sha256"]),
                          content=base64.b64decode(str(info["content_b64"]), validate=True))
            for name, info in sorted(doc["files"].items()))
        return ReleaseResult(release_id=str(doc["release_id"]), ledger_seq=int(doc["ledger_seq"]),
                             entry_hash=str(doc["entry_hash"]), files=files)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError("result document is malformed") from err


@dataclass(frozen=True)
class StoredResult:
    """One row of ``release_results``, typed (``result`` is None when the JSON is broken)."""

    release_id: str
    result_json: str
    result_hash: str
    signature: str
    recorded_at: str

    def parsed(self) -> ReleaseResult:
        return parse_result(self.result_json)


def read_results(conn: Connection) -> dict[str, StoredResult]:
    rows = conn.execute(select(release_results).order_by(release_results.c.release_id))
    return {r.release_id: StoredResult(release_id=r.release_id, result_json=r.result_json,
                                       result_hash=r.result_hash, signature=r.signature,
                                       recorded_at=r.recorded_at) for r in rows}


def read_result(conn: Connection, release: str) -> StoredResult | None:
    row = conn.execute(select(release_results)
                       .where(release_results.c.release_id == release)).first()
    if row is None:
        return None
    return StoredResult(release_id=row.release_id, result_json=row.result_json,
                        result_hash=row.result_hash, signature=row.signature,
                        recorded_at=row.recorded_at)


def check_file_hashes(result: ReleaseResult) -> str | None:
    """The name of the first stored file whose bytes do not hash to its recorded sha256."""
    for f in result.files:
        if sha256_hex(f.content) != f.sha256:
            return f.name
    return None


def cap_change_of(entry: LedgerEntry) -> dict[str, Any] | None:
    """The cap change an entry records (``from_rho``, ``to_rho``, conversions, ε, δ), or None.

    >>> cap_change_of(LedgerEntry(1, "d", "r-x", "", '{"kind":"cap_change","to_rho":"1/2"}',
    ...     CAP_CHANGE_MECHANISM, "0/1", "", None, "", "", "", "", ""))["to_rho"]
    '1/2'
    """
    if entry.mechanism != CAP_CHANGE_MECHANISM:
        return None
    try:
        document = json.loads(entry.query)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("kind") != "cap_change":
        return None
    return document
