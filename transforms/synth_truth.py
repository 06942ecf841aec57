"""Exact aggregates of a synthetic campaign, computed while it is generated.

Tests and benchmarks compare DP releases against these numbers to measure error; the
pipeline never reads them. They hold counts, sums and medians only, never an identifier.

Counting rules (so that a correct pipeline can reproduce them):

* people: NationBuilder rows with ``do_not_contact=false`` (rows without a lawful basis are
  excluded by ingest), placed by ``Geography.place_postcode`` of their ``primary_zip``;
  a missing or ambiguous postcode counts as ``unplaced``. Ages are exact on
  ``age_reference_date`` (the campaign's last day); no birth date → age band ``unknown``.
* contacts: every attempt row of both canvass exports, placed by the row's own postcode;
  result and channel keys are ``core.vocabulary`` codes through ``RESULT_MAP``/``CHANNEL_MAP``
  (French app rows are door knocks). ``contacts.counted`` holds the same counts without
  the attempts on people whose NationBuilder row says ``do_not_contact``: a withdrawal takes
  the whole person, contacts included, out of the analytics (``pipeline/changes.py``), so
  that is what a correct pipeline holds and what a DP release of it should be compared with.
* donations: every row, placed by the row's ``zip``; amounts in cents.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np

from core.vocabulary import (
    AGE_BANDS,
    CAP_PER_CANDIDATE_CENTS,
    CAP_PER_PARTY_YEAR_CENTS,
    CONTACT_MADE_RESULTS,
    RESULTS,
    age_band,
    iso_weeks,
    months,
)
from transforms.sources import RESULT_MAP
from transforms.synth_activity import (
    MAX_CONTACTS_PER_PERSON,
    RESULT_LABELS,
    ContactRows,
    DonationRows,
)
from transforms.synth_people import (
    CREATED_FROM,
    MAX_AGE,
    MIN_AGE,
    PeopleChunk,
    epoch_days,
)
from transforms.synth_places import UNPLACED, PlaceTable

SUPPORT_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", "unknown")
UNKNOWN = "unknown"
CHANNEL_KEYS: tuple[str, ...] = ("door", "phone", "sms", "door")  # Walk, Phone, SMS, French app


def _day_lookup(first: date, last: date, key_of: Any, keys: tuple[str, ...]) -> np.ndarray:
    """Index into ``keys`` of every day from ``first`` to ``last``."""
    index = {k: i for i, k in enumerate(keys)}
    days = (last - first).days + 1
    return np.array([index[key_of(first + timedelta(days=i))] for i in range(days)],
                    dtype=np.int64)


class GroundTruth:
    """Accumulates exact aggregates chunk by chunk (one instance per generation run)."""

    def __init__(self, places: PlaceTable, start: date, end: date) -> None:
        self.places = places
        self.start, self.end = start, end
        self.dep_keys = places.dep_codes + (UNPLACED,)
        self.region_keys = places.region_codes + (UNPLACED,)
        nd, nr = len(self.dep_keys), len(self.region_keys)
        self.weeks = iso_weeks(start, end)
        self.months = months(start, end)
        self.created_months = months(CREATED_FROM, end)
        self.week_of_day = _day_lookup(
            start, end, lambda d: f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}", self.weeks)
        self.month_of_day = _day_lookup(start, end, lambda d: f"{d:%Y-%m}", self.months)
        self.created_month_of_day = _day_lookup(CREATED_FROM, end, lambda d: f"{d:%Y-%m}",
                                                self.created_months)
        self.band_keys = AGE_BANDS + (UNKNOWN,)
        self.band_of_age = np.array([AGE_BANDS.index(age_band(a) or AGE_BANDS[0])
                                     for a in range(MIN_AGE, MAX_AGE + 1)], dtype=np.int64)
        self.result_of_label = np.array([RESULTS.index(RESULT_MAP[label.lower()])
                                         for label in RESULT_LABELS], dtype=np.int64)
        self.years = tuple(range(start.year, end.year + 1))

        self.people_rows = 0
        self.do_not_contact = 0
        self.missing_postcode = 0
        self.malformed_email = 0
        self.email_opt_in = 0
        self.volunteers = 0
        self.by_dep = np.zeros(nd, dtype=np.int64)
        self.support_by_dep = np.zeros((nd, len(SUPPORT_KEYS)), dtype=np.int64)
        self.band_support = np.zeros((len(self.band_keys), len(SUPPORT_KEYS)), dtype=np.int64)
        self.volunteers_by_dep = np.zeros(nd, dtype=np.int64)
        self.by_created_month = np.zeros(len(self.created_months), dtype=np.int64)

        self.contact_rows = {"van_contacts": 0, "fr_canvass": 0}
        self.by_week = np.zeros(len(self.weeks), dtype=np.int64)
        self.made_by_week = np.zeros(len(self.weeks), dtype=np.int64)
        self.by_result = np.zeros(len(RESULTS), dtype=np.int64)
        self.counted_by_week = np.zeros(len(self.weeks), dtype=np.int64)
        self.counted_by_result = np.zeros(len(RESULTS), dtype=np.int64)
        self.by_channel: dict[str, int] = dict.fromkeys(CHANNEL_KEYS, 0)
        self.contacts_by_dep = np.zeros(nd, dtype=np.int64)
        self.rows_per_person = np.zeros(MAX_CONTACTS_PER_PERSON + 1, dtype=np.int64)

        self.donation_cells: list[np.ndarray] = []
        self.donation_cents: list[np.ndarray] = []
        self.donation_outliers = 0
        self.donors = 0
        self.donors_over_candidate_cap = 0
        self.donors_over_party_year_cap = 0
        self.donations_per_donor = np.zeros(64, dtype=np.int64)
        self._nr = nr

    # -- accumulation -------------------------------------------------------------------
    def add_people(self, people: PeopleChunk) -> None:
        counted = ~people.do_not_contact
        nd = len(self.dep_keys)
        dep = people.placed_dep[counted]
        self.people_rows += len(people)
        self.do_not_contact += int(people.do_not_contact.sum())
        self.missing_postcode += int(people.missing_postcode.sum())
        self.malformed_email += int(people.malformed_email.sum())
        self.email_opt_in += int(people.email_opt_in[counted].sum())
        self.volunteers += int(people.is_volunteer[counted].sum())
        self.by_dep += np.bincount(dep, minlength=nd)
        support = np.where(people.nb_support == 0, 5, people.nb_support - 1)[counted]
        ns = len(SUPPORT_KEYS)
        self.support_by_dep += np.bincount(dep * ns + support, minlength=nd * ns).reshape(nd, ns)
        band = np.where(people.has_birth, self.band_of_age[people.age - MIN_AGE],
                        len(AGE_BANDS))[counted]
        nb = len(self.band_keys)
        self.band_support += np.bincount(band * ns + support, minlength=nb * ns).reshape(nb, ns)
        self.volunteers_by_dep += np.bincount(dep[people.is_volunteer[counted]], minlength=nd)
        created = people.created_day[counted] - epoch_days(CREATED_FROM)
        self.by_created_month += np.bincount(self.created_month_of_day[created],
                                             minlength=len(self.created_months))

    def add_contacts(self, people: PeopleChunk, contacts: ContactRows) -> None:
        offset = contacts.day - epoch_days(self.start)
        week = self.week_of_day[offset]
        result = self.result_of_label[contacts.result]
        made = np.isin(result, [RESULTS.index(r) for r in CONTACT_MADE_RESULTS])
        self.contact_rows["van_contacts"] += int(contacts.is_van.sum())
        self.contact_rows["fr_canvass"] += int((~contacts.is_van).sum())
        self.by_week += np.bincount(week, minlength=len(self.weeks))
        self.made_by_week += np.bincount(week[made], minlength=len(self.weeks))
        self.by_result += np.bincount(result, minlength=len(RESULTS))
        kept = ~people.do_not_contact[contacts.person]
        self.counted_by_week += np.bincount(week[kept], minlength=len(self.weeks))
        self.counted_by_result += np.bincount(result[kept], minlength=len(RESULTS))
        per_channel = np.bincount(contacts.channel, minlength=len(CHANNEL_KEYS))
        for code, key in enumerate(CHANNEL_KEYS):
            self.by_channel[key] += int(per_channel[code])
        self.contacts_by_dep += np.bincount(people.contact_dep[contacts.person],
                                            minlength=len(self.dep_keys))
        self.rows_per_person += np.bincount(contacts.per_person,
                                            minlength=MAX_CONTACTS_PER_PERSON + 1)

    def add_donations(self, people: PeopleChunk, donations: DonationRows) -> None:
        region = self.places.dep_region[people.contact_dep[donations.person]]
        month = self.month_of_day[donations.day - epoch_days(self.start)]
        self.donation_cells.append(region * len(self.months) + month)
        self.donation_cents.append(donations.cents)
        self.donation_outliers += int(donations.outlier.sum())
        count = donations.summary.count
        self.donors += int((count > 0).sum())
        self.donors_over_candidate_cap += int(
            (donations.summary.total_cents > CAP_PER_CANDIDATE_CENTS).sum())
        ny = len(self.years)
        year = (donations.day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)
                + 1970 - self.years[0])
        per_year = np.bincount(donations.person * ny + year, weights=donations.cents,
                               minlength=len(people) * ny)
        self.donors_over_party_year_cap += int(
            (per_year.reshape(len(people), ny) > CAP_PER_PARTY_YEAR_CENTS).any(axis=1).sum())
        per_donor = count[count > 0].clip(0, len(self.donations_per_donor) - 1)
        self.donations_per_donor += np.bincount(per_donor, minlength=len(self.donations_per_donor))

    # -- output ---------------------------------------------------------------------------
    def to_dict(self, generator: dict[str, Any]) -> dict[str, Any]:
        """The ground-truth document (plain JSON types, keys from the public vocabularies)."""
        counted = self.people_rows - self.do_not_contact
        by_region = np.bincount(self.places.dep_region, weights=self.by_dep,
                                minlength=self._nr).astype(np.int64)
        return {
            "generator": generator,
            "people": {
                "rows": self.people_rows,
                "counted": counted,
                "excluded_do_not_contact": self.do_not_contact,
                "dirty_missing_postcode": self.missing_postcode,
                "dirty_malformed_email": self.malformed_email,
                "by_departement": _keyed(self.dep_keys, self.by_dep),
                "by_region": _keyed(self.region_keys, by_region),
                "support_by_departement": {
                    k: _keyed(SUPPORT_KEYS, row) for k, row in zip(self.dep_keys,
                                                                   self.support_by_dep,
                                                                   strict=True)},
                "support_level": _keyed(SUPPORT_KEYS, self.support_by_dep.sum(axis=0)),
                "age_band_by_support": {
                    k: _keyed(SUPPORT_KEYS, row) for k, row in zip(self.band_keys,
                                                                   self.band_support,
                                                                   strict=True)},
                "volunteers": self.volunteers,
                "volunteers_by_departement": _keyed(self.dep_keys, self.volunteers_by_dep),
                "email_opt_in": {"opted_in": self.email_opt_in, "people": counted,
                                 "rate": self.email_opt_in / counted if counted else 0.0},
                "by_created_month": _keyed(self.created_months, self.by_created_month),
            },
            "contacts": self._contacts(),
            "donations": self._donations(),
        }

    def _contacts(self) -> dict[str, Any]:
        hist = self.rows_per_person
        hist_no_zero = hist.copy()
        hist_no_zero[0] = 0
        persons = int(hist_no_zero.sum())
        rows = int((np.arange(len(hist)) * hist_no_zero).sum())
        return {
            "rows": rows,
            "by_source": dict(self.contact_rows),
            "by_iso_week": _keyed(self.weeks, self.by_week),
            "made_by_iso_week": _keyed(self.weeks, self.made_by_week),
            "by_result": _keyed(RESULTS, self.by_result),
            "by_channel": dict(self.by_channel),
            "by_departement": _keyed(self.dep_keys, self.contacts_by_dep),
            "counted": {"rows": int(self.counted_by_week.sum()),
                        "by_iso_week": _keyed(self.weeks, self.counted_by_week),
                        "by_result": _keyed(RESULTS, self.counted_by_result)},
            "rows_per_person": {
                "persons": persons,
                "mean": rows / persons if persons else 0.0,
                "median": _hist_quantile(hist_no_zero, 0.5),
                "p90": _hist_quantile(hist_no_zero, 0.9),
                "p99": _hist_quantile(hist_no_zero, 0.99),
                "max": int(np.flatnonzero(hist_no_zero).max()) if persons else 0,
                "histogram": {str(i): int(c) for i, c in enumerate(hist_no_zero) if c},
            },
        }

    def _donations(self) -> dict[str, Any]:
        cells = np.concatenate(self.donation_cells) if self.donation_cells else np.zeros(0, int)
        cents = np.concatenate(self.donation_cents) if self.donation_cents else np.zeros(0, int)
        order = np.lexsort((cents, cells))
        cells, cents = cells[order], cents[order]
        by_region_month: dict[str, dict[str, dict[str, float | int]]] = {}
        nm = len(self.months)
        bounds = np.searchsorted(cells, np.arange(len(self.region_keys) * nm + 1))
        for r, region in enumerate(self.region_keys):
            by_month: dict[str, dict[str, float | int]] = {}
            for m, month in enumerate(self.months):
                lo, hi = bounds[r * nm + m], bounds[r * nm + m + 1]
                values = cents[lo:hi]
                by_month[month] = {
                    "count": int(hi - lo), "total_cents": int(values.sum()),
                    "median_cents": float(np.median(values)) if hi > lo else 0.0}
            by_region_month[region] = by_month
        month_of_cell = cells % nm
        return {
            "rows": int(len(cents)),
            "total_cents": int(cents.sum()),
            "median_cents": float(np.median(cents)) if len(cents) else 0.0,
            "donors": self.donors,
            "donors_over_candidate_cap": self.donors_over_candidate_cap,
            "donors_over_party_year_cap": self.donors_over_party_year_cap,
            "outlier_rows": self.donation_outliers,
            "by_month": _keyed(self.months, np.bincount(month_of_cell, minlength=nm)),
            "by_region_month": by_region_month,
            "donations_per_donor": {str(i): int(c) for i, c in
                                    enumerate(self.donations_per_donor) if c},
        }


def _keyed(keys: tuple[str, ...], values: np.ndarray) -> dict[str, int]:
    return {k: int(v) for k, v in zip(keys, values, strict=True)}


def _hist_quantile(hist: np.ndarray, q: float) -> int:
    """The smallest value whose cumulative share reaches ``q`` (lower quantile)."""
    total = hist.sum()
    if total == 0:
        return 0
    return int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
