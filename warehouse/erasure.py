"""Removing people from the warehouse: erasure, objection and retention, and their log.

A person is removed *everywhere* in one transaction: the ``persons`` row, their
``contacts`` and ``donations``, and every ``identifier_links`` row. Each step is keyed by
``person_id`` and is idempotent: removing someone already gone removes nothing.

The ``erasure_log`` keeps what each run removed (date, reason, counts). It holds no
identifier and no pseudonym, so the DPO and the auditor may read it (it is one of
:data:`warehouse.schema.LEDGER_TABLES`): it proves requests were honoured without
recording who made them.

What counts as activity for retention is said in :func:`inactive_persons`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
)

from warehouse.schema import (
    contacts,
    donations,
    erasure_log,
    identifier_links,
    ingested_files,
    objections,
    people_rows,
    persons,
)

#: Values per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
BATCH = 500
#: Reasons a log row may carry.
LOG_REASONS = ("erasure", "objection", "inactivity", "raw_files", "rejected_file")
_COUNT_COLUMNS = ("requests", "requests_unmatched", "persons", "contacts", "donations",
                  "identifier_links", "objections_added", "files")


@dataclass(frozen=True)
class RemovedRows:
    """Rows removed per table (counts only)."""

    persons: int = 0
    contacts: int = 0
    donations: int = 0
    identifier_links: int = 0

    @property
    def rows(self) -> int:
        return self.persons + self.contacts + self.donations + self.identifier_links

    def __add__(self, other: RemovedRows) -> RemovedRows:
        return RemovedRows(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(),
                                                   strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.persons, self.contacts, self.donations, self.identifier_links)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _batches(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), BATCH):
        yield ordered[start:start + BATCH]


def persons_of(conn: Connection, pseudonyms: Iterable[str]) -> set[str]:
    """The persons that identifier pseudonyms (of any key version) are linked to."""
    found: set[str] = set()
    for batch in _batches(pseudonyms):
        found.update(conn.execute(select(identifier_links.c.person_id)
                                  .where(identifier_links.c.pseudonym.in_(batch))).scalars())
    return found


def linked_pseudonyms(conn: Connection, person_ids: Iterable[str]) -> set[str]:
    """Every identifier pseudonym linked to these persons, under whichever key stored it."""
    found: set[str] = set()
    for batch in _batches(person_ids):
        found.update(conn.execute(select(identifier_links.c.pseudonym)
                                  .where(identifier_links.c.person_id.in_(batch))).scalars())
    return found


def delete_persons(conn: Connection, person_ids: Iterable[str]) -> RemovedRows:
    """Delete these persons everywhere (inside the caller's transaction); idempotent."""
    counts = dict.fromkeys(("persons", "contacts", "donations", "identifier_links"), 0)
    for batch in _batches(person_ids):
        # people_rows only records which state of a source row was applied: no count of its own
        conn.execute(delete(people_rows).where(people_rows.c.person_id.in_(batch)))
        for table in (contacts, donations, identifier_links, persons):
            result = conn.execute(delete(table).where(table.c.person_id.in_(batch)))
            counts[table.name] += max(int(result.rowcount or 0), 0)
    return RemovedRows(**counts)


def count_rows(conn: Connection, person_ids: Iterable[str]) -> RemovedRows:
    """What :func:`delete_persons` would remove (for a dry run); removes nothing."""
    counts = dict.fromkeys(("persons", "contacts", "donations", "identifier_links"), 0)
    for batch in _batches(person_ids):
        for table in (contacts, donations, identifier_links, persons):
            counts[table.name] += int(conn.execute(
                select(func.count()).select_from(table)
                .where(table.c.person_id.in_(batch))).scalar_one())
    return RemovedRows(**counts)


def add_to_objection_list(conn: Connection, pseudonyms: Iterable[str], reason: str,
                          at: datetime) -> int:
    """Put pseudonyms on the objection list (ingest excludes rows naming them); idempotent.

    A pseudonym already listed keeps its first reason and date. Returns how many were new.
    """
    wanted = set(pseudonyms)
    listed: set[str] = set()
    for batch in _batches(wanted):
        listed.update(conn.execute(select(objections.c.pseudonym)
                                   .where(objections.c.pseudonym.in_(batch))).scalars())
    fresh = sorted(wanted - listed)
    stamp = _iso(at)
    for start in range(0, len(fresh), BATCH):
        conn.execute(insert(objections), [{"pseudonym": p, "reason": reason, "recorded_at": stamp}
                                          for p in fresh[start:start + BATCH]])
    return len(fresh)


def all_listed(conn: Connection, pseudonyms: Iterable[str]) -> bool:
    """Whether every one of these pseudonyms is already on the objection list."""
    wanted = set(pseudonyms)
    listed = 0
    for batch in _batches(wanted):
        listed += int(conn.execute(select(func.count()).select_from(objections)
                                   .where(objections.c.pseudonym.in_(batch))).scalar_one())
    return bool(wanted) and listed == len(wanted)


# ------------------------------------------------------------------------------ retention

def activity_cutoffs(cutoff: date) -> tuple[str, str]:
    """The first month (``YYYY-MM``) and ISO week (``YYYY-Www``) still active at ``cutoff``.

    A month counts as activity until its last day, a week until its Sunday: so a month or
    week is recent enough exactly when it is not earlier than the cutoff date's own month
    or week, and both compare as text.

    >>> activity_cutoffs(date(2026, 3, 4))
    ('2026-03', '2026-W10')
    >>> activity_cutoffs(date(2027, 1, 1))  # ISO week 53 of 2026
    ('2027-01', '2026-W53')
    """
    iso = cutoff.isocalendar()
    return f"{cutoff:%Y-%m}", f"{iso.year}-W{iso.week:02d}"


def inactive_persons(conn: Connection, *, cutoff: date) -> list[str]:
    """Persons whose last activity ended before ``cutoff``, in ``person_id`` order.

    Activity is any dated fact about the person: the month they were created in the source
    tool (``persons.created_month``), the month they were last seen (``last_seen_month``),
    the ISO week of any canvass contact (``contacts.week``), the month of any donation
    (``donations.month``). A person with none of these dates counts from the day their
    first file was loaded (``ingested_files.loaded_at``): that is when the data was
    collected. Appearing again in a later snapshot export is *not* activity (campaign tools
    re-export everyone), and neither is a contact or donation without a date.
    """
    month, week = activity_cutoffs(cutoff)
    p = persons.c
    recent_contact = exists().where(and_(contacts.c.person_id == p.person_id,
                                         contacts.c.week >= week))
    recent_donation = exists().where(and_(donations.c.person_id == p.person_id,
                                          donations.c.month >= month))
    dated_contact = exists().where(and_(contacts.c.person_id == p.person_id,
                                        contacts.c.week.is_not(None)))
    dated_donation = exists().where(and_(donations.c.person_id == p.person_id,
                                         donations.c.month.is_not(None)))
    collected_recently = exists().where(and_(ingested_files.c.sha256 == p.first_file,
                                             ingested_files.c.loaded_at >= cutoff.isoformat()))
    undated = and_(p.created_month.is_(None), p.last_seen_month.is_(None), not_(dated_contact),
                   not_(dated_donation))
    active = or_(p.created_month >= month, p.last_seen_month >= month, recent_contact,
                 recent_donation, and_(undated, collected_recently))
    query = select(p.person_id).where(not_(func.coalesce(active, False))).order_by(p.person_id)
    return list(conn.execute(query).scalars())


def retention_cutoff(now: datetime, days: int) -> date:
    """The first day still inside the retention period that ends at ``now``."""
    return (now - timedelta(days=days)).date()


# ------------------------------------------------------------------------------- the log

def record(conn: Connection, *, at: datetime, reason: str, counts: Mapping[str, int]) -> None:
    """Append one row to the erasure log: when, why, and how many (never who)."""
    if reason not in LOG_REASONS:
        raise ValueError(f"erasure log reason must be one of {LOG_REASONS}")
    unknown = set(counts) - set(_COUNT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown erasure log counts {sorted(unknown)}")
    conn.execute(insert(erasure_log).values(
        recorded_at=_iso(at), month=f"{at:%Y-%m}", reason=reason,
        **{c: int(counts.get(c, 0)) for c in _COUNT_COLUMNS}))


@dataclass(frozen=True)
class MonthSummary:
    """What one month's maintenance removed (counts only)."""

    month: str
    requests: int = 0
    requests_unmatched: int = 0
    persons_erased: int = 0
    rows_erased: int = 0
    persons_purged: int = 0
    rows_purged: int = 0
    raw_files_deleted: int = 0
    request_files_rejected: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monthly_summary(conn: Connection) -> list[MonthSummary]:
    """The erasure log summed per month, oldest month first."""
    rows_total = (erasure_log.c.persons + erasure_log.c.contacts + erasure_log.c.donations
                  + erasure_log.c.identifier_links)
    query = (select(erasure_log.c.month, erasure_log.c.reason,
                    func.sum(erasure_log.c.requests), func.sum(erasure_log.c.requests_unmatched),
                    func.sum(erasure_log.c.persons), func.sum(rows_total),
                    func.sum(erasure_log.c.files))
             .group_by(erasure_log.c.month, erasure_log.c.reason)
             .order_by(erasure_log.c.month))
    months: dict[str, dict[str, int]] = {}
    for month, reason, requests, unmatched, people, rows, files in conn.execute(query):
        m = months.setdefault(str(month), {})
        if reason in ("erasure", "objection"):
            m["requests"] = m.get("requests", 0) + int(requests or 0)
            m["requests_unmatched"] = m.get("requests_unmatched", 0) + int(unmatched or 0)
            m["persons_erased"] = m.get("persons_erased", 0) + int(people or 0)
            m["rows_erased"] = m.get("rows_erased", 0) + int(rows or 0)
        elif reason == "inactivity":
            m["persons_purged"] = m.get("persons_purged", 0) + int(people or 0)
            m["rows_purged"] = m.get("rows_purged", 0) + int(rows or 0)
        elif reason == "raw_files":
            m["raw_files_deleted"] = m.get("raw_files_deleted", 0) + int(files or 0)
        elif reason == "rejected_file":
            m["request_files_rejected"] = m.get("request_files_rejected", 0) + int(files or 0)
    return [MonthSummary(month=k, **v) for k, v in sorted(months.items())]


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def summary_totals(months: Sequence[MonthSummary]) -> dict[str, int]:
    """Column totals of a monthly summary."""
    keys = [k for k in MonthSummary.__dataclass_fields__ if k != "month"]
    return {k: sum(int(getattr(m, k)) for m in months) for k in keys}
