"""Cadence: which period a release covers, which queries are due, when the cap runs out.

A query of the plan is released ``daily``, ``weekly`` (ISO week) or ``monthly`` (calendar
month). Every charge states the period it covers (``"period"`` in the query JSON of its
ledger entry, so it is hashed and signed with the rest). A query is **due** on a run's
logical date when its period holds no admitted release yet: the release DAG releases only
what is due, and the accountant re-checks it inside the admission's transaction, so two runs
racing in one week never both charge the weekly query. Dates are always parameters (the run's
logical date), never read from the clock here.

The **forecast** is the day the cap runs out at the plan's cadences: what is left, divided by
the plan's average spend per day (:func:`privacy.plan.daily_spend`), counted from a given day.

>>> period_of("weekly", date(2026, 1, 1)), period_of("monthly", date(2026, 1, 31))
('2026-W01', '2026-01')
>>> forecast_exhaustion(Fraction(1), Fraction(1, 10), date(2026, 1, 1)).isoformat()
'2026-01-11'
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

#: Key of the period in a charge's query JSON.
PERIOD_KEY = "period"


def period_of(cadence: str, day: date) -> str:
    """The period of ``cadence`` that holds ``day``: ``2026-03-14``, ``2026-W11``, ``2026-03``."""
    if cadence == "daily":
        return day.isoformat()
    if cadence == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if cadence == "monthly":
        return f"{day.year}-{day.month:02d}"
    raise ValueError(f"unknown cadence {cadence!r}")


def stamp_period(query_json: str, period: str) -> str:
    """The canonical query JSON of a charge, stating the period it covers."""
    from privacy.ledger import canonical_json

    document = json.loads(query_json)
    document[PERIOD_KEY] = period
    return canonical_json(document)


def charge_period(query_json: str) -> tuple[str, str] | None:
    """``(query name, period)`` a charge covers, or None (charged without a period)."""
    try:
        document = json.loads(query_json)
    except ValueError:
        return None
    if not isinstance(document, dict) or PERIOD_KEY not in document:
        return None
    return str(document.get("name")), str(document[PERIOD_KEY])


@dataclass(frozen=True)
class Coverage:
    """Who covers a (query, period): a run id and whether its result was recorded."""

    run_id: str | None
    recorded: bool


def coverage(entries: Iterable[Any]) -> dict[tuple[str, str], list[Coverage]]:
    """Per (query name, period), the ledger entries that cover it (``LedgerEntry``-like)."""
    found: dict[tuple[str, str], list[Coverage]] = {}
    for entry in entries:
        key = charge_period(entry.query)
        if key is not None:
            found.setdefault(key, []).append(Coverage(entry.run_id, entry.result_hash is not None))
    return found


def covered(cover: Iterable[Coverage], run_id: str) -> bool:
    """A period is covered by a recorded release, or by one admitted by *another* run (still
    producing it, or crashed: its own retry replays or re-admits it). An unfinished charge of
    the same run does not cover it: that run's retry admits the query again, charged again."""
    return any(c.recorded or c.run_id != run_id for c in cover)


def forecast_exhaustion(remaining: Fraction, per_day: Fraction, as_of: date) -> date | None:
    """The first day the remaining budget no longer covers a day's average spend, counted
    from ``as_of`` (the day whose spend is already in ``remaining``); None when nothing is
    spent per day."""
    if per_day <= 0:
        return None
    days = max(remaining, Fraction(0)) // per_day
    return as_of + timedelta(days=int(days))


@dataclass(frozen=True)
class Forecast:
    """The cap's horizon at the plan's cadences (exact ρ as text, display decimals)."""

    dataset_id: str
    as_of: str
    per_day_rho: str
    remaining_rho: str
    days_left: int | None
    exhausted_on: str | None
    cadences: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "as_of": self.as_of,
                "per_day_rho": self.per_day_rho, "remaining_rho": self.remaining_rho,
                "days_left": self.days_left, "exhausted_on": self.exhausted_on,
                "cadences": self.cadences}


def forecast(plan: Any, remaining: Fraction, as_of: date) -> Forecast:
    """The forecast of ``plan``'s dataset: when ``remaining`` runs out at its cadences."""
    from privacy.ledger import fraction_text
    from privacy.plan import daily_spend

    per_day = daily_spend(plan)
    end = forecast_exhaustion(remaining, per_day, as_of)
    cadences: dict[str, list[str]] = {}
    for query in plan.releases:
        cadences.setdefault(query.cadence, []).append(query.name)
    return Forecast(dataset_id=plan.dataset_id, as_of=as_of.isoformat(),
                    per_day_rho=fraction_text(per_day), remaining_rho=fraction_text(remaining),
                    days_left=None if end is None else (end - as_of).days,
                    exhausted_on=None if end is None else end.isoformat(), cadences=cadences)
