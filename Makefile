# The two commands a newcomer runs (README): `make run` and `make test`.
# Every install goes through the lock file (requirements.lock, made by `make lock`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Bytecode caching matters: the suite spawns many processes that import Airflow, GX and OpenDP.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test lint typecheck lock bench audit clean

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip sync -q -p $(PY) requirements.lock
	$(UV) pip install -q -p $(PY) --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## run: synthetic campaign -> Airflow pipeline -> DP report, on the embedded default (SQLite)
run: install
	$(VENV)/bin/isoloir demo

## test: lint, type-check, then the whole suite (PostgreSQL tests included)
test: install lint typecheck
	scripts/test-setup.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: install
	$(VENV)/bin/mypy core transforms privacy warehouse expectations reports pipeline cli $(wildcard dags/*.py)

## lock: re-resolve the pins after editing pyproject.toml
lock:
	$(UV) pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock

## audit: the long empirical privacy audit (every query of the plan, 10,000 trials each) and
## the identity split rate on a 50,000-person synthetic campaign; results in
## $(ISOLOIR_HOME)/audit/, shown by the auditor report
AUDIT_ARGS ?=
audit: install
	$(VENV)/bin/isoloir audit dp $(AUDIT_ARGS)
	$(VENV)/bin/isoloir audit identity --people 50000

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
