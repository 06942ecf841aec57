"""Shared fixtures: an isolated ISOLOIR_HOME with keys, and a fresh PostgreSQL schema per test.

PostgreSQL tests run whenever the server at 127.0.0.1:5432 answers. Under CI (CI=true) an
unreachable server is a failure, not a skip. Locally they skip with a message that says how
to enable them: start PostgreSQL, or point ISOLOIR_TEST_PG_URL at one.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings as hypothesis_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.settings import Settings

# Property tests explore at random on a developer's machine (new counter-examples get found
# and pinned with @example); CI replays a fixed derivation, so main never flips on a draw.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")

PG_URL = os.environ.get("ISOLOIR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as err:  # the reason is shown in the skip message
        return f"{type(err).__name__}: {err}".splitlines()[0]


@pytest.fixture
def isoloir_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ISOLOIR_HOME with a master key in the environment and a signing key file."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ISOLOIR_HOME", str(home))
    monkeypatch.delenv("ISOLOIR_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("ISOLOIR_KEY_FILE", raising=False)
    monkeypatch.setenv("ISOLOIR_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    monkeypatch.setenv("ISOLOIR_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing.key"))
    return home


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a brand-new schema, dropped afterwards."""
    reason = _pg_reachable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is required in CI and is unreachable: {reason}")
        pytest.skip(f"PostgreSQL unreachable ({reason}); start it on 127.0.0.1:5432 or set "
                    "ISOLOIR_TEST_PG_URL to enable these tests")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    raw = PG_URL.replace("+psycopg", "")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    """The settings of the isolated home, its zones created."""
    from core.settings import load_settings

    loaded = load_settings()
    loaded.ensure_dirs()
    return loaded


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request: pytest.FixtureRequest, isoloir_home: Path) -> Iterator[Engine]:
    """An empty warehouse, once on SQLite and once on PostgreSQL, schema created."""
    from warehouse.db import ensure_schema, make_engine

    url = f"sqlite:///{isoloir_home / 'warehouse.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    ensure_schema(engine)
    yield engine
    engine.dispose()
