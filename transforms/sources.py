"""Source profiles: how each campaign tool writes its export, mapped to one internal schema.

A profile is declared, not coded: the columns it requires, which raw column feeds which
internal field, how it writes dates, which vocabulary its result codes use, and its
lawful-basis policy (domain.md, "The rules that shape the pipeline"). Every raw column a
profile does not map is dropped on read, so a new free-text column can never flow on.

Internal fields (the normalized schema, see ``transforms.normalize``):

* identity: ``source_id`` (namespaced by source), ``email``, ``phone``, ``phone2``
* place: ``postcode``, ``insee_code`` (→ ``commune``, ``departement``, ``region``)
* people: ``birth_date``, ``support_level``, ``is_volunteer``, ``is_donor``,
  ``email_opt_in``, ``mobile_opt_in``, ``created_at``, ``do_not_contact``
* contacts: ``contact_date``, ``channel``, ``result``, ``support_level``, ``canvasser_id``
* donations: ``donation_date``, ``amount``, ``method``, ``recurring``
* optional, any kind: ``updated_at`` (people: which export of a person is newer),
  ``event_id`` (contacts, donations: the source's own id of the event)

Event identity: exports are snapshots, so the same contact or donation comes back in every
day's export. A profile of events declares its natural key, ``event_key``: the normalized
fields that identify one event (``EVENT_KEY_FIELDS``). When the export carries the source's
own event id (``event_id`` mapped and present), that id alone is the key. Only a keyed hash
of the key is ever stored (:mod:`privacy.pseudonymize`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

Kind = Literal["people", "contacts", "donations"]
LawfulBasis = Literal["regular_contact", "consent_column", "none"]
DateOrder = Literal["dmy", "mdy"]

#: Normalized fields an event's natural key may use, per kind (see transforms.normalize).
EVENT_KEY_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "people": frozenset(),
    "contacts": frozenset({"source_id", "event_day", "week", "channel", "result",
                           "support_level", "canvasser_id", "commune"}),
    "donations": frozenset({"source_id", "event_day", "month", "amount_cents", "method",
                            "recurring", "commune"}),
})
#: The natural key of an event when a profile declares none and the export has no event id.
DEFAULT_EVENT_KEY: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "people": (),
    "contacts": ("source_id", "event_day", "channel", "result", "support_level",
                 "canvasser_id"),
    "donations": ("source_id", "event_day", "amount_cents", "method", "recurring"),
})


@dataclass(frozen=True)
class SourceProfile:
    """How one tool's export looks.

    ``encoding``, ``delimiter`` and ``decimal`` are the tool's usual dialect: a hint and a
    default, never a requirement, since every file's dialect is sniffed (a French-Excel
    re-save of a NationBuilder export is read, see ``transforms.read``). ``date_format`` is
    the local format of its dates; ISO 8601 is accepted too, and the day/month order of
    numeric dates is decided per file (``transforms.dates``).
    """

    name: str
    kind: Kind
    namespace: str
    fields: Mapping[str, str]  # internal field -> raw column
    required: tuple[str, ...]  # raw columns that must be present
    id_column: str
    date_format: str  # strptime format of the main date column(s)
    encoding: str | None = None
    delimiter: str | None = None
    decimal: str = "."
    value_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    lawful_basis: LawfulBasis = "regular_contact"
    consent_column: str | None = None
    filename_hints: tuple[str, ...] = ()
    description: str = ""
    #: Day/month order of numeric dates when no value of a column decides it (``dmy`` or
    #: ``mdy``); ``None``: the order of ``date_format`` (see ``transforms.dates``).
    date_order: DateOrder | None = None
    #: More spellings of raw columns (raw column -> aliases), on top of the common ones
    #: of ``transforms.headers``; headers match case-, accent- and spacing-insensitively.
    column_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Normalized fields that identify one event (contacts, donations); () = the kind's default.
    event_key: tuple[str, ...] = ()
    #: The sheet of an ``.xlsx`` workbook to read (``None``: the first sheet).
    sheet: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.event_key) - EVENT_KEY_FIELDS[self.kind])
        if unknown:
            raise ValueError(f"profile {self.name}: event_key fields {', '.join(unknown)} are "
                             f"not event fields of a {self.kind} export")
        if self.kind == "people" and self.event_key:
            raise ValueError(f"profile {self.name}: people exports have no event key")
        if self.id_column not in self.required:
            raise ValueError(f"profile {self.name}: id column {self.id_column!r} must be required")
        missing = [c for c in self.fields.values() if not c]
        if missing:
            raise ValueError(f"profile {self.name}: empty column mapping")
        if self.lawful_basis == "consent_column" and not self.consent_column:
            raise ValueError(f"profile {self.name}: consent_column policy needs a consent_column")
        if self.date_order not in (None, "dmy", "mdy"):
            raise ValueError(f"profile {self.name}: date_order must be dmy or mdy")

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (read-only mapping proxies are not), so worker processes get the profile."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["fields"] = dict(self.fields)
        state["value_maps"] = {k: dict(v) for k, v in self.value_maps.items()}
        state["column_aliases"] = dict(self.column_aliases)
        return (_rebuild_profile, (state,))

    @property
    def natural_key(self) -> tuple[str, ...]:
        """The fields of the event key used when a row has no ``event_id``."""
        return self.event_key or DEFAULT_EVENT_KEY[self.kind]


def _rebuild_profile(state: dict[str, Any]) -> SourceProfile:
    state = dict(state, fields=MappingProxyType(state["fields"]),
                 value_maps=MappingProxyType({k: MappingProxyType(v)
                                              for k, v in state["value_maps"].items()}),
                 column_aliases=MappingProxyType(dict(state.get("column_aliases", {}))))
    return SourceProfile(**state)


#: VAN ResultShortName / NationBuilder status / French app résultat -> core.vocabulary.RESULTS
RESULT_MAP: Mapping[str, str] = MappingProxyType({
    # NGP VAN
    "canvassed": "contacted", "not home": "not_home", "refused": "refused", "moved": "moved",
    "inaccessible": "inaccessible", "deceased": "deceased", "wrong number": "wrong_number",
    "left message": "left_message", "busy": "busy", "disconnected": "disconnected",
    "hostile": "hostile", "language barrier": "language_barrier", "come back": "come_back",
    # NationBuilder contact statuses
    "answered": "contacted", "meaningfulinteraction": "contacted", "badinfo": "wrong_number",
    "leftmessage": "left_message", "sendinformation": "contacted", "notinterested": "refused",
    "noanswer": "not_home", "other": "other",
    # French canvassing app
    "contacté": "contacted", "contacte": "contacted", "absent": "not_home", "refus": "refused",
    "déménagé": "moved", "demenage": "moved", "ne pas déranger": "do_not_disturb",
})

CHANNEL_MAP: Mapping[str, str] = MappingProxyType({
    "walk": "door", "door_knock": "door", "porte-à-porte": "door", "phone": "phone",
    "call": "phone", "sms": "sms", "text": "sms",
})

NATIONBUILDER_PEOPLE = SourceProfile(
    name="nationbuilder_people",
    kind="people",
    namespace="nb",
    description="NationBuilder people export (CSV, UTF-8 with BOM, comma)",
    encoding=None,
    delimiter=",",
    fields=MappingProxyType({
        "source_id": "nationbuilder_id", "email": "email", "phone": "phone_number",
        "phone2": "mobile_number", "postcode": "primary_zip", "birth_date": "born_at",
        "support_level": "support_level", "is_volunteer": "is_volunteer",
        "is_donor": "is_donor", "email_opt_in": "email_opt_in",
        "mobile_opt_in": "mobile_opt_in", "created_at": "created_at",
        "do_not_contact": "do_not_contact", "updated_at": "updated_at",
    }),
    required=("nationbuilder_id", "email", "phone_number", "mobile_number", "primary_zip",
              "born_at", "support_level", "is_volunteer", "email_opt_in", "created_at",
              "do_not_contact"),
    id_column="nationbuilder_id",
    date_format="%m/%d/%Y",
    filename_hints=("nationbuilder", "people"),
)

VAN_CONTACTS = SourceProfile(
    name="van_contacts",
    kind="contacts",
    namespace="van",
    description="NGP VAN contact history / canvass results (tab-delimited text)",
    delimiter="\t",
    fields=MappingProxyType({
        "source_id": "VanID", "email": "Email", "phone": "Phone", "postcode": "Zip5",
        "contact_date": "DateCanvassed", "channel": "ContactType", "result": "ResultShortName",
        "support_level": "SurveyResponseName", "canvasser_id": "CanvassedBy",
        "event_id": "ContactsContactID",
    }),
    required=("VanID", "DateCanvassed", "ContactType", "ResultShortName", "Zip5"),
    id_column="VanID",
    date_format="%m/%d/%Y",
    value_maps=MappingProxyType({"result": RESULT_MAP, "channel": CHANNEL_MAP}),
    filename_hints=("van", "contact_history", "canvass_results"),
    event_key=("source_id", "event_day", "channel", "result", "canvasser_id", "support_level"),
)

FR_CANVASS = SourceProfile(
    name="fr_canvass",
    kind="contacts",
    namespace="pap",
    description="French door-to-door app export as saved by French Excel (cp1252, ';')",
    encoding="cp1252",
    delimiter=";",
    decimal=",",
    fields=MappingProxyType({
        "source_id": "id_contact", "email": "email", "phone": "téléphone",
        "postcode": "code_postal", "contact_date": "date_passage", "result": "résultat",
        "support_level": "intention", "canvasser_id": "militant",
    }),
    required=("id_contact", "date_passage", "code_postal", "résultat"),
    id_column="id_contact",
    date_format="%d/%m/%Y",
    value_maps=MappingProxyType({"result": RESULT_MAP}),
    filename_hints=("porte", "pap", "canvass_fr", "terrain"),
    event_key=("source_id", "event_day", "result", "support_level", "canvasser_id"),
)

DONATIONS = SourceProfile(
    name="donations",
    kind="donations",
    namespace="nb",
    description="Donations export (CSV, UTF-8, comma); donor id is the NationBuilder id",
    delimiter=",",
    fields=MappingProxyType({
        "source_id": "donor_id", "email": "email", "postcode": "zip",
        "donation_date": "date", "amount": "amount", "method": "method",
        "recurring": "recurring",
    }),
    required=("donor_id", "amount", "date", "method"),
    id_column="donor_id",
    date_format="%Y-%m-%d",
    filename_hints=("donation", "dons"),
    event_key=("source_id", "event_day", "amount_cents", "method", "recurring"),
)

#: NationBuilder contact methods (API ``contact_type``/``method``) -> core.vocabulary.CHANNELS
NB_CHANNEL_MAP: Mapping[str, str] = MappingProxyType({
    **CHANNEL_MAP, "phone_call": "phone", "door_knock": "door", "text_message": "sms",
    "email": "other", "face_to_face": "door", "meeting": "other",
})

NATIONBUILDER_CONTACTS = SourceProfile(
    name="nationbuilder_contacts",
    kind="contacts",
    namespace="nb",
    description="NationBuilder contacts (door knocks, calls) export (CSV, UTF-8, comma); "
                "its contact id keys each event",
    delimiter=",",
    fields=MappingProxyType({
        "source_id": "person_id", "contact_date": "created_at", "channel": "method",
        "result": "status", "canvasser_id": "sender_id", "event_id": "id",
    }),
    required=("id", "person_id", "method", "status", "created_at"),
    id_column="person_id",
    date_format="%m/%d/%Y",
    value_maps=MappingProxyType({"result": RESULT_MAP, "channel": NB_CHANNEL_MAP}),
    filename_hints=("nationbuilder_contacts", "nb_contacts"),
    event_key=("source_id", "event_day", "channel", "result", "canvasser_id"),
)

NATIONBUILDER_DONATIONS = SourceProfile(
    name="nationbuilder_donations",
    kind="donations",
    namespace="nb",
    description="NationBuilder donations export (CSV, UTF-8, comma); its donation id keys "
                "each event",
    delimiter=",",
    fields=MappingProxyType({
        "source_id": "donor_id", "email": "email", "postcode": "billing_zip",
        "donation_date": "succeeded_at", "amount": "amount", "method": "payment_type_name",
        "event_id": "id",
    }),
    required=("id", "donor_id", "amount", "succeeded_at"),
    id_column="donor_id",
    date_format="%m/%d/%Y",
    value_maps=MappingProxyType({"method": MappingProxyType({
        "ach": "transfer", "electronic funds transfer": "transfer", "in-kind": "other",
        "other": "other"})}),
    column_aliases=MappingProxyType({"billing_zip": ("billing_address_zip",)}),
    filename_hints=("nationbuilder_donations", "nb_donations"),
    event_key=("source_id", "event_day", "amount_cents", "method"),
)

ACTION_NETWORK_PEOPLE = SourceProfile(
    name="action_network_people",
    kind="people",
    namespace="an",
    description="Action Network activists report (CSV, UTF-8, comma); email is its "
                "dedup key, uuid its id",
    delimiter=",",
    fields=MappingProxyType({
        "source_id": "uuid", "email": "email", "phone": "can2_phone", "postcode": "zip_code",
        "email_opt_in": "can2_subscription_status", "mobile_opt_in": "can2_sms_status",
    }),
    required=("uuid", "email", "zip_code"),
    id_column="uuid",
    date_format="%Y-%m-%d",
    filename_hints=("action_network", "actionnetwork"),
)

ACTION_POPULAIRE = SourceProfile(
    name="action_populaire",
    kind="people",
    namespace="ap",
    description="Action Populaire (LFI's platform) people export (CSV, UTF-8, comma); "
                "location_citycode is the INSEE commune",
    delimiter=",",
    fields=MappingProxyType({
        "source_id": "id", "email": "email", "phone": "contact_phone",
        "postcode": "location_zip", "insee_code": "location_citycode",
        "birth_date": "date_of_birth", "created_at": "created",
    }),
    required=("id", "email", "location_citycode"),
    id_column="id",
    date_format="%Y-%m-%d",
    date_order="dmy",
    filename_hints=("action_populaire", "actionpopulaire"),
)

VAN_PEOPLE = SourceProfile(
    name="van_people",
    kind="people",
    namespace="van",
    description="NGP VAN My Voters / My Campaign list export (tab-delimited text; Zip5 or Zip)",
    delimiter="\t",
    fields=MappingProxyType({
        "source_id": "VanID", "email": "Email", "phone": "HomePhone", "phone2": "CellPhone",
        "postcode": "Zip5", "birth_date": "DOB",
    }),
    required=("VanID", "Zip5"),
    id_column="VanID",
    date_format="%m/%d/%Y",
    column_aliases=MappingProxyType({
        "Zip5": ("Zip", "ZipCode", "Zip Code"), "HomePhone": ("Phone", "Home Phone"),
        "CellPhone": ("Cell Phone", "Cell"), "Email": ("PreferredEmail", "Preferred Email"),
    }),
    filename_hints=("my_voters", "my_campaign", "myvoters", "mycampaign"),
)

BUILTIN_PROFILES: Mapping[str, SourceProfile] = MappingProxyType({
    p.name: p for p in (NATIONBUILDER_PEOPLE, VAN_CONTACTS, FR_CANVASS, DONATIONS,
                        NATIONBUILDER_CONTACTS, NATIONBUILDER_DONATIONS, ACTION_NETWORK_PEOPLE,
                        ACTION_POPULAIRE, VAN_PEOPLE)
})


def profile_by_name(name: str) -> SourceProfile:
    """Look up a built-in profile; unknown names list the known ones."""
    try:
        return BUILTIN_PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_PROFILES))
        raise KeyError(f"unknown source profile {name!r}; known profiles: {known}") from None


def guess_profile_from_name(path: Path) -> SourceProfile | None:
    """A first guess from the file name; ``transforms.read`` confirms it from the header."""
    lowered = path.name.lower()
    for profile in BUILTIN_PROFILES.values():
        if any(h in lowered for h in profile.filename_hints):
            return profile
    return None
