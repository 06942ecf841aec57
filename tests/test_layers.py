"""The floors of the README's layout table are a contract: an import up a floor fails CI.

`make lint` runs `lint-imports` on the tree; these tests prove the contract holds today and
that it has teeth: a back-import added to a copy of the tree breaks it, and the failure
names the offending import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "transforms", "warehouse", "expectations", "privacy", "reports", "pipeline",
            "cli", "dags")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=240, env={"PATH": "/usr/bin:/bin",
                                                       "PYTHONPATH": str(tree)})


def _copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "data", "gx"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_tree(tmp_path_factory.mktemp("tree"))


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "line", "named"), [
    # privacy is floor 3, reports floor 4: the one back-arrow this repo once had
    ("privacy/keys.py", "from reports import html  # noqa", "privacy.keys -> reports.html"),
    # a primitive may not know its orchestrator
    ("privacy/plan.py", "import airflow.sdk  # noqa", "privacy is not allowed to import airflow"),
    ("privacy/bounding.py", "from concurrent.futures import ProcessPoolExecutor  # noqa",
     "privacy is not allowed to import concurrent"),
    # floor 2 may not reach the pipeline that runs it
    ("warehouse/db.py", "from pipeline import tasks  # noqa", "warehouse.db -> pipeline.tasks"),
])
def test_a_back_import_breaks_the_contract_and_is_named(tmp_path: Path, module: str, line: str,
                                                        named: str) -> None:
    copy = _copy_tree(tmp_path)
    with (copy / module).open("a", encoding="utf-8") as handle:
        handle.write(f"\n{line}\n")
    result = _lint(copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert named in result.stdout, result.stdout


def test_privacy_holds_no_orchestration_imports() -> None:
    """The issue's own wording, checked on the source text too (lazy imports included)."""
    banned = ("airflow", "concurrent.futures", "multiprocessing", "reports", "pipeline")
    offenders = []
    for path in sorted((ROOT / "privacy").rglob("*.py")):
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            words = text.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and \
                    words[1].split(".")[0] in {b.split(".")[0] for b in banned}:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    assert offenders == []
