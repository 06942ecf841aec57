"""Suites as code: factory functions that declare, rule by rule, what each batch must satisfy.

Three families, one per checkpoint of a supporter's row (architecture.md, "Data flow"):

* :func:`raw_suite` — on arrival, per source profile (works for any profile, built-in or YAML):
  columns, row count, ids, emails, postcodes, dates, amounts, support levels, result codes;
* :func:`pseudonymized_suite` — before load: no column outside the allow-list, no value that
  looks like an email, phone, IBAN or street address, pseudonyms and codes well formed;
* :func:`published_suite` — before strategists see a table: accuracy columns and ledger entry,
  public group keys only, counts that are integers ≥ 0, nothing finer than allowed.

Each rule is blocking (the batch is quarantined) or warn-only (reported, loaded). Raw rules
name the raw column the export uses, so an error points where the data engineer can look.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expectations import patterns
from expectations.codes import COLUMN_CODE_LISTS
from expectations.rules import Rule
from transforms.sources import SourceProfile

DEFAULT_EMAIL_THRESHOLD = 0.98


@dataclass(frozen=True)
class Suite:
    """A named, ordered set of rules; rule keys are unique within it."""

    name: str
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        keys = [r.key for r in self.rules]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise ValueError(f"suite {self.name}: duplicate rules {sorted(duplicates)}")

    def rule(self, key: str) -> Rule:
        for rule in self.rules:
            if rule.key == key:
                return rule
        raise KeyError(key)


# ----------------------------------------------------------------------------- raw

#: Internal fields holding a date in the profile's ``date_format`` (``created_at`` too: the
#: normalizer reads it in that format).
DATE_FIELDS = ("birth_date", "contact_date", "donation_date", "created_at")


def raw_suite(profile: SourceProfile, header: Collection[str], *,
              email_threshold: float = DEFAULT_EMAIL_THRESHOLD,
              date_orders: Mapping[str, str] | None = None,
              decimal: str | None = None) -> Suite:
    """The raw suite of one source profile, for a file with this header.

    Column rules are declared for the profile's columns present in the header; a missing
    required column fails ``required_columns`` (and nothing else is asked of it).
    ``source_id_unique`` applies to people exports only: in contact histories and donation
    exports one person legitimately has many rows under one id. ``date_orders`` (internal
    field -> ``dmy``/``mdy``) and ``decimal`` are what the reader decided for this file
    (``transforms.read.plan_read``); by default the profile's.
    """
    orders = dict(date_orders or {})
    decimal = decimal or profile.decimal
    if not 0.0 < email_threshold <= 1.0:
        raise ValueError("email_threshold must be in (0, 1]")
    present = set(header)
    rules: list[Rule] = [
        Rule("at_least_one_row", "row_count_min", min_value=1,
             note="An empty export is a broken export."),
        Rule("required_columns", "columns_present", values=tuple(profile.required),
             note=f"The {profile.name} profile needs these raw columns."),
    ]

    def column(field: str) -> str | None:
        raw = profile.fields.get(field)
        return raw if raw is not None and raw in present else None

    if (c := column("source_id")) is not None:
        rules.append(Rule("source_id_present", "not_null", column=c,
                          note="Every row needs the source system's id."))
        if profile.kind == "people":
            rules.append(Rule("source_id_unique", "unique", column=c,
                              note="One row per person in a people export."))
    if (c := column("email")) is not None:
        rules.append(Rule("email_well_formed", "match_regex", column=c,
                          regex=patterns.EMAIL_WELL_FORMED, mostly=email_threshold,
                          note=f"At least {email_threshold:.0%} of the emails must be well formed."))
    for field in ("phone", "phone2"):
        if (c := column(field)) is not None:
            rules.append(Rule("phone_plausible", "match_regex", column=c, blocking=False,
                              regex=patterns.PHONE_PLAUSIBLE,
                              note="Digits, spaces and separators only."))
    if (c := column("postcode")) is not None:
        rules.append(Rule("postcode_valid", "match_regex", column=c,
                          regex=patterns.postcode_pattern(),
                          note="5 digits with a real département prefix (Corsica 20, overseas "
                               "971-976), from the COG snapshot."))
    for field in DATE_FIELDS:
        if (c := column(field)) is not None:
            order = orders.get(field)
            shown = {"dmy": "dd/mm/yyyy", "mdy": "mm/dd/yyyy"}.get(order or "", "")
            rules.append(Rule("date_parses", "date_format", column=c,
                              strftime_format=profile.date_format, date_order=order,
                              note="Dates in ISO 8601 or "
                                   + (f"{shown} (this file's order)" if shown
                                      else f"the profile's format {profile.date_format}")
                                   + ", as the normalizer reads them."))
    if (c := column("amount")) is not None:
        rules.append(Rule("amount_parses", "amount_rule", column=c, decimal=decimal,
                          amount_rule="amount_format",
                          note=f"Amounts with {decimal!r} as decimal separator (this file's), "
                               "as the normalizer reads them."))
        rules.append(Rule("amount_non_negative", "amount_rule", column=c,
                          decimal=decimal, amount_rule="negative_amount",
                          note="A donation cannot be negative."))
    if (c := column("support_level")) is not None:
        rules.append(Rule("support_level_1_to_5", "match_regex", column=c,
                          regex=patterns.SUPPORT_LEVEL,
                          note="1 (strong support) to 5 (strong opposition); survey answers "
                               "start with that number."))
    result_map = profile.value_maps.get("result")
    if result_map and (c := column("result")) is not None:
        rules.append(Rule("result_in_vocabulary", "match_regex", column=c,
                          regex=patterns.result_pattern(result_map.keys()),
                          note="Result codes this profile knows (case-insensitive)."))
    channel_map = profile.value_maps.get("channel")
    if channel_map and (c := column("channel")) is not None:
        rules.append(Rule("channel_in_vocabulary", "match_regex", column=c, blocking=False,
                          regex=patterns.result_pattern(channel_map.keys()),
                          note="Unknown channels are counted as 'other'."))
    return Suite(f"raw.{profile.name}", tuple(rules))


# ----------------------------------------------------------------------------- pseudonymized

#: Columns of a staged frame (``privacy.pseudonymize``) that the warehouse tables do not have:
#: identifier pseudonyms used for identity resolution, the event's keyed natural key, the
#: row fingerprint, the withdrawal flag and (people) the source's ``updated_at``. The same
#: pseudonyms under older key versions come as ``<column>__k<n>`` (see ``staged_version_column``).
STAGING_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "people": ("id_source", "id_email", "id_phone", "id_phone2", "fingerprint", "withdrawn",
               "updated_at", "raw_hash", "raw_occurrence"),
    "contacts": ("id_source", "id_email", "id_phone", "id_phone2", "event_key", "withdrawn",
                 "raw_hash", "raw_occurrence"),
    "donations": ("id_source", "id_email", "id_phone", "id_phone2", "event_key", "withdrawn",
                  "raw_hash", "raw_occurrence"),
}
KIND_TABLES: Mapping[str, str] = {"people": "persons", "contacts": "contacts",
                                  "donations": "donations"}
PSEUDONYM_COLUMNS = frozenset({"person_id", "contact_id", "donation_id", "canvasser_id",
                               "id_source", "id_email", "id_phone", "id_phone2", "event_key",
                               "fingerprint", "raw_hash"})
_VERSIONED = re.compile(r"^(id_source|id_email|id_phone|id_phone2|event_key)__k[0-9]{1,6}$")


def staged_version_column(column: str) -> bool:
    """A staged column of pseudonyms under an older key version (``id_email__k1``)."""
    return _VERSIONED.match(column) is not None


_SHAPES: Mapping[str, tuple[str, str]] = {
    # column -> (rule name, anchored regex) for generalized columns without a code list
    "week": ("week_format", patterns.ISO_WEEK),
    "month": ("month_format", patterns.YEAR_MONTH),
    "created_month": ("month_format", patterns.YEAR_MONTH),
    "last_seen_month": ("month_format", patterns.YEAR_MONTH),
    "file_sha256": ("sha256_format", patterns.SHA256_HEX),
    "first_file": ("sha256_format", patterns.SHA256_HEX),
    "last_file": ("sha256_format", patterns.SHA256_HEX),
    "source": ("source_name_format", patterns.SLUG),
    "updated_at": ("timestamp_format", r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$"),
}


def allowed_columns(kind: str) -> tuple[str, ...]:
    """The warehouse table's columns plus the staging-only pseudonym columns of this kind."""
    from warehouse.schema import metadata

    if kind not in KIND_TABLES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KIND_TABLES)}")
    table = metadata.tables[KIND_TABLES[kind]]
    return tuple(c.name for c in table.columns) + STAGING_COLUMNS[kind]


