"""Freed memory is returned between load stages: the allocator setting reaches every entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.memory import JEMALLOC_CONF, JEMALLOC_ENV, return_freed_memory

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["cli.main", "dags.isoloir_ingest", "dags.isoloir_release",
                                    "dags.isoloir_maintenance"])
def test_entry_points_set_it_before_polars_loads(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_ENV}
    code = (f"import sys, os, {module}\n"
            "import polars\n"
            f"print(os.environ.get('{JEMALLOC_ENV}'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    # Polars puts its own defaults first; jemalloc takes the last value of each option
    assert out.endswith(JEMALLOC_CONF)


def test_an_operators_own_setting_is_kept_and_late_calls_say_so() -> None:
    env = {JEMALLOC_ENV: "narenas:2"}
    assert return_freed_memory(env) is False and env[JEMALLOC_ENV] == "narenas:2"
    inherited = {JEMALLOC_ENV: "dirty_decay_ms:500,muzzy_decay_ms:-1"}  # from a Polars parent
    return_freed_memory(inherited)
    assert inherited == {JEMALLOC_ENV: JEMALLOC_CONF}
    fresh: dict[str, str] = {}
    return_freed_memory(fresh)
    assert fresh == {JEMALLOC_ENV: JEMALLOC_CONF}
    assert return_freed_memory({}) is ("polars" not in sys.modules)
    import polars  # noqa: F401

    assert return_freed_memory({}) is False  # too late for a process that loaded Polars
