"""Tamper detection: any change to the ledger or to a published file fails `audit verify`,
and the report names the entry."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, update

from core.errors import AuditFailure
from core.settings import load_settings
from privacy.accountant import Accountant, BudgetCap, ChargeRequest
from privacy.audit import verify, verify_settings
from privacy.ledger import LedgerEntry, PublishedFile, release_id, sha256_hex
from privacy.signing import (
    SigningKey,
    VerifyKey,
    create_signing_key,
    load_signing_key,
    load_verify_key,
)
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import ledger_entries, privacy_budgets, release_results

DATASET = "campaign"
PLAN_HASH = "ab" * 32
COST = Fraction(1, 10)


@dataclass
class Ledger:
    engine: Engine
    key: SigningKey
    verify_key: VerifyKey
    published: Path
    entries: list[LedgerEntry]  # seq 1..3 recorded and published, seq 4 charged then "killed"

    def report(self):  # type: ignore[no-untyped-def]
        return verify(self.engine, self.verify_key, self.published)


def build_ledger(tmp_path: Path) -> Ledger:
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    info = create_signing_key(tmp_path / "keys" / "ledger.key")
    key = load_signing_key(info.path)
    published = tmp_path / "published"
    published.mkdir()
    acc = Accountant(engine, key, clock=lambda: datetime(2025, 3, 1, tzinfo=UTC))
    acc.open_budget(DATASET, BudgetCap(Fraction(1)))
    entries = []
    for n in range(1, 5):
        rid = release_id(DATASET, "run-1", f"query_{n}", PLAN_HASH, attempt=0)
        entry = acc.charge(ChargeRequest(DATASET, rid, PLAN_HASH, f'{{"name":"query_{n}"}}',
                                         "gaussian (zCDP)", COST, "cd" * 32)).entry
        if n < 4:
            files = []
            for ext, text in (("csv", f"estimate\n{n}\n"), ("json", f'{{"n":{n}}}')):
                data = text.encode()
                files.append(PublishedFile(f"query_{n}--{rid}.{ext}", sha256_hex(data), data))
            acc.record_result(entry, files)
            for f in files:
                (published / f.name).write_bytes(f.content)
        entries.append(acc.entry(rid))
    return Ledger(engine, key, load_verify_key(info.public_path), published,
                  [e for e in entries if e is not None])


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return build_ledger(tmp_path)


def test_an_untouched_ledger_verifies_including_a_charge_without_result(ledger: Ledger) -> None:
    report = ledger.report()
    assert report.ok, report.problems
    assert (report.entries, report.results, report.files_checked) == (4, 3, 6)
    assert report.first_broken is None and report.summary().startswith("ledger verified")
    totals = report.datasets[0]
    assert (totals.spent_rho, totals.entries_rho, totals.releases) == ("2/5", "2/5", 4)


def _other(value: str) -> str:
    """The same string with its last character changed (hex stays hex)."""
    last = value[-1]
    return value[:-1] + ("0" if last != "0" else "1")


TAMPER = {
    "seq": lambda e: e.seq + 100,
    "dataset_id": lambda e: "other-campaign",
    "release_id": lambda e: _other(e.release_id),
    "plan_hash": lambda e: _other(e.plan_hash),
    "query": lambda e: e.query.replace("query", "qu3ry"),
    "mechanism": lambda e: "laplace",
    "cost_rho": lambda e: "2/20",  # same number, other text: still a change
    "snapshot_hash": lambda e: _other(e.snapshot_hash),
    "result_hash": lambda e: "0" * 64 if e.result_hash is None else _other(e.result_hash),
    "prev_hash": lambda e: _other(e.prev_hash),
    "entry_hash": lambda e: _other(e.entry_hash),
    "signature": lambda e: base64.b64encode(bytes(64)).decode(),
    "signing_key_id": lambda e: "f" * 16,
    "created_at": lambda e: e.created_at.replace("2025", "2024"),
    "run_id": lambda e: "run-x" if e.run_id is None else _other(e.run_id),
    "run_part": lambda e: 1 if e.run_part is None else e.run_part + 1,
    "run_size": lambda e: 1 if e.run_size is None else e.run_size + 1,
}


def test_tamper_table_covers_every_column() -> None:
    assert set(TAMPER) == {c.name for c in ledger_entries.columns}


@pytest.mark.parametrize("seq", [1, 2, 4])
@pytest.mark.parametrize("column", sorted(TAMPER))
def test_changing_any_field_of_any_entry_is_detected(tmp_path: Path, column: str,
                                                     seq: int) -> None:
    ledger = build_ledger(tmp_path)
    entry = ledger.entries[seq - 1]
    new = TAMPER[column](entry)
    assert new != getattr(entry, column)
    with ledger.engine.begin() as conn:
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == seq)
                     .values({column: new}))
    report = ledger.report()
    assert not report.ok
    first = report.first_broken
    assert first is not None
    # The entry is named as it now reads in the table (its release id may be the tampered one).
    named = new if column == "release_id" else entry.release_id
    assert first.release_id == named, first.describe()
    if column != "seq":
        assert first.seq == seq


@pytest.mark.parametrize("column", ["release_id", "result_json", "result_hash", "signature",
                                    "recorded_at"])
def test_changing_a_signed_result_is_detected(ledger: Ledger, column: str) -> None:
    entry = ledger.entries[1]
    values = {"release_id": _other(entry.release_id),
              "result_json": None, "result_hash": "0" * 64,
              "signature": base64.b64encode(bytes(64)).decode(), "recorded_at": "2024-01-01"}
    with ledger.engine.begin() as conn:
        if column == "result_json":
            from sqlalchemy import select

            doc = conn.execute(select(release_results.c.result_json).where(
                release_results.c.release_id == entry.release_id)).scalar_one()
            values["result_json"] = doc.replace('"ledger_seq":2', '"ledger_seq":3')
        conn.execute(update(release_results)
                     .where(release_results.c.release_id == entry.release_id)
                     .values({column: values[column]}))
    report = ledger.report()
    assert not report.ok
    assert report.first_broken is not None and report.first_broken.seq == 2


def test_a_rehashed_forgery_without_the_key_is_detected(ledger: Ledger) -> None:
    """Whoever holds only the database can recompute hashes, not signatures."""
    from privacy.ledger import compute_entry_hash, hashed_fields

    entry = ledger.entries[2]
    fields = entry.hashed_fields() | {"cost_rho": "1/1000"}
    forged_hash = compute_entry_hash(hashed_fields(**fields), entry.prev_hash)
    with ledger.engine.begin() as conn:
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == 3)
                     .values(cost_rho="1/1000", entry_hash=forged_hash))
    report = ledger.report()
    assert report.first_broken is not None and report.first_broken.seq == 3
    assert "signature" in report.first_broken.detail


@pytest.mark.parametrize("seq", [1, 2, 3])
def test_deleting_an_entry_is_detected_and_named(ledger: Ledger, seq: int) -> None:
    entry = ledger.entries[seq - 1]
    with ledger.engine.begin() as conn:
        conn.execute(delete(ledger_entries).where(ledger_entries.c.seq == seq))
    report = ledger.report()
    assert not report.ok
    first = report.first_broken
    assert first is not None and (first.seq, first.release_id) == (seq, entry.release_id)


def test_deleting_the_last_unfinished_entry_breaks_the_totals(ledger: Ledger) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(delete(ledger_entries).where(ledger_entries.c.seq == 4))
    report = ledger.report()
    assert not report.ok
    assert any(p.kind == "totals" and "spent_rho says 2/5" in p.detail for p in report.problems)


def test_reordering_two_entries_is_detected(ledger: Ledger) -> None:
    two, three = ledger.entries[1], ledger.entries[2]
    with ledger.engine.begin() as conn:
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == 2).values(seq=-2))
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == 3).values(seq=2))
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == -2).values(seq=3))
    report = ledger.report()
    first = report.first_broken
    assert first is not None and first.seq == 2
    assert first.release_id in (two.release_id, three.release_id)


def test_editing_a_published_file_is_detected_and_named(ledger: Ledger) -> None:
    entry = ledger.entries[1]
    target = next(ledger.published.glob(f"*--{entry.release_id}.csv"))
    target.write_bytes(target.read_bytes().replace(b"2", b"20"))
    report = ledger.report()
    first = report.first_broken
    assert first is not None and first.kind == "file"
    assert (first.seq, first.release_id, first.file) == (2, entry.release_id, target.name)


def test_an_unknown_published_file_is_detected(ledger: Ledger) -> None:
    (ledger.published / "made_up--r-000000000000000000000000.csv").write_text("estimate\n9\n")
    (ledger.published / ".partial-write.csv").write_text("ignored")
    report = ledger.report()
    assert not report.ok and report.files_checked == 7
    assert report.problems[0].detail == "published file matches no signed result"


def test_overspending_is_detected(ledger: Ledger) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(update(privacy_budgets).values(cap_rho="1/5"))
    report = ledger.report()
    assert any("exceeds the cap 1/5" in p.detail for p in report.problems)


def test_another_public_key_fails_every_entry(ledger: Ledger, tmp_path: Path) -> None:
    stranger = load_verify_key(create_signing_key(tmp_path / "stranger.key").public_path)
    report = verify(ledger.engine, stranger, ledger.published)
    assert report.first_broken is not None and report.first_broken.seq == 1


def test_verify_settings_raises_audit_failure_naming_the_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = build_ledger(tmp_path)
    monkeypatch.setenv("ISOLOIR_HOME", str(tmp_path))
    monkeypatch.setenv("ISOLOIR_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    monkeypatch.setenv("ISOLOIR_SIGNING_KEY_FILE", str(tmp_path / "keys" / "ledger.key"))
    settings = load_settings()
    # Only the public half is needed: the private key may be absent on the auditor's machine.
    (tmp_path / "keys" / "ledger.key").unlink()
    assert verify_settings(settings).ok
    with ledger.engine.begin() as conn:
        conn.execute(update(ledger_entries).where(ledger_entries.c.seq == 2)
                     .values(mechanism="laplace"))
    with pytest.raises(AuditFailure, match=r"first broken: entry seq 2, release r-") as err:
        verify_settings(settings)
    assert err.value.exit_code == 4
    assert not verify_settings(settings, raise_on_failure=False).to_dict()["ok"]
