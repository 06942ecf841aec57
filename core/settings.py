"""Run-time settings, built from the environment when a task or command starts.

Settings are a frozen value: nothing reads the environment behind the caller's back, and
a bad value fails at start-up naming the variable. Secrets are referred to by location
(a key file path, or the name of the variable that holds the key); their values are
resolved where they are used, by :mod:`privacy.keys`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import SettingsError

ENV_HOME = "ISOLOIR_HOME"
ENV_WAREHOUSE_URL = "ISOLOIR_WAREHOUSE_URL"
ENV_KEY_FILE = "ISOLOIR_KEY_FILE"
ENV_MASTER_KEY = "ISOLOIR_MASTER_KEY"
ENV_SIGNING_KEY_FILE = "ISOLOIR_SIGNING_KEY_FILE"
ENV_PLAN = "ISOLOIR_PLAN"
ENV_LOG_LEVEL = "ISOLOIR_LOG_LEVEL"
ENV_RETAIN_RAW = "ISOLOIR_RETAIN_RAW"
ENV_INGEST_PROCESSES = "ISOLOIR_INGEST_PROCESSES"
ENV_CHUNK_ROWS = "ISOLOIR_CHUNK_ROWS"
ENV_RETENTION_DAYS = "ISOLOIR_RETENTION_DAYS"
ENV_RAW_RETENTION_DAYS = "ISOLOIR_RAW_RETENTION_DAYS"

#: CNIL: a contact's or prospect's data is kept 3 years after the last activity.
DEFAULT_RETENTION_DAYS = 1095
#: Raw exports kept in processed/ or quarantine/ hold personal data: a month at most.
DEFAULT_RAW_RETENTION_DAYS = 30

_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}


@dataclass(frozen=True)
class Settings:
    """Where Isoloir keeps things. Paths are absolute once built."""

    home: Path
    warehouse_url: str = field(repr=False)  # may carry a password: never printed
    key_file: Path | None
    has_env_master_key: bool
    signing_key_file: Path
    plan_file: Path | None = None
    log_level: str = "INFO"
    retain_raw: bool = False
    ingest_processes: int = 1  # processes that stage one file's chunks (see pipeline/staging.py)
    chunk_rows: int = 200_000  # rows read, normalized and pseudonymized at a time
    retention_days: int = DEFAULT_RETENTION_DAYS  # inactivity after which a person is purged
    raw_retention_days: int = DEFAULT_RAW_RETENTION_DAYS  # age of raw files purged
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def warehouse_url_safe(self) -> str:
        """The warehouse URL with any password masked, for logs and reports."""
        from sqlalchemy.engine import make_url

        return make_url(self.warehouse_url).render_as_string(hide_password=True)

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def published(self) -> Path:
        return self.home / "published"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def work(self) -> Path:
        """Scratch space for intermediate files of the secure zone (deleted after use)."""
        return self.home / "work"

    @property
    def requests(self) -> Path:
        """Erasure and objection request files (personal data until processed, then deleted)."""
        return self.home / "requests"

    @property
    def processed(self) -> Path:
        """Raw exports kept after loading when ISOLOIR_RETAIN_RAW is set."""
        return self.home / "processed"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def gx_home(self) -> Path:
        return self.home / "gx"

    def ensure_dirs(self) -> None:
        """Create the zone folders; secure-zone folders are private to the owner."""
        for path in (self.home, self.landing, self.quarantine, self.published, self.reports,
                     self.work, self.requests, self.airflow_home, self.gx_home):
            path.mkdir(parents=True, exist_ok=True)
        for private in (self.landing, self.quarantine, self.work, self.requests):
            private.chmod(0o700)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: ``os.environ``), validating every value."""
    env = os.environ if environ is None else environ
    home_raw = env.get(ENV_HOME, "").strip() or "./var"
    home = Path(home_raw).expanduser()
    if home.exists() and not home.is_dir():
        raise SettingsError(ENV_HOME, f"{home} exists and is not a directory")
    home = home.resolve()

    url = env.get(ENV_WAREHOUSE_URL, "").strip()
    if url:
        _check_url(url)
    else:
        url = f"sqlite:///{home / 'warehouse.db'}"

    key_file_raw = env.get(ENV_KEY_FILE, "").strip()
    key_file = Path(key_file_raw).expanduser().resolve() if key_file_raw else None
    if key_file is not None and key_file.exists() and not key_file.is_file():
        raise SettingsError(ENV_KEY_FILE, f"{key_file} is not a file")
    has_env_key = bool(env.get(ENV_MASTER_KEY, "").strip())

    signing_raw = env.get(ENV_SIGNING_KEY_FILE, "").strip()
    if signing_raw:
        signing = Path(signing_raw).expanduser().resolve()
    elif key_file is not None:
        signing = key_file.parent / "isoloir-signing.key"
    else:
        signing = home / "keys" / "isoloir-signing.key"

    plan_raw = env.get(ENV_PLAN, "").strip()
    plan_file = Path(plan_raw).expanduser().resolve() if plan_raw else None
    if plan_file is not None and not plan_file.is_file():
        raise SettingsError(ENV_PLAN, f"plan file {plan_file} does not exist")

    level = env.get(ENV_LOG_LEVEL, "INFO").strip().upper() or "INFO"
    if level not in _LOG_LEVELS:
        raise SettingsError(ENV_LOG_LEVEL, f"must be one of {sorted(_LOG_LEVELS)}, got {level!r}")

    retain = env.get(ENV_RETAIN_RAW, "").strip().lower()
    if retain not in ("", "0", "1", "true", "false", "yes", "no"):
        raise SettingsError(ENV_RETAIN_RAW, "must be true or false")

    processes = _positive_int(env, ENV_INGEST_PROCESSES, min(2, os.cpu_count() or 1))
    chunk_rows = _positive_int(env, ENV_CHUNK_ROWS, 200_000)
    retention_days = _positive_int(env, ENV_RETENTION_DAYS, DEFAULT_RETENTION_DAYS)
    raw_retention_days = _positive_int(env, ENV_RAW_RETENTION_DAYS, DEFAULT_RAW_RETENTION_DAYS)

    return Settings(home=home, warehouse_url=url, key_file=key_file, has_env_master_key=has_env_key,
                    signing_key_file=signing, plan_file=plan_file, log_level=level,
                    retain_raw=retain in ("1", "true", "yes"), ingest_processes=processes,
                    chunk_rows=chunk_rows, retention_days=retention_days,
                    raw_retention_days=raw_retention_days)


def default_key_file(settings: Settings) -> Path:
    """Where `isoloir keys init` writes the master key when ISOLOIR_KEY_FILE is unset."""
    return settings.key_file or settings.home / "keys" / "isoloir-master.key"


def _check_url(url: str) -> None:
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception as err:  # sqlalchemy raises ArgumentError; we only name the variable
        raise SettingsError(ENV_WAREHOUSE_URL, "is not a valid SQLAlchemy URL") from err
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(ENV_WAREHOUSE_URL, "only sqlite:// and postgresql:// are supported")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(name, f"must be a whole number of at least 1, got {raw!r}")
    return int(raw)
