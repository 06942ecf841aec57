"""Per-cell noise weights of an L2-ball query (``bounds: {max_l2: d, weights: last_release}``).

Why. With the same noise in every cell, a histogram whose cells differ a hundredfold
(``not_home`` against a rare result code) cannot both keep the heavy contributors of its
large cells and stay narrow in its small ones (README, "Rows the bounds cut": a proof). With
cell i's noise proportional to w_i = √(its count), the large cells get more rows and wider
intervals, the small ones narrower intervals, at the same mean half-width.

Where the counts come from: the query's last *published* release — a DP output already
charged, so reading it again is free post-processing. Never from the data. With no earlier
release the weights are uniform (the metadata says so). The weights are normalised to mean
1 over the cells, so ``max_l2`` means the same mean half-width with or without them.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from privacy.bounding import CELL
from privacy.engine import cell_keys
from privacy.plan import Plan, Query
from privacy.plan_check import last_releases

log = logging.getLogger(__name__)


def weights_from_counts(counts: Sequence[float]) -> tuple[float, ...]:
    """w_i = √max(1, c_i), normalised to mean 1 (c_i: a DP count, possibly negative).

    >>> weights_from_counts([-12, 9, 25, 49])  # √: 1, 3, 5, 7 (mean 4)
    (0.25, 0.75, 1.25, 1.75)
    """
    raw = [math.sqrt(max(1.0, float(c))) for c in counts]
    mean = sum(raw) / len(raw)
    return tuple(round(r / mean, 12) for r in raw)


def weights_from_table(plan: Plan, query: Query, table: pl.DataFrame) -> tuple[float, ...]:
    """The weights from a published table of ``query``, in the query's public cell order
    (a cell missing from the table counts 0).

    The count used is the top of the cell's published 95 % interval (``ci95_high``), not
    the estimate: a small cell whose last noisy count came out near 0 would otherwise get
    almost no noise and an interval too narrow to hold its truth.
    """
    cells = cell_keys(plan, query)
    columns = list(query.group_by)
    source = "ci95_high" if "ci95_high" in table.columns else "estimate"
    keyed = table.select(*[pl.col(c).cast(pl.String) for c in columns],
                         pl.col(source).cast(pl.Float64).alias("estimate"))
    labels = cells.labels.select(CELL, *[pl.col(c).cast(pl.String) for c in columns])
    joined = labels.join(keyed, on=columns, how="left").sort(CELL)
    return weights_from_counts(joined["estimate"].fill_null(0.0).to_list())


def last_release_weights(published: Path, plan: Plan,
                         query: Query) -> tuple[tuple[float, ...] | None, str | None]:
    """(weights, release id) from the query's latest published release, or (None, None)
    when there is none or its table cannot be read intact (then: uniform, logged)."""
    document = last_releases(published, plan.dataset_id).get(query.name)
    if document is None:
        return None, None
    entry = (document.get("files") or {}).get("parquet") or {}
    path = published / str(entry.get("name", ""))
    try:
        content = path.read_bytes()
    except OSError:
        log.warning("query %s: last release's table unreadable: uniform weights", query.name)
        return None, None
    if hashlib.sha256(content).hexdigest() != entry.get("sha256"):
        log.warning("query %s: last release's table does not match its metadata: uniform "
                    "weights", query.name)
        return None, None
    table = pl.read_parquet(path)
    return weights_from_table(plan, query, table), str(document.get("release_id"))
