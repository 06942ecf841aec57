"""A real Airflow 3 cluster (CeleryExecutor, PostgreSQL metadata, Redis broker) as child processes.

Why: the docker/ deployment cannot run on the development and CI machines, yet the production
path must be proven there: a scheduler, a dag-processor, an api-server serving the Execution API
that Airflow 3 workers talk to over HTTP, and several Celery workers pulling mapped tasks from
Redis. ``airflow_cluster()`` starts exactly those components as child processes, against a
brand-new metadata database that it drops afterwards, and always stops every process (each in
its own process group, so Celery's pool and the task processes go too), also on failure.

Each worker records its own name in ``task_instance.hostname``: ``[core] hostname_callable``
points at ``worker_hostname`` below, which returns the name given to that worker's environment.
So the metadata database tells which worker ran which task.

Used by ``tests/test_distributed.py`` and ``benchmarks/bench_distributed.py``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
WORKER_NAME_ENV = "ISOLOIR_CLUSTER_WORKER_NAME"
REPO = Path(__file__).resolve().parents[2]
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
NEVER = "0 0 29 2 *"  # a cron schedule whose last and next dates are outside the test
# What the ingestion task bodies import. Preloaded by each worker (see ``preload``), it is
# inherited by the task processes the worker forks: GX alone costs seconds of CPU per import.
INGEST_TASK_MODULES = ("pipeline.tasks", "transforms.read", "expectations.validate",
                       "expectations.gx_custom", "expectations.gx_run", "expectations.context",
                       "pipeline.ingest", "warehouse.store")


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the cluster: the worker's given name, else the FQDN.

    Both workers run on one machine, so the real host name cannot tell them apart.
    """
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


class ClusterError(RuntimeError):
    """The cluster did not come up, or something it was asked to do did not happen in time."""


def services_unreachable() -> str | None:
    """Why PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) cannot be used, or None."""
    try:
        import psycopg

        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
                             connect_timeout=3):
            pass
    except Exception as err:  # the reason goes into the skip / failure message
        return f"PostgreSQL at {PG_HOST}:{PG_PORT}: {type(err).__name__}: {err}".splitlines()[0]
    try:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3).ping()
    except Exception as err:  # the reason goes into the skip / failure message
        return f"Redis at {REDIS_HOST}:{REDIS_PORT}: {type(err).__name__}: {err}".splitlines()[0]
    return None


def isoloir_env(root: Path, warehouse_url: str, base: Mapping[str, str] | None = None,
                **extra: str) -> dict[str, str]:
    """The Isoloir settings of every component: home, warehouse, fresh key files under ``root``.

    Both DAG schedules are set to a date that does not come (29 February) so that only an
    explicit trigger, and the warehouse asset, start runs.
    """
    from privacy.keys import write_new_key_file
    from privacy.signing import create_signing_key

    key_file, signing = root / "keys" / "master.key", root / "keys" / "signing.key"
    write_new_key_file(key_file)
    create_signing_key(signing)
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("ISOLOIR_", "AIRFLOW"))}
    env.update(ISOLOIR_HOME=str(root / "home"), ISOLOIR_WAREHOUSE_URL=warehouse_url,
               ISOLOIR_KEY_FILE=str(key_file), ISOLOIR_SIGNING_KEY_FILE=str(signing),
               ISOLOIR_RETRY_DELAY_SECONDS="0", ISOLOIR_INGEST_SCHEDULE=NEVER,
               ISOLOIR_RELEASE_CRON=NEVER, PYTHONPATH=str(REPO))
    env.update(extra)
    return env


