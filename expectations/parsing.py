"""Dates and amounts judged by the very parsers the pipeline uses, for the fast path and GX alike.

A raw suite that accepted a date the normalizer then rejects (or the reverse) would be worse
than none, so the date and amount rules call :mod:`transforms.normalize`'s parsers: NationBuilder's
``'`` Excel guard, a time after the date, ``1 234,56`` and ``€`` are accepted exactly as the
normalizer accepts them. Each distinct value is parsed once.

>>> import pandas as pd
>>> unparseable_dates(pd.Series(["01/15/2026", "'04/23/1961", "2026-01-15", "15/01/2026"]),
...                   "%m/%d/%Y").tolist()
[False, False, False, True]
>>> amount_rule_broken(pd.Series(["12,50", "-3", "douze"]), ",", "negative_amount").tolist()
[False, True, False]
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

AmountRule = Literal["amount_format", "negative_amount"]


def unparseable_dates(values: pd.Series, date_format: str,
                      date_order: str | None = None) -> pd.Series:
    """True where a (non-null) value is not a date for the normalizer: ISO 8601, numeric
    day/month/year in ``date_order`` (``dmy``/``mdy``, default: ``date_format``'s), or
    ``date_format`` itself."""
    from transforms.dates import Order, parse_dates

    text = pa.array(values.astype(str), type=pa.string())
    order: Order | None = "mdy" if date_order == "mdy" else "dmy" if date_order == "dmy" \
        else None
    parsed = parse_dates(text, date_format, order=order)
    bad = pc.is_null(parsed)
    return pd.Series(bad.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def amount_rule_broken(values: pd.Series, decimal: str, rule: AmountRule) -> pd.Series:
    """True where a (non-null) value breaks ``rule`` for the normalizer's amount parser."""
    from transforms.normalize import parse_amount

    text = values.astype(str)
    uniques = text.unique()
    broken = {u for u in uniques if parse_amount(str(u), decimal)[1] == rule}
    if not broken:
        return pd.Series(False, index=values.index, dtype=bool)
    return pd.Series(text.isin(list(broken)).to_numpy(dtype=bool), index=values.index, dtype=bool)