def leak_rule(column: str, *, skip_regex: str | None = None,
              skip_codes: str | None = None) -> Rule:
    """The blocking rule that no value of ``column`` looks like an email, phone, IBAN or address.

    One rule per column with every leak pattern (one GX expectation instead of four keeps
    GX's per-expectation overhead down); the fast path's result names the families found.
    """
    return Rule("no_personal_data", "not_match_regex_list", column=column,
                regex_list=patterns.ALL_PII_REGEXES, skip_regex=skip_regex,
                skip_codes=skip_codes,
                note="No value may contain an email, a phone number, an IBAN or a street "
                     "address.")


def pseudonymized_suite(kind: str, columns: Sequence[str]) -> Suite:
    """The pseudonymized suite of one kind, for a frame with these columns.

    Every column of the frame is scanned for leaks, including columns outside the allow-list
    (which fail ``columns_allowed`` anyway): the report then says what leaked.
    """
    allowed = allowed_columns(kind) + tuple(c for c in columns if staged_version_column(c))
    rules: list[Rule] = [
        Rule("at_least_one_row", "row_count_min", min_value=1, blocking=False,
             note="Every row may have been excluded (no lawful basis, objections)."),
        Rule("columns_allowed", "columns_allowed", values=allowed,
             note="Only the warehouse schema's columns: a new free-text column can never "
                  "slip through."),
    ]
    for column in columns:
        skip_regex: str | None = None
        skip_codes: str | None = None
        if column in PSEUDONYM_COLUMNS or staged_version_column(column):
            rules.append(Rule("pseudonym_format", "match_regex", column=column,
                              regex=patterns.PSEUDONYM,
                              note="k<key id, up to 6 digits>:<lowercase base32>, as privacy.keys writes it."))
            skip_regex = patterns.PSEUDONYM
        elif column in COLUMN_CODE_LISTS:
            skip_codes = COLUMN_CODE_LISTS[column]
            rules.append(Rule("code_in_official_list", "in_codes", column=column,
                              code_list=skip_codes,
                              note=f"Official {skip_codes.replace('_', ' ')} codes only "
                                   "(COG snapshot, Isoloir vocabulary)."))
        elif column in _SHAPES:
            name, regex = _SHAPES[column]
            rules.append(Rule(name, "match_regex", column=column, regex=regex))
            skip_regex = regex
        elif column == "amount_cents":
            rules.append(Rule("amount_non_negative", "min_value", column=column, min_value=0))
        rules.append(leak_rule(column, skip_regex=skip_regex, skip_codes=skip_codes))
    return Suite(f"pseudonymized.{kind}", tuple(rules))


