"""docker/ checked without Docker: compose parses, images are pinned, secrets stay secret.

Docker cannot run on the build machines, so these tests read the files: the compose file
through PyYAML (anchors and merge keys resolved as Compose does), the Dockerfile line by
line, and the shell scripts with ``bash -n``. The scripts that touch secrets are also run
for real against a temporary secrets folder.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, _pg_reachable

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"

AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler",
                    "airflow-dag-processor", "airflow-triggerer", "worker")
SERVICES = ("postgres", "redis", *AIRFLOW_SERVICES)
ONE_SHOT = {"airflow-init"}
ZONES = ("landing", "quarantine", "published", "reports", "requests")
KEY_SECRETS = {"isoloir_master_key", "isoloir_signing_key"}
_DEFAULT = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _resolve(value: str) -> str:
    """Replace ``${VAR:-default}`` with its default, as Compose does with an empty .env."""
    return _DEFAULT.sub(lambda m: m.group(1), value)


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def _secrets_of(service: dict[str, Any]) -> dict[str, str]:
    """Secret name -> file name under /run/secrets/ (short and long syntax)."""
    out = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            out[entry] = entry
        else:
            out[entry["source"]] = entry.get("target", entry["source"])
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {k: str(v) for k, v in env.items()}


# ------------------------------------------------------------------------- compose


def test_compose_parses_and_has_every_service(compose: dict[str, Any]) -> None:
    assert set(SERVICES) <= set(_services(compose))
    assert "x-airflow-common" in compose


@pytest.mark.parametrize("image,ok", [
    ("postgres:16.4-bookworm", True), ("redis@sha256:" + "a" * 64, True),
    ("postgres", False), ("postgres:latest", False), ("registry:5000/x", False)])
def test_pin_detector(image: str, ok: bool) -> None:
    assert _pinned(image) is ok


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        assert "image" in service, f"{name} has no image"
        assert _pinned(_resolve(service["image"])), f"{name}: {service['image']} is not pinned"


def test_airflow_image_tag_is_the_project_version(compose: dict[str, Any]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = _resolve(_services(compose)["airflow-scheduler"]["image"])
    assert image.endswith(f":{version}")


def test_workers_run_the_scheduler_image(compose: dict[str, Any]) -> None:
    services = _services(compose)
    scheduler = services["airflow-scheduler"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["image"] == scheduler["image"], name
        assert services[name]["build"] == scheduler["build"], name
    assert scheduler["build"]["dockerfile"] == "docker/Dockerfile"


def test_worker_scales(compose: dict[str, Any]) -> None:
    worker = _services(compose)["worker"]
    assert worker["command"] == ["celery", "worker"]
    assert "container_name" not in worker
    assert "ports" not in worker  # N replicas cannot share a host port
    for name, service in _services(compose).items():
        assert "container_name" not in service, name


def test_celery_on_redis_and_postgres(compose: dict[str, Any]) -> None:
    env = _env(_services(compose)["worker"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:")
    commands = {name: _services(compose)[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == ["api-server"]
    assert commands["airflow-scheduler"] == ["scheduler"]
    assert commands["airflow-dag-processor"] == ["dag-processor"]
    assert commands["airflow-triggerer"] == ["triggerer"]


def test_postgres_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    volumes = _services(compose)["postgres"]["volumes"]
    named = [v.split(":")[0] for v in volumes if v.endswith(":/var/lib/postgresql/data")]
    assert named and named[0] in compose["volumes"]


def test_zones_are_shared_volumes(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in ("worker", "airflow-scheduler", "airflow-triggerer", "airflow-dag-processor"):
        assert _env(services[name])["ISOLOIR_HOME"] == "/opt/isoloir"
        mounts = dict(v.split(":", 1) for v in services[name]["volumes"])
        for zone in ZONES:
            assert mounts.get(zone) == f"/opt/isoloir/{zone}", (name, zone)
            assert zone in compose["volumes"]


def test_ports_bind_to_loopback(compose: dict[str, Any]) -> None:
    published = 0
    for name, service in _services(compose).items():
        for port in service.get("ports", []):
            published += 1
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
    assert "127.0.0.1:8080:8080" in _services(compose)["airflow-apiserver"]["ports"]
    assert published >= 1


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    handled = set(re.findall(r"^\s+([a-z-]+)\)$",
                             (DOCKER / "healthcheck.sh").read_text(), re.M))
    for name, service in _services(compose).items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
        if "/opt/isoloir-app/bin/healthcheck.sh" in test:
            assert test[-1] in handled, (name, test)


def test_services_do_not_run_as_root(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        user = str(service.get("user", ""))
        assert user.split(":")[0] not in ("0", "root"), name


def test_keys_arrive_as_secrets_on_workers_only(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for name, spec in declared.items():
        assert set(spec) == {"file"}, name  # a file, never an inline value or environment
        assert spec["file"].startswith("${"), f"{name}: path must come from .env"
    services = _services(compose)
    worker = _secrets_of(services["worker"])
    assert KEY_SECRETS <= set(worker)
    for name, service in services.items():
        given = set(_secrets_of(service))
        assert given <= set(declared), name
        if name != "worker":
            assert not given & KEY_SECRETS, f"{name} must not receive the Isoloir keys"
    env = _env(services["worker"])
    mounted = {f"/run/secrets/{target}" for target in worker.values()}
    assert env["ISOLOIR_KEY_FILE"] == "/run/secrets/isoloir_master_key"
    assert env["ISOLOIR_SIGNING_KEY_FILE"] == "/run/secrets/isoloir_signing_key"
    # privacy.signing reads the public half at <ISOLOIR_SIGNING_KEY_FILE>.pub
    for path in (env["ISOLOIR_KEY_FILE"], env["ISOLOIR_SIGNING_KEY_FILE"],
                 env["ISOLOIR_SIGNING_KEY_FILE"] + ".pub"):
        assert path in mounted, path


def test_no_credential_in_environment(compose: dict[str, Any]) -> None:
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|MASTER_KEY")
    for name, service in _services(compose).items():
        for var, value in _env(service).items():
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), (name, var)  # user:pw@
            if sensitive.search(var):
                assert var.endswith(("_FILE", "_CMD")), (name, var)  # a path or a command
                if var.endswith("_CMD"):
                    assert value.startswith("/opt/isoloir-app/bin/read-credential.sh "), (name, var)
                else:
                    assert value.startswith("/"), (name, var)
    assert "ISOLOIR_MASTER_KEY" not in _env(_services(compose)["worker"])


def test_airflow_init_bootstraps_everything(compose: dict[str, Any]) -> None:
    init = _services(compose)["airflow-init"]
    assert init["command"] == ["bash", "/opt/isoloir-app/bin/init.sh"]
    script = (DOCKER / "init.sh").read_text()
    steps = ["bootstrap_db.py", "airflow db migrate", "python -m warehouse.roles",
             "connections add isoloir_warehouse"]
    positions = [script.index(step) for step in steps]
    assert positions == sorted(positions)
    env = _env(init)
    admin = make_url(env["ISOLOIR_ADMIN_URL"])
    assert admin.username == "postgres" and admin.password is None
    for var in ("ISOLOIR_ADMIN_PASSWORD_FILE", "ISOLOIR_PIPELINE_PASSWORD_FILE",
                "ISOLOIR_STRATEGIST_PASSWORD_FILE", "ISOLOIR_AUDITOR_PASSWORD_FILE"):
        secret = env[var].removeprefix("/run/secrets/")
        assert secret in _secrets_of(init).values(), var


# ------------------------------------------------------------------------- secrets in files


def _looks_like_secret(token: str) -> bool:
    """A random key: 64+ hex digits, or 40+ base64 chars mixing cases and digits."""
    if re.fullmatch(r"[0-9a-fA-F]{64,}", token):
        return True
    return (len(token.rstrip("=")) >= 40 and re.search(r"[a-z]", token) is not None
            and re.search(r"[A-Z]", token) is not None and re.search(r"\d", token) is not None)


_PLACEHOLDER = re.compile(r"^(\$|/|<|\.|-\.?/|:['\"]|change-?me$|placeholder$)", re.I)
_ASSIGNED_PASSWORD = re.compile(
    r"(?i)\b\w*(?:password|passwd|secret|token)\w*[ \t]*[:=][ \t]*[\"']?([^\s\"',}]+)")


def _secret_findings(text: str) -> list[str]:
    findings = [t for t in re.findall(r"[A-Za-z0-9+/_-]{40,}={0,2}", text)
                if _looks_like_secret(t)]
    findings += ["private key"] * len(re.findall(r"PRIVATE KEY", text))
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    findings += [v for v in _ASSIGNED_PASSWORD.findall(code) if not _PLACEHOLDER.match(v)]
    return findings


def test_secret_detector_catches_real_secrets() -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    assert _secret_findings(f"ISOLOIR_MASTER_KEY={key}")
    assert _secret_findings(f"x: {secrets.token_hex(32)}")
    assert _secret_findings("-----BEGIN PRIVATE KEY-----")
    assert _secret_findings("POSTGRES_PASSWORD: airflow")
    assert _secret_findings("password=hunter2")
    assert not _secret_findings("POSTGRES_PASSWORD_FILE: /run/secrets/postgres_password")
    assert not _secret_findings("AIRFLOW__CORE__FERNET_KEY_CMD: /opt/isoloir-app/bin/x.sh k")


def _docker_files() -> list[Path]:
    return sorted(p for p in DOCKER.rglob("*") if p.is_file() and "secrets" not in p.parts)


def test_no_secret_value_in_docker_folder_or_docs() -> None:
    files = _docker_files() + [ROOT / "docs" / "production.md"]
    assert len(files) >= 8
    for path in files:
        assert not _secret_findings(path.read_text()), path


def test_env_example_holds_placeholders_only() -> None:
    lines = [line for line in (DOCKER / ".env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    values = dict(line.split("=", 1) for line in lines)
    assert {"ISOLOIR_MASTER_KEY_PATH", "ISOLOIR_SIGNING_KEY_PATH",
            "ISOLOIR_SIGNING_PUBLIC_KEY_PATH", "ISOLOIR_SECRETS_DIR"} <= set(values)
    for var, value in values.items():
        if re.search(r"KEY|SECRET|PASSWORD|TOKEN", var):
            assert var.endswith(("_PATH", "_DIR")), var
            assert value.startswith(("/path/to/", "./")), var
    compose_vars = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    assert compose_vars <= set(values) | {"COMPOSE_PROJECT_NAME"}, compose_vars - set(values)


def test_git_ignores_real_configuration() -> None:
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert {".env", "secrets/", "*.key"} <= set(ignored)


# ------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_base_image_is_pinned_and_matches_the_lock() -> None:
    froms = [line.split()[1] for line in _dockerfile() if line.upper().startswith("FROM ")]
    assert froms[0] == "apache/airflow:3.3.2-python3.11"
    assert all(_pinned(image) for image in froms)
    lock = (ROOT / "requirements.lock").read_text()
    airflow = re.search(r"^apache-airflow==(\S+)$", lock, re.M)
    assert airflow is not None and froms[0] == f"apache/airflow:{airflow.group(1)}-python3.11"


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    lines = _dockerfile()
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1] == "airflow"
    health = [line for line in lines if line.upper().startswith("HEALTHCHECK ")]
    assert len(health) == 1 and " CMD " in f" {health[0]} "
    assert any(line.startswith("ENTRYPOINT ") and "entrypoint.sh" in line for line in lines)


def test_dockerfile_installs_only_pinned_packages() -> None:
    runs = [line for line in _dockerfile() if line.upper().startswith("RUN ")]
    installs = [part.strip() for run in runs for part in run[4:].split("&&")
                if "pip install" in part or "uv pip" in part]
    assert any("--no-deps -r /opt/isoloir-app/requirements.lock" in i for i in installs)
    assert any(i.endswith("/opt/isoloir-app/src") and "--no-deps" in i for i in installs)
    for install in installs:
        assert "--no-deps" in install, install
        args = [a for a in install.split("install", 1)[1].split() if not a.startswith("-")]
        for arg in args:
            if arg.endswith("requirements.lock") or arg.startswith("/opt/isoloir-app/"):
                continue
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.]+", arg), arg
    copies = [line for line in _dockerfile() if line.upper().startswith(("COPY ", "ADD "))]
    assert not any(line.upper().startswith("ADD ") for line in copies)
    assert not any(re.search(r"secrets|\.env\b|\.key\b", line) for line in copies)


def test_build_context_is_an_allowlist() -> None:
    rules = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = [r[1:] for r in rules if r.startswith("!")]
    assert "requirements.lock" in allowed
    assert not any(a.rstrip("/").endswith("secrets") or ".env" in a or a.endswith(".key")
                   for a in allowed)
    # Every script the Dockerfile copies from docker/ is let into the context.
    copied = set(re.findall(r"docker/[\w.-]+", DOCKERFILE.read_text())) - {"docker/compose.yaml"}
    for path in copied:
        if (ROOT / path).is_file() and not path.endswith("Dockerfile.dockerignore"):
            assert path in allowed, path


# ------------------------------------------------------------------------- scripts


@pytest.mark.parametrize("script", ["entrypoint.sh", "healthcheck.sh", "init.sh",
                                    "read-credential.sh", "make-credentials.sh"])
def test_scripts_parse_and_are_executable(script: str) -> None:
    path = DOCKER / script
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    shell = "sh" if path.read_text().startswith("#!/bin/sh") else "bash"
    subprocess.run([shell, "-n", str(path)], check=True)


def test_entrypoint_writes_a_private_pgpass(tmp_path: Path) -> None:
    secrets_dir, pgpass = tmp_path / "secrets", tmp_path / "run" / "pgpass"
    secrets_dir.mkdir()
    pgpass.parent.mkdir()
    (secrets_dir / "airflow_db_password").write_text("a:b\\c\n")
    (secrets_dir / "pipeline_db_password").write_text("pipe-pw")
    env = {**os.environ, "ISOLOIR_SECRETS_DIR": str(secrets_dir), "PGPASSFILE": str(pgpass),
           "AIRFLOW_ENTRYPOINT": "/bin/echo"}
    done = subprocess.run([str(DOCKER / "entrypoint.sh"), "celery", "worker"], env=env,
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "celery worker"  # arguments handed over untouched
    assert "pw" not in done.stdout + done.stderr
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    assert pgpass.read_text().splitlines() == [
        "*:*:*:airflow:a\\:b\\\\c", "*:*:*:isoloir_pipeline_login:pipe-pw"]


def test_read_secret_strips_the_newline_and_refuses_paths(tmp_path: Path) -> None:
    (tmp_path / "airflow_fernet_key").write_text("k3y\n")
    env = {**os.environ, "ISOLOIR_SECRETS_DIR": str(tmp_path)}
    script = str(DOCKER / "read-credential.sh")
    out = subprocess.run([script, "airflow_fernet_key"], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout == "k3y"
    bad = subprocess.run([script, "../etc/passwd"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""


def test_make_secrets_generates_private_random_files(tmp_path: Path) -> None:
    if shutil.which("python3") is None:
        pytest.skip("make-credentials.sh needs python3 on PATH")
    target = tmp_path / "secrets"
    subprocess.run([str(DOCKER / "make-credentials.sh"), str(target)], check=True,
                   capture_output=True)
    compose_files = set(re.findall(r"\./secrets\}/(\w+)", COMPOSE.read_text()))
    made = {p.name: p for p in target.iterdir()}
    assert set(made) == compose_files
    for path in made.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        assert len(path.read_text()) >= 40 and not path.read_text().endswith("\n")
    fernet = base64.urlsafe_b64decode(made["airflow_fernet_key"].read_text())
    assert len(fernet) == 32
    before = made["postgres_password"].read_text()
    subprocess.run([str(DOCKER / "make-credentials.sh"), str(target)], check=True,
                   capture_output=True)
    assert made["postgres_password"].read_text() == before  # re-running keeps existing files


@pytest.mark.postgres
def test_bootstrap_db_creates_the_airflow_owner_and_databases(tmp_path: Path) -> None:
    reason = _pg_reachable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(f"PostgreSQL unreachable ({reason})")
    import psycopg

    tag = uuid.uuid4().hex[:10]
    user, airflow_db, warehouse_db = f"isoloir_t_{tag}_af", f"isoloir_t_{tag}_af", \
        f"isoloir_t_{tag}_wh"
    (tmp_path / "airflow_db_password").write_text(secrets.token_hex(16))
    url = make_url(PG_URL)
    env = {**os.environ, "ISOLOIR_SECRETS_DIR": str(tmp_path), "ISOLOIR_DB_HOST": url.host or "",
           "ISOLOIR_DB_PORT": str(url.port or 5432), "ISOLOIR_DB_ADMIN_USER": url.username or "",
           "ISOLOIR_DB_NAME": warehouse_db, "AIRFLOW_DB_USER": user,
           "AIRFLOW_DB_NAME": airflow_db}
    raw = PG_URL.replace("+psycopg", "")
    try:
        for _ in range(2):  # idempotent
            subprocess.run([sys.executable, str(DOCKER / "bootstrap_db.py")], env=env,
                           check=True, capture_output=True)
        with psycopg.connect(raw) as conn:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                  (user,)).fetchone()
            assert stored is not None and stored[0].startswith("SCRAM-SHA-256$")
            rows = conn.execute(
                "SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database "
                "WHERE datname = ANY(%s) ORDER BY datname",
                ([airflow_db, warehouse_db],)).fetchall()
        owners = {name: owner for name, owner, _ in rows}
        assert owners == {airflow_db: user, warehouse_db: url.username}
        for _, _, acl in rows:
            assert "{=" not in acl and ",=" not in acl  # PUBLIC may not connect
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            for database in (airflow_db, warehouse_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{user}"')
