"""A staged file read slice by slice: the load never holds a whole file's rows at once.

A daily contact history has millions of rows, each with several keyed hashes of 50-odd
characters; held whole (and copied by a join or a sort) they cost gigabytes. The load
therefore reads the staged parquet file several times, each time only the columns one step
needs, one slice of rows at a time, and keeps across slices only integers per row (a
mask, a position, a component) and what is per person.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

#: Rows per slice: about 100 MB of the widest staged rows at a time (staged chunks are
#: written as row groups of ``ISOLOIR_CHUNK_ROWS`` rows, 200,000 by default).
LOAD_SLICE_ROWS = 200_000


@dataclass(frozen=True)
class StagedFile:
    """A staged parquet file: its columns, its row count and how to read it in slices."""

    path: Path
    columns: tuple[str, ...]
    rows: int
    slice_rows: int = LOAD_SLICE_ROWS

    @classmethod
    def open(cls, path: str | Path, slice_rows: int | None = None) -> StagedFile:
        meta = pq.ParquetFile(path)
        return cls(Path(path), tuple(meta.schema_arrow.names), meta.metadata.num_rows,
                   slice_rows or LOAD_SLICE_ROWS)

    def slices(self, columns: Sequence[str], rows: np.ndarray | None = None
               ) -> Iterator[pl.DataFrame]:
        """Frames of ``row`` (the row's number in the file, u32) and ``columns``, in file
        order; only the rows whose number is in the sorted array ``rows`` when given."""
        wanted = [c for c in dict.fromkeys(columns) if c in self.columns and c != "row"]
        scan = pl.scan_parquet(self.path).select(wanted)
        for start in range(0, self.rows, self.slice_rows):
            stop = min(start + self.slice_rows, self.rows)
            if rows is not None:
                lo, hi = np.searchsorted(rows, [start, stop])
                if lo == hi:
                    continue
            # Polars reads only the row groups of the slice (a row group is a staged chunk).
            frame = scan.slice(start, stop - start).collect().with_row_index("row", start)
            if rows is not None:
                frame = frame.filter(pl.col("row").is_in(pl.Series(rows[lo:hi]).implode()))
            yield frame
