"""Freed memory goes back to the system between load stages.

Polars allocates with its own jemalloc, which by Polars' defaults keeps freed pages for
half a second and never purges those it has advised the kernel it may take ("muzzy"), so
they stay resident. A load's stages each build and drop frames of a whole file (the diff, the
identity index, the writes), so with the default the process holds the peaks of several
stages at once: 1 M people and their 5.9 M-row history peaked at 2.8 GB, against 1.6 GB
with freed pages returned at once, at the same speed (``benchmarks/bench_incremental.py``).

jemalloc reads its settings from the environment when the library loads, so the setting
must be in place before Polars is first imported: entry points (the ``isoloir`` command,
the DAG files) call :func:`return_freed_memory` first. Polars then puts its defaults in
front, and jemalloc takes the last value of each option. Processes they start (the staging
workers) inherit it. An operator's own ``_RJEM_MALLOC_CONF`` is kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

#: The environment variable Polars' jemalloc reads (its symbols carry the ``_rjem_`` prefix).
JEMALLOC_ENV = "_RJEM_MALLOC_CONF"
#: Return freed pages at once.
JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"
_OURS = frozenset(JEMALLOC_CONF.split(","))
#: What Polars puts in front of the variable when it loads (Polars 1.x).
_POLARS_DEFAULTS = frozenset({"dirty_decay_ms:500", "muzzy_decay_ms:-1"})


def return_freed_memory(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set :data:`JEMALLOC_CONF` unless the operator set their own; ``True`` when this
    process will use it (``False`` once Polars is loaded: too late for this process).

    A value holding nothing but Polars' own defaults is not the operator's: Polars writes
    it into the environment when it loads, so every process started by one that loaded
    Polars (a benchmark, an Airflow worker) inherits it.
    """
    env = os.environ if environ is None else environ
    options = [o for o in env.get(JEMALLOC_ENV, "").split(",") if o]
    own = [o for o in options if o not in _POLARS_DEFAULTS and o not in _OURS]
    if not own:
        env[JEMALLOC_ENV] = JEMALLOC_CONF
    return "polars" not in sys.modules and not own
