"""The warehouse tables: one explicit, versioned schema shared by SQLite and PostgreSQL.

Columns hold pseudonyms (``k1:...``), generalized codes (département, age band, ISO week)
and counts, never a direct identifier. Ledger tables live in the same database so that a
charge and its release record commit in one transaction.

Schema changes bump :data:`SCHEMA_VERSION` and add a step to ``warehouse.db.MIGRATIONS``.

Version 2 (exports over time): contacts and donations are keyed by their event's keyed
natural key plus its occurrence in the file (``<event key>.<k>``), and carry a row
``fingerprint`` so that a daily re-export writes only what changed; ``people_rows`` holds,
per source person row, the fingerprint and ``updated_at`` of the state last applied.

Version 3 (incremental cost): contacts, donations and people rows carry ``raw_key``, a keyed
hash (HKDF purpose ``raw_row``) of the raw record they were loaded from, plus, for events,
its occurrence in the file. A re-export's byte-identical records are recognised by it and
skipped before they are normalized, pseudonymized or resolved (``pipeline.unchanged``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: 2: ledger entries carry the run they were admitted with (run_id, run_part, run_size);
#: contacts and donations carry a row fingerprint; people_rows (exports over time).
#: 3: contacts, donations and people_rows carry the raw record's keyed hash (``raw_key``).
SCHEMA_VERSION = 3

metadata = MetaData()

schema_info = Table(
    "schema_info", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

persons = Table(
    "persons", metadata,
    Column("person_id", String(80), primary_key=True),
    Column("commune", String(5)),
    Column("departement", String(3)),
    Column("region", String(2)),
    Column("age_band", String(8)),
    Column("support_level", SmallInteger),
    Column("is_volunteer", Boolean),
    Column("is_donor", Boolean),
    Column("email_opt_in", Boolean),
    Column("mobile_opt_in", Boolean),
    Column("created_month", String(7)),
    Column("last_seen_month", String(7)),
    Column("first_file", String(64), nullable=False),
    Column("last_file", String(64), nullable=False),
)

contacts = Table(
    "contacts", metadata,
    Column("contact_id", String(80), primary_key=True),
    Column("person_id", String(80), nullable=False, index=True),
    Column("canvasser_id", String(80)),
    Column("source", String(40), nullable=False),
    Column("week", String(8)),
    Column("channel", String(12)),
    Column("result", String(20)),
    Column("support_level", SmallInteger),
    Column("commune", String(5)),
    Column("departement", String(3)),
    Column("region", String(2)),
    Column("file_sha256", String(64), nullable=False, index=True),
    Column("fingerprint", String(80)),  # keyed hash of the staged row (v2)
    Column("raw_key", String(96), index=True),  # keyed hash of the raw record + occurrence (v3)
)

donations = Table(
    "donations", metadata,
    Column("donation_id", String(80), primary_key=True),
    Column("person_id", String(80), nullable=False, index=True),
    Column("source", String(40), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("month", String(7)),
    Column("method", String(12)),
    Column("recurring", Boolean),
    Column("commune", String(5)),
    Column("departement", String(3)),
    Column("region", String(2)),
    Column("file_sha256", String(64), nullable=False, index=True),
    Column("fingerprint", String(80)),  # keyed hash of the staged row (v2)
    Column("raw_key", String(96), index=True),  # keyed hash of the raw record + occurrence (v3)
)

people_rows = Table(
    # One row per source person row (a people export's source id pseudonym): what state of
    # that row was last applied, so that an unchanged row is skipped and an older export
    # never rolls a person back (v2).
    "people_rows", metadata,
    Column("row_key", String(80), primary_key=True),  # id_source pseudonym
    Column("person_id", String(80), nullable=False, index=True),
    Column("fingerprint", String(80), nullable=False),
    Column("updated_at", String(32)),  # the source's updated_at (UTC ISO), when it has one
    Column("file_sha256", String(64), nullable=False),
    Column("raw_key", String(96), index=True),  # keyed hash of the raw record applied (v3)
)

identifier_links = Table(
    "identifier_links", metadata,
    Column("pseudonym", String(80), primary_key=True),
    Column("kind", String(16), nullable=False),  # email | phone | source_id
    Column("person_id", String(80), nullable=False, index=True),
    Column("file_sha256", String(64), nullable=False),
)

objections = Table(
    "objections", metadata,
    # Pseudonyms of identifiers of people who objected (Art. 21) or asked for erasure.
    Column("pseudonym", String(80), primary_key=True),
    Column("reason", String(16), nullable=False),  # objection | erasure
    Column("recorded_at", String(32), nullable=False),
)

ingested_files = Table(
    "ingested_files", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("file_name", String(255), nullable=False),
    Column("source", String(40), nullable=False),
    Column("status", String(16), nullable=False),  # loaded | quarantined
    Column("rows_read", Integer, nullable=False, default=0),
    Column("rows_loaded", Integer, nullable=False, default=0),
    Column("rows_excluded", Integer, nullable=False, default=0),
    Column("rows_unplaced", Integer, nullable=False, default=0),
    Column("persons_new", Integer, nullable=False, default=0),
    Column("persons_merged", Integer, nullable=False, default=0),
    Column("key_id", String(16), nullable=False),
    Column("loaded_at", String(32), nullable=False),
    Column("details", Text),  # JSON: warnings, rule counts; never values
)

erasure_log = Table(
    "erasure_log", metadata,
    # What erasure, objection and retention runs removed: dates, reasons and counts only,
    # never an identifier nor a pseudonym, so the DPO and the auditor may read it.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("recorded_at", String(32), nullable=False),  # ISO 8601, UTC
    Column("month", String(7), nullable=False, index=True),  # YYYY-MM of recorded_at
    # erasure | objection (requests) · inactivity | raw_files (retention) · rejected_file
    Column("reason", String(16), nullable=False),
    Column("requests", Integer, nullable=False, default=0),
    Column("requests_unmatched", Integer, nullable=False, default=0),
    Column("persons", Integer, nullable=False, default=0),
    Column("contacts", Integer, nullable=False, default=0),
    Column("donations", Integer, nullable=False, default=0),
    Column("identifier_links", Integer, nullable=False, default=0),
    Column("objections_added", Integer, nullable=False, default=0),
    Column("files", Integer, nullable=False, default=0),
)

# ---------------------------------------------------------------- privacy ledger
privacy_budgets = Table(
    "privacy_budgets", metadata,
    Column("dataset_id", String(80), primary_key=True),
    Column("cap_rho", Text, nullable=False),  # exact Fraction as "p/q"
    Column("cap_epsilon", Text, nullable=False),  # as declared, decimal text
    Column("cap_delta", Text, nullable=False),
    Column("spent_rho", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
)

ledger_entries = Table(
    "ledger_entries", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("dataset_id", String(80), nullable=False, index=True),
    Column("release_id", String(80), nullable=False, unique=True),
    Column("plan_hash", String(64), nullable=False),
    Column("query", Text, nullable=False),  # canonical JSON of the query
    Column("mechanism", String(40), nullable=False),
    Column("cost_rho", Text, nullable=False),  # exact Fraction
    Column("snapshot_hash", String(64), nullable=False),
    Column("result_hash", String(64)),  # filled when the result is recorded
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    Column("signing_key_id", String(32), nullable=False),
    Column("created_at", String(32), nullable=False),
    # The run admission the entry belongs to: part ``run_part`` of ``run_size`` entries
    # appended in one transaction (empty for entries charged one by one, before version 2).
    Column("run_id", String(200)),
    Column("run_part", Integer),
    Column("run_size", Integer),
)

release_results = Table(
    "release_results", metadata,
    # The DP output of a release, kept so a retry republishes it instead of drawing noise.
    Column("release_id", String(80), primary_key=True),
    Column("result_json", Text, nullable=False),
    Column("result_hash", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    Column("recorded_at", String(32), nullable=False),
    UniqueConstraint("result_hash", "release_id"),
)

#: Tables that hold pseudonymized rows: only the pipeline role may read them.
SECURE_TABLES = ("persons", "contacts", "donations", "identifier_links", "objections",
                 "ingested_files")
#: Tables an auditor may read (append-only evidence: the pipeline may not delete from them).
LEDGER_TABLES = ("privacy_budgets", "ledger_entries", "release_results", "erasure_log")
