"""Least privilege on PostgreSQL: what each group role can and cannot read or write.

Every test works in its own warehouse schema (the ``pg_url`` fixture) and its own published
schema; the group roles are cluster-wide and survive from earlier runs, which is exactly
the situation :func:`warehouse.roles.apply_grants` must tolerate.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy import Engine, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from core.errors import SettingsError
from tests.conftest import PG_URL
from warehouse import roles
from warehouse.db import ensure_schema, make_engine
from warehouse.roles import (
    AUDITOR_ROLE,
    PIPELINE_ROLE,
    STRATEGIST_ROLE,
    RoleConfigurationError,
    apply_grants,
    bootstrap,
    check_group_roles,
    create_login,
    grant_statements,
    quote_identifier,
)
from warehouse.schema import LEDGER_TABLES, SECURE_TABLES, metadata, privacy_budgets

RAW_PG = PG_URL.replace("+psycopg", "")
FORBIDDEN_TO_ALL_BUT_PIPELINE = ("persons", "contacts", "donations", "identifier_links")


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _schema_of(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[1]


@pytest.fixture
def granted(pg_url: str) -> Iterator[tuple[Engine, str, str]]:
    """(engine, warehouse schema, published schema), tables created and grants applied."""
    engine = make_engine(pg_url)
    ensure_schema(engine)
    schema, published = _schema_of(pg_url), f"p_{_uid()}"
    try:
        apply_grants(engine, schema, published)
        yield engine, schema, published
    finally:
        engine.dispose()
        with psycopg.connect(RAW_PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{published}" CASCADE')


def _as(engine: Engine, role: str, sql: str) -> object:
    """Run ``sql`` as ``role`` in a transaction that is rolled back; return the first cell."""
    with engine.connect() as conn:
        with conn.begin() as tx:
            conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
            result = conn.exec_driver_sql(sql)
            value = result.scalar() if result.returns_rows else None
            tx.rollback()
    return value


def _denied(engine: Engine, role: str, sql: str) -> bool:
    try:
        _as(engine, role, sql)
    except DBAPIError as err:
        assert isinstance(err.orig, pg_errors.InsufficientPrivilege), err
        return True
    return False


@pytest.mark.postgres
def test_strategist_sees_nothing_of_the_warehouse(granted: tuple[Engine, str, str]) -> None:
    engine, schema, _ = granted
    for table in FORBIDDEN_TO_ALL_BUT_PIPELINE + LEDGER_TABLES + SECURE_TABLES:
        assert _denied(engine, STRATEGIST_ROLE, f'SELECT count(*) FROM "{schema}"."{table}"'), table


@pytest.mark.postgres
def test_auditor_reads_the_ledger_and_nothing_secure(granted: tuple[Engine, str, str]) -> None:
    engine, schema, _ = granted
    with engine.begin() as conn:
        conn.execute(insert(privacy_budgets).values(
            dataset_id="campaign-2027", cap_rho="1/2", cap_epsilon="8", cap_delta="1e-7",
            spent_rho="0", created_at="2027-01-04T00:00:00Z"))
    for table in set(SECURE_TABLES) | set(FORBIDDEN_TO_ALL_BUT_PIPELINE) | {"schema_info"}:
        assert _denied(engine, AUDITOR_ROLE, f'SELECT count(*) FROM "{schema}"."{table}"'), table
    assert _as(engine, AUDITOR_ROLE, f'SELECT count(*) FROM "{schema}".privacy_budgets') == 1
    for table in ("ledger_entries", "release_results", "erasure_log"):
        assert _as(engine, AUDITOR_ROLE, f'SELECT count(*) FROM "{schema}"."{table}"') == 0
    # Read-only: the auditor cannot alter the evidence it checks.
    assert _denied(engine, AUDITOR_ROLE, f"UPDATE \"{schema}\".privacy_budgets SET spent_rho = '1'")
    assert _denied(engine, AUDITOR_ROLE, f'DELETE FROM "{schema}".ledger_entries')


@pytest.mark.postgres
def test_pipeline_writes_the_warehouse_but_cannot_erase_the_ledger(
        granted: tuple[Engine, str, str]) -> None:
    engine, schema, _ = granted
    insert_person = (f"INSERT INTO \"{schema}\".persons (person_id, first_file, last_file) "
                     "VALUES ('k1:abc', 'f', 'f')")
    assert not _denied(engine, PIPELINE_ROLE, insert_person)
    assert not _denied(engine, PIPELINE_ROLE, f'DELETE FROM "{schema}".persons')  # erasure
    assert not _denied(engine, PIPELINE_ROLE, f'SELECT count(*) FROM "{schema}".identifier_links')
    insert_budget = (f"INSERT INTO \"{schema}\".privacy_budgets VALUES "
                     "('d', '1/2', '8', '1e-7', '0', '2027-01-04')")
    assert not _denied(engine, PIPELINE_ROLE, insert_budget)
    assert not _denied(engine, PIPELINE_ROLE,
                       f"UPDATE \"{schema}\".privacy_budgets SET spent_rho = '1/4'")
    for table in LEDGER_TABLES:
        assert _denied(engine, PIPELINE_ROLE, f'DELETE FROM "{schema}"."{table}"'), table
        assert _denied(engine, PIPELINE_ROLE, f'TRUNCATE "{schema}"."{table}"'), table
        assert _denied(engine, PIPELINE_ROLE, f'DROP TABLE "{schema}"."{table}"'), table


@pytest.mark.postgres
def test_published_schema_is_readable_by_strategist_and_auditor(
        granted: tuple[Engine, str, str]) -> None:
    engine, schema, published = granted
    with engine.begin() as conn:  # the administrator mirrors a table after the grants
        conn.exec_driver_sql(f'CREATE TABLE "{published}".by_admin (cell text, n int)')
        conn.exec_driver_sql(f"INSERT INTO \"{published}\".by_admin VALUES ('75', 12)")
    with engine.begin() as conn:  # ... and the pipeline creates one as its group role
        conn.exec_driver_sql(f'SET LOCAL ROLE "{PIPELINE_ROLE}"')
        conn.exec_driver_sql(f'CREATE TABLE "{published}".by_pipeline (cell text, n int)')
        conn.exec_driver_sql(f"INSERT INTO \"{published}\".by_pipeline VALUES ('13', 4)")
    for role in (STRATEGIST_ROLE, AUDITOR_ROLE):
        assert _as(engine, role, f'SELECT n FROM "{published}".by_admin') == 12
        assert _as(engine, role, f'SELECT n FROM "{published}".by_pipeline') == 4
        assert _denied(engine, role, f"INSERT INTO \"{published}\".by_admin VALUES ('1', 1)")
        assert _denied(engine, role, f'CREATE TABLE "{published}".mine (x int)')
    # A table that existed before the grants is covered too (GRANT ... ON ALL TABLES).
    apply_grants(engine, schema, published)
    assert _as(engine, STRATEGIST_ROLE, f'SELECT count(*) FROM "{published}".by_admin') == 1


@pytest.mark.postgres
def test_apply_grants_is_idempotent_and_roles_cannot_log_in(
        granted: tuple[Engine, str, str]) -> None:
    engine, schema, published = granted
    apply_grants(engine, schema, published)  # roles, schema and grants all exist already
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname IN "
            f"('{PIPELINE_ROLE}', '{STRATEGIST_ROLE}', '{AUDITOR_ROLE}') ORDER BY 1").all()
    assert [tuple(r) for r in rows] == [(AUDITOR_ROLE, False, False),
                                       (PIPELINE_ROLE, False, False),
                                       (STRATEGIST_ROLE, False, False)]
    assert _denied(engine, STRATEGIST_ROLE, f'SELECT count(*) FROM "{schema}".persons')
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(make_url(RAW_PG).set(username=STRATEGIST_ROLE)
                        .render_as_string(hide_password=False), connect_timeout=5)


@pytest.mark.postgres
def test_apply_grants_refuses_a_schema_without_tables(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        with pytest.raises(RoleConfigurationError, match="ensure_schema"):
            apply_grants(engine, _schema_of(pg_url), f"p_{_uid()}")
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_group_role_that_can_log_in_is_refused(
        granted: tuple[Engine, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _, _ = granted
    rogue = f"isoloir_t_{_uid()}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{rogue}" LOGIN')
    try:
        monkeypatch.setattr(roles, "GROUP_ROLES", (PIPELINE_ROLE, rogue))
        with engine.connect() as conn, pytest.raises(RoleConfigurationError, match=rogue):
            check_group_roles(conn)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER ROLE "{rogue}" NOLOGIN')
            conn.exec_driver_sql(f'GRANT pg_read_all_data TO "{rogue}"')
        with engine.connect() as conn, pytest.raises(RoleConfigurationError, match="members"):
            check_group_roles(conn)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP ROLE "{rogue}"')


@pytest.mark.postgres
def test_login_user_runs_as_its_group(granted: tuple[Engine, str, str]) -> None:
    engine, schema, published = granted
    user = f"isoloir_t_{_uid()}"
    password = f"pw-{uuid.uuid4().hex}"
    try:
        create_login(engine, user, STRATEGIST_ROLE, password, search_path=(published,))
        create_login(engine, user, STRATEGIST_ROLE, password, search_path=(published,))
        with engine.connect() as conn:
            stored = conn.exec_driver_sql(
                f"SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'").scalar_one()
        assert stored.startswith("SCRAM-SHA-256$") and password not in stored
        url = make_url(RAW_PG).set(username=user, password=password)
        with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
            who = conn.execute("SELECT current_user, session_user, current_schemas(false)")
            current, session, path = who.fetchone()  # type: ignore[misc]
            assert (current, session, path) == (STRATEGIST_ROLE, user, [published])
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(f'SELECT count(*) FROM "{schema}".persons')
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{user}"')


@pytest.mark.postgres
def test_create_login_refuses_to_touch_an_administrator(
        granted: tuple[Engine, str, str]) -> None:
    engine, _, _ = granted
    admin = f"isoloir_t_{_uid()}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{admin}" LOGIN CREATEROLE')
    try:
        with pytest.raises(RoleConfigurationError, match="administrative"):
            create_login(engine, admin, AUDITOR_ROLE, "pw")
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                f"SELECT rolcreaterole, pg_has_role('{admin}', '{AUDITOR_ROLE}', 'MEMBER') "
                f"FROM pg_roles WHERE rolname = '{admin}'").one()
        assert tuple(row) == (True, False)  # untouched
        with pytest.raises(RoleConfigurationError):
            create_login(engine, PIPELINE_ROLE, PIPELINE_ROLE)
        with pytest.raises(RoleConfigurationError):
            create_login(engine, "someone", "pg_read_all_data")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP ROLE "{admin}"')


@pytest.mark.postgres
def test_bootstrap_builds_a_locked_down_database(pg_url: str, tmp_path: Path) -> None:
    database, tag = f"isoloir_t_{_uid()}", _uid()
    logins = {role: f"isoloir_t_{tag}_{role.split('_')[1]}"
              for role in (PIPELINE_ROLE, STRATEGIST_ROLE, AUDITOR_ROLE)}
    env = {"ISOLOIR_ADMIN_URL": str(make_url(PG_URL).set(database=database))}
    for role, (user_var, file_var, _) in roles.LOGIN_VARIABLES.items():
        secret = tmp_path / f"{role}.pw"
        secret.write_text(uuid.uuid4().hex + "\n")
        env[user_var], env[file_var] = logins[role], str(secret)
    with psycopg.connect(RAW_PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        bootstrap(env)
        bootstrap(env)  # airflow-init runs on every `docker compose up`
        db_url = make_url(RAW_PG).set(database=database)
        with psycopg.connect(db_url.render_as_string(hide_password=False)) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'warehouse'")}
            assert tables == set(metadata.tables)
            acl = conn.execute("SELECT datacl::text FROM pg_database "
                               "WHERE datname = current_database()").fetchone()
            assert acl is not None and "{=" not in acl[0] and ",=" not in acl[0]
        as_pipeline = db_url.set(username=logins[PIPELINE_ROLE])
        with psycopg.connect(as_pipeline.render_as_string(hide_password=False)) as conn:
            assert conn.execute("SELECT count(*) FROM persons").fetchone() == (0,)
            assert conn.execute("SELECT current_user").fetchone() == (PIPELINE_ROLE,)
        as_strategist = db_url.set(username=logins[STRATEGIST_ROLE])
        with psycopg.connect(as_strategist.render_as_string(hide_password=False)) as conn:
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute("SELECT count(*) FROM warehouse.donations")
    finally:
        with psycopg.connect(RAW_PG, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for user in logins.values():
                admin.execute(f'DROP ROLE IF EXISTS "{user}"')


def test_bootstrap_refuses_a_password_in_the_url() -> None:
    secret = "s3cr3t-value"
    with pytest.raises(SettingsError) as err:
        bootstrap({"ISOLOIR_ADMIN_URL": f"postgresql://postgres:{secret}@db:5432/isoloir"})
    assert "ISOLOIR_ADMIN_URL" in str(err.value) and secret not in str(err.value)
    with pytest.raises(SettingsError, match="ISOLOIR_ADMIN_URL"):
        bootstrap({})


def test_names_are_checked_before_they_reach_sql() -> None:
    assert quote_identifier("published") == '"published"'
    for bad in ('x"; DROP SCHEMA warehouse; --', "Upper", "", "a" * 64, "1abc"):
        with pytest.raises(RoleConfigurationError):
            quote_identifier(bad)
    with pytest.raises(RoleConfigurationError):
        grant_statements("warehouse", "pub lished")


def test_grant_statements_never_give_the_strategist_the_warehouse() -> None:
    stmts = grant_statements("warehouse", "published")
    strategist_grants = [s for s in stmts if s.startswith("GRANT") and STRATEGIST_ROLE in s]
    assert strategist_grants and all('"published"' in s for s in strategist_grants)
    ledger_grant = [s for s in stmts if s.startswith("GRANT SELECT ON")
                    and AUDITOR_ROLE in s and '"warehouse"' in s]
    assert len(ledger_grant) == 1
    assert all(f'"{t}"' not in ledger_grant[0] for t in SECURE_TABLES)
    assert not any("DATABASE" in s for s in stmts)
    assert any("REVOKE ALL ON DATABASE" in s
               for s in grant_statements("warehouse", revoke_public_connect=True))


def test_apply_grants_needs_postgresql(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with pytest.raises(RoleConfigurationError, match="PostgreSQL"):
            apply_grants(engine, "main")
    finally:
        engine.dispose()


def test_main_prints_the_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert roles.main(["--print", "warehouse", "published"]) == 0
    out = capsys.readouterr().out
    assert 'GRANT SELECT ON "warehouse"."privacy_budgets"' in out
    assert roles.main(["--bogus"]) == 2
