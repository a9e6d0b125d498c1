# Two commands matter: `make run` (everything) and `make test` (the whole suite,
# on SQLite, then its database tests on PostgreSQL when a server is reachable).
# `make team`: relays x N behind HAProxy on one machine, for a team's trial (README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-deps
DEV_STAMP := $(VENV)/.dev-deps

.PHONY: run team test lint typecheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(RUN_STAMP) $@

run: $(RUN_STAMP)
	$(PY) -m claudemon

team: $(RUN_STAMP)
	$(PY) -m claudemon team

test: $(DEV_STAMP)
	bash tests/setup_browser.sh
	$(PY) -m pytest
	$(PY) -m tests.on_postgres

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

bench: $(DEV_STAMP)
	$(PY) bench/relay.py

clean:
	rm -rf $(VENV)
