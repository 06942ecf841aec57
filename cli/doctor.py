"""`isoloir doctor`: is this installation ready to run? Keys, warehouse, DAGs, budget.

Each check says ok, warn or fail and why, in a sentence an engineer can act on; none prints
a key, a supporter's value or the warehouse password. Exit 0 when every check is ok, 1
otherwise (a warning, such as a warehouse not created yet, also exits 1: something is left
to do). ``--json`` prints ``{"ok": ..., "checks": [{"name", "status", "detail"}]}``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from cli.app import app
from cli.common import console, emit_json, settings_or_exit
from core.errors import EXIT_FAILURE, IsoloirError
from core.settings import ENV_KEY_FILE, ENV_MASTER_KEY, Settings

Status = Literal["ok", "warn", "fail"]
#: A budget with less than this share of its cap left is a warning.
LOW_BUDGET = Fraction(1, 10)
DAG_PARSE_TIMEOUT = 300.0

_DAG_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
errors = {k: str(v).strip().splitlines()[-1][:300] if str(v).strip() else type(v).__name__
          for k, v in bag.import_errors.items()}
print("ISOLOIR_DAGBAG" + json.dumps({"dags": sorted(bag.dag_ids), "errors": errors}))
"""


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: Status
    detail: str


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private(path: Path, label: str) -> Check | None:
    """A failing check when ``path`` is readable by group or others (None when private)."""
    mode = _mode(path)
    if mode & 0o077:
        return Check(label, "fail", f"{path} has mode {mode:04o}: it must be private to its "
                                    f"owner (chmod 600 {path})")
    if not os.access(path, os.R_OK):
        return Check(label, "fail", f"{path} is not readable by this user")
    return None


def check_master_key(settings: Settings, environ: Mapping[str, str] | None = None) -> Check:
    """The master key: from ISOLOIR_MASTER_KEY, or a key file with mode 0600 that parses."""
    from pipeline.connections import load_master_keyring

    env = os.environ if environ is None else environ
    label = "master key"
    source: str
    if env.get(ENV_MASTER_KEY, "").strip():
        source = f"from {ENV_MASTER_KEY}"
    elif settings.key_file is not None:
        if not settings.key_file.is_file():
            return Check(label, "fail", f"{ENV_KEY_FILE}={settings.key_file} does not exist; "
                                        "create it with `isoloir keys init`")
        problem = _private(settings.key_file, label)
        if problem is not None:
            return problem
        source = f"file {settings.key_file} (mode {_mode(settings.key_file):04o})"
    elif env.get("AIRFLOW_CONN_ISOLOIR_MASTER_KEY"):
        source = "from the Airflow connection isoloir_master_key"
    else:
        return Check(label, "fail", f"no master key: set {ENV_KEY_FILE} (create one with "
                                    f"`isoloir keys init`) or {ENV_MASTER_KEY}")
    try:
        ring = load_master_keyring(settings, env)
    except IsoloirError as err:  # KeyMaterialError: names the file or variable, never bytes
        return Check(label, "fail", str(err))
    return Check(label, "ok", f"{source}; key ids {', '.join(ring.key_ids)} "
                              f"(current {ring.current.key_id})")


def check_signing_key(settings: Settings) -> Check:
    """The ledger signing key (0600) and its public half ``.pub``, with matching ids."""
    from privacy.signing import load_signing_key, load_verify_key, public_key_path

    label = "signing key"
    private = settings.signing_key_file
    public = public_key_path(private)
    if not public.is_file():
        if private.is_file():
            return Check(label, "fail", f"{private} has no public half {public.name}; auditors "
                                        "need it to verify the ledger")
        return Check(label, "fail", f"{private} does not exist; create it with "
                                    "`isoloir keys init` (ISOLOIR_SIGNING_KEY_FILE)")
    try:
        verify_id = load_verify_key(public).key_id
    except IsoloirError as err:
        return Check(label, "fail", str(err))
    if not private.is_file():
        return Check(label, "warn", f"only the public half {public} (key id {verify_id}): this "
                                    "machine can verify the ledger but not release")
    problem = _private(private, label)
    if problem is not None:
        return problem
    try:
        key_id = load_signing_key(private).key_id
    except IsoloirError as err:
        return Check(label, "fail", str(err))
    if key_id != verify_id:
        return Check(label, "fail", f"{public.name} (key id {verify_id}) is not the public half "
                                    f"of {private.name} (key id {key_id})")
    return Check(label, "ok", f"{private} (mode {_mode(private):04o}) and {public.name}; "
                              f"key id {key_id}")


def check_warehouse(settings: Settings) -> Check:
    """The warehouse answers, and its schema is the one this Isoloir expects."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from warehouse.db import make_engine, schema_version
    from warehouse.schema import SCHEMA_VERSION

    label = "warehouse"
    url = make_url(settings.warehouse_url)
    shown = settings.warehouse_url_safe
    if _sqlite_missing(settings):
        return Check(label, "warn", f"{shown} does not exist yet: the first ingest or "
                                    "release creates it")
    engine = make_engine(settings.warehouse_url)
    try:
        version = schema_version(engine)
    except SQLAlchemyError as err:
        return Check(label, "fail", f"{shown} is unreachable: {_reason(err, url.password)}")
    finally:
        engine.dispose()
    if version is None:
        return Check(label, "warn", f"{shown} is reachable but empty: the first ingest or "
                                    "release creates the schema")
    if version != SCHEMA_VERSION:
        return Check(label, "fail", f"{shown} has schema version {version}; this Isoloir "
                                    f"expects {SCHEMA_VERSION}: run the migration")
    return Check(label, "ok", f"{shown} reachable, schema version {version}")


def _sqlite_missing(settings: Settings) -> bool:
    """A SQLite warehouse not created yet (connecting would create an empty file)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.warehouse_url)
    return (url.get_backend_name() == "sqlite" and bool(url.database)
            and url.database != ":memory:" and not Path(str(url.database)).is_file())


