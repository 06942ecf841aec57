"""Published files: what a strategist downloads, rendered once and kept byte for byte.

Each release becomes three files in ``ISOLOIR_HOME/published/``, named
``<query name>--<release id>.{csv,parquet,json}``:

* **CSV** for spreadsheets: UTF-8 with a BOM and ``;`` separators with decimal commas, as
  French Excel expects (``,`` with decimal points on request). Text cells starting with
  ``= + - @``, a tab or a carriage return are prefixed with ``'`` so no cell can run as a
  formula (numbers are written by us and cannot).
* **Parquet** for programs (reports, the published GX suite).
* **JSON** metadata: the release, its ledger entry, mechanism, exact cost, bounds, clipping,
  post-processing notes, the run's logical date, and the sha256 of the two other files.

Every table has the group columns, then ``estimate, ci95_low, ci95_high, ci95_halfwidth,
mechanism, noise_scale, budget_share, ledger_entry`` (the release id), then any extra
column the engine adds. The bytes are rendered once, stored (signed) in the ledger's
``release_results`` and only copied afterwards: a rerun writes byte-identical files.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from core.errors import InvariantViolation
from privacy.ledger import PublishedFile, sha256_hex

log = logging.getLogger(__name__)

#: Columns every published table carries after its group columns, in this order.
ACCURACY_COLUMNS = ("estimate", "ci95_low", "ci95_high", "ci95_halfwidth", "mechanism",
                    "noise_scale", "budget_share", "ledger_entry")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_BOM = "\ufeff"


@dataclass(frozen=True)
class CsvFormat:
    """The CSV dialect: ``;`` + decimal comma (French Excel, default) or ``,`` + decimal point."""

    delimiter: Literal[";", ","] = ";"

    def __post_init__(self) -> None:
        if self.delimiter not in (";", ","):
            raise ValueError("the CSV delimiter is ';' or ','")

    @property
    def decimal(self) -> str:
        return "," if self.delimiter == ";" else "."

    def describe(self) -> dict[str, str]:
        return {"encoding": "utf-8-sig", "delimiter": self.delimiter, "decimal": self.decimal}


def file_stem(query_name: str, release_id: str) -> str:
    return f"{query_name}--{release_id}"


def published_table(table: pl.DataFrame, group_by: Sequence[str], *, release_id: str,
                    mechanism: str, budget_share: float) -> pl.DataFrame:
    """Add the accuracy and provenance columns to a post-processed DP table, in order.

    ``ci95_low``/``ci95_high`` default to ``estimate ∓ ci95_halfwidth`` when the engine's
    post-processing did not set them (it may clamp them, e.g. at 0 for counts).
    """
    missing = [c for c in (*group_by, "estimate", "ci95_halfwidth", "noise_scale")
               if c not in table.columns]
    if missing:
        raise InvariantViolation(f"the DP engine's table lacks columns {missing}")
    frame = table
    if "ci95_low" not in frame.columns:
        frame = frame.with_columns((pl.col("estimate") - pl.col("ci95_halfwidth"))
                                   .alias("ci95_low"))
    if "ci95_high" not in frame.columns:
        frame = frame.with_columns((pl.col("estimate") + pl.col("ci95_halfwidth"))
                                   .alias("ci95_high"))
    frame = frame.with_columns(pl.lit(mechanism, pl.String).alias("mechanism"),
                               pl.lit(budget_share, pl.Float64).alias("budget_share"),
                               pl.lit(release_id, pl.String).alias("ledger_entry"))
    leading = [*group_by, *ACCURACY_COLUMNS]
    extras = [c for c in frame.columns if c not in leading]
    return frame.select(*leading, *extras)


def _cell(value: Any, decimal: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        text = repr(value)
        return text.replace(".", decimal) if decimal != "." else text
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _quote(text: str, delimiter: str) -> str:
    if any(ch in text for ch in (delimiter, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


def render_csv(frame: pl.DataFrame, fmt: CsvFormat = CsvFormat()) -> bytes:
    """CSV bytes (BOM, CRLF line ends as Excel writes them), formula-injection safe."""
    lines = [fmt.delimiter.join(_quote(_cell(c, "."), fmt.delimiter) for c in frame.columns)]
    for row in frame.iter_rows():
        lines.append(fmt.delimiter.join(_quote(_cell(v, fmt.decimal), fmt.delimiter)
                                        for v in row))
    return (_BOM + "\r\n".join(lines) + "\r\n").encode("utf-8")


def render_parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def render_json(document: Mapping[str, Any]) -> bytes:
    """Readable, stable JSON (sorted keys, UTF-8, final newline)."""
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False,
                       default=_json_default) + "\n").encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Path):
        return value.name
    return str(value)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of engine metadata (tuples → lists, Fractions → "p/q", NaN → None)."""
    from fractions import Fraction

    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def build_files(query_name: str, release_id: str, frame: pl.DataFrame,
                metadata: Mapping[str, Any], fmt: CsvFormat = CsvFormat()) -> tuple[
                    PublishedFile, ...]:
    """Render the three files of a release; the JSON lists the others' sha256."""
    stem = file_stem(query_name, release_id)
    csv = render_csv(frame, fmt)
    parquet = render_parquet(frame)
    files = [PublishedFile(f"{stem}.csv", sha256_hex(csv), csv),
             PublishedFile(f"{stem}.parquet", sha256_hex(parquet), parquet)]
    document = dict(metadata) | {
        "columns": list(frame.columns), "rows": frame.height, "csv": fmt.describe(),
        "files": {f.name.rsplit(".", 1)[1]: {"name": f.name, "sha256": f.sha256}
                  for f in files}}
    meta = render_json(document)
    files.append(PublishedFile(f"{stem}.json", sha256_hex(meta), meta))
    return tuple(files)


def write_files(files: Iterable[PublishedFile], published_dir: Path) -> list[Path]:
    """Write files atomically (a hidden partial file renamed into place); identical files
    already there are left untouched."""
    published_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        target = published_dir / f.name
        if target.is_file() and sha256_hex(target.read_bytes()) == f.sha256:
            written.append(target)
            continue
        partial = published_dir / f".{f.name}.partial"
        with partial.open("wb") as handle:
            handle.write(f.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
        written.append(target)
    log.info("published %d file(s) in %s", len(written), published_dir)
    return written
