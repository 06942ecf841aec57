"""One rule, two engines: a declared check that both the fast path and Great Expectations run.

A :class:`Rule` says *what* must hold (a regex, a code list, uniqueness...), on which column,
and whether a failure blocks the batch or only warns. :func:`check` evaluates it over a whole
frame with vectorized pandas/pyarrow code; :mod:`expectations.gx_run` turns the same rule into
the GX expectation of the same semantics (``ExpectColumnValuesToMatchRegex`` calls the very same
``Series.astype(str).str.contains``), so the two agree by construction and a full-frame GX run
that disagrees raises :class:`~core.errors.InvariantViolation`.

Why two engines: GX needs ~10 s per million rows and ~10 s to import; the fast path needs well
under a second, so it is the blocking gate for big files, and GX documents the run (on the whole
frame, or on a deterministic sample of a big one) for auditors.

Column rules look at non-null values only (as GX does); a ``mostly`` below 1 tolerates that
share of failures.

>>> import pandas as pd
>>> rule = Rule("postcode_valid", "match_regex", column="zip", regex=r"^[0-9]{5}$")
>>> r = check(rule, pd.DataFrame({"zip": ["75001", "7500", None]}), row_numbers=[2, 3, 4])
>>> (r.success, r.unexpected_count, r.element_count, r.first_rows)
(False, 1, 2, (3,))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from expectations.codes import CODE_LISTS, code_mask
from expectations.outcome import RuleResult
from expectations.parsing import AmountRule, amount_rule_broken, unparseable_dates
from expectations.patterns import family_of

RuleKind = Literal[
    "row_count_min", "columns_present", "columns_allowed", "columns_excluded", "not_null",
    "match_regex", "not_match_regex", "not_match_regex_list", "in_codes", "in_set", "unique",
    "date_format", "amount_rule", "min_value",
]
TABLE_KINDS = frozenset({"row_count_min", "columns_present", "columns_allowed",
                         "columns_excluded"})
FIRST_ROWS = 5


@dataclass(frozen=True)
class Rule:
    """A declared expectation. ``name`` is the rule's slug, stable across releases.

    ``skip_regex``/``skip_codes`` name values that are provably clean for a leak scan (a valid
    pseudonym or official code cannot hold an email): the fast path does not scan them. GX scans
    everything; the tests prove both give the same answer.
    """

    name: str
    kind: RuleKind
    column: str | None = None
    blocking: bool = True
    mostly: float = 1.0
    regex: str | None = None
    regex_list: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    code_list: str | None = None
    strftime_format: str | None = None
    date_order: str | None = None  # dmy | mdy, decided per file by the reader
    decimal: str | None = None
    amount_rule: AmountRule | None = None
    min_value: float | None = None
    skip_regex: str | None = None
    skip_codes: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if (self.kind in TABLE_KINDS) == (self.column is not None):
            raise ValueError(f"rule {self.name}: table rules take no column, column rules need one")
        if not 0.0 < self.mostly <= 1.0:
            raise ValueError(f"rule {self.name}: mostly must be in (0, 1]")
        needs = {
            "match_regex": self.regex, "not_match_regex": self.regex,
            "not_match_regex_list": self.regex_list or None, "in_codes": self.code_list,
            "date_format": self.strftime_format, "amount_rule": self.amount_rule,
            "min_value": self.min_value,
        }
        if self.kind == "amount_rule" and self.decimal is None:
            raise ValueError(f"rule {self.name}: an amount rule needs the decimal separator")
        if self.kind in needs and needs[self.kind] is None:
            raise ValueError(f"rule {self.name}: kind {self.kind} is missing its parameter")
        if self.kind in ("columns_present", "columns_allowed", "columns_excluded", "in_set") \
                and not self.values:
            raise ValueError(f"rule {self.name}: kind {self.kind} needs values")
        for name in (self.code_list, self.skip_codes):
            if name is not None and name not in CODE_LISTS:
                raise ValueError(f"rule {self.name}: unknown code list {name!r}")

    @property
    def key(self) -> str:
        """Unique within a suite: the rule and its column."""
        return f"{self.name}:{self.column}" if self.column else self.name


def check(rule: Rule, frame: pd.DataFrame, row_numbers: Sequence[int] | np.ndarray | None = None,
          *, cache: dict[str, Any] | None = None) -> RuleResult:
    """Evaluate one rule over the whole frame; ``row_numbers[i]`` names the frame's i-th row.

    ``cache`` (optional, one dict per frame) keeps each column's non-null values, their text
    and the "provably clean" masks, so the many rules on one column compute them once.
    """
    rows = np.arange(1, len(frame) + 1) if row_numbers is None else np.asarray(row_numbers)
    if len(rows) != len(frame):
        raise ValueError("row_numbers must name every row of the frame")
    if rule.kind in TABLE_KINDS:
        return _check_table(rule, frame)
    assert rule.column is not None
    if rule.column not in frame.columns:
        return _result(rule, success=False, unexpected=0, total=0,
                       detail="column absent from the frame")
    memo: dict[str, Any] = {} if cache is None else cache
    name = rule.column
    if rule.kind == "not_null":
        bad = frame[name].isna().to_numpy()
        return _from_mask(rule, bad, None, len(frame), rows)
    present = _memo(memo, f"present:{name}", lambda: _present(frame[name]))
    total = len(present)
    if rule.kind == "match_regex":
        assert rule.regex is not None
        bad = ~_regex_mask(memo, name, present, rule.regex)
    elif rule.kind == "not_match_regex":
        assert rule.regex is not None
        bad = _regex_mask(memo, name, present, rule.regex)
    elif rule.kind == "not_match_regex_list":
        bad = _leaks(rule, present, memo)
    elif rule.kind == "in_codes":
        assert rule.code_list is not None
        bad = ~_codes_mask(memo, name, present, rule.code_list)
    elif rule.kind == "in_set":
        bad = ~present.isin(list(rule.values)).to_numpy(dtype=bool)
    elif rule.kind == "unique":
        bad = _duplicated(present)
    elif rule.kind == "date_format":
        assert rule.strftime_format is not None
        bad = unparseable_dates(present, rule.strftime_format,
                                rule.date_order).to_numpy(dtype=bool)
    elif rule.kind == "amount_rule":
        assert rule.decimal is not None and rule.amount_rule is not None
        bad = amount_rule_broken(present, rule.decimal, rule.amount_rule).to_numpy(dtype=bool)
    elif rule.kind == "min_value":
        numbers = pd.to_numeric(present, errors="coerce")
        bad = ~(numbers >= rule.min_value).to_numpy(dtype=bool)
    else:  # pragma: no cover - Literal exhausted
        raise ValueError(f"unknown rule kind {rule.kind}")
    result = _from_mask(rule, np.asarray(bad, dtype=bool), present.index.to_numpy(), total, rows)
    families = memo.pop(f"leaks:{rule.key}", ())
    if families:
        result = replace(result, detail="looks like: " + ", ".join(families))
    return result


def _present(column: pd.Series) -> pd.Series:
    """Non-null values, indexed by their position in the frame."""
    column = column.reset_index(drop=True)
    present = column.notna()
    return column if bool(present.all()) else column[present]


def _memo(memo: dict[str, Any], key: str, compute: Callable[[], Any]) -> Any:
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _text(memo: dict[str, Any], name: str, present: pd.Series) -> pd.Series:
    """Values as text, exactly as GX sees them (``astype(str)``: Arrow-backed in pandas 3)."""
    return _memo(memo, f"str:{name}", lambda: present.astype(str))


def _regex_mask(memo: dict[str, Any], name: str, present: pd.Series, regex: str) -> np.ndarray:
    """``astype(str).str.contains(regex)``: GX's own pandas implementation, computed once."""
    return _memo(memo, f"re:{name}:{regex}", lambda: _text(memo, name, present).str.contains(
        regex).to_numpy(dtype=bool))