def _reason(err: Exception, password: str | None) -> str:
    """The driver's first line, with the password masked in case a driver echoes it."""
    cause = getattr(err, "orig", None) or err
    lines = str(cause).strip().splitlines()
    text = f"{type(cause).__name__}: {lines[0][:200] if lines else ''}"
    return text.replace(password, "***") if password else text


def check_dags(settings: Settings, *, dags_folder: Path | None = None,
               timeout: float = DAG_PARSE_TIMEOUT) -> Check:
    """Airflow parses the DAG folder without import errors (in a child process, because
    Airflow reads its configuration from the environment when first imported)."""
    from cli.airflow_runner import DAGS_FOLDER, airflow_env

    label = "airflow dags"
    folder = dags_folder or DAGS_FOLDER
    try:
        done = subprocess.run([sys.executable, "-c", _DAG_PROBE, str(folder)],
                              env=airflow_env(settings), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Check(label, "fail", f"parsing {folder} took more than {timeout:.0f} s")
    return dag_parse_check(folder, done.returncode, done.stdout, done.stderr)


def dag_parse_check(folder: Path, returncode: int, stdout: str, stderr: str) -> Check:
    """Read the DagBag probe's output: its DAG ids and import errors (file, last line)."""
    label = "airflow dags"
    line = next((x for x in stdout.splitlines() if x.startswith("ISOLOIR_DAGBAG")), None)
    if returncode != 0 or line is None:
        last = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        return Check(label, "fail", f"Airflow could not parse {folder}: {last}")
    result = json.loads(line[len("ISOLOIR_DAGBAG"):])
    if result["errors"]:
        first = sorted(result["errors"].items())[0]
        return Check(label, "fail", f"{len(result['errors'])} DAG file(s) fail to import; "
                                    f"{Path(first[0]).name}: {first[1]}")
    if not result["dags"]:
        return Check(label, "fail", f"no DAG found in {folder}")
    return Check(label, "ok", f"{len(result['dags'])} DAGs parse: {', '.join(result['dags'])}")


def check_budget(settings: Settings) -> Check:
    """How much privacy budget is left, in runs of the configured plan."""
    from sqlalchemy.exc import SQLAlchemyError

    from privacy.accountant import decimal_text, read_budgets
    from privacy.plan import load_plan
    from warehouse.db import make_engine, schema_version

    label = "privacy budget"
    try:
        plan = load_plan(settings.plan_file)
    except IsoloirError as err:
        return Check(label, "fail", f"the release plan is invalid: {err}")
    if _sqlite_missing(settings):
        return Check(label, "warn", "no warehouse yet: budgets open at the first release")
    engine = make_engine(settings.warehouse_url)
    try:
        if schema_version(engine) is None:
            return Check(label, "warn", "no warehouse schema yet: budgets open at the first "
                                        "release")
        with engine.connect() as conn:
            budgets = read_budgets(conn)
    except SQLAlchemyError:
        return Check(label, "warn", "not checked: the warehouse is unreachable")
    finally:
        engine.dispose()
    if not budgets:
        return Check(label, "ok", f"no budget opened yet; dataset {plan.dataset_id!r} opens at "
                                  "its first release")
    per_run = plan.per_run.cap_rho()
    status: Status = "ok"
    parts = []
    for budget in budgets:
        left = budget.remaining
        share = budget.spent / budget.cap.rho
        text = (f"{budget.dataset_id}: spent ρ={decimal_text(budget.spent, 6)} of "
                f"{decimal_text(budget.cap.rho, 6)} ({float(share):.1%}), "
                f"{budget.releases} releases")
        if budget.dataset_id == plan.dataset_id:
            runs = int(left // per_run) if per_run else 0
            text += f", {runs} run(s) of the plan left"
            if left < per_run:
                status = "fail"
                text += " — the next run cannot be afforded (exit 3)"
        if left < budget.cap.rho * LOW_BUDGET and status == "ok":
            status = "warn"
        parts.append(text)
    return Check(label, status, "; ".join(parts))


def run_checks(settings: Settings, *,
               dags: Callable[[Settings], Check] | None = None) -> list[Check]:
    """Every check, in the order an engineer fixes them (``dags`` replaceable in tests)."""
    warehouse = check_warehouse(settings)
    checks = [check_master_key(settings), check_signing_key(settings), warehouse]
    checks.append((dags or check_dags)(settings))
    if warehouse.status == "fail":
        checks.append(Check("privacy budget", "warn", "not checked: the warehouse is "
                                                      "unreachable"))
    else:
        checks.append(check_budget(settings))
    return checks


def _render(checks: Sequence[Check]) -> None:
    colours = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    grid = Table(title="isoloir doctor", show_lines=False)
    grid.add_column("check")
    grid.add_column("status")
    grid.add_column("detail", overflow="fold")
    for check in checks:
        grid.add_row(check.name, f"[{colours[check.status]}]{check.status}[/]", check.detail)
    console.print(grid)


@app.command("doctor")
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")]
           = False) -> None:
    """Check the installation: keys (mode 0600), warehouse and schema, DAGs, budget left.

    Exit 0 when every check is ok, 1 otherwise.
    """
    settings = settings_or_exit()
    checks = run_checks(settings)
    ok = all(c.status == "ok" for c in checks)
    if as_json:
        emit_json({"ok": ok, "checks": [asdict(c) for c in checks]})
    else:
        _render(checks)
    if not ok:
        raise typer.Exit(EXIT_FAILURE)
