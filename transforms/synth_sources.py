"""Synthetic exports of the other tools campaigns use, drawn from the same people.

Beside the four core exports (:mod:`transforms.synth`), a campaign's landing folder receives
an Action Network activists report, an Action Populaire people export, NationBuilder's
contacts and donations exports, and a VAN "My Voters" list. Each is written here in its
tool's own columns and dialect from a chunk's people and activity, with its **own** seeded
generator (``default_rng([seed, 2, chunk])``), so the core files stay byte-identical whether
or not these are written. They are for reading tests (every profile, every re-save, the
canary sweep); the ground truth describes the core exports only.

Column names follow the tools' documented exports where we could confirm them (Action
Network's ``uuid``/``can2_*`` report columns, Action Populaire's ``location_*`` fields, the
NationBuilder API's donation and contact attributes, VAN's ``VanID``/``Zip5``); see the README's
table of sources for what is an assumption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from transforms.synth_activity import (
    _VANID_SPACE,
    ActivityModel,
    ContactRows,
    DonationRows,
)
from transforms.synth_identifiers import PHONE_STYLES, format_phones
from transforms.synth_people import PeopleChunk, PeopleModel, format_days, gather_optional

AN_FILE = "action_network_people.csv"
AP_FILE = "action_populaire.csv"
NB_CONTACTS_FILE = "nationbuilder_contacts.csv"
NB_DONATIONS_FILE = "nationbuilder_donations.csv"
VAN_PEOPLE_FILE = "van_my_voters.txt"

AN_COLUMNS: tuple[str, ...] = (
    "uuid", "first_name", "last_name", "email", "zip_code", "can2_user_address",
    "can2_user_city", "can2_phone", "can2_user_tags", "can2_subscription_status",
    "can2_sms_status", "Commentaire",
)
AP_COLUMNS: tuple[str, ...] = (
    "id", "first_name", "last_name", "email", "contact_phone", "location_zip", "location_city",
    "location_citycode", "location_country", "created", "address", "gender", "date_of_birth",
    "newsletters", "tags",
)
NB_CONTACT_COLUMNS: tuple[str, ...] = (
    "id", "person_id", "sender_id", "method", "status", "created_at", "note",
)
NB_DONATION_COLUMNS: tuple[str, ...] = (
    "id", "donor_id", "first_name", "last_name", "email", "billing_zip", "amount",
    "succeeded_at", "payment_type_name", "note",
)
VAN_PEOPLE_COLUMNS: tuple[str, ...] = (
    "VanID", "LastName", "FirstName", "MiddleName", "Address", "City", "State", "Zip5",
    "HomePhone", "CellPhone", "Email", "Sex", "DOB",
)

#: profile -> (file name, columns, delimiter, UTF-8 BOM)
EXTRA_EXPORTS: dict[str, tuple[str, tuple[str, ...], str, bool]] = {
    "action_network_people": (AN_FILE, AN_COLUMNS, ",", False),
    "action_populaire": (AP_FILE, AP_COLUMNS, ",", False),
    "nationbuilder_contacts": (NB_CONTACTS_FILE, NB_CONTACT_COLUMNS, ",", True),
    "nationbuilder_donations": (NB_DONATIONS_FILE, NB_DONATION_COLUMNS, ",", True),
    "van_people": (VAN_PEOPLE_FILE, VAN_PEOPLE_COLUMNS, "\t", False),
}

#: VAN result index (synth_activity.VAN_RESULTS) -> NationBuilder contact status.
_NB_STATUS = ("meaningfulinteraction", "noanswer", "refused", "other", "inaccessible", "other",
              "badinfo", "leftmessage", "noanswer", "badinfo", "notinterested", "other",
              "noanswer")
_NB_METHOD = ("door_knock", "phone_call", "text_message")
_NB_PAYMENT = {"card": "Credit Card", "cheque": "Check", "transfer": "ACH"}
_E164 = PHONE_STYLES.index("e164")
_NATIONAL = PHONE_STYLES.index("national")


@dataclass
class ExtraCounters:
    """Running ids across chunks (NationBuilder numbers contacts and donations in order)."""

    contacts: int = 0
    donations: int = 0


def _uuids(pid: np.ndarray, salt: int) -> pl.Series:
    """Deterministic UUID-shaped ids (version 4 layout) for people ``pid``."""
    a = (pid.astype(np.uint64) * np.uint64(2654435761) + np.uint64(salt)) % np.uint64(2 ** 32)
    b = (pid.astype(np.uint64) * np.uint64(40503) + np.uint64(salt * 7)) % np.uint64(2 ** 48)
    return pl.Series([f"{x:08x}-{(p >> 16) & 0xffff:04x}-4{p & 0xfff:03x}-8{x & 0xfff:03x}-{y:012x}"
                      for x, y, p in zip(a.tolist(), b.tolist(), pid.tolist(), strict=True)],
                     dtype=pl.String)


def extra_frames(model: PeopleModel, activity: ActivityModel, people: PeopleChunk,
                 contacts: ContactRows, donations: DonationRows, rng: np.random.Generator,
                 counters: ExtraCounters) -> dict[str, pl.DataFrame]:
    """One chunk's rows of every extra export (profile -> frame of strings)."""
    n = len(people)
    places = model.places
    p = people.phones
    cc, nsn = people.contact_phone
    has_email = people.email.is_not_null().to_numpy() & ~people.malformed_email
    frames: dict[str, pl.DataFrame] = {}

    # Action Network: activists with an e-mail (its dedup key), everyone opted in.
    an = np.flatnonzero(has_email & ((rng.random(n) < 0.35) | people.is_canary))
    an_phone = np.where(rng.random(len(an)) < 0.5, nsn[an], 0)
    frames["action_network_people"] = pl.DataFrame({
        "uuid": _uuids(people.pid[an], 11),
        "first_name": people.first.gather(an),
        "last_name": people.last.gather(an),
        "email": people.email.gather(an).str.to_lowercase(),
        "zip_code": people.postcode.gather(an),
        "can2_user_address": people.address1.gather(an),
        "can2_user_city": people.city.gather(an),
        "can2_phone": format_phones(cc[an], an_phone, np.full(len(an), _E164)),
        "can2_user_tags": pl.Series(["Pétition 2026, Bénévole", "Pétition 2026", None])
        .gather(rng.integers(0, 3, len(an))),
        "can2_subscription_status": pl.Series(["subscribed", "unsubscribed"])
        .gather((rng.random(len(an)) < 0.06).astype(np.int64)),
        "can2_sms_status": gather_optional(pl.Series(["subscribed", "unsubscribed"]),
                                           np.where(an_phone != 0,
                                                    (rng.random(len(an)) < 0.2).astype(np.int64),
                                                    -1)),
        "Commentaire": pl.select(pl.concat_str([pl.lit("rencontré·e au marché, "),
                                                pl.lit(people.first.gather(an))])).to_series(),
    })

    # Action Populaire: its own uuid, the INSEE commune code, ISO dates.
    ap = np.flatnonzero(has_email & ((rng.random(n) < 0.25) | people.is_canary))
    created = format_days(people.created_day[ap], "%Y-%m-%d")
    frames["action_populaire"] = pl.DataFrame({
        "id": _uuids(people.pid[ap], 29),
        "first_name": people.first.gather(ap),
        "last_name": people.last.gather(ap),
        "email": people.email.gather(ap),
        "contact_phone": format_phones(cc[ap], nsn[ap], np.full(len(ap), _E164)),
        "location_zip": people.postcode.gather(ap),
        "location_city": people.city.gather(ap),
        "location_citycode": places.commune_codes.gather(people.commune[ap]),
        "location_country": pl.Series(["FR"] * len(ap), dtype=pl.String),
        "created": pl.select(pl.concat_str([pl.lit(created), pl.lit("T09:30:00+01:00")]))
        .to_series(),
        "address": people.address1.gather(ap),
        "gender": pl.Series(["F", "M", None]).gather(people.sex[ap]),
        "date_of_birth": format_days(people.birth_day[ap], "%Y-%m-%d", ~people.has_birth[ap]),
        "newsletters": pl.Series(["LFI", "LFI,2022_exceptionnel", None])
        .gather(rng.integers(0, 3, len(ap))),
        "tags": pl.Series(["groupe d'action", None]).gather(rng.integers(0, 2, len(ap))),
    })

    # NationBuilder contacts: the VAN attempts as NationBuilder records them, numbered.
    rows = np.flatnonzero(contacts.is_van)
    rows = rows[np.lexsort((contacts.person[rows], contacts.day[rows]))]
    who = contacts.person[rows]
    ids = counters.contacts + 1 + np.arange(len(rows))
    counters.contacts += len(rows)
    notes = np.where(rng.random(len(rows)) < 0.3,
                     rng.integers(0, len(activity.vocab.comments), len(rows)), -1)
    frames["nationbuilder_contacts"] = pl.DataFrame({
        "id": pl.Series(ids).cast(pl.String),
        "person_id": pl.Series(people.pid[who] + 1).cast(pl.String),
        "sender_id": pl.Series(900_000 + rng.integers(1, 60, len(rows))).cast(pl.String),
        "method": pl.Series(_NB_METHOD).gather(contacts.channel[rows]),
        "status": pl.Series(_NB_STATUS).gather(contacts.result[rows]),
        "created_at": format_days(contacts.day[rows], "%m/%d/%Y"),
        "note": gather_optional(activity.vocab.comments, notes),
    })

    # NationBuilder donations: the donations export, numbered, US dates, payment names.
    d = donations.frame
    ids = counters.donations + 1 + np.arange(d.height)
    counters.donations += d.height
    frames["nationbuilder_donations"] = pl.DataFrame({
        "id": pl.Series(ids).cast(pl.String),
        "donor_id": d["donor_id"],
        "first_name": d["first_name"],
        "last_name": d["last_name"],
        "email": d["email"],
        "billing_zip": d["zip"],
        "amount": d["amount"],
        "succeeded_at": d["date"].str.to_date("%Y-%m-%d").dt.strftime("%m/%d/%Y"),
        "payment_type_name": d["method"].replace_strict(_NB_PAYMENT),
        "note": pl.Series([None] * d.height, dtype=pl.String),
    })

    # VAN My Voters: everyone VAN canvassed, with the VanID of the contact history.
    van = np.unique(contacts.person[contacts.is_van])
    frames["van_people"] = pl.DataFrame({
        "VanID": pl.Series(100_000_000 + (people.pid[van] * activity.vanid_a + activity.vanid_b)
                           % _VANID_SPACE).cast(pl.String),
        "LastName": people.last.gather(van),
        "FirstName": people.first.gather(van),
        "MiddleName": people.middle.gather(van),
        "Address": people.address1.gather(van),
        "City": people.city.gather(van).str.to_uppercase(),
        "State": pl.Series([None] * len(van), dtype=pl.String),
        "Zip5": people.postcode.gather(van),
        "HomePhone": format_phones(p.land_cc[van], p.land_nsn[van],
                                   np.full(len(van), _NATIONAL)),
        "CellPhone": format_phones(p.mobile_cc[van], p.mobile_nsn[van],
                                   np.full(len(van), _E164)),
        "Email": people.email.gather(van),
        "Sex": pl.Series(["F", "M", None]).gather(people.sex[van]),
        "DOB": format_days(people.birth_day[van], "%m/%d/%Y", ~people.has_birth[van]),
    })
    return {name: frame.select(EXTRA_EXPORTS[name][1]) for name, frame in frames.items()}