def _codes_mask(memo: dict[str, Any], name: str, present: pd.Series, code_list: str) -> np.ndarray:
    return _memo(memo, f"codes:{name}:{code_list}",
                 lambda: code_mask(present, code_list).to_numpy(dtype=bool))


def _leaks(rule: Rule, present: pd.Series, memo: dict[str, Any]) -> np.ndarray:
    """Values matching any leak pattern; values provably clean (valid pseudonym/code) skipped.

    Integers and booleans are never scanned: their text (``612345678``, ``True``) cannot match
    a leak pattern (a phone needs a leading 0, + or 00; tests check it). Floats are scanned.
    """
    assert rule.column is not None
    bad = np.zeros(len(present), dtype=bool)
    if pd.api.types.is_integer_dtype(present.dtype) or pd.api.types.is_bool_dtype(present.dtype):
        return bad
    if rule.skip_regex is not None:
        clean = _regex_mask(memo, rule.column, present, rule.skip_regex)
    elif rule.skip_codes is not None:
        clean = _codes_mask(memo, rule.column, present, rule.skip_codes)
    else:
        clean = np.zeros(len(present), dtype=bool)
    positions = np.flatnonzero(~clean)
    found: list[str] = []
    if len(positions):
        to_scan = _text(memo, rule.column, present).iloc[positions]
        for regex in rule.regex_list:
            hit = to_scan.str.contains(regex).to_numpy(dtype=bool)
            if hit.any():
                bad[positions] |= hit
                found.append(_family(regex))
    if found:
        memo[f"leaks:{rule.key}"] = tuple(dict.fromkeys(found))
    return bad


