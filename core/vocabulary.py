"""Closed vocabularies: the public key sets that are not geographic.

Every source's result codes, channels and support scales are mapped to these, so a
published group can only ever be one of these values (never a value seen in the data).
"""

from __future__ import annotations

from datetime import date

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")
SUPPORT_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
SUPPORT_LABELS = {1: "strong support", 2: "lean support", 3: "undecided", 4: "lean oppose",
                  5: "strong oppose"}
CHANNELS: tuple[str, ...] = ("door", "phone", "sms", "other")
RESULTS: tuple[str, ...] = (
    "contacted", "not_home", "refused", "moved", "inaccessible", "deceased", "wrong_number",
    "left_message", "busy", "disconnected", "hostile", "language_barrier", "come_back",
    "do_not_disturb", "other",
)
#: A contact "made": the conversation happened (VAN's Canvassed, NationBuilder's answered...).
CONTACT_MADE_RESULTS = frozenset({"contacted", "hostile"})
DONATION_METHODS: tuple[str, ...] = ("card", "cheque", "transfer", "cash", "other")

#: French legal caps, in euro cents (domain.md, "Donations").
CAP_PER_CANDIDATE_CENTS = 460_000
CAP_PER_PARTY_YEAR_CENTS = 750_000
CAP_ANONYMOUS_CENTS = 15_000


def age_band(age: int) -> str | None:
    """Band an age in whole years; minors and ages past 120 are not placed in any band."""
    if age < 18 or age > 120:
        return None
    for band, upper in zip(AGE_BANDS, (24, 34, 44, 54, 64, 74, 200), strict=True):
        if age <= upper:
            return band
    return None


def iso_weeks(start: date, end: date) -> tuple[str, ...]:
    """The ISO weeks (``2026-W05``) from ``start`` to ``end`` inclusive: a declared period's keys."""
    from datetime import timedelta

    weeks: list[str] = []
    day = start - timedelta(days=start.weekday())
    while day <= end:
        year, week, _ = day.isocalendar()
        weeks.append(f"{year}-W{week:02d}")
        day += timedelta(days=7)
    return tuple(weeks)


def months(start: date, end: date) -> tuple[str, ...]:
    """The months (``2026-03``) from ``start`` to ``end`` inclusive."""
    out: list[str] = []
    y, m = start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return tuple(out)
