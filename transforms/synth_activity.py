"""Synthetic campaign activity: canvass attempts (VAN and the French app) and donations.

Attempts per canvassed person are heavy-tailed (a discretized log-normal calibrated so
that its mean is ``contacts_per_person``; a few targets get dozens or hundreds), because
contribution bounds are exactly what the DP release has to get right. Donations respect
the French caps per donor, except a few deliberate outliers that clipping must catch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from statistics import NormalDist

import numpy as np
import polars as pl

from core.vocabulary import CAP_PER_CANDIDATE_CENTS
from transforms.synth_identifiers import (
    EMAIL_STYLES,
    PHONE_STYLES,
    format_phones,
    pick_styles,
    vary_emails,
)
from transforms.synth_people import (
    DonorSummary,
    PeopleChunk,
    epoch_days,
    format_days,
    gather_optional,
)
from transforms.synth_vocab import Vocabulary

MAX_CONTACTS_PER_PERSON = 400
VAN_SHARE = 0.65

VAN_COLUMNS: tuple[str, ...] = (
    "VanID", "DateCanvassed", "ContactType", "InputType", "ResultShortName", "CanvassedBy",
    "SurveyQuestionName", "SurveyResponseName", "Address", "City", "Zip5", "Phone", "Email",
)
FR_COLUMNS: tuple[str, ...] = (
    "id_contact", "date_passage", "nom", "prénom", "adresse", "code_postal", "commune",
    "téléphone", "email", "résultat", "intention", "commentaire", "militant", "durée_min",
)
DONATION_COLUMNS: tuple[str, ...] = (
    "donor_id", "first_name", "last_name", "email", "zip", "amount", "date", "method",
    "recurring",
)

CONTACT_TYPES: tuple[str, ...] = ("Walk", "Phone", "SMS")
INPUT_TYPES: tuple[str, ...] = ("MiniVAN", "Paper", "Phone Bank", "Virtual Phone Bank", "SMS")
VAN_RESULTS: tuple[str, ...] = (
    "Canvassed", "Not Home", "Refused", "Moved", "Inaccessible", "Deceased", "Wrong Number",
    "Left Message", "Busy", "Disconnected", "Hostile", "Language Barrier", "Come Back",
)
FR_RESULTS: tuple[str, ...] = ("Contacté", "Absent", "Refus", "Déménagé", "Ne pas déranger")
#: Every raw result label, VAN first then French; rows hold an index into it.
RESULT_LABELS: tuple[str, ...] = VAN_RESULTS + FR_RESULTS
SURVEY_LABELS: tuple[str, ...] = ("", "1 - Strong Support", "2 - Lean Support", "3 - Undecided",
                                  "4 - Lean Oppose", "5 - Strong Oppose")
SURVEY_QUESTION = "Soutien 2026"

#: Result probabilities per VAN contact type (order of VAN_RESULTS), then the French app's.
_RESULT_P = {
    "Walk": (0.24, 0.50, 0.08, 0.03, 0.04, 0.003, 0, 0, 0, 0, 0.01, 0.01, 0.05),
    "Phone": (0.20, 0.25, 0.08, 0.01, 0, 0.002, 0.07, 0.20, 0.06, 0.05, 0.01, 0.01, 0.05),
    "SMS": (0.20, 0.60, 0.07, 0, 0, 0, 0.06, 0, 0, 0.04, 0.01, 0, 0.02),
    "fr": (0.28, 0.52, 0.10, 0.04, 0.06),
}
_CHANNEL_P = np.array([0.55, 0.35, 0.10])
_DONATION_EUROS = np.array([10, 15, 20, 25, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000,
                            4600])
_DONATION_P = np.array([0.08, 0.05, 0.15, 0.06, 0.08, 0.20, 0.04, 0.14, 0.04, 0.06, 0.03, 0.04,
                        0.02, 0.007, 0.003])
_RECURRING_EUROS = np.array([5, 10, 15, 20, 25, 30, 50])
METHODS: tuple[str, ...] = ("card", "cheque", "transfer")
OUTLIER_SHARE = 0.002
_VANID_SPACE = 900_000_000
_MAX_TENTHS = 600
#: Minutes with a decimal comma, by tenths: 35 → "3,5".
_TENTHS = pl.Series([f"{t // 10},{t % 10}" for t in range(_MAX_TENTHS + 1)], dtype=pl.String)
_PAP_SPACE = 1_000_000_000


def _cum(p: np.ndarray | tuple[float, ...]) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    return np.cumsum(a / a.sum())


def _draw(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(cum, rng.random(n), side="right").clip(0, len(cum) - 1)


def _contact_counts(mu: float, sigma: float, z: np.ndarray) -> np.ndarray:
    return np.floor(np.exp(mu + sigma * z) + 0.5).clip(1, MAX_CONTACTS_PER_PERSON).astype(np.int64)


def calibrate_mu(mean: float, sigma: float) -> float:
    """The log-normal location whose discretized, capped draws average ``mean`` (quadrature)."""
    grid = 4000
    z = np.array([NormalDist().inv_cdf((i + 0.5) / grid) for i in range(grid)])
    lo, hi = -10.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _contact_counts(mid, sigma, z).mean() < mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class ActivityModel:
    """Chunk-invariant settings of the activity draws."""

    vocab: Vocabulary
    canvassed_share: float
    mu: float
    sigma: float
    canvassers: pl.Series
    canvasser_cum: np.ndarray
    start_day: int
    end_day: int
    vanid_a: int
    vanid_b: int
    pap_a: int
    pap_b: int


def build_activity_model(vocab: Vocabulary, rng: np.random.Generator, *, people: int,
                         contacts_per_person: float, canvassed_share: float, start: date,
                         end: date) -> ActivityModel:
    """Calibrate the attempt distribution and draw the pool of canvassers (volunteers)."""
    sigma = 1.0
    n_canvassers = max(10, people // 200)
    first = pl.concat([vocab.first_female, vocab.first_male])
    names = pl.DataFrame({
        "f": first.gather(rng.integers(0, len(first), n_canvassers)),
        "l": vocab.last.gather(rng.integers(0, len(vocab.last), n_canvassers)),
    }).select(pl.concat_str([pl.col("f"), pl.col("l")], separator=" ")).to_series()
    weight = 1.0 / np.arange(1, n_canvassers + 1) ** 0.8  # a few canvassers do most doors
    return ActivityModel(
        vocab=vocab, canvassed_share=canvassed_share,
        mu=calibrate_mu(contacts_per_person, sigma), sigma=sigma,
        canvassers=names, canvasser_cum=_cum(weight),
        start_day=epoch_days(start), end_day=epoch_days(end),
        vanid_a=7_919, vanid_b=int(rng.integers(_VANID_SPACE)),
        pap_a=104_729, pap_b=int(rng.integers(_PAP_SPACE)),
    )


@dataclass(frozen=True)
class ContactRows:
    """One chunk's canvass attempts (both tools), as arrays, plus the two export frames."""

    person: np.ndarray  # index into the chunk
    is_van: np.ndarray
    day: np.ndarray
    result: np.ndarray  # index into RESULT_LABELS
    channel: np.ndarray  # 0 Walk, 1 Phone, 2 SMS, 3 French app door knock
    per_person: np.ndarray  # attempts per person of the chunk
    van: pl.DataFrame
    fr: pl.DataFrame


