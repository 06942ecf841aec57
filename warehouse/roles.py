"""Least-privilege PostgreSQL roles for the warehouse, the ledger and the published schema.

Three NOLOGIN group roles carry every privilege; people and services log in as LOGIN users
that are members of exactly one group:

* ``isoloir_pipeline`` reads and writes the warehouse schema (the secure tables and the
  ledger) and writes the published schema. It may not delete or truncate ledger rows, and it
  owns none of the tables created by the administrator, so it cannot drop them either.
* ``isoloir_strategist`` sees the published schema only: no USAGE on the warehouse schema,
  so not even the names of the secure tables resolve.
* ``isoloir_auditor`` reads the ledger tables (:data:`warehouse.schema.LEDGER_TABLES`) and
  the published schema, nothing else.

Roles are cluster-wide while schemas are per database, so role creation is guarded (a DO
block that tolerates a concurrent creator) and :func:`apply_grants` can run any number of
times, on any number of schemas. It runs as the database administrator, in
``airflow-init`` (``python -m warehouse.roles``), after the warehouse tables exist.

Passwords never reach the server in clear: :func:`create_login` sends the SCRAM verifier
computed by libpq, as ``psql``'s ``\\password`` does.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from core.errors import IsoloirError, SettingsError
from warehouse.schema import LEDGER_TABLES, SECURE_TABLES, metadata

log = logging.getLogger(__name__)

PIPELINE_ROLE = "isoloir_pipeline"
STRATEGIST_ROLE = "isoloir_strategist"
AUDITOR_ROLE = "isoloir_auditor"
GROUP_ROLES = (PIPELINE_ROLE, STRATEGIST_ROLE, AUDITOR_ROLE)

DEFAULT_WAREHOUSE_SCHEMA = "warehouse"
DEFAULT_PUBLISHED_SCHEMA = "published"

#: Privileges of the pipeline on the ledger tables: the ledger is append-only evidence
#: (UPDATE fills ``result_hash`` and ``spent_rho``), so no DELETE and no TRUNCATE.
LEDGER_WRITE_PRIVILEGES = "SELECT, INSERT, UPDATE"
#: Privileges of the pipeline on every other warehouse table (erasure needs DELETE).
WAREHOUSE_WRITE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Serializes concurrent apply_grants in one database (GRANT on one object from two sessions
# fails with "tuple concurrently updated").
_LOCK_KEY = "isoloir.warehouse.roles.apply_grants"


class RoleConfigurationError(IsoloirError):
    """A role or schema name is unusable, or an existing role has more power than it should."""


def grant_statements(schema: str, published_schema: str = DEFAULT_PUBLISHED_SCHEMA, *,
                     revoke_public_connect: bool = False) -> list[str]:
    """The SQL that :func:`apply_grants` runs, in order (shown to DBAs by ``--print``).

    ``revoke_public_connect`` also removes the default CONNECT/TEMP privilege of PUBLIC on
    the current database; deployments want it, a shared test database does not.
    """
    s = quote_identifier(schema)
    p = quote_identifier(published_schema)
    pipeline, strategist, auditor = (quote_identifier(r) for r in GROUP_ROLES)
    ledger = ", ".join(f"{s}.{quote_identifier(t)}" for t in LEDGER_TABLES)
    others = [t for t in metadata.tables if t not in LEDGER_TABLES]
    writable = ", ".join(f"{s}.{quote_identifier(t)}" for t in others)

    stmts = [f"SELECT pg_advisory_xact_lock(hashtext('{_LOCK_KEY}'))"]
    stmts += [_create_group_role(role) for role in GROUP_ROLES]
    if revoke_public_connect:
        # The database is whichever we are connected to; quote_ident keeps % out of the
        # SQL (the driver would read %I as a placeholder).
        db = "quote_ident(current_database())"
        stmts.append(
            "DO $$ BEGIN "
            f"EXECUTE 'REVOKE ALL ON DATABASE ' || {db} || ' FROM PUBLIC'; "
            f"EXECUTE 'GRANT CONNECT ON DATABASE ' || {db} || ' TO {strategist}, {auditor}'; "
            f"EXECUTE 'GRANT CONNECT, TEMPORARY ON DATABASE ' || {db} || ' TO {pipeline}'; "
            "END $$")
    stmts += [
        # --- warehouse schema: the pipeline reads and writes; the auditor reads the ledger.
        f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
        f"REVOKE ALL ON SCHEMA {s} FROM {strategist}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC, {strategist}, {auditor}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM PUBLIC, {strategist}, {auditor}",
        f"GRANT USAGE, CREATE ON SCHEMA {s} TO {pipeline}",
        f"GRANT USAGE ON SCHEMA {s} TO {auditor}",
        f"GRANT {WAREHOUSE_WRITE_PRIVILEGES} ON {writable} TO {pipeline}",
        f"REVOKE ALL ON {ledger} FROM {pipeline}",
        f"GRANT {LEDGER_WRITE_PRIVILEGES} ON {ledger} TO {pipeline}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {pipeline}",
        f"GRANT SELECT ON {ledger} TO {auditor}",
        # Tables a later migration adds (as the administrator) are the pipeline's to write,
        # and nobody else's to read until this function names them.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT {WAREHOUSE_WRITE_PRIVILEGES} "
        f"ON TABLES TO {pipeline}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE "
        f"ON SEQUENCES TO {pipeline}",
        # --- published schema: the release step mirrors DP tables here; everyone may read.
        f"CREATE SCHEMA IF NOT EXISTS {p}",
        f"REVOKE ALL ON SCHEMA {p} FROM PUBLIC",
        f"GRANT USAGE, CREATE ON SCHEMA {p} TO {pipeline}",
        f"GRANT USAGE ON SCHEMA {p} TO {strategist}, {auditor}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {p} "
        f"TO {pipeline}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {p} TO {strategist}, {auditor}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {p} GRANT SELECT, INSERT, UPDATE, DELETE, "
        f"TRUNCATE ON TABLES TO {pipeline}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {p} GRANT SELECT ON TABLES "
        f"TO {strategist}, {auditor}",
        # Tables the pipeline itself creates there (its LOGIN users run as the group role).
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {pipeline} IN SCHEMA {p} GRANT SELECT ON TABLES "
        f"TO {strategist}, {auditor}",
    ]
    return stmts


def apply_grants(engine: Engine, schema: str,
                 published_schema: str = DEFAULT_PUBLISHED_SCHEMA, *,
                 revoke_public_connect: bool = False) -> None:
    """Create the group roles if missing and grant them least privilege on ``schema``.

    ``schema`` must already hold the warehouse tables (``warehouse.db.ensure_schema``);
    ``published_schema`` is created if missing. Idempotent, and safe to run while another
    session applies grants to another schema. Raises :class:`RoleConfigurationError` if an
    existing group role can log in, is a superuser, or inherits another role's privileges.
    """
    if engine.dialect.name != "postgresql":
        raise RoleConfigurationError(
            f"roles need PostgreSQL; this warehouse is {engine.dialect.name} "
            "(single-machine mode has no database roles)")
    stmts = grant_statements(schema, published_schema,
                             revoke_public_connect=revoke_public_connect)
    with engine.begin() as conn:
        _require_tables(conn, schema)
        for stmt in stmts:
            conn.exec_driver_sql(stmt)
        check_group_roles(conn)
    log.info("grants applied to schema %s and published schema %s", schema, published_schema)


def check_group_roles(conn: Connection) -> None:
    """Refuse group roles that could log in or that carry privileges from elsewhere.

    The roles are cluster-wide: someone may have created ``isoloir_auditor`` by hand, with
    LOGIN or as a member of ``pg_read_all_data``, which would silently defeat every grant.
    """
    names = list(GROUP_ROLES)
    rows = conn.execute(text(
        "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(:names) AND "
        "(rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb)"),
        {"names": names}).scalars().all()
    if rows:
        raise RoleConfigurationError(
            f"group roles {sorted(rows)} must be NOLOGIN NOSUPERUSER NOBYPASSRLS "
            "NOCREATEROLE NOCREATEDB; fix them with ALTER ROLE before applying grants")
    inherited = conn.execute(text(
        "SELECT m.rolname FROM pg_catalog.pg_auth_members am "
        "JOIN pg_catalog.pg_roles m ON m.oid = am.member "
        "WHERE m.rolname = ANY(:names)"), {"names": names}).scalars().all()
    if inherited:
        raise RoleConfigurationError(
            f"group roles {sorted(set(inherited))} are members of other roles and would "
            "inherit their privileges; REVOKE those memberships")


def create_login(engine: Engine, user: str, group: str, password: str | None = None, *,
                 search_path: Sequence[str] = ()) -> None:
    """Create (or update) the LOGIN user ``user`` as a member of the group role ``group``.

    Every session of the user runs as ``group`` (``ALTER ROLE ... SET role``), so objects the
    pipeline creates belong to the group and the default privileges above apply to them.
    An existing role with administrative attributes (superuser, CREATEROLE, ...) is refused.
    ``password`` is hashed to a SCRAM verifier on the client; ``None`` leaves the password
    unchanged (certificate or peer authentication, or set it later with ``\\password``).
    """
    if group not in GROUP_ROLES:
        raise RoleConfigurationError(f"{group!r} is not one of the group roles {GROUP_ROLES}")
    if user in GROUP_ROLES:
        raise RoleConfigurationError("a LOGIN user must not be one of the group roles")
    u = quote_identifier(user)
    g = quote_identifier(group)
    path = ", ".join(quote_identifier(s) for s in search_path)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock(hashtext('{_LOCK_KEY}'))")
        powerful = conn.execute(text(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :user AND (rolsuper OR "
            "rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)"),
            {"user": user}).first()
        if powerful is not None:
            # A typo such as ISOLOIR_PIPELINE_LOGIN=postgres must not demote an administrator.
            raise RoleConfigurationError(
                f"role {user!r} already exists with administrative attributes; choose another "
                "name for the LOGIN user")
        conn.exec_driver_sql(
            "DO $$ BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{user}') THEN "
            f"CREATE ROLE {u} LOGIN; END IF; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
        conn.exec_driver_sql(
            f"ALTER ROLE {u} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT")
        for other in GROUP_ROLES:
            if other != group:
                conn.exec_driver_sql(f"REVOKE {quote_identifier(other)} FROM {u}")
        conn.exec_driver_sql(f"GRANT {g} TO {u}")
        conn.exec_driver_sql(f"ALTER ROLE {u} SET role = '{group}'")
        if path:
            conn.exec_driver_sql(f"ALTER ROLE {u} SET search_path = {path}")
        if password is not None:
            verifier = _scram_verifier(conn, user, password)
            conn.exec_driver_sql(f"ALTER ROLE {u} PASSWORD '{verifier}'")
    log.info("login user %s is a member of %s", user, group)


def quote_identifier(name: str) -> str:
    """Double-quote a role or schema name after checking it is a plain lower-case name.

    Names come from configuration, never from data; anything exotic is refused rather
    than escaped, so the SQL stays readable in ``--print`` output and server logs.
    """
    if not _IDENTIFIER.match(name):
        raise RoleConfigurationError(
            f"{name!r} is not a plain PostgreSQL name (lower-case letters, digits, _)")
    return f'"{name}"'


def _create_group_role(role: str) -> str:
    # A concurrent creator (another database, another test run) may win the race between
    # the check and CREATE ROLE: that raises duplicate_object or unique_violation.
    return ("DO $$ BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {quote_identifier(role)} NOLOGIN; END IF; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")


def _require_tables(conn: Connection, schema: str) -> None:
    wanted = set(metadata.tables) | set(SECURE_TABLES) | set(LEDGER_TABLES)
    present = set(conn.execute(text(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = :schema"),
        {"schema": schema}).scalars())
    missing = sorted(wanted - present)
    if missing:
        raise RoleConfigurationError(
            f"schema {schema!r} lacks the warehouse tables {missing}; create them with "
            "warehouse.db.ensure_schema before applying grants")


def _scram_verifier(conn: Connection, user: str, password: str) -> str:
    raw = conn.connection.dbapi_connection
    pgconn = getattr(raw, "pgconn", None)
    if pgconn is None:
        raise RoleConfigurationError("setting a password needs the psycopg 3 driver")
    verifier = pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
    return str(verifier.decode("ascii"))


# ---------------------------------------------------------------- airflow-init entry point

ENV_ADMIN_URL = "ISOLOIR_ADMIN_URL"
ENV_ADMIN_PASSWORD_FILE = "ISOLOIR_ADMIN_PASSWORD_FILE"
ENV_WAREHOUSE_SCHEMA = "ISOLOIR_WAREHOUSE_SCHEMA"
ENV_PUBLISHED_SCHEMA = "ISOLOIR_PUBLISHED_SCHEMA"
#: group role -> (variable naming the LOGIN user, variable naming its password file, default)
LOGIN_VARIABLES = {
    PIPELINE_ROLE: ("ISOLOIR_PIPELINE_LOGIN", "ISOLOIR_PIPELINE_PASSWORD_FILE",
                    "isoloir_pipeline_login"),
    STRATEGIST_ROLE: ("ISOLOIR_STRATEGIST_LOGIN", "ISOLOIR_STRATEGIST_PASSWORD_FILE",
                      "isoloir_strategist_login"),
    AUDITOR_ROLE: ("ISOLOIR_AUDITOR_LOGIN", "ISOLOIR_AUDITOR_PASSWORD_FILE",
                   "isoloir_auditor_login"),
}


def bootstrap(environ: Mapping[str, str]) -> None:
    """Create the warehouse schema and tables, apply the grants, create the LOGIN users.

    Reads only variable names and file paths from ``environ``: the administrator URL
    (without password), the file holding its password, and one password file per LOGIN user
    (a user whose password-file variable is unset is not created).
    """
    from warehouse.db import ensure_schema, make_engine

    url_raw = environ.get(ENV_ADMIN_URL, "").strip()
    if not url_raw:
        raise SettingsError(ENV_ADMIN_URL, "must name the warehouse database as its "
                            "administrator, e.g. postgresql://postgres@postgres:5432/isoloir")
    url = make_url(url_raw)
    if url.password is not None:
        raise SettingsError(ENV_ADMIN_URL, f"must not contain a password; use "
                            f"{ENV_ADMIN_PASSWORD_FILE}")
    password_file = environ.get(ENV_ADMIN_PASSWORD_FILE, "").strip()
    if password_file:
        url = url.set(password=_read_secret(ENV_ADMIN_PASSWORD_FILE, password_file))
    schema = environ.get(ENV_WAREHOUSE_SCHEMA, "").strip() or DEFAULT_WAREHOUSE_SCHEMA
    published = environ.get(ENV_PUBLISHED_SCHEMA, "").strip() or DEFAULT_PUBLISHED_SCHEMA

    admin = make_engine(url.render_as_string(hide_password=False))
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
    finally:
        admin.dispose()
    scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
    engine = make_engine(scoped.render_as_string(hide_password=False))
    try:
        ensure_schema(engine)
        apply_grants(engine, schema, published, revoke_public_connect=True)
        paths = {PIPELINE_ROLE: (schema, published), STRATEGIST_ROLE: (published,),
                 AUDITOR_ROLE: (published, schema)}
        for group, (user_var, file_var, default_user) in LOGIN_VARIABLES.items():
            file_path = environ.get(file_var, "").strip()
            if not file_path:
                log.info("%s unset: no LOGIN user for %s", file_var, group)
                continue
            user = environ.get(user_var, "").strip() or default_user
            create_login(engine, user, group, _read_secret(file_var, file_path),
                         search_path=paths[group])
    finally:
        engine.dispose()


def _read_secret(variable: str, path: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise SettingsError(variable, f"cannot read the file it names ({err.strerror})") from err
    if not value:
        raise SettingsError(variable, "names an empty file")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m warehouse.roles``: bootstrap from the environment (``--print``: show SQL)."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args[:1] == ["--print"]:
            schema = args[1] if len(args) > 1 else DEFAULT_WAREHOUSE_SCHEMA
            published = args[2] if len(args) > 2 else DEFAULT_PUBLISHED_SCHEMA
            for stmt in grant_statements(schema, published, revoke_public_connect=True):
                sys.stdout.write(stmt + ";\n")
            return 0
        if args:
            log.error("usage: python -m warehouse.roles [--print [SCHEMA [PUBLISHED]]]")
            return 2
        bootstrap(os.environ)
    except IsoloirError as err:
        log.error("%s", err)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
