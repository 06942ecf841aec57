"""The rights to erasure (GDPR Art. 17) and to object (Art. 21): forget a person everywhere.

For each request, its identifiers (already normalized by :mod:`transforms.requests`) are
pseudonymized under **every** key version (:func:`privacy.erasure.request_pseudonyms`), so
a person loaded before a key rotation is found as well as one loaded after. The persons
they are linked to are removed everywhere (person row, contacts, donations, identifier
links) and every pseudonym linked to them, plus the request's own, goes on the objection
list: a later export naming any of them is excluded on ingest and only counted.

Erasure and objection do the same to the warehouse: the warehouse exists only for
analytics, and an objection to analytics leaves no lawful purpose for the rows. They
differ in the reason recorded on the objection list and in the erasure log.

A request that matches nobody is not an error (the person may never have been loaded, or
was forgotten already): it is counted as unmatched, and its pseudonyms still go on the
objection list, so that an export arriving later is excluded. Everything happens in one
transaction, serialized with loads; running the same requests again removes nothing.

Published DP releases are not touched: they are not personal data (that is what the
differential-privacy guarantee is for), and budget already spent on the person stays spent.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.errors import InputFileError
from core.settings import Settings
from privacy.erasure import request_pseudonyms
from privacy.keys import Keyring
from transforms.requests import REASONS, Reason, Request, read_request_file
from warehouse import erasure
from warehouse.store import load_transaction

log = logging.getLogger(__name__)

DEFAULT_DATASET = "campaign"  # the dataset whose identity pseudonyms link persons (ingest's)
REQUEST_SUFFIXES = (".csv", ".txt")


@dataclass(frozen=True)
class ForgetCounts:
    """What one reason's requests removed (counts only: safe for logs, XCom and JSON)."""

    requests: int = 0
    requests_unmatched: int = 0
    requests_already_forgotten: int = 0  # matched nobody, but were already on the list
    persons: int = 0
    contacts: int = 0
    donations: int = 0
    identifier_links: int = 0
    objections_added: int = 0

    @property
    def rows(self) -> int:
        return self.persons + self.contacts + self.donations + self.identifier_links

    def __add__(self, other: ForgetCounts) -> ForgetCounts:
        return ForgetCounts(**{k: getattr(self, k) + getattr(other, k)
                               for k in self.__dataclass_fields__})

    def to_dict(self) -> dict[str, int]:
        return asdict(self) | {"rows": self.rows}


@dataclass(frozen=True)
class ForgetResult:
    """Counts per reason of one batch of requests."""

    by_reason: dict[str, ForgetCounts] = field(default_factory=dict)

    @property
    def total(self) -> ForgetCounts:
        total = ForgetCounts()
        for counts in self.by_reason.values():
            total = total + counts
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total.to_dict(),
                "by_reason": {k: v.to_dict() for k, v in sorted(self.by_reason.items())}}


def forget(requests: Sequence[Request], engine: Engine, keyring: Keyring, *, now: datetime,
           dataset: str = DEFAULT_DATASET) -> ForgetResult:
    """Honour every request in one transaction and log the counts; idempotent."""
    by_reason: dict[str, ForgetCounts] = {}
    with load_transaction(engine) as conn:
        for request in requests:
            pseudonyms = request_pseudonyms(keyring, dataset, request.identifiers)
            person_ids = erasure.persons_of(conn, pseudonyms)
            if not person_ids and erasure.all_listed(conn, pseudonyms):
                already = 1
            else:
                already = 0
            linked = erasure.linked_pseudonyms(conn, person_ids)
            removed = erasure.delete_persons(conn, person_ids)
            added = erasure.add_to_objection_list(conn, pseudonyms | linked, request.reason, now)
            counts = ForgetCounts(requests=1, requests_unmatched=int(not person_ids),
                                  requests_already_forgotten=already,
                                  objections_added=added, **removed.to_dict())
            by_reason[request.reason] = by_reason.get(request.reason, ForgetCounts()) + counts
        for reason, counts in sorted(by_reason.items()):
            erasure.record(conn, at=now, reason=reason, counts={
                "requests": counts.requests, "requests_unmatched": counts.requests_unmatched,
                "persons": counts.persons, "contacts": counts.contacts,
                "donations": counts.donations, "identifier_links": counts.identifier_links,
                "objections_added": counts.objections_added})
    result = ForgetResult(by_reason)
    total = result.total
    log.info("forgot %d person(s), %d row(s), for %d request(s) (%d matched nobody)",
             total.persons, total.rows, total.requests, total.requests_unmatched)
    return result