# ----------------------------------------------------------------------------- published

ACCURACY_COLUMNS = ("ci95_halfwidth", "ci95_low", "ci95_high", "noise_scale", "mechanism",
                    "budget_share")
PUBLISHED_COLUMNS = ("estimate", *ACCURACY_COLUMNS, "ledger_entry")
#: Group columns with a public key set (privacy.plan.PUBLIC_KEY_SETS).
PUBLIC_KEY_COLUMNS = ("region", "departement", "circonscription", "commune", "age_band",
                      "support_level", "result", "channel", "week", "month")
#: Geographic levels from coarsest to finest.
GEO_LEVELS = ("region", "departement", "circonscription", "commune")
DEFAULT_FINEST_GEOGRAPHY = "circonscription"
COUNT_MEASURES = frozenset({"count", "histogram"})


def query_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The release's query from its metadata (a canonical JSON string or a mapping)."""
    query = metadata.get("query", {})
    if isinstance(query, str):
        try:
            query = json.loads(query)
        except json.JSONDecodeError:
            return {}
    return dict(query) if isinstance(query, Mapping) else {}


def finest_geography(metadata: Mapping[str, Any]) -> str:
    """The finest geographic level the metadata allows (commune only when it says so)."""
    declared = metadata.get("finest_geography")
    if isinstance(declared, str) and declared in GEO_LEVELS:
        return declared
    if metadata.get("allow_commune") is True:
        return "commune"
    return DEFAULT_FINEST_GEOGRAPHY


