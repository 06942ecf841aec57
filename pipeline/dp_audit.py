"""Run the empirical privacy audit and keep its last results for the auditor.

:mod:`privacy.audit_dp` is the audit itself (a primitive: datasets, releases, the test).
This job decides what to audit (the plan in force), where its scratch files go (the secure
``work/`` zone, removed afterwards) and where its results are kept: the last run, per
family its trials, declared ε, empirical lower bound and date, in
``$ISOLOIR_HOME/audit/dp_audit.json`` (:func:`privacy.audit_dp.record_path`), written
atomically so the auditor report never reads half a file. A failed audit is recorded too:
the auditor must see it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from core.settings import Settings
from privacy.audit_dp import DPAuditReport, record_path, run_audit
from privacy.plan import load_plan

log = logging.getLogger(__name__)

#: Trials per dataset of ``isoloir audit dp`` (``make audit``) unless ``--trials`` says.
DEFAULT_TRIALS = 10_000


def run_dp_audit(settings: Settings, *, trials: int = DEFAULT_TRIALS,
                 scope: Literal["families", "all"] = "all") -> tuple[DPAuditReport, Path]:
    """Audit the plan in force (every query, or one per family); record the results."""
    plan = load_plan(settings.plan_file)
    settings.ensure_dirs()
    report = run_audit(plan, trials=trials, scratch=settings.work, scope=scope)
    path = record_path(settings.home)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(report.to_json(), encoding="utf-8")
    os.replace(partial, path)
    log.info("DP audit recorded in %s", path)
    return report, path
