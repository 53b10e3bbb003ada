# ai-local-core — developer and operator entry points. `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
BIN         := $(VENV)/bin
PIP_EXTRAS  ?= vision
# Molecule scenarios to run (default: every molecule/*/molecule.yml).
SCENARIOS   ?= $(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
INVENTORY   ?= inventories/sandbox/hosts.yml
LIMIT       ?=
# Scenarios run side by side (their containers mostly wait on apt and systemd, not on the CPU).
MOLECULE_JOBS ?= 2
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help
help: ## List the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: host-packages venv ## Install host packages (Linux, as root) and the pinned .venv
	@echo "setup done: activate with 'source $(BIN)/activate' or use the make targets"

.PHONY: host-packages
host-packages: ## Install the Debian/Ubuntu packages the tests need (podman, runc, debootstrap)
	@pkgs="$$(grep -vE '^\s*(#|$$)' requirements/apt.txt | tr '\n' ' ')"; \
	if [ "$$(uname -s)" = "Darwin" ]; then \
	  echo "macOS: install podman (brew install podman) and run 'podman machine init --rootful && podman machine start';"; \
	  echo "       the Molecule test hosts then run inside the podman machine (see README.md)."; \
	elif ! command -v apt-get >/dev/null; then \
	  echo "no apt-get here: install these packages by hand: $$pkgs"; \
	else \
	  missing=""; for p in $$pkgs; do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	  if [ -z "$$missing" ]; then echo "host packages present: $$pkgs"; \
	  elif [ "$$(id -u)" -eq 0 ]; then \
	    echo "installing host packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "not root: would install:$$missing"; echo "run: sudo apt-get install -y$$missing"; \
	  fi; \
	fi

.PHONY: venv
venv: $(BIN)/.installed ## Create .venv with the pinned toolchain and the package (editable)
$(BIN)/.installed: pyproject.toml requirements/dev.in requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -r requirements/dev.in -e '.[$(PIP_EXTRAS)]'
	@touch $@

.PHONY: lock
lock: ## Re-resolve requirements/dev.in + the package into requirements/constraints.txt
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install -q --upgrade pip wheel
	.cache/lock-venv/bin/pip install -q -r requirements/dev.in -e '.[$(PIP_EXTRAS)]'
	.cache/lock-venv/bin/pip freeze --exclude-editable | grep -v '^ai-local-core' > requirements/constraints.txt
	rm -rf .cache/lock-venv

.PHONY: images
images: ## Build (cached) the Debian 12/13 systemd test-host images for podman
	$(BIN)/python molecule/images/build

.PHONY: lint
lint: venv ## ansible-lint (production), yamllint, ruff, mypy: all run, any failure fails
	@failed=""; \
	for cmd in "yamllint --strict ." "ansible-lint" "ruff check ." "ruff format --check ." "mypy"; do \
	  echo "--- $$cmd"; $(BIN)/$$cmd || failed="$$failed [$$cmd]"; \
	done; \
	if [ -n "$$failed" ]; then echo "lint failed:$$failed"; exit 1; fi

.PHONY: unit
unit: venv ## Python unit and integration tests (pytest, loopback only)
	@$(BIN)/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

.PHONY: molecule
molecule: venv images ## Run every Molecule scenario (SCENARIOS="base ..." to pick, MOLECULE_JOBS=2)
	molecule/run-scenarios -j $(MOLECULE_JOBS) $(SCENARIOS)

.PHONY: test
test: venv ## Everything CI runs: lint + Python tests + every Molecule scenario (stage times at the end)
	@failed=""; summary=""; \
	for stage in lint unit molecule; do \
	  start=$$(date +%s); echo "=== make $$stage"; \
	  if $(MAKE) --no-print-directory $$stage; then r=ok; else r=FAILED; failed="$$failed $$stage"; fi; \
	  summary="$$summary\n  $$stage: $$r in $$(( $$(date +%s) - start ))s"; \
	done; \
	echo -e "test stages:$$summary"; \
	if [ -n "$$failed" ]; then echo "failed stages:$$failed"; exit 1; fi

.PHONY: demo-local
demo-local: venv ## Demo the Python services on this machine (Ollama stand-in + API server, loopback)
	$(BIN)/python -m tests.demo_local

.PHONY: clean
clean: ## Remove caches and build outputs (keeps .venv and the image cache)
	rm -rf .cache build dist .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