def _first_in_group(keys: np.ndarray) -> np.ndarray:
    """True on the first row of each run of equal keys (keys sorted)."""
    out = np.ones(len(keys), dtype=bool)
    out[1:] = keys[1:] != keys[:-1]
    return out


def make_contacts(model: ActivityModel, people: PeopleChunk,
                  rng: np.random.Generator) -> ContactRows:
    """Draw every attempt of a chunk's people and write them the way each tool does."""
    n = len(people)
    canvassed = (rng.random(n) < model.canvassed_share) | people.is_canary
    counts = np.where(canvassed, _contact_counts(model.mu, model.sigma, rng.standard_normal(n)),
                      0)
    counts = np.where(people.is_canary, np.maximum(counts, 2), counts)
    person = np.repeat(np.arange(n), counts)
    rows = len(person)
    starts = np.cumsum(counts) - counts
    is_van = rng.random(rows) < VAN_SHARE
    canaries = np.flatnonzero(people.is_canary)
    is_van[starts[canaries]] = True  # a canary is in both canvass exports
    is_van[starts[canaries] + 1] = False
    span = model.end_day - model.start_day + 1
    day = model.start_day + np.floor(span * np.sqrt(rng.random(rows))).astype(np.int64)

    channel = np.where(is_van, _draw(rng, _cum(_CHANNEL_P), rows), 3)
    result = np.zeros(rows, dtype=np.int64)
    for code, name in enumerate(CONTACT_TYPES):
        sel = np.flatnonzero(channel == code)
        result[sel] = _draw(rng, _cum(_RESULT_P[name]), len(sel))
    sel = np.flatnonzero(channel == 3)
    result[sel] = len(VAN_RESULTS) + _draw(rng, _cum(_RESULT_P["fr"]), len(sel))
    talked = (result == 0) | (result == len(VAN_RESULTS))
    random_level = rng.integers(1, 6, size=rows)
    level = np.where(rng.random(rows) < 0.95, people.latent_support[person], random_level)
    survey = np.where(talked & (rng.random(rows) < 0.88), level, 0)
    canvasser = _draw(rng, model.canvasser_cum, rows)

    # identifiers: the first row of a person in each tool always carries phone (and email)
    order = np.lexsort((np.arange(rows), person, ~is_van))
    first_sorted = _first_in_group(person[order] * 2 + is_van[order])
    first = np.empty(rows, dtype=bool)
    first[order] = first_sorted
    with_phone = first | (rng.random(rows) < np.where(is_van, 0.85, 0.80))
    with_email = first | (rng.random(rows) < np.where(is_van, 0.50, 0.30))
    van_phone_styles = {"e164": 0.40, "international": 0.30, "0033": 0.15, "national": 0.15}
    fr_phone_styles = {"spaced": 0.40, "0033": 0.20, "national": 0.20, "dots": 0.20}
    phone_style = np.where(is_van, pick_styles(rng, rows, van_phone_styles, PHONE_STYLES),
                           pick_styles(rng, rows, fr_phone_styles, PHONE_STYLES))
    email_style = pick_styles(rng, rows, {"upper": 0.3, "padded": 0.2, "lower": 0.3,
                                          "upper_padded": 0.1, "title": 0.1}, EMAIL_STYLES)
    input_type = np.select([channel == 0, channel == 1, channel == 2],
                           [np.where(rng.random(rows) < 0.85, 0, 1),
                            np.where(rng.random(rows) < 0.6, 2, 3), np.full(rows, 4)], 0)
    comment = np.where(rng.random(rows) < 0.35,
                       rng.integers(0, len(model.vocab.comments), rows), -1)
    tenths = _durations(rng, result)

    # exports list attempts by date; strings are built once per row, for its own file only
    chrono = np.lexsort((person, day))
    van_rows = chrono[is_van[chrono]]
    fr_rows = chrono[~is_van[chrono]]
    phone_cc, phone_nsn = people.contact_phone

    def phones(r: np.ndarray) -> pl.Series:
        nsn = np.where(with_phone[r], phone_nsn[person[r]], 0)
        return format_phones(phone_cc[person[r]], nsn, phone_style[r])

    def emails(r: np.ndarray) -> pl.Series:
        style = np.where(with_email[r], email_style[r], -1)
        return vary_emails(people.email.gather(person[r]), style)

    def canvassers(r: np.ndarray) -> pl.Series:
        return model.canvassers.gather(canvasser[r])

    pv = person[van_rows]
    van = pl.DataFrame({
        "VanID": pl.Series(100_000_000 + (people.pid[pv] * model.vanid_a + model.vanid_b)
                           % _VANID_SPACE).cast(pl.String),
        "DateCanvassed": format_days(day[van_rows], "%m/%d/%Y"),
        "ContactType": pl.Series(CONTACT_TYPES).gather(channel[van_rows]),
        "InputType": pl.Series(INPUT_TYPES).gather(input_type[van_rows]),
        "ResultShortName": pl.Series(RESULT_LABELS).gather(result[van_rows]),
        "CanvassedBy": canvassers(van_rows),
        "SurveyQuestionName": gather_optional(pl.Series([SURVEY_QUESTION]),
                                              np.where(survey[van_rows] > 0, 0, -1)),
        "SurveyResponseName": gather_optional(pl.Series(SURVEY_LABELS),
                                              np.where(survey[van_rows] > 0, survey[van_rows], -1)),
        "Address": people.address1.gather(pv),
        "City": people.city.gather(pv).str.to_uppercase(),
        "Zip5": people.postcode.gather(pv),
        "Phone": phones(van_rows),
        "Email": emails(van_rows),
    })
    pf = person[fr_rows]
    levels = pl.Series([str(i) for i in range(6)])
    fr = pl.DataFrame({
        "id_contact": pl.select(pl.concat_str([pl.lit("PAP"), pl.lit(pl.Series(
            (people.pid[pf] * model.pap_a + model.pap_b) % _PAP_SPACE).cast(pl.String)
            .str.zfill(9))])).to_series(),
        "date_passage": format_days(day[fr_rows], "%d/%m/%Y"),
        "nom": people.last.gather(pf).str.to_uppercase(),
        "prénom": people.first.gather(pf),
        "adresse": people.address1.gather(pf),
        "code_postal": people.postcode.gather(pf),
        "commune": people.city.gather(pf),
        "téléphone": phones(fr_rows),
        "email": emails(fr_rows),
        "résultat": pl.Series(RESULT_LABELS).gather(result[fr_rows]),
        "intention": gather_optional(levels, np.where(survey[fr_rows] > 0, survey[fr_rows], -1)),
        "commentaire": gather_optional(model.vocab.comments, comment[fr_rows]),
        "militant": canvassers(fr_rows),
        "durée_min": _TENTHS.gather(tenths[fr_rows]),
    })
    return ContactRows(person=person, is_van=is_van, day=day, result=result, channel=channel,
                       per_person=counts, van=van, fr=fr)