@contextmanager
def fresh_pg_schema(prefix: str = "dist") -> Iterator[str]:
    """A SQLAlchemy URL to a brand-new schema of database ``test``, dropped afterwards."""
    import psycopg

    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="test",
                         autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
    try:
        yield (f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/test"
               f"?options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="test",
                             autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def split_export(path: Path, parts: int, out_dir: Path, *, stem: str | None = None) -> list[Path]:
    """Split a CSV/TSV export into ``parts`` files, each with the header (and BOM) of the original.

    Bytes are copied as they are (encoding, delimiter and line endings kept); a quoted field
    spanning several lines stays in one piece (records end where the quote count is even).
    """
    data = path.read_bytes()
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    lines = data[len(bom):].splitlines(keepends=True)
    records: list[bytes] = []
    pending = b""
    for line in lines:
        pending += line
        if pending.count(b'"') % 2 == 0:
            records.append(pending)
            pending = b""
    if pending:
        records.append(pending)
    header, body = records[0], records[1:]
    if parts < 1 or len(body) < parts:
        raise ValueError(f"{path.name}: cannot split {len(body)} records into {parts} parts")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = stem or path.stem
    written = []
    size = -(-len(body) // parts)
    for i in range(parts):
        target = out_dir / f"{name}_part{i + 1}{path.suffix}"
        target.write_bytes(bom + header + b"".join(body[i * size:(i + 1) * size]))
        written.append(target)
    return written


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]


@dataclass
class AirflowCluster:
    """A running cluster: its environment, metadata database and child processes."""

    env: dict[str, str]
    metadata_db: str
    work_dir: Path
    worker_names: tuple[str, ...]
    children: list[_Child] = field(default_factory=list)

    # ---------------------------------------------------------------- processes

    def start(self, name: str, args: Sequence[str], extra_env: Mapping[str, str] | None = None
              ) -> None:
        """Start ``airflow ARGS`` as a child in its own session (its own process group)."""
        log = self.work_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("ab")
        env = self.env | dict(extra_env or {})
        process = subprocess.Popen([_airflow_bin(), *args], env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=self.work_dir, start_new_session=True)
        self.children.append(_Child(name, process, log, handle))

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every process group, then SIGKILL what is left after ``grace`` seconds."""
        for child in self.children:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in self.children:  # the group may outlive its leader (pool, task processes)
            _signal_group(child.process, signal.SIGKILL)
            try:
                child.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            child.handle.close()

    def check_alive(self) -> None:
        """Raise ClusterError naming any component that has exited."""
        dead = [f"{c.name} (exit {c.process.returncode})" for c in self.children
                if c.process.poll() is not None]
        if dead:
            raise ClusterError(f"cluster component(s) exited: {', '.join(dead)}")

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of every child's log, for a failure message."""
        out = []
        for child in self.children:
            text = child.log.read_text(encoding="utf-8", errors="replace") if child.log.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            out.append(f"----- {child.name} ({child.log}) -----\n{tail}")
        return "\n".join(out)

    def airflow(self, *args: str, timeout: float = 180) -> str:
        """Run one ``airflow`` CLI command against the cluster; its stdout, or ClusterError."""
        done = subprocess.run([_airflow_bin(), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=self.work_dir, check=False)
        if done.returncode != 0:
            raise ClusterError(f"airflow {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        return done.stdout

    # ---------------------------------------------------------------- REST API

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call the public REST API (``/api/v2/...``) of the api-server; the JSON answer.

        The harness runs the simple auth manager with every user an admin, so no login.
        """
        url = f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}/api/v2/{path.lstrip('/')}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            raise ClusterError(f"{method} {path}: HTTP {err.code} {err.read()[:2000]!r}") from err

    def unpause(self, dag_id: str) -> None:
        """``airflow dags unpause DAG_ID``, through the REST API (no CLI start-up to pay)."""
        if self.api("PATCH", f"dags/{dag_id}", {"is_paused": False}).get("is_paused"):
            raise ClusterError(f"{dag_id} is still paused")

    def trigger(self, dag_id: str, run_id: str, conf: Mapping[str, Any] | None = None) -> None:
        """``airflow dags trigger DAG_ID --run-id RUN_ID``, through the REST API."""
        self.api("POST", f"dags/{dag_id}/dagRuns",
                 {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})})

    # ---------------------------------------------------------------- metadata database

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the cluster's metadata database."""
        import psycopg

        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.metadata_db,
                             autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]  # type: ignore[arg-type]

    def wait_until(self, what: str, ready: Any, timeout: float, every: float = 1.0) -> Any:
        """Poll ``ready()`` until it returns something truthy; ClusterError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            value = ready()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(every)

    def wait_for_dags(self, dag_ids: Sequence[str], timeout: float = 120) -> None:
        """Wait until the dag-processor has serialized every DAG; fail fast on import errors."""
        def parsed() -> bool:
            errors = self.query("SELECT filename, stacktrace FROM import_error")
            if errors:
                raise ClusterError(f"DAG import errors: {errors}")
            rows = self.query("SELECT d.dag_id FROM dag d JOIN serialized_dag s "
                              "ON s.dag_id = d.dag_id WHERE NOT d.is_stale")
            return set(dag_ids) <= {r[0] for r in rows}
        self.wait_until(f"DAGs {list(dag_ids)} to be parsed", parsed, timeout)

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Wait until every Celery worker logged that it is ready to consume tasks."""
        def ready() -> bool:
            for child in self.children:
                if child.name.startswith("worker") and " ready." not in child.log.read_text(
                        encoding="utf-8", errors="replace"):
                    return False
            return True
        self.wait_until("the Celery workers to be ready", ready, timeout)

    def wait_for_api(self, timeout: float = 120) -> None:
        """Wait until the api-server answers on the Execution API health route."""
        url = self.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].rstrip("/") + "/health"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=3) as response:
                    return bool(json.load(response).get("status") == "healthy")
            except (urllib.error.URLError, OSError, ValueError):
                return False
        self.wait_until("the api-server", healthy, timeout)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s",
                          (dag_id, run_id))
        return str(rows[0][0]) if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until a DAG run is finished; its final state."""
        return str(self.wait_until(
            f"run {dag_id}/{run_id} to finish",
            lambda: (state if (state := self.run_state(dag_id, run_id)) in TERMINAL_RUN_STATES
                     else None),
            timeout, every=2.0))

    def runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        """(run_id, run_type, state) of every run of a DAG, oldest first."""
        return [(str(a), str(b), str(c)) for a, b, c in self.query(
            "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = %s ORDER BY id",
            (dag_id,))]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """task_id, map_index, state, hostname, pid and try_number of a run's task instances."""
        rows = self.query("SELECT task_id, map_index, state, hostname, pid, try_number "
                          "FROM task_instance WHERE dag_id = %s AND run_id = %s "
                          "ORDER BY task_id, map_index", (dag_id, run_id))
        keys = ("task_id", "map_index", "state", "hostname", "pid", "try_number")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the child leads its own session, so pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def _admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _forget_redis_keys(db: int, token: str) -> None:
    """Delete this cluster's queue and bindings, and its messages in kombu's shared ``unacked``.

    A worker stopped in the middle of a task leaves the message in ``unacked`` (with its
    short-lived Execution API token): it goes too, picked out by its routing key (the queue).
    """
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=3,
                         decode_responses=True)
    keys = list(client.scan_iter(match=f"*{token}*"))
    if keys:
        client.delete(*keys)
    unacked: dict[str, str] = client.hgetall("unacked")  # type: ignore[assignment]
    for tag, raw in unacked.items():
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if token in str(routing_key):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


