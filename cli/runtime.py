"""Resolving what a command needs at run time: warehouse engine and keyring, from settings."""

from __future__ import annotations

from sqlalchemy import Engine

from core.settings import Settings


def warehouse_engine(settings: Settings) -> Engine:
    from warehouse.db import ensure_schema, make_engine

    settings.ensure_dirs()
    engine = make_engine(settings.warehouse_url)
    ensure_schema(engine)
    return engine
