# Every target installs what it needs first, so each works on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime's Python (template.yaml: python3.12). pyenv has it on these machines; any python3.12 works.
# The first candidate that really runs 3.12 wins (a pyenv shim may exist for a version that is not active).
PYTHON ?= $(shell for candidate in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -n 1) $$(command -v python3.12); do \
  "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && echo "$$candidate" && break; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# .venv/bin first: it has python3.12, which `sam build` needs on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export SAM_CLI_TELEMETRY := 0

PORT ?= 3000
PARAMS ?=
FUNCTION ?=
EVENT ?=
ENV ?= dev

.PHONY: help install test lint format validate build deploy local invoke bench clean smoke teardown

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The pinned tools, then the project itself, editable (core, handlers, offline, tools: they import from anywhere),
# built by the setuptools pinned in requirements-dev.txt.
$(STAMP): requirements-dev.txt src/requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it (pyenv install 3.12) or set PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

install: $(STAMP) ## Create .venv with the pinned tools and the project installed editable (idempotent)

# The suite runs in TEST_WORKERS processes (pytest-xdist), one test file per worker at a time (a file's offline
# stack is started once); tests marked `serial` (their timing needs the machine to themselves: real-time rate
# limits, bursts, timeouts) run afterwards on their own. Exit code 5 is "no test selected" (PYTEST_ARGS narrowed
# the run to one side).
TEST_WORKERS ?= 4
test: $(STAMP) ## Run the whole test suite (unit, integration, fidelity, end-to-end; in parallel, then the serial ones)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The browser tests' browser: Debian's chromium, driven by Playwright for Python with this executable (Playwright's
# own browser download is neither used nor needed). Installed here when missing: apt-get as root, else sudo.
CHROMIUM ?= /usr/bin/chromium
.PHONY: browser
browser: $(STAMP) ## Install Debian's chromium if missing; run the portal's browser tests; refresh docs/screenshots/
	@test -x "$(CHROMIUM)" || { echo "installing Debian's chromium (the browser tests' browser)"; \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x "$(CHROMIUM)" || { echo "no browser at $(CHROMIUM): install Debian's chromium package"; exit 1; }
	PORTAL_SCREENSHOTS=$(abspath docs/screenshots) CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -m browser tests/browser $(PYTEST_ARGS)

.PHONY: unit
unit: $(STAMP) ## Run the product's unit tests only (tests/unit: no stack, no server; about 30 s)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

validate: $(STAMP) ## Template gates: sam validate --lint, sam validate, cfn-lint on the translated template
	VENV=$(VENV) tools/validate_template.sh

build: $(STAMP) ## sam build (no Docker needed)
	VENV=$(VENV) tools/sam_build.sh

deploy: build ## Pre-flight, then sam deploy --config-env $(ENV) (needs AWS credentials)
	$(BIN)/python -m tools.preflight --config-env $(ENV)
	$(BIN)/sam deploy --config-env $(ENV)

smoke: $(STAMP) ## Prove a stack works end to end: STACK=<name> on AWS, or the running `make local` without STACK
	$(BIN)/python -m tools.smoke $(if $(STACK),--stack "$(STACK)",--local .local) $(if $(ACCESS_LOG),--access-log "$(ACCESS_LOG)")

teardown: $(STAMP) ## List the API keys and partner records of STACK=<name>; CONFIRM=1 deletes them
	$(BIN)/python -m tools.teardown --stack "$(STACK)" $(if $(CONFIRM),--confirm)

local: $(STAMP) ## Run the whole product offline on 127.0.0.1 (PORT=, PARAMS="FreeQuotaLimit=20 ...", VERBOSE=1)
	$(BIN)/python -m offline --port $(PORT) --params "$(PARAMS)" $(if $(filter 1,$(VERBOSE)),--verbose)

invoke: $(STAMP) ## Invoke a function of the running offline stack: FUNCTION=<LogicalId> [EVENT=events/x.json]
	$(BIN)/python -m offline.invoke --function "$(FUNCTION)" $(if $(EVENT),--event "$(EVENT)")

bench: $(STAMP) ## Print the benchmarks' figures (their logs: .local/bench.log)
	@mkdir -p .local; : > .local/bench.log
	@for bench in bench/bench_*.py; do echo "== $$bench"; \
	  $(BIN)/python $$bench 2>>.local/bench.log || { echo "$$bench failed: see .local/bench.log"; exit 1; }; done

clean: ## Remove build output and local state (keeps .venv)
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
