"""`audit verify`: recompute the ledger from scratch and say where it first breaks.

The audit needs read access to the three ledger tables, the ``published/`` folder, and the
**public** halves of the signing keys (every key the ledger was signed with, when the key was
rotated); nothing it does writes. It checks, in order:

1. **Chain**: entries are numbered 1, 2, 3... without gaps; each ``prev_hash`` is the previous
   entry's ``entry_hash`` (64 zeros for the first); each ``entry_hash`` is recomputed from the
   entry's fields; each signature verifies with the public key whose id the entry names (an
   entry signed by a key the auditor does not hold cannot be checked, and is named).
2. **Results**: every ``release_results`` row hashes to its ``result_hash``, carries a valid
   signature by one of the held keys, and names an existing entry (by seq and entry hash) whose ``result_hash`` equals
   it; an entry with a ``result_hash`` has such a row. An entry without a result is a release
   charged and never finished (a crash): its budget stays spent, which is legitimate.
3. **Totals**: per dataset, the entries' exact costs sum to the ``spent_rho`` column and stay
   within the cap. A cap changed by ``isoloir budget recompute-cap`` is recorded by a signed,
   zero-cost entry (mechanism ``cap recompute``); the budget row's cap must equal the last
   such entry's ``to_rho``, so a cap edited in the database without it is named.
4. **Published files**: every file in ``published/`` is named in a signed result, with the
   same sha256. Files whose name starts with ``.`` (partial writes) are skipped.
5. **Runs admitted whole**: the entries of one run admission are parts 1, 2, ... n of n,
   consecutive in the chain, of one run id, dataset and plan, written at one instant (one
   transaction). An admission that stops short, or a part out of place, is named.

Every problem names the entry (seq and release id) it is about; the report's
:attr:`AuditReport.first_broken` is the broken entry with the lowest seq.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine

from core.errors import AuditFailure
from core.settings import Settings
from privacy.accountant import BudgetState, read_budgets
from privacy.ledger import (
    GENESIS_HASH,
    LedgerEntry,
    ReleaseResult,
    StoredResult,
    cap_change_of,
    check_file_hashes,
    compute_entry_hash,
    entry_message,
    fraction_text,
    read_entries,
    read_results,
    result_message,
    sha256_hex,
)
from privacy.signing import (
    VerifyKey,
    VerifyKeyring,
    installed_verify_keys,
    load_verify_keys,
    verify_keys_or,
)

log = logging.getLogger(__name__)

ProblemKind = Literal["chain", "result", "totals", "file", "run"]
#: Published file names: ``<query name>--<release id>.<csv|parquet|json>``.
PUBLISHED_NAME = re.compile(r"^(?P<query>.+)--(?P<release>r-[0-9a-f]{24})\.(csv|parquet|json)$")


@dataclass(frozen=True)
class AuditProblem:
    """One thing that does not verify, and the ledger entry it is about."""

    kind: ProblemKind
    detail: str
    seq: int | None = None
    release_id: str | None = None
    dataset_id: str | None = None
    file: str | None = None

    def describe(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"entry seq {self.seq}")
        if self.release_id is not None:
            where.append(f"release {self.release_id}")
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.dataset_id is not None and self.seq is None:
            where.append(f"dataset {self.dataset_id!r}")
        return f"{', '.join(where) or 'ledger'}: {self.detail}"


@dataclass(frozen=True)
class DatasetTotals:
    """Exact totals of one dataset as the audit recomputed them."""

    dataset_id: str
    cap_rho: str
    spent_rho: str
    entries_rho: str
    releases: int


@dataclass(frozen=True)
class AuditReport:
    """What ``audit verify`` found; ``ok`` only when every check holds."""

    verify_key_ids: tuple[str, ...]
    entries: int
    results: int
    files_checked: int
    datasets: tuple[DatasetTotals, ...]
    problems: tuple[AuditProblem, ...] = field(default=())
    #: Per key id the entries name: (key id, entries, first seq, last seq), in chain order.
    signing_keys: tuple[tuple[str, int, int, int], ...] = field(default=())

    @property
    def verify_key_id(self) -> str:
        """The held public keys' ids, comma-separated (for one-line displays)."""
        return ", ".join(self.verify_key_ids)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> AuditProblem | None:
        """The problem to act on first: the broken entry with the lowest seq, else the first
        totals or file problem."""
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.seq is None, p.seq or 0))

    def summary(self) -> str:
        first = self.first_broken
        if first is None:
            keys = "; ".join(f"key {k}: {n} entries (seq {a}–{b})"
                             for k, n, a, b in self.signing_keys) or \
                f"key {self.verify_key_id}"
            return (f"ledger verified: {self.entries} entries, {self.results} signed results, "
                    f"{self.files_checked} published files; {keys}")
        return (f"ledger does not verify ({len(self.problems)} problem(s)); first broken: "
                f"{first.describe()}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (XCom-safe): counts, totals and problems; no data values."""
        first = self.first_broken
        return {"ok": self.ok, "verify_key_id": self.verify_key_id,
                "verify_key_ids": list(self.verify_key_ids),
                "signing_keys": [{"key_id": k, "entries": n, "first_seq": a, "last_seq": b}
                                 for k, n, a, b in self.signing_keys],
                "entries": self.entries,
                "results": self.results, "files_checked": self.files_checked,
                "datasets": [asdict(d) for d in self.datasets],
                "first_broken": None if first is None else asdict(first) | {
                    "message": first.describe()},
                "problems": [asdict(p) | {"message": p.describe()} for p in self.problems]}


def verify(engine: Engine, verify_keys: VerifyKey | VerifyKeyring,
           published_dir: Path) -> AuditReport:
    """Recompute the chain, signatures, totals and published files' hashes (read-only).

    ``verify_keys``: every public key the auditor holds; each entry is checked with the key
    it names.
    """
    ring = verify_keys_or(verify_keys)
    with engine.connect() as conn:
        entries = read_entries(conn)
        results = read_results(conn)
        budgets = read_budgets(conn)
    problems: list[AuditProblem] = []
    by_release = {e.release_id: e for e in entries}
    problems += _check_chain(entries, ring, results)
    problems += _check_runs(entries)
    signed_files, result_problems = _check_results(results, by_release, ring)
    problems += result_problems
    datasets, totals_problems = _check_totals(entries, budgets)
    problems += totals_problems
    files_checked, file_problems = _check_published(published_dir, signed_files, by_release)
    problems += file_problems
    report = AuditReport(verify_key_ids=ring.key_ids, entries=len(entries),
                         results=len(results), files_checked=files_checked,
                         datasets=tuple(datasets), problems=tuple(problems),
                         signing_keys=_key_spans(entries))
    (log.info if report.ok else log.error)("%s", report.summary())
    return report


def _key_spans(entries: list[LedgerEntry]) -> tuple[tuple[str, int, int, int], ...]:
    """Which key each entry names, as (key id, entries, first seq, last seq) in chain order."""
    spans: dict[str, list[int]] = {}
    for entry in entries:
        spans.setdefault(entry.signing_key_id, []).append(entry.seq)
    return tuple((k, len(seqs), min(seqs), max(seqs)) for k, seqs in spans.items())


def verify_settings(settings: Settings, *, public_key: Path | None = None,
                    public_keys: list[Path] | None = None,
                    raise_on_failure: bool = True) -> AuditReport:
    """``audit verify`` for a configured installation; raises :class:`AuditFailure` (exit 4)
    naming the first broken entry unless ``raise_on_failure`` is False.

    ``public_keys`` (``.pub`` files or folders of them; ``public_key`` is one more) are the
    keys the auditor holds. By default: ``<ISOLOIR_SIGNING_KEY_FILE>.pub`` and the retired
    public halves rotation kept beside it. Only public halves are read.
    """
    from warehouse.db import make_engine

    given = [*(public_keys or []), *([public_key] if public_key is not None else [])]
    ring = load_verify_keys(given) if given else installed_verify_keys(settings.signing_key_file)
    report = verify(make_engine(settings.warehouse_url), ring, settings.published)
    if raise_on_failure and not report.ok:
        raise AuditFailure(report.summary())
    return report


# --------------------------------------------------------------------------- checks

def _orphan_release(results: Mapping[str, StoredResult], seq: int) -> str | None:
    """The release id a signed result gives for ``seq`` (to name a deleted entry)."""
    for stored in results.values():
        try:
            if stored.parsed().ledger_seq == seq:
                return stored.release_id
        except ValueError:
            continue
    return None


def _cost(entry: LedgerEntry) -> Fraction:
    """An entry's cost, or -1 when the stored text is not an exact fraction (flagged)."""
    try:
        return entry.cost
    except ValueError:
        return Fraction(-1)


def _check_chain(entries: list[LedgerEntry], ring: VerifyKeyring,
                 results: Mapping[str, StoredResult]) -> list[AuditProblem]:
    problems: list[AuditProblem] = []
    expected_seq = 1
    prev_hash = GENESIS_HASH
    for entry in entries:
        def problem(detail: str, entry: LedgerEntry = entry) -> AuditProblem:
            return AuditProblem("chain", detail, seq=entry.seq, release_id=entry.release_id,
                                dataset_id=entry.dataset_id)

        if entry.seq > expected_seq:
            # Name the missing entry: an entry elsewhere that chains here (its seq was
            # changed), else a signed result that points at this seq (it was deleted).
            follower = next((e.release_id for e in entries if e.prev_hash == prev_hash), None)
            problems.append(AuditProblem(
                "chain", f"entry is missing (the chain jumps from seq {expected_seq - 1} to "
                f"{entry.seq})", seq=expected_seq,
                release_id=follower or _orphan_release(results, expected_seq)))
        elif entry.seq < expected_seq:
            problems.append(problem(f"seq is out of order (expected {expected_seq})"))
        expected_seq = entry.seq + 1
        if entry.prev_hash != prev_hash:
            problems.append(problem("prev_hash does not match the previous entry's hash"))
        if compute_entry_hash(entry.hashed_fields(), entry.prev_hash) != entry.entry_hash:
            problems.append(problem("entry_hash does not match the entry's fields"))
        key = ring.get(entry.signing_key_id)
        if key is None:
            problems.append(problem(
                f"cannot be checked: signed by key {entry.signing_key_id!r}, whose public half "
                f"the auditor does not hold (held: {', '.join(ring.key_ids)})"))
        elif not key.verify(entry_message(entry.entry_hash), entry.signature):
            problems.append(problem("signature does not verify"))
        if cap_change_of(entry) is not None:
            if _cost(entry) != 0:
                problems.append(problem("a cap change must cost nothing"))
        elif _cost(entry) <= 0:
            problems.append(problem("cost_rho is not a positive exact fraction"))
        if entry.result_hash is not None and entry.release_id not in results:
            problems.append(problem("result_hash names no signed result"))
        if entry.result_hash is None and entry.release_id in results:
            problems.append(problem("has a signed result but its result_hash is empty"))
        prev_hash = entry.entry_hash
    return problems


def _check_runs(entries: list[LedgerEntry]) -> list[AuditProblem]:
    """Every run admission is whole: parts 1..n of n, consecutive, one run, one transaction."""
    problems: list[AuditProblem] = []

    def problem(entry: LedgerEntry, detail: str) -> AuditProblem:
        return AuditProblem("run", detail, seq=entry.seq, release_id=entry.release_id,
                            dataset_id=entry.dataset_id)

    current: LedgerEntry | None = None  # the last part of the admission still open
    for entry in sorted(entries, key=lambda e: e.seq):
        run, part, size = entry.run_id, entry.run_part, entry.run_size
        follows = (current is not None and part is not None and run == current.run_id
                   and size == current.run_size and part == (current.run_part or 0) + 1
                   and entry.seq == current.seq + 1 and entry.dataset_id == current.dataset_id
                   and entry.plan_hash == current.plan_hash
                   and entry.created_at == current.created_at)
        if current is not None and not follows:
            problems.append(problem(current, f"admission of run {current.run_id!r} stops at "
                                    f"part {current.run_part} of {current.run_size}"))
            current = None
        if run is None and part is None and size is None:
            continue  # charged outside any run
        if run is None or part is None or size is None:
            problems.append(problem(entry, "run_id, run_part and run_size are partly empty"))
            continue
        if not 1 <= part <= size:
            problems.append(problem(entry, f"run part {part} of {size} is out of range"))
            continue
        if part > 1 and not follows:
            problems.append(problem(entry, f"part {part} of {size} of run {run!r} does not "
                                    f"directly follow part {part - 1} of the same admission"))
            continue
        current = entry if part < size else None
    if current is not None:
        problems.append(problem(current, f"admission of run {current.run_id!r} stops at part "
                                f"{current.run_part} of {current.run_size}"))
    return problems


def _check_results(results: Mapping[str, StoredResult], by_release: Mapping[str, LedgerEntry],
                   ring: VerifyKeyring) -> tuple[dict[str, tuple[str, LedgerEntry]],
                                            list[AuditProblem]]:
    """Verify every stored result; return the signed file hashes (name → (sha256, entry))."""
    signed: dict[str, tuple[str, LedgerEntry]] = {}
    problems: list[AuditProblem] = []
    for release, stored in results.items():
        entry = by_release.get(release)
        seq = entry.seq if entry else None

        def problem(detail: str, seq: int | None = seq, release: str = release) -> AuditProblem:
            return AuditProblem("result", detail, seq=seq, release_id=release)

        parsed: ReleaseResult | None
        try:
            parsed = stored.parsed()
        except ValueError:
            parsed = None
        if seq is None and parsed is not None:
            seq = parsed.ledger_seq
        if entry is None:
            problems.append(problem("signed result has no ledger entry (entry deleted?)", seq))
            continue
        if sha256_hex(stored.result_json) != stored.result_hash:
            problems.append(problem("result document does not match its result_hash"))
            continue
        if ring.signer(result_message(release, stored.result_hash, stored.recorded_at),
                       stored.signature) is None:
            problems.append(problem("result signature does not verify with any held key"))
            continue
        if parsed is None:
            problems.append(problem("result document is malformed"))
            continue
        if parsed.release_id != release or parsed.ledger_seq != entry.seq \
                or parsed.entry_hash != entry.entry_hash:
            problems.append(problem("signed result names another ledger entry"))
            continue
        if entry.result_hash != stored.result_hash:
            problems.append(problem("entry's result_hash differs from the signed result"))
            continue
        broken_file = check_file_hashes(parsed)
        if broken_file is not None:
            problems.append(problem(f"stored bytes of {broken_file} do not match their sha256"))
            continue
        for name, sha in parsed.file_hashes().items():
            signed[name] = (sha, entry)
    return signed, problems


def _check_totals(entries: list[LedgerEntry],
                  budgets: list[BudgetState]) -> tuple[list[DatasetTotals], list[AuditProblem]]:
    problems: list[AuditProblem] = []
    totals: list[DatasetTotals] = []
    known = {b.dataset_id for b in budgets}
    for dataset in sorted({e.dataset_id for e in entries} - known):
        problems.append(AuditProblem("totals", "ledger entries name a dataset without budget",
                                     dataset_id=dataset))
    for budget in budgets:
        mine = [e for e in entries if e.dataset_id == budget.dataset_id]
        total = sum((max(_cost(e), Fraction(0)) for e in mine), Fraction(0))
        last = mine[-1] if mine else None
        after = (f" (last entry: seq {last.seq}, release {last.release_id})" if last
                 else " (no entries)")
        if total != budget.spent:
            problems.append(AuditProblem(
                "totals", f"spent_rho says {fraction_text(budget.spent)} but the entries sum "
                f"to {fraction_text(total)}{after}", dataset_id=budget.dataset_id))
        changes = [(e, cap_change_of(e)) for e in mine if cap_change_of(e) is not None]
        if changes:
            entry, change = changes[-1]
            if change is not None and change.get("to_rho") != fraction_text(budget.cap.rho):
                problems.append(AuditProblem(
                    "totals", f"cap is {fraction_text(budget.cap.rho)} but the last recorded cap "
                    f"change (seq {entry.seq}) set it to {change.get('to_rho')}",
                    seq=entry.seq, release_id=entry.release_id, dataset_id=budget.dataset_id))
        if max(total, budget.spent) > budget.cap.rho:
            problems.append(AuditProblem(
                "totals", f"spent {fraction_text(max(total, budget.spent))} exceeds the cap "
                f"{fraction_text(budget.cap.rho)}{after}", dataset_id=budget.dataset_id))
        totals.append(DatasetTotals(dataset_id=budget.dataset_id,
                                    cap_rho=fraction_text(budget.cap.rho),
                                    spent_rho=fraction_text(budget.spent),
                                    entries_rho=fraction_text(total), releases=len(mine)))
    return totals, problems


def _check_published(published_dir: Path, signed: Mapping[str, tuple[str, LedgerEntry]],
                     by_release: Mapping[str, LedgerEntry]) -> tuple[int, list[AuditProblem]]:
    problems: list[AuditProblem] = []
    checked = 0
    if not published_dir.is_dir():
        return 0, problems
    for path in sorted(published_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        checked += 1
        match = PUBLISHED_NAME.match(path.name)
        named = by_release.get(match.group("release")) if match else None
        if path.name not in signed:
            problems.append(AuditProblem(
                "file", "published file matches no signed result",
                seq=named.seq if named else None,
                release_id=named.release_id if named else (match.group("release")
                                                            if match else None),
                file=path.name))
            continue
        sha, entry = signed[path.name]
        if sha256_hex(path.read_bytes()) != sha:
            problems.append(AuditProblem("file", "content differs from the signed sha256",
                                         seq=entry.seq, release_id=entry.release_id,
                                         dataset_id=entry.dataset_id, file=path.name))
    return checked, problems
