"""Reading ``published/``: the latest release of each query, checked against its own metadata.

The strategist report is built from these files only. Each release is three files
``<query name>--<release id>.{csv,parquet,json}``; a query released every day has one trio
per day, and the report shows the latest (highest ledger seq). The Parquet file must hash to
the sha256 its JSON records; a file that does not is reported, and its numbers are not shown
(the ledger and ``audit verify`` tell the auditor which one and why).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

#: ``<query name>--<release id>.json`` (release ids are ``r-`` + 24 hex digits).
METADATA_NAME = re.compile(r"^(?P<query>[a-z][a-z0-9_]*)--(?P<release>r-[0-9a-f]{24})\.json$")
#: Columns every published table has after its group columns (privacy.publish).
ACCURACY = ("estimate", "ci95_low", "ci95_high", "ci95_halfwidth")

Problem = Literal["missing", "integrity", "malformed"]


@dataclass(frozen=True)
class PublishedRelease:
    """One release as published: its JSON metadata and, when intact, its table's rows."""

    query_name: str
    release_id: str
    ledger_seq: int
    meta: Mapping[str, Any]
    json_file: str
    table_file: str
    group_by: tuple[str, ...] = ()
    rows: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    problem: Problem | None = None

    @property
    def created_at(self) -> str:
        return str(self.meta.get("created_at") or "")

    @property
    def measure(self) -> str:
        query = self.meta.get("query")
        nested = query.get("measure") if isinstance(query, Mapping) else None
        return str(self.meta.get("measure") or nested or "count")

    @property
    def value_column(self) -> str | None:
        query = self.meta.get("query")
        value = query.get("value") if isinstance(query, Mapping) else None
        return None if value is None else str(value)

    def title(self, lang: str) -> str:
        """The plan's title in ``lang`` (``title_fr`` in French), else the query name."""
        if lang == "fr" and self.meta.get("title_fr"):
            return str(self.meta["title_fr"])
        return str(self.meta.get("title") or self.query_name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_metadata(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        log.warning("published metadata %s is not readable JSON: skipped", path.name)
        return None
    if not isinstance(document, dict):
        log.warning("published metadata %s is not a JSON object: skipped", path.name)
        return None
    return document


def _seq(meta: Mapping[str, Any]) -> int:
    try:
        return int(meta.get("ledger_seq", 0))
    except (TypeError, ValueError):
        return 0


def latest_releases(published_dir: Path) -> list[PublishedRelease]:
    """The latest release of each query in ``published_dir``, in ledger order (by seq)."""
    if not published_dir.is_dir():
        return []
    latest: dict[str, tuple[Path, dict[str, Any], str]] = {}
    for path in sorted(published_dir.iterdir()):
        match = METADATA_NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        meta = _read_metadata(path)
        if meta is None:
            continue
        query = match.group("query")
        seen = latest.get(query)
        if seen is None or (_seq(meta), path.name) > (_seq(seen[1]), seen[0].name):
            latest[query] = (path, meta, match.group("release"))
    releases = [_load(path, meta, query, release)
                for query, (path, meta, release) in latest.items()]
    return sorted(releases, key=lambda r: (r.ledger_seq, _level_index(r), r.query_name))


def _level_index(release: PublishedRelease) -> int:
    """A hierarchy's tables (one release) coarsest first: national, région, département."""
    hierarchy = release.meta.get("hierarchy")
    levels = hierarchy.get("levels") if isinstance(hierarchy, Mapping) else None
    if not isinstance(levels, list):
        return 0
    tables = [lv.get("table") for lv in levels if isinstance(lv, Mapping)]
    return tables.index(release.query_name) if release.query_name in tables else 0


def _load(path: Path, meta: dict[str, Any], query: str, release: str) -> PublishedRelease:
    files = meta.get("files")
    info = files.get("parquet") if isinstance(files, Mapping) else None
    name = str(info.get("name")) if isinstance(info, Mapping) and info.get("name") else \
        f"{query}--{release}.parquet"
    base = PublishedRelease(query_name=query, release_id=release, ledger_seq=_seq(meta),
                            meta=meta, json_file=path.name, table_file=name)
    table = path.parent / Path(name).name
    if not table.is_file():
        log.warning("published table %s is missing", table.name)
        return replace(base, problem="missing")
    expected = info.get("sha256") if isinstance(info, Mapping) else None
    if expected is None or _sha256(table) != expected:
        log.warning("published table %s does not match the sha256 in %s", table.name, path.name)
        return replace(base, problem="integrity")
    import polars as pl

    try:
        frame = pl.read_parquet(table)
    except Exception:  # noqa: BLE001 - any unreadable Parquet is reported the same way
        log.warning("published table %s is not readable Parquet", table.name)
        return replace(base, problem="malformed")
    if any(column not in frame.columns for column in ACCURACY):
        log.warning("published table %s lacks the accuracy columns", table.name)
        return replace(base, problem="malformed")
    group_by = _group_columns(meta, frame.columns)
    if "quantile" in frame.columns and "quantile" not in group_by \
            and frame["quantile"].n_unique() > 1:
        group_by = (*group_by, "quantile")  # several quantiles per group: one row each
    return replace(base, group_by=group_by, rows=tuple(frame.to_dicts()))


def _group_columns(meta: Mapping[str, Any], columns: Sequence[str]) -> tuple[str, ...]:
    """The group columns: the metadata's ``group_by``, else the columns before ``estimate``."""
    declared = meta.get("group_by")
    if isinstance(declared, list) and all(isinstance(c, str) and c in columns for c in declared):
        return tuple(declared)
    if "estimate" in columns:
        return tuple(columns[:list(columns).index("estimate")])
    return ()