def published_suite(metadata: Mapping[str, Any], columns: Sequence[str],
                    numeric_columns: Collection[str] = ()) -> Suite:
    """The published suite of one release table.

    Text columns are only the group keys and ``mechanism``/``ledger_entry``; extra numeric
    columns (a rate and its interval...) are allowed. For counts (and histograms) the estimate
    must be an integer ≥ 0 after post-processing.
    """
    query = query_of(metadata)
    name = str(query.get("name") or metadata.get("query_name") or "table")
    measure = query.get("measure") or metadata.get("measure")
    group_by = {str(c) for c in (query.get("group_by") or metadata.get("group_by") or ())}
    # a numeric column declared as a group (an exact age...) is not a harmless measure
    numeric = [c for c in columns if c in numeric_columns and c not in PUBLIC_KEY_COLUMNS
               and c not in group_by]
    allowed = tuple(dict.fromkeys((*PUBLISHED_COLUMNS, *PUBLIC_KEY_COLUMNS, *numeric)))
    finest = finest_geography(metadata)
    too_fine = GEO_LEVELS[GEO_LEVELS.index(finest) + 1:]
    rules: list[Rule] = [
        Rule("at_least_one_row", "row_count_min", min_value=1),
        Rule("accuracy_columns_present", "columns_present", values=PUBLISHED_COLUMNS,
             note="Every number ships with its error bars, mechanism, budget share and ledger "
                  "entry."),
        Rule("columns_allowed", "columns_allowed", values=allowed,
             note="Group keys from public key sets, accuracy columns, numeric measures."),
    ]
    if too_fine:
        rules.append(Rule("min_granularity", "columns_excluded", values=too_fine,
                          note=f"No group finer than {finest} unless the metadata allows it."))
    for column in PUBLISHED_COLUMNS:
        if column in columns:
            rules.append(Rule("not_null", "not_null", column=column))
    release = metadata.get("release_id")
    if isinstance(release, str) and release and "ledger_entry" in columns:
        rules.append(Rule("ledger_entry_matches", "in_set", column="ledger_entry",
                          values=(release,), note="The ledger entry is this release's id."))
    for column in ("ci95_halfwidth", "noise_scale", "budget_share"):
        if column in columns:
            rules.append(Rule("non_negative", "min_value", column=column, min_value=0))
    if measure in COUNT_MEASURES and "estimate" in columns:
        rules.append(Rule("count_non_negative", "min_value", column="estimate", min_value=0,
                          note="Counts are clamped at 0 in post-processing."))
        rules.append(Rule("count_integer", "match_regex", column="estimate",
                          regex=r"^(?:[0-9]+|-0)(?:\.0+)?\Z", note="Counts are rounded."))
    weeks, months = _period_keys(metadata, query)
    for column in columns:
        if column in COLUMN_CODE_LISTS and column in PUBLIC_KEY_COLUMNS:
            rules.append(Rule("group_key_public", "in_codes", column=column,
                              code_list=COLUMN_CODE_LISTS[column]))
        elif column == "week":
            rules.append(Rule("group_key_public", "in_set", column=column, values=weeks)
                         if weeks else Rule("group_key_public", "match_regex", column=column,
                                            regex=patterns.ISO_WEEK))
        elif column == "month":
            rules.append(Rule("group_key_public", "in_set", column=column, values=months)
                         if months else Rule("group_key_public", "match_regex", column=column,
                                             regex=patterns.YEAR_MONTH))
        elif column not in numeric_columns and column not in (*PUBLIC_KEY_COLUMNS,
                                                              "ledger_entry"):
            # ledger_entry is a release id (a hash, whose hex digits can look like a phone
            # number by chance): it is checked against the metadata's release id instead.
            rules.append(leak_rule(column))
    return Suite(f"published.{_slug(name)}", tuple(rules))


def _period_keys(metadata: Mapping[str, Any],
                 query: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Public week and month keys from a declared period ``[start, end]``, if the metadata has one."""
    from datetime import date

    from core.vocabulary import iso_weeks, months

    period = metadata.get("period") or query.get("period")
    if not isinstance(period, Sequence) or isinstance(period, str) or len(period) != 2:
        return (), ()
    try:
        start, end = (date.fromisoformat(str(p)) for p in period)
    except ValueError:
        return (), ()
    return iso_weeks(start, end), months(start, end)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "table"
