"""Run one DAG in-process with dag.test(), making a task body fail ONCE after it did its work.

Usage: python -m tests.helpers.fault_runner DAG_ID TASK_FUNCTION MARKER_FILE [--conf JSON]
The wrapped function of ``pipeline.tasks`` runs, then raises the first time (the marker file
records that it already failed), so Airflow's retry runs it again on top of its own effects.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    dag_id, target, marker = argv[0], argv[1], Path(argv[2])
    import pipeline.tasks as tasks

    original = getattr(tasks, target)

    def fails_once_after_work(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not marker.exists():
            marker.write_text("failed once after the work was done\n")
            raise RuntimeError(f"injected failure after {target}")
        return result

    setattr(tasks, target, fails_once_after_work)
    from cli.airflow_runner import _main

    return _main([dag_id, *argv[3:]])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