def _durations(rng: np.random.Generator, result: np.ndarray) -> np.ndarray:
    """Minutes spent, in tenths: a real conversation lasts longer than an absent door."""
    talked = (result == 0) | (result == len(VAN_RESULTS))
    long = np.exp(rng.normal(1.4, 0.5, len(result))) * 10
    short = rng.uniform(3, 20, len(result))
    return np.where(talked, long, short).round().clip(1, _MAX_TENTHS).astype(np.int64)


@dataclass(frozen=True)
class DonationRows:
    """One chunk's donations: arrays for the ground truth, the export frame, NB's summary."""

    person: np.ndarray
    day: np.ndarray
    cents: np.ndarray
    outlier: np.ndarray
    frame: pl.DataFrame
    summary: DonorSummary


def make_donations(model: ActivityModel, people: PeopleChunk,
                   rng: np.random.Generator) -> DonationRows:
    """Draw donations of the chunk's donors, clip each donor at the candidate cap, then add a
    few deliberate outliers above it (some above the 7,500 € party cap too)."""
    n = len(people)
    donors = np.flatnonzero(people.is_donor)
    d = len(donors)
    span = model.end_day - model.start_day + 1
    recurring = rng.random(d) < 0.15
    first_day = model.start_day + (rng.random(d) * span * 0.6).astype(np.int64)
    monthly = (model.end_day - first_day) // 30 + 1
    k = np.where(recurring, monthly, rng.geometric(0.55, size=d).clip(1, 12))
    person = np.repeat(donors, k)
    group = np.repeat(np.arange(d), k)
    j = np.arange(len(person)) - np.repeat(np.cumsum(k) - k, k)
    rec = recurring[group]
    day = np.where(rec, first_day[group] + 30 * j,
                   model.start_day + (rng.random(len(person)) * span).astype(np.int64))
    euros = np.where(rec, _RECURRING_EUROS[rng.integers(0, len(_RECURRING_EUROS), d)][group],
                     _DONATION_EUROS[_draw(rng, _cum(_DONATION_P), len(person))])
    odd = rng.random(len(person)) < 0.05
    cents = np.where(odd & ~rec, rng.integers(500, 20_000, len(person)), euros * 100)

    order = np.lexsort((day, person))
    person, day, cents, rec = person[order], day[order], cents[order], rec[order]
    total = np.cumsum(cents)
    group_start = np.flatnonzero(_first_in_group(person))
    before_group = np.repeat(total[group_start] - cents[group_start],
                             np.diff(np.append(group_start, len(person))))
    previous = total - cents - before_group
    cents = np.minimum(cents, np.maximum(CAP_PER_CANDIDATE_CENTS - previous, 0))
    keep = cents > 0
    person, day, cents, rec = person[keep], day[keep], cents[keep], rec[keep]
    outlier = np.zeros(len(person), dtype=bool)

    if d:
        n_out = max(1, round(OUTLIER_SHARE * d))
        who = rng.choice(donors, size=min(n_out, d), replace=False)
        extra = rng.integers(5_000, 9_001, size=len(who)) * 100
        person = np.concatenate([person, who])
        day = np.concatenate([day, model.start_day + (rng.random(len(who)) * span).astype(
            np.int64)])
        cents = np.concatenate([cents, extra])
        rec = np.concatenate([rec, np.zeros(len(who), dtype=bool)])
        outlier = np.concatenate([outlier, np.ones(len(who), dtype=bool)])
        order = np.lexsort((day, person))
        person, day, cents, rec, outlier = (person[order], day[order], cents[order], rec[order],
                                            outlier[order])

    count = np.bincount(person, minlength=n)
    total_cents = np.bincount(person, weights=cents, minlength=n).astype(np.int64)
    first_seen = np.zeros(n, dtype=np.int64)
    last_seen = np.zeros(n, dtype=np.int64)
    if len(person):
        starts = np.flatnonzero(_first_in_group(person))
        ends = np.append(starts[1:], len(person)) - 1
        first_seen[person[starts]] = day[starts]
        last_seen[person[ends]] = day[ends]
    method = np.where(rec, np.where(rng.random(len(person)) < 0.7, 0, 2),
                      _draw(rng, _cum((0.7, 0.2, 0.1)), len(person)))
    email = vary_emails(people.email.gather(person),
                        pick_styles(rng, len(person), {"lower": 0.7, "as_is": 0.2, "title": 0.1},
                                    EMAIL_STYLES))
    frame = pl.DataFrame({
        "donor_id": pl.Series(people.pid[person] + 1).cast(pl.String),
        "first_name": people.first.gather(person),
        "last_name": people.last.gather(person),
        "email": email,
        "zip": people.postcode.gather(person),
        "amount": _euros(cents),
        "date": format_days(day, "%Y-%m-%d"),
        "method": pl.Series(METHODS).gather(method),
        "recurring": pl.Series(rec).cast(pl.String),
        "_day": day, "_person": person,
    }).sort(["_day", "_person"], maintain_order=True).drop(["_day", "_person"])
    return DonationRows(person=person, day=day, cents=cents, outlier=outlier, frame=frame,
                        summary=DonorSummary(count=count, total_cents=total_cents,
                                             first_day=first_seen, last_day=last_seen))


def _euros(cents: np.ndarray) -> pl.Series:
    """Cents as a euro amount with a dot: 5000 → ``50.00``."""
    frame = pl.DataFrame({"c": cents})
    return frame.select(pl.concat_str([
        (pl.col("c") // 100).cast(pl.String), pl.lit("."),
        (pl.col("c") % 100).cast(pl.String).str.zfill(2)])).to_series()
