"""A source profile declared in YAML: a new export format without new code.

An engineer describes the export; the file is validated completely when loaded (unknown
keys, unknown internal fields, a vocabulary value outside the closed vocabularies, a
namespace that is not a plain word...), and a bad profile stops the run with the file and
the key path, before any row is read. Example::

    name: action_network_people
    kind: people
    namespace: an
    description: Action Network activists export (CSV, UTF-8, comma)
    delimiter: ","
    date_format: "%Y-%m-%d"
    id_column: uuid
    required: [uuid, email, zip_code]
    fields:
      source_id: uuid
      email: email
      phone: can2_phone
      postcode: zip_code
      created_at: created_date
    lawful_basis: regular_contact
    filename_hints: [action_network]

Keys: ``name``, ``kind`` (people | contacts | donations), ``namespace``, ``fields``
(internal field -> raw column), ``required``, ``id_column``, ``date_format`` (strptime),
and optionally ``encoding`` (utf-8 | cp1252 | latin-1), ``delimiter`` (``,`` ``;`` ``\\t``
or ``|``), ``decimal`` (``.`` or ``,``) — the tool's usual dialect: a hint and a default, each
file's own is sniffed — ``date_order`` (dmy | mdy: numeric dates when no value decides),
``column_aliases`` (raw column -> other spellings), ``value_maps`` (result | channel | method: raw -> code),
``lawful_basis`` (regular_contact | consent_column | none), ``consent_column``,
``filename_hints``, ``description``, ``sheet`` (the sheet of an ``.xlsx`` workbook to read;
default: the first), and for contacts and donations ``event_key``: the
normalized fields that identify one event in the source (from ``EVENT_KEY_FIELDS`` of
:mod:`transforms.sources`; default: the kind's ``DEFAULT_EVENT_KEY``). Map ``event_id`` when
the export carries the source's own event id: it then identifies the event alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import EXIT_BAD_INPUT, IsoloirError
from core.vocabulary import CHANNELS, DONATION_METHODS, RESULTS
from transforms.sources import BUILTIN_PROFILES, EVENT_KEY_FIELDS, SourceProfile

#: Internal fields each kind of export may map (see transforms.sources and normalize).
IDENTITY_FIELDS = frozenset({"source_id", "email", "phone", "phone2", "postcode", "insee_code"})
INTERNAL_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "people": IDENTITY_FIELDS | {"birth_date", "support_level", "is_volunteer", "is_donor",
                                 "email_opt_in", "mobile_opt_in", "created_at",
                                 "do_not_contact", "updated_at"},
    "contacts": IDENTITY_FIELDS | {"contact_date", "channel", "result", "support_level",
                                   "canvasser_id", "do_not_contact", "event_id"},
    "donations": IDENTITY_FIELDS | {"donation_date", "amount", "method", "recurring",
                                    "do_not_contact", "event_id"},
})
#: The internal fields each kind of export must map.
REQUIRED_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "people": frozenset({"source_id"}),
    "contacts": frozenset({"source_id", "contact_date"}),
    "donations": frozenset({"source_id", "donation_date", "amount"}),
})
VOCABULARIES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "result": RESULTS, "channel": CHANNELS, "method": DONATION_METHODS,
})


class ProfileError(IsoloirError):
    """A source profile (YAML) is missing, unreadable or invalid; names file and key path."""

    exit_code = EXIT_BAD_INPUT


class _ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")
    kind: Literal["people", "contacts", "donations"]
    namespace: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")
    fields: dict[str, str]
    required: list[str] = Field(min_length=1)
    id_column: str
    date_format: str
    encoding: Literal["utf-8", "cp1252", "latin-1"] | None = None
    delimiter: Literal[",", ";", "\t", "|"] | None = None
    decimal: Literal[".", ","] = "."
    value_maps: dict[Literal["result", "channel", "method"], dict[str, str]] = {}
    lawful_basis: Literal["regular_contact", "consent_column", "none"] = "regular_contact"
    consent_column: str | None = None
    filename_hints: list[str] = []
    description: str = ""
    date_order: Literal["dmy", "mdy"] | None = None
    column_aliases: dict[str, list[str]] = {}
    event_key: list[str] = []
    sheet: str | None = None

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, value: str) -> str:
        if "%" not in value:
            raise ValueError("must be a strptime format such as %Y-%m-%d")
        return value

    @field_validator("fields")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [k for k, v in value.items() if not v.strip()]
        if empty:
            raise ValueError(f"empty raw column for {', '.join(empty)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> _ProfileModel:
        allowed = INTERNAL_FIELDS[self.kind]
        unknown = sorted(set(self.fields) - allowed)
        if unknown:
            raise ValueError(f"fields: {', '.join(unknown)} not internal fields of a "
                             f"{self.kind} export (allowed: {', '.join(sorted(allowed))})")
        absent = sorted(REQUIRED_FIELDS[self.kind] - set(self.fields))
        if absent:
            raise ValueError(f"fields: a {self.kind} export must map {', '.join(absent)}")
        if self.id_column not in self.required:
            raise ValueError("id_column must be one of the required columns")
        if self.fields["source_id"] != self.id_column:
            raise ValueError("fields.source_id must be the id_column")
        for vocab, table in self.value_maps.items():
            outside = sorted(set(table.values()) - set(VOCABULARIES[vocab]))
            if outside:
                raise ValueError(f"value_maps.{vocab}: {', '.join(outside)} not in the "
                                 f"vocabulary ({', '.join(VOCABULARIES[vocab])})")
        if self.lawful_basis == "consent_column" and not self.consent_column:
            raise ValueError("lawful_basis consent_column needs a consent_column")
        if self.name in BUILTIN_PROFILES:
            raise ValueError(f"name {self.name} is a built-in profile; choose another")
        outside = sorted(set(self.event_key) - EVENT_KEY_FIELDS[self.kind])
        if outside:
            raise ValueError(f"event_key: {', '.join(outside)} not event fields of a "
                             f"{self.kind} export (allowed: "
                             f"{', '.join(sorted(EVENT_KEY_FIELDS[self.kind])) or 'none'})")
        return self


def load_profile(path: Path) -> SourceProfile:
    """Load and validate a YAML source profile; a bad one raises :class:`ProfileError`."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ProfileError(f"{path}: cannot read the profile ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise ProfileError(f"{path}: a profile is a mapping of keys (name, kind, fields...)")
    try:
        model = _ProfileModel.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(profile)"
        raise ProfileError(f"{path}: {where}: {first['msg']}") from None
    return SourceProfile(
        name=model.name, kind=model.kind, namespace=model.namespace,
        fields=MappingProxyType(dict(model.fields)), required=tuple(model.required),
        id_column=model.id_column, date_format=model.date_format, encoding=model.encoding,
        delimiter=model.delimiter, decimal=model.decimal,
        value_maps=MappingProxyType({k: MappingProxyType(dict(v))
                                     for k, v in model.value_maps.items()}),
        lawful_basis=model.lawful_basis, consent_column=model.consent_column,
        filename_hints=tuple(model.filename_hints), description=model.description,
        date_order=model.date_order,
        column_aliases=MappingProxyType({k: tuple(v) for k, v in model.column_aliases.items()}),
        event_key=tuple(model.event_key), sheet=model.sheet,
    )
