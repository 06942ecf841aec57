"""Run the Isoloir DAGs in-process with ``dag.test()`` on an embedded SQLite metadata database.

Airflow reads its configuration from the environment when it is first imported, so each DAG
run happens in a child process whose environment points ``AIRFLOW_HOME`` (and the metadata
database) under ``ISOLOIR_HOME/airflow``. ``make run`` and the end-to-end tests use this.

``python -m cli.airflow_runner DAG_ID [--conf JSON]`` exits 0 when the run succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from core.settings import Settings

log = logging.getLogger(__name__)

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


class DagRunFailed(RuntimeError):
    """An in-process DAG run did not end in success."""


def airflow_env(settings: Settings, base: Mapping[str, str] | None = None,
                metadata_url: str | None = None) -> dict[str, str]:
    """The environment for an embedded Airflow whose home lives under ISOLOIR_HOME."""
    env = dict(os.environ if base is None else base)
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url or f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "ISOLOIR_HOME": str(settings.home),
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(p for p in (str(DAGS_FOLDER.parent), env.get("PYTHONPATH", "")) if p),
    })
    return env


def ensure_metadata_db(env: Mapping[str, str]) -> None:
    """Create or migrate the Airflow metadata database (idempotent)."""
    airflow = Path(sys.executable).with_name("airflow")
    cmd = [str(airflow), "db", "migrate"] if airflow.exists() else [
        sys.executable, "-m", "airflow", "db", "migrate"]
    done = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DagRunFailed(f"airflow db migrate failed:\n{done.stderr[-2000:]}")


def run_dag(dag_id: str, env: Mapping[str, str], conf: Mapping[str, object] | None = None,
            timeout: float = 1800) -> None:
    """Run one DAG to completion in a child process; raise DagRunFailed unless it succeeded."""
    cmd = [sys.executable, "-m", "cli.airflow_runner", dag_id]
    if conf:
        cmd += ["--conf", json.dumps(dict(conf))]
    done = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=timeout,
                          check=False)
    log_file = Path(env["AIRFLOW_HOME"]) / "logs" / f"dag_test_{dag_id}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise DagRunFailed(f"DAG {dag_id} did not succeed (log: {log_file})\n"
                           f"{done.stderr[-3000:]}")


def _main(argv: list[str]) -> int:
    from airflow.dag_processing.dagbag import DagBag

    dag_id = argv[0]
    conf = json.loads(argv[argv.index("--conf") + 1]) if "--conf" in argv else None
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        sys.stderr.write(f"DAG import errors: {bag.import_errors}\n")
        return 2
    dag = bag.dags[dag_id]
    run = dag.test(run_conf=conf)
    state = str(getattr(run, "state", "unknown"))
    sys.stdout.write(f"ISOLOIR_DAG_RUN {dag_id} {state} {getattr(run, 'run_id', '')}\n")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
