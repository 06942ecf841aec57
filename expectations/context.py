"""The Great Expectations context: configuration from the repo, everything written under ISOLOIR_HOME.

The committed ``expectations/gx/great_expectations.yml`` declares the stores and the Data Docs
site; :func:`open_context` fills in the two locations from :class:`~core.settings.Settings`
(``settings.gx_home`` for validation results, ``settings.reports / "data_docs"`` for Data Docs)
and builds a context from that configuration. It is an *ephemeral* context backed by file
stores: results and Data Docs persist on disk, but GX never rewrites a YAML file, so concurrent
validation tasks cannot corrupt a shared configuration and nothing is ever written to the repo.

Great Expectations is imported here, inside functions only (it takes ~10 s to import and DAG
files must parse fast), with usage statistics and progress bars off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from string import Template
from types import ModuleType
from typing import Any

import yaml

from core.settings import Settings

log = logging.getLogger(__name__)

CONFIG_FILE = Path(__file__).parent / "gx" / "great_expectations.yml"
SITE_NAME = "isoloir"
DATASOURCE_NAME = "isoloir"


def data_docs_dir(settings: Settings) -> Path:
    """Where auditors find the Data Docs site."""
    return settings.reports / "data_docs"


def import_gx() -> ModuleType:
    """Import GX with analytics and progress bars off, and register Isoloir's expectations."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    for noisy in ("great_expectations", "great_expectations.core", "tzlocal"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    import great_expectations as gx

    import expectations.gx_custom  # noqa: F401 - defining the classes registers them

    return gx


def context_config(settings: Settings) -> dict[str, Any]:
    """The committed configuration with its locations resolved under ISOLOIR_HOME."""
    raw = yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
    places = {"gx_home": str(settings.gx_home), "data_docs": str(data_docs_dir(settings))}

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        if isinstance(node, str) and "$" in node:
            return Template(node).substitute(places)
        return node

    config: dict[str, Any] = resolve(raw)
    return config


def open_context(settings: Settings) -> Any:
    """A GX context whose stores and Data Docs live under ``ISOLOIR_HOME``."""
    gx = import_gx()
    from great_expectations.data_context.types.base import DataContextConfig

    settings.gx_home.mkdir(parents=True, exist_ok=True)
    data_docs_dir(settings).mkdir(parents=True, exist_ok=True)
    config = DataContextConfig(**context_config(settings))
    return gx.get_context(project_config=config, mode="ephemeral")


def build_data_docs(settings: Settings) -> Path:
    """Rebuild the whole Data Docs site from the stored (value-free) results; return its index."""
    context = open_context(settings)
    context.build_data_docs(site_names=[SITE_NAME])
    index = data_docs_dir(settings) / "index.html"
    log.info("Data Docs built at %s", index)
    return index
