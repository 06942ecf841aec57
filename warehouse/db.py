"""Engines and schema creation for the warehouse.

SQLite gets WAL and a busy timeout so that concurrent DAG runs wait instead of failing;
PostgreSQL gets psycopg 3. ``ensure_schema`` is idempotent and checks the schema version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, text, update
from sqlalchemy.engine import make_url

from core.errors import IsoloirError
from warehouse.schema import SCHEMA_VERSION, metadata, schema_info

log = logging.getLogger(__name__)


class SchemaVersionError(IsoloirError):
    """The warehouse was created by another Isoloir version."""


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; psycopg 3 is used for ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let BEGIN be issued explicitly (BEGIN IMMEDIATE in write_transaction).
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_conn.isolation_level = None  # autocommit at the driver; SQLAlchemy emits BEGIN
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    # 64 MiB of page cache; sorts (CREATE INDEX after a bulk load) spill to temporary files
    # rather than memory, which keeps a 1 M-person load's peak RSS under 2 GB.
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=FILE")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    mode = conn.info.get("sqlite_begin", "BEGIN")
    conn.exec_driver_sql(mode)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that holds SQLite's write lock from its first statement on.

    A plain BEGIN takes the lock only at the first write, so two writers that both read
    first would deadlock or fail; BEGIN IMMEDIATE makes the second one wait. PostgreSQL
    callers add the row or advisory locks they need.
    """
    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
        try:
            with conn.begin():
                yield conn
        finally:
            if sqlite:
                conn.info.pop("sqlite_begin", None)


def _v1_to_v2(conn: Connection) -> None:
    """Exports over time and whole runs (both nullable: older rows have none).

    Contacts and donations gain their row ``fingerprint`` (``people_rows`` is a new table,
    made by ``create_all``); ledger entries gain the run admission they belong to. Rows
    loaded under version 1 keep their per-file row keys: a re-export of a file loaded
    before the upgrade is not recognised as the same events (see the README).
    """
    for table in ("contacts", "donations"):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN fingerprint VARCHAR(80)"))
    for column, kind in (("run_id", "VARCHAR(200)"), ("run_part", "INTEGER"),
                         ("run_size", "INTEGER")):
        conn.execute(text(f"ALTER TABLE ledger_entries ADD COLUMN {column} {kind}"))


def _v2_to_v3(conn: Connection) -> None:
    """Incremental cost: events and people rows gain ``raw_key`` (nullable, indexed).

    Rows loaded before have none, so their first re-export is processed in full once (and
    then carries it): nothing is skipped that was not proven identical.
    """
    from sqlalchemy import inspect

    for table in ("contacts", "donations", "people_rows"):
        # people_rows made by create_all for a version 1 warehouse has it already
        if "raw_key" not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN raw_key VARCHAR(96)"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS ix_{table}_raw_key ON {table} (raw_key)"))


#: Steps from one schema version to the next, keyed by the version they start from. Each runs
#: in the transaction that records the new version, so a failed step changes nothing.
MIGRATIONS: Mapping[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def ensure_schema(engine: Engine) -> int:
    """Create missing tables and record the schema version; migrate an older schema step by
    step (:data:`MIGRATIONS`), refuse a newer one.

    Migrations alter tables, so on PostgreSQL they need the tables' owner (``airflow-init``
    runs this as the administrator); the pipeline role only ever finds the schema current.
    """
    metadata.create_all(engine)
    with engine.begin() as conn:
        row = conn.execute(select(schema_info.c.version)).first()
        if row is None:
            conn.execute(insert(schema_info).values(id=1, version=SCHEMA_VERSION))
            log.info("warehouse schema created at version %d", SCHEMA_VERSION)
            return SCHEMA_VERSION
        version = int(row.version)
        while version < SCHEMA_VERSION and version in MIGRATIONS:
            MIGRATIONS[version](conn)
            version += 1
            conn.execute(update(schema_info).values(version=version))
            log.info("warehouse schema migrated to version %d", version)
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"warehouse schema is version {version}, this Isoloir expects "
                f"{SCHEMA_VERSION}; upgrade Isoloir to read it")
        return version


def schema_version(engine: Engine) -> int | None:
    """The recorded schema version, or ``None`` for an empty database."""
    from sqlalchemy import inspect

    if not inspect(engine).has_table("schema_info"):
        return None
    with engine.connect() as conn:
        row = conn.execute(select(schema_info.c.version)).first()
    return None if row is None else int(row.version)
