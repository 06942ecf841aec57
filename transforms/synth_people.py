"""Synthetic supporters, one chunk at a time, and their NationBuilder people export rows.

A chunk is a block of consecutive people (``pid`` from ``lo`` to ``hi``) drawn with its own
seeded generator, so a chunk's content depends only on the seed and its index. People come
in households that share an address (and mostly a last name), never a phone or an email:
identity resolution must not merge two synthetic humans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from transforms.synth_identifiers import (
    EMAIL_STYLES,
    PHONE_STYLES,
    NumberCounters,
    PhonePlan,
    Phones,
    avoid_numbers,
    build_emails,
    canary_nsn,
    format_phones,
    make_phones,
    malform_emails,
    pick_styles,
    vary_emails,
)
from transforms.synth_places import PlaceTable
from transforms.synth_vocab import Vocabulary

EPOCH = date(1970, 1, 1)
MIN_AGE, MAX_AGE = 18, 95
CREATED_FROM = date(2019, 1, 1)

NB_COLUMNS: tuple[str, ...] = (
    "nationbuilder_id", "first_name", "middle_name", "last_name", "email", "email_opt_in",
    "phone_number", "mobile_number", "mobile_opt_in", "do_not_call", "do_not_contact", "born_at",
    "sex", "primary_address1", "primary_address2", "primary_city", "primary_zip",
    "primary_country_code", "support_level", "tag_list", "is_volunteer", "is_donor",
    "donations_count", "donations_amount_in_cents", "first_donated_at", "last_donated_at",
    "signup_type", "created_at", "updated_at", "note", "employer", "occupation",
)

#: Support-level logits (1 = strong support ... 5 = strong oppose) before the area's lean.
_SUPPORT_BASE = np.array([0.0, 0.35, 0.5, 0.3, -0.1])
#: Shares by latent support level 1..5.
_VOLUNTEER_BY_LEVEL = np.array([0.14, 0.07, 0.02, 0.004, 0.002])
_DONOR_BY_LEVEL = np.array([0.22, 0.12, 0.05, 0.01, 0.005])
_HOUSEHOLD_SIZES = np.array([1, 2, 3, 4])
_HOUSEHOLD_P = np.array([0.45, 0.33, 0.12, 0.10])

DIRTY_MISSING_POSTCODE = 0.0025
DIRTY_MALFORMED_EMAIL = 0.003
DO_NOT_CONTACT = 0.01


@dataclass(frozen=True)
class CanaryPerson:
    """A marked identity planted in every export, so downstream tests can prove it never leaks
    and that identity resolution joins its rows across tools."""

    first_name: str
    last_name: str
    email: str
    phone: str
    street: str

    def __post_init__(self) -> None:
        for name in ("first_name", "last_name", "email", "phone", "street"):
            value = getattr(self, name)
            if not value.strip():
                raise ValueError(f"canary {name} must not be empty")
            try:
                value.encode("cp1252")
            except UnicodeEncodeError:
                raise ValueError(f"canary {name} must be writable in cp1252") from None
        if self.email.count("@") != 1 or "." not in self.email.split("@")[1]:
            raise ValueError("canary email must be a well-formed address")
        canary_nsn(self.phone)


@dataclass(frozen=True)
class PeopleModel:
    """Everything a chunk needs that does not change between chunks."""

    vocab: Vocabulary
    places: PlaceTable
    phones: PhonePlan
    region_lean: np.ndarray
    age_cum: np.ndarray
    birth_upper: np.ndarray  # per age - MIN_AGE: last birth day (epoch days) giving that age
    birth_span: np.ndarray  # number of birth days giving that age
    reference: date  # ages are exact on this day (the campaign end)
    start: date
    end: date
    canaries: tuple[CanaryPerson, ...]
    canary_nsns: np.ndarray


def epoch_days(day: date) -> int:
    return (day - EPOCH).days


def _same_day_years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def build_people_model(vocab: Vocabulary, places: PlaceTable, rng: np.random.Generator, *,
                       start: date, end: date,
                       canaries: tuple[CanaryPerson, ...]) -> PeopleModel:
    ages = np.arange(MIN_AGE, MAX_AGE + 1)
    weight = np.where(ages < 65, 1.0, np.where(ages < 75, 1.05, 0.9 - (ages - 75) * 0.04))
    weight = weight.clip(0.08, None)
    upper = np.array([epoch_days(_same_day_years_before(end, int(a))) for a in ages])
    lower = np.array([epoch_days(_same_day_years_before(end, int(a) + 1)) + 1 for a in ages])
    return PeopleModel(
        vocab=vocab, places=places, phones=PhonePlan.from_rng(rng),
        region_lean=rng.normal(0.0, 0.6, size=len(places.region_codes)),
        age_cum=np.cumsum(weight / weight.sum()),
        birth_upper=upper, birth_span=upper - lower + 1, reference=end, start=start, end=end,
        canaries=canaries,
        canary_nsns=np.array([canary_nsn(c.phone) for c in canaries], dtype=np.int64),
    )


@dataclass(frozen=True)
class PeopleChunk:
    """People ``lo``..``hi`` as column arrays; string columns are polars Series."""

    pid: np.ndarray
    commune: np.ndarray  # index into the place table's communes
    postcode_idx: np.ndarray
    placed_dep: np.ndarray  # where the NationBuilder row's postcode places them
    contact_dep: np.ndarray  # where their real postcode places them (other exports)
    missing_postcode: np.ndarray
    first: pl.Series
    last: pl.Series
    middle: pl.Series
    sex: np.ndarray  # 0 female, 1 male, 2 not given
    age: np.ndarray
    has_birth: np.ndarray
    birth_day: np.ndarray
    latent_support: np.ndarray  # 1..5
    nb_support: np.ndarray  # 0 = unknown
    address1: pl.Series
    address2: pl.Series
    city: pl.Series
    postcode: pl.Series
    email: pl.Series  # the true address, None when the person gave none
    nb_email: pl.Series  # as written in NationBuilder (maybe malformed)
    malformed_email: np.ndarray
    phones: Phones
    email_opt_in: np.ndarray
    mobile_opt_in: np.ndarray
    do_not_call: np.ndarray
    do_not_contact: np.ndarray
    is_volunteer: np.ndarray
    is_donor: np.ndarray
    is_canary: np.ndarray
    created_day: np.ndarray
    updated_day: np.ndarray
    tag: np.ndarray
    note: np.ndarray
    employer: np.ndarray
    occupation: np.ndarray

    def __len__(self) -> int:
        return len(self.pid)

    @property
    def contact_phone(self) -> tuple[np.ndarray, np.ndarray]:
        """The number other tools hold: the mobile, else the landline."""
        p = self.phones
        has_mobile = p.mobile_nsn != 0
        return (np.where(has_mobile, p.mobile_cc, p.land_cc),
                np.where(has_mobile, p.mobile_nsn, p.land_nsn))


def _null_where(mask: np.ndarray, values: pl.Series) -> pl.Series:
    """``values`` with an empty cell where ``mask`` (only the validity bits change)."""
    return values.clone().set(pl.Series(mask, dtype=pl.Boolean), None)


def _households(rng: np.random.Generator, n: int, singles: int) -> np.ndarray:
    """Household number of each person; the first ``singles`` people live alone."""
    sizes = rng.choice(_HOUSEHOLD_SIZES, size=n + 1, p=_HOUSEHOLD_P)
    sizes = np.concatenate([np.ones(singles, dtype=np.int64), sizes])
    return np.repeat(np.arange(len(sizes)), sizes)[:n]


def make_people(model: PeopleModel, rng: np.random.Generator, lo: int, hi: int, total: int,
                counters: NumberCounters) -> PeopleChunk:
    """Draw people ``lo``..``hi`` of ``total``; the first chunk also covers every département.

    The very last person signed up on the campaign's last day: readers take the newest
    ``created_at`` as the day ages are computed at, so the ground truth's ages match theirs.
    """
    n = hi - lo
    pid = np.arange(lo, hi, dtype=np.int64)
    places, vocab = model.places, model.vocab
    canaries = model.canaries if lo == 0 else ()
    k = min(len(canaries), n)

    household = _households(rng, n, k)
    n_households = int(household[-1]) + 1
    pair_of_household = places.sample(rng, n_households)
    if lo == 0:  # every département at least once, whatever the size
        order = rng.permutation(len(places.dep_codes))
        for h, d in zip(range(k, n_households), order, strict=False):
            pair_of_household[h] = places.sample_in_departement(rng, int(d))
    head = np.searchsorted(household, household, side="left")  # first member's index
    pair = pair_of_household[household]
    commune = places.pair_commune[pair]
    postcode_idx = places.pair_postcode[pair]
    region = places.commune_region[commune]
    real_dep = places.commune_dep[commune]

    sex = np.where(rng.random(n) < 0.52, 0, 1)
    n_female = len(vocab.first_female)
    female_idx = rng.integers(0, n_female, size=n)
    male_idx = rng.integers(0, len(vocab.first_male), size=n)
    is_f = sex == 0
    first_idx = np.where(is_f, female_idx, n_female + male_idx)  # into female + male names
    first = vocab.first_names.gather(first_idx)
    first_ascii = vocab.first_names_ascii.gather(first_idx)
    middle_idx = np.where(is_f, rng.integers(0, n_female, n),
                          n_female + rng.integers(0, len(vocab.first_male), n))
    middle = _null_where(rng.random(n) >= 0.10, vocab.first_names.gather(middle_idx))
    own_last = rng.integers(0, len(vocab.last), size=n)
    last_idx = np.where(rng.random(n) < 0.8, own_last[head], own_last)
    last = vocab.last.gather(last_idx)
    last_ascii = vocab.last_ascii.gather(last_idx)
    sex = np.where(rng.random(n) < 0.03, 2, sex)

    age = MIN_AGE + np.searchsorted(model.age_cum, rng.random(n), side="right").clip(
        0, MAX_AGE - MIN_AGE)
    offset = age - MIN_AGE
    birth_day = model.birth_upper[offset] - (rng.random(n) * model.birth_span[offset]).astype(
        np.int64)
    has_birth = rng.random(n) >= 0.08

    lean = model.region_lean[region] + (age - 50) / 40 * 0.25
    logits = _SUPPORT_BASE[None, :] + lean[:, None] * (2 - np.arange(5))[None, :] * 0.6
    prob = np.exp(logits)
    cum = np.cumsum(prob / prob.sum(axis=1, keepdims=True), axis=1)
    latent = 1 + (rng.random(n)[:, None] > cum).sum(axis=1).clip(0, 4)
    nb_support = np.where(rng.random(n) < 0.65, latent, 0)

    street_idx = rng.integers(0, len(vocab.streets), size=n)[head]
    number = (1 + np.floor(rng.lognormal(2.3, 1.0, size=n)).clip(0, 240).astype(np.int64))[head]
    suffix_code = np.searchsorted([0.96, 0.99], rng.random(n))[head]
    addr2_idx = np.where(rng.random(n) < 0.2, rng.integers(0, len(vocab.address2), n), -1)[head]
    addr_frame = pl.DataFrame({"num": number, "sfx": suffix_code,
                               "street": vocab.streets.gather(street_idx)})
    address1 = addr_frame.select(pl.concat_str([
        pl.col("num").cast(pl.String),
        pl.when(pl.col("sfx") == 1).then(pl.lit(" bis")).when(pl.col("sfx") == 2)
        .then(pl.lit(" ter")).otherwise(pl.lit("")),
        pl.lit(" "), pl.col("street")])).to_series()
    address2 = _null_where(addr2_idx < 0, vocab.address2.gather(addr2_idx.clip(0, None)))
    city = places.commune_names.gather(commune)
    postcode = places.postcodes.gather(postcode_idx)

    not_canary = np.arange(n) >= k
    has_email = rng.random(n) < 0.85
    domain = vocab.domains.gather(np.searchsorted(vocab.domain_cum, rng.random(n), side="right")
                                  .clip(0, len(vocab.domain_cum) - 1))
    email = build_emails(first_ascii, last_ascii, pid + 1, domain, rng.integers(0, 5, size=n))
    phones = make_phones(model.phones, places, rng, pid, real_dep, region, counters)
    phones = Phones(phones.mobile_cc,
                    avoid_numbers(phones.mobile_nsn, model.canary_nsns, pid),
                    phones.land_cc, avoid_numbers(phones.land_nsn, model.canary_nsns, pid))
    if k:
        has_email[:k] = True
        email = email.scatter(list(range(k)), [c.email for c in canaries[:k]])
        first = first.scatter(list(range(k)), [c.first_name for c in canaries[:k]])
        last = last.scatter(list(range(k)), [c.last_name for c in canaries[:k]])
        address1 = address1.scatter(list(range(k)), [c.street for c in canaries[:k]])
        phones.mobile_cc[:k] = 33
        phones.mobile_nsn[:k] = model.canary_nsns[:k]
    email = _null_where(~has_email, email)
    malformed = has_email & not_canary & (rng.random(n) < DIRTY_MALFORMED_EMAIL)
    nb_email = vary_emails(email, pick_styles(rng, n, {"as_is": 0.85, "title": 0.10,
                                                       "padded": 0.05}, EMAIL_STYLES))
    nb_email = malform_emails(nb_email, np.where(malformed, rng.integers(0, 4, size=n), -1))
    missing_postcode = not_canary & (rng.random(n) < DIRTY_MISSING_POSTCODE)
    postcode_dep = places.postcode_dep[postcode_idx]

    level = latent - 1
    is_volunteer = rng.random(n) < _VOLUNTEER_BY_LEVEL[level]
    is_donor = (rng.random(n) < _DONOR_BY_LEVEL[level]) | ~not_canary
    start_day, end_day = epoch_days(model.start), epoch_days(model.end)
    from_day = epoch_days(CREATED_FROM)
    during = rng.random(n) < 0.45
    created = np.where(during, start_day + (rng.random(n) * (end_day - start_day + 1)),
                       from_day + rng.random(n) * (start_day - from_day)).astype(np.int64)
    if hi == total:
        created[-1] = end_day
    updated = created + (rng.random(n) * (end_day - created + 1)).astype(np.int64)

    return PeopleChunk(
        pid=pid, commune=commune, postcode_idx=postcode_idx,
        placed_dep=np.where(missing_postcode, places.unplaced_dep, postcode_dep),
        contact_dep=postcode_dep, missing_postcode=missing_postcode,
        first=first, last=last, middle=middle, sex=sex, age=age, has_birth=has_birth,
        birth_day=birth_day, latent_support=latent, nb_support=nb_support,
        address1=address1, address2=address2, city=city, postcode=postcode,
        email=email, nb_email=nb_email, malformed_email=malformed, phones=phones,
        email_opt_in=has_email & (rng.random(n) < 0.6),
        mobile_opt_in=(phones.mobile_nsn != 0) & (rng.random(n) < 0.45),
        do_not_call=rng.random(n) < 0.03,
        do_not_contact=not_canary & (rng.random(n) < DO_NOT_CONTACT),
        is_volunteer=is_volunteer, is_donor=is_donor, is_canary=~not_canary,
        created_day=created, updated_day=updated,
        tag=np.where(rng.random(n) < 0.4, 0, rng.integers(1, len(vocab.tag_lists), size=n)),
        note=np.where(rng.random(n) < 0.15, rng.integers(0, len(vocab.notes), size=n), -1),
        employer=np.where(rng.random(n) < 0.45, rng.integers(0, len(vocab.employers), size=n), -1),
        occupation=np.where(rng.random(n) < 0.5, rng.integers(0, len(vocab.occupations), size=n),
                            -1),
    )


def format_days(days: np.ndarray, fmt: str, missing: np.ndarray | None = None) -> pl.Series:
    """Epoch days written with ``fmt``; ``None`` where ``missing``. Each distinct day is
    formatted once (a chunk has far fewer distinct days than rows)."""
    distinct, inverse = np.unique(days, return_inverse=True)
    text = pl.Series(distinct.astype(np.int32)).cast(pl.Date).dt.strftime(fmt)
    if missing is None:
        return text.gather(inverse)
    return gather_optional(text, np.where(missing, -1, inverse))


def gather_optional(table: pl.Series, idx: np.ndarray) -> pl.Series:
    """``table[idx]``, with ``None`` (an empty cell) where ``idx`` is negative."""
    return _null_where(idx < 0, table.gather(idx.clip(0, None)))


@dataclass(frozen=True)
class DonorSummary:
    """Per person of a chunk: what NationBuilder shows of their donations."""

    count: np.ndarray
    total_cents: np.ndarray
    first_day: np.ndarray
    last_day: np.ndarray


def people_frame(model: PeopleModel, people: PeopleChunk, donors: DonorSummary,
                 rng: np.random.Generator) -> pl.DataFrame:
    """The NationBuilder people export rows of a chunk (all strings, ``None`` = empty cell)."""
    n = len(people)
    vocab = model.vocab
    p = people.phones
    nb_styles = {"spaced": 0.40, "national": 0.25, "apostrophe": 0.15, "international": 0.10,
                 "dots": 0.10}
    mobile_as_phone = (p.land_nsn == 0) & (rng.random(n) < 0.5)
    phone_cc = np.where(mobile_as_phone, p.mobile_cc, p.land_cc)
    phone_nsn = np.where(mobile_as_phone, p.mobile_nsn, p.land_nsn)
    zip_apostrophe = rng.random(n) < 0.25
    zips = pl.DataFrame({"z": people.postcode, "a": zip_apostrophe}).select(
        pl.when(pl.col("a") & pl.col("z").str.starts_with("0"))
        .then(pl.concat_str([pl.lit("'"), pl.col("z")])).otherwise(pl.col("z"))).to_series()
    no_donation = donors.count == 0
    columns: dict[str, pl.Series] = {
        "nationbuilder_id": pl.Series(people.pid + 1).cast(pl.String),
        "first_name": people.first,
        "middle_name": people.middle,
        "last_name": people.last,
        "email": people.nb_email,
        "email_opt_in": pl.Series(people.email_opt_in).cast(pl.String),
        "phone_number": format_phones(phone_cc, phone_nsn,
                                      pick_styles(rng, n, nb_styles, PHONE_STYLES)),
        "mobile_number": format_phones(p.mobile_cc, p.mobile_nsn,
                                       pick_styles(rng, n, nb_styles, PHONE_STYLES)),
        "mobile_opt_in": pl.Series(people.mobile_opt_in).cast(pl.String),
        "do_not_call": pl.Series(people.do_not_call).cast(pl.String),
        "do_not_contact": pl.Series(people.do_not_contact).cast(pl.String),
        "born_at": format_days(people.birth_day, "%m/%d/%Y", ~people.has_birth),
        "sex": pl.Series(["F", "M", ""]).gather(people.sex).replace("", None),
        "primary_address1": people.address1,
        "primary_address2": people.address2,
        "primary_city": people.city,
        "primary_zip": _null_where(people.missing_postcode, zips),
        "primary_country_code": pl.Series(["FR"] * n),
        "support_level": _null_where(people.nb_support == 0,
                                     pl.Series(people.nb_support).cast(pl.String)),
        "tag_list": _null_where(people.tag == 0, vocab.tag_lists.gather(people.tag)),
        "is_volunteer": pl.Series(people.is_volunteer).cast(pl.String),
        "is_donor": pl.Series(~no_donation).cast(pl.String),
        "donations_count": pl.Series(donors.count).cast(pl.String),
        "donations_amount_in_cents": pl.Series(donors.total_cents).cast(pl.String),
        "first_donated_at": format_days(donors.first_day, "%m/%d/%Y", no_donation),
        "last_donated_at": format_days(donors.last_day, "%m/%d/%Y", no_donation),
        "signup_type": pl.Series(["0"] * n),
        "created_at": format_days(people.created_day, "%m/%d/%Y"),
        "updated_at": format_days(people.updated_day, "%m/%d/%Y"),
        "note": gather_optional(vocab.notes, people.note),
        "employer": gather_optional(vocab.employers, people.employer),
        "occupation": gather_optional(vocab.occupations, people.occupation),
    }
    return pl.DataFrame({name: columns[name].alias(name) for name in NB_COLUMNS})


__all__ = ["NB_COLUMNS", "CanaryPerson", "DonorSummary", "PeopleChunk", "PeopleModel",
           "build_people_model", "format_days", "gather_optional", "make_people", "people_frame"]