def forget_file(path: Path, engine: Engine, keyring: Keyring, *, now: datetime,
                default_reason: Reason = "erasure", keep_file: bool = False,
                dataset: str = DEFAULT_DATASET) -> ForgetResult:
    """Honour every request of a request file, then delete it (unless ``keep_file``).

    A malformed file raises :class:`~core.errors.InputFileError` (file, line, rule; never a
    value) before anything is removed, and stays where it is.
    """
    requests = read_request_file(path, default_reason=default_reason)
    result = forget(requests, engine, keyring, now=now, dataset=dataset)
    if not keep_file:
        path.unlink(missing_ok=True)
    return result


@dataclass(frozen=True)
class RequestFolderResult:
    """What a maintenance run made of ``requests/``: counts only (request files may be named
    after a person, so not even their names travel)."""

    files_processed: int
    files_rejected: int
    forget: ForgetResult

    def to_dict(self) -> dict[str, Any]:
        return {"files_processed": self.files_processed, "files_rejected": self.files_rejected,
                "forget": self.forget.to_dict()}


def request_files(settings: Settings) -> list[Path]:
    """Request files waiting in ``requests/`` (hidden and partial files are ignored)."""
    settings.ensure_dirs()
    return [p for p in sorted(settings.requests.iterdir())
            if p.is_file() and not p.name.startswith(".")
            and p.suffix.lower() in REQUEST_SUFFIXES]


def process_request_folder(settings: Settings, engine: Engine, keyring: Keyring, *,
                           now: datetime, dataset: str = DEFAULT_DATASET) -> RequestFolderResult:
    """Honour every request file in ``requests/``, deleting each once processed.

    A malformed file is moved to ``quarantine/`` under a neutral name
    (``erasure-request-<UTC time>-<n>.csv``) with a ``.report.json`` naming the line and the
    rule, and counted in the erasure log as ``rejected_file``; the other files carry on.
    Quarantined files are deleted by the raw-file retention like any other.
    """
    total = ForgetResult()
    processed = rejected = 0
    for number, path in enumerate(request_files(settings), 1):
        try:
            result = forget_file(path, engine, keyring, now=now, dataset=dataset)
        except InputFileError as err:
            target = _quarantine_request(path, err, settings, now, number)
            with load_transaction(engine) as conn:
                erasure.record(conn, at=now, reason="rejected_file", counts={"files": 1})
            log.error("request file %d rejected (%s, line %s): moved to quarantine/%s",
                      number, err.rule, err.row, target.name)
            rejected += 1
            continue
        processed += 1
        merged = dict(total.by_reason)
        for reason, counts in result.by_reason.items():
            merged[reason] = merged.get(reason, ForgetCounts()) + counts
        total = ForgetResult(merged)
    log.info("%d request file(s) processed, %d rejected", processed, rejected)
    return RequestFolderResult(processed, rejected, total)


def _quarantine_request(path: Path, err: InputFileError, settings: Settings, now: datetime,
                        number: int) -> Path:
    import json

    settings.quarantine.mkdir(parents=True, exist_ok=True)
    stem = f"erasure-request-{now:%Y%m%dT%H%M%SZ}-{number}"
    target = settings.quarantine / f"{stem}{path.suffix.lower()}"
    suffix = 0
    while target.exists():
        suffix += 1
        target = settings.quarantine / f"{stem}.{suffix}{path.suffix.lower()}"
    shutil.move(str(path), target)
    report = {"file": target.name, "suite": "erasure request file", "success": False,
              "results": [{"rule": err.rule, "column": err.column, "blocking": True,
                           "first_rows": [err.row] if err.row is not None else []}],
              "message": f"line {err.row}: rule {err.rule!r} broken: {err.detail}",
              "what_to_do": "fix the line and drop the file into requests/ again; the "
                            "quarantined copy is deleted by `isoloir purge`"}
    (settings.quarantine / f"{target.name}.report.json").write_text(
        json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    return target


__all__ = ["REASONS", "ForgetCounts", "ForgetResult", "RequestFolderResult", "forget",
           "forget_file", "process_request_folder", "request_files"]
