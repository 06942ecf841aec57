"""Polars frames that own their memory, and whole-file facts found without holding text.

Polars keeps text as string views: a filtered, de-duplicated or joined frame shares the
buffers of the frame it came from. A load that keeps a few rows of each slice of a file
(candidates, withdrawn rows, distinct identifiers) would thereby keep every slice whole,
gigabytes for a file of millions of rows. :func:`compact` copies what is kept into buffers
of its own, so the slice can go.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def compact(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its text copied out of any larger buffer it shares."""
    if frame.is_empty() or not any(t in (pl.String, pl.Binary) for t in frame.dtypes):
        return frame
    copied = pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
    assert isinstance(copied, pl.DataFrame)
    return copied.cast(dict(frame.schema.items()))  # type: ignore[arg-type]  # Enums come back


def repeated(values: np.ndarray) -> np.ndarray:
    """Positions (sorted) of the values that occur more than once.

    By sorting, not a hash table: millions of 64-bit values cost a few arrays of that size
    (Polars' ``is_duplicated`` holds several times more).
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = ordered[1:] == ordered[:-1]
    del ordered
    mask = np.zeros(len(order), dtype=bool)
    mask[1:] |= same
    mask[:-1] |= same
    return np.sort(order[mask])