def _family(regex: str) -> str:
    try:
        return family_of(regex).replace("_", " ")
    except KeyError:
        return "forbidden pattern"


def _duplicated(present: pd.Series) -> np.ndarray:
    """``duplicated(keep=False)``: every copy of a repeated value (what GX counts).

    For text, a sort and a comparison of neighbours (pyarrow) costs a third of hashing.
    """
    n = len(present)
    if n < 2 or not isinstance(present.dtype, pd.StringDtype):
        return present.duplicated(keep=False).to_numpy(dtype=bool)
    values = pa.array(present, type=pa.string())
    order = pc.sort_indices(values)
    ordered = pc.take(values, order)
    same = np.asarray(pc.equal(ordered.slice(1), ordered.slice(0, n - 1)), dtype=bool)
    repeated = np.zeros(n, dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    bad = np.zeros(n, dtype=bool)
    bad[np.asarray(order, dtype=np.int64)] = repeated
    return bad


def _from_mask(rule: Rule, bad: np.ndarray, positions: np.ndarray | None, total: int,
               rows: np.ndarray) -> RuleResult:
    """Count failures; ``positions[i]`` is the frame row of ``bad[i]`` (None: the same i)."""
    failing = np.flatnonzero(bad)
    first_positions = failing[:FIRST_ROWS] if positions is None else positions[failing[:FIRST_ROWS]]
    first = tuple(int(rows[int(p)]) for p in first_positions)
    return _result(rule, success=_mostly(total, len(failing), rule.mostly),
                   unexpected=len(failing), total=total, first_rows=first)


def _mostly(total: int, unexpected: int, mostly: float) -> bool:
    """GX's rule: vacuously true with no values, else success ratio >= mostly."""
    if total == 0:
        return True
    return (float(total) - float(unexpected)) / float(total) >= mostly


def _check_table(rule: Rule, frame: pd.DataFrame) -> RuleResult:
    columns = [str(c) for c in frame.columns]
    if rule.kind == "row_count_min":
        minimum = int(rule.min_value if rule.min_value is not None else 1)
        ok = len(frame) >= minimum
        return _result(rule, success=ok, unexpected=0 if ok else 1, total=1,
                       detail="" if ok else f"{len(frame)} rows, at least {minimum} required")
    if rule.kind == "columns_present":
        missing = [c for c in rule.values if c not in columns]
        return _result(rule, success=not missing, unexpected=len(missing), total=len(rule.values),
                       detail=f"missing: {', '.join(missing)}" if missing else "")
    if rule.kind == "columns_allowed":
        extra = [c for c in columns if c not in rule.values]
        return _result(rule, success=not extra, unexpected=len(extra), total=len(columns),
                       detail=f"not allowed: {', '.join(extra)}" if extra else "")
    forbidden = [c for c in columns if c in rule.values]
    return _result(rule, success=not forbidden, unexpected=len(forbidden), total=len(columns),
                   detail=f"forbidden: {', '.join(forbidden)}" if forbidden else "")


def _result(rule: Rule, *, success: bool, unexpected: int, total: int,
            first_rows: tuple[int, ...] = (), detail: str = "") -> RuleResult:
    percent = 100.0 * unexpected / total if total else 0.0
    return RuleResult(rule=rule.name, column=rule.column, blocking=rule.blocking, success=success,
                      unexpected_count=unexpected, element_count=total,
                      unexpected_percent=round(percent, 4), first_rows=first_rows, detail=detail)
