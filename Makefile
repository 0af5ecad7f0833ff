# Meterflow: `make demo` runs the pipeline end to end, `make test` runs the tests.
# Both create .venv and install the exact versions in requirements.lock on first use; `make test`
# also builds .venv-bq, the BigQuery API server its BigQuery tests run against.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# bqemulator (emulators/bigquery.py) pins DuckDB 1.5, the project DuckDB 2.0: a venv of its own.
BQ_VENV := .venv-bq
# Project-local Prefect home: the demo's runs stay visible to `make ui`.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup demo test lint format ui serve lock clean

# Debian's chromium and its driver, for the portal's browser test (no browser download).
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup: $(VENV)/.installed $(BQ_VENV)/.installed $(CHROMEDRIVER)

$(VENV)/.installed: requirements.lock pyproject.toml
	@echo "Installing pinned dependencies into $(VENV) (log: $(VENV)/install.log) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --disable-pip-version-check -r requirements.lock > $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log; exit 1; }
	@$(BIN)/pip install --disable-pip-version-check --no-deps --no-build-isolation -e . \
		>> $(VENV)/install.log 2>&1 || { tail -n 30 $(VENV)/install.log; exit 1; }
	@touch $@

$(BQ_VENV)/.installed: emulators/bigquery-requirements.lock
	@echo "Installing the BigQuery emulator into $(BQ_VENV) (log: $(BQ_VENV)/install.log) ..."
	@test -x $(BQ_VENV)/bin/python || $(PYTHON) -m venv $(BQ_VENV)
	@$(BQ_VENV)/bin/pip install --disable-pip-version-check -r emulators/bigquery-requirements.lock \
		> $(BQ_VENV)/install.log 2>&1 || { tail -n 30 $(BQ_VENV)/install.log; exit 1; }
	@touch $@

$(CHROMEDRIVER):
	@echo "Installing chromium and chromium-driver (apt; log: /tmp/meterflow-apt.log) ..."
	@{ $(SUDO) apt-get install -y -q chromium chromium-driver \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }; \
	} > /tmp/meterflow-apt.log 2>&1 || { tail -n 30 /tmp/meterflow-apt.log; exit 1; }

demo: $(VENV)/.installed
	@$(BIN)/meterflow demo

test: setup lint
	@$(BIN)/pytest

lint: $(VENV)/.installed
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

format: $(VENV)/.installed
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

ui: $(VENV)/.installed
	@$(BIN)/prefect server start

# The participants' portal over the demo's warehouse (sign in with a token `make demo` prints).
serve: $(VENV)/.installed
	@$(BIN)/meterflow serve

# Re-resolve every dependency from pyproject.toml and pin the result.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --disable-pip-version-check '.[dev]'
	{ echo "# Exact versions of every dependency, as installed and tested (pip freeze of a fresh venv)."; \
	  echo "# Regenerate: make lock"; \
	  .lock-venv/bin/pip freeze --exclude meterflow; \
	  echo "setuptools==$$(.lock-venv/bin/python -c 'import setuptools; print(setuptools.__version__)')"; \
	} > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(BQ_VENV) .prefect data .pytest_cache .ruff_cache