def cluster_env(base: Mapping[str, str], *, dags_folder: Path, airflow_home: Path,
                metadata_db: str, redis_db: int, queue: str, api_port: int,
                worker_concurrency: int, preload: Sequence[str] = ()) -> dict[str, str]:
    """The environment shared by every component: one metadata DB, broker, secret and queue."""
    env = {k: v for k, v in base.items() if not k.startswith("AIRFLOW")}
    pg = f"{PG_USER}@{PG_HOST}:{PG_PORT}/{metadata_db}"
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": list(preload)}),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        # Fast enough for a test, light enough for two shared cores.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), base.get("PYTHONPATH", "")) if p),
    })
    return env


@contextmanager
def airflow_cluster(dags_folder: Path, work_dir: Path, *, env: Mapping[str, str] | None = None,
                    workers: int = 2, worker_concurrency: int = 2, preload: Sequence[str] = (),
                    startup_timeout: float = 180) -> Iterator[AirflowCluster]:
    """Start a fresh Airflow cluster on ``dags_folder``; stop it and drop its databases on exit.

    ``env`` is the base environment of every component (the Isoloir settings go there).
    ``preload`` names modules each Celery worker imports once at start-up (Celery's
    ``imports``, through ``[celery] extra_celery_config``): task processes are forked from the
    worker, so they inherit them instead of paying the imports again for every task.
    On exit, also by an exception, every child process group is terminated, the metadata
    database is dropped and the Redis keys of this cluster are deleted; on an exception the
    tail of every component's log is written to stderr.
    """
    token = secrets.token_hex(4)
    metadata_db = f"airflow_dist_{token}"
    redis_db = 1 + secrets.randbelow(15)
    queue = f"isoloir_{token}"
    work_dir.mkdir(parents=True, exist_ok=True)
    airflow_home = work_dir / "airflow_home"
    airflow_home.mkdir(exist_ok=True)
    names = tuple(f"worker-{i + 1}-{token}" for i in range(workers))
    cluster = AirflowCluster(
        env=cluster_env(dict(os.environ if env is None else env), dags_folder=dags_folder,
                        airflow_home=airflow_home, metadata_db=metadata_db, redis_db=redis_db,
                        queue=queue, api_port=free_port(), worker_concurrency=worker_concurrency,
                        preload=preload),
        metadata_db=metadata_db, work_dir=work_dir, worker_names=names)
    _admin_execute(f'CREATE DATABASE "{metadata_db}"')
    try:
        # Workers never touch Airflow's tables (only Celery's result table), and they take the
        # longest to start: they start first, while the metadata database is migrated.
        for name in names:
            cluster.start(name.rsplit("-", 1)[0], [
                "celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", queue,
                "--concurrency", str(worker_concurrency), "--without-mingle", "--without-gossip"],
                {WORKER_NAME_ENV: name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())})
        cluster.airflow("db", "migrate", timeout=startup_timeout)
        cluster.start("api-server", ["api-server", "--host", "127.0.0.1",
                                     "--port", cluster.env["AIRFLOW__API__PORT"], "--workers", "1"])
        cluster.start("scheduler", ["scheduler"])
        cluster.start("dag-processor", ["dag-processor"])
        cluster.wait_for_api(startup_timeout)
        cluster.wait_for_workers(startup_timeout)
        yield cluster
    except BaseException:
        sys.stderr.write(f"Airflow cluster logs (work dir {work_dir}):\n{cluster.log_tails()}\n")
        raise
    finally:
        cluster.stop()
        try:
            _admin_execute(f'DROP DATABASE IF EXISTS "{metadata_db}" WITH (FORCE)')
        finally:
            _forget_redis_keys(redis_db, token)
