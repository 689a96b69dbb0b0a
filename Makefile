# cliplens: every install step lives here, so that `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
HELM_VERSION := v3.21.4
HELM := .tools/bin/helm
GHZ_VERSION := v0.120.0
GHZ := .tools/bin/ghz
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv helm ghz browser demo test test-fast lint format stubs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv and install cliplens + cliplens-client (editable) with dev tools

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e clients/python
	touch $(STAMP)

helm:  ## build the pinned helm into .tools/bin for the chart tests (skipped when that version is there)
	@$(HELM) version --template '{{.Version}}' 2>/dev/null | grep -qx '$(HELM_VERSION)' || { \
	  echo "building helm $(HELM_VERSION) (a few minutes, once)"; \
	  GOBIN=$(CURDIR)/.tools/bin $(GO) install -ldflags '-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)' \
	    helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }

ghz:  ## build the pinned ghz (gRPC load generator) into .tools/bin for benchmarks/serve_features.py
	@test -x $(GHZ) || { echo "building ghz $(GHZ_VERSION) (a minute, once)"; \
	  GOBIN=$(CURDIR)/.tools/bin $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION); }

browser:  ## install Debian's chromium for the web UI tests (Playwright drives it; skipped when it is there)
	@test -x $(CHROMIUM) || { echo "installing chromium from Debian (a minute, once)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

demo: venv  ## set up, then run the main job offline on the demo model
	$(PY) -m cliplens.demo

test: venv helm browser  ## set up, then run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv  ## the unit tier only (no servers, no Ray): under a minute
	$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

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
