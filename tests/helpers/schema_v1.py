"""A warehouse as Isoloir's schema version 1 created it, to test the migration forward."""

from __future__ import annotations

from sqlalchemy import Engine, text


def downgrade_to_v2(engine: Engine) -> None:
    """Remove what version 3 added: the raw records' keyed hashes (``raw_key``)."""
    with engine.begin() as conn:
        for table in ("contacts", "donations", "people_rows"):
            conn.execute(text(f"DROP INDEX IF EXISTS ix_{table}_raw_key"))
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN raw_key"))
        conn.execute(text("UPDATE schema_info SET version = 2"))


def downgrade_to_v1(engine: Engine) -> None:
    """Remove what versions 2 and 3 added: row fingerprints, people_rows, ledger run columns."""
    downgrade_to_v2(engine)
    with engine.begin() as conn:
        for table in ("contacts", "donations"):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN fingerprint"))
        for column in ("run_id", "run_part", "run_size"):
            conn.execute(text(f"ALTER TABLE ledger_entries DROP COLUMN {column}"))
        conn.execute(text("DROP TABLE people_rows"))
        conn.execute(text("UPDATE schema_info SET version = 1"))
