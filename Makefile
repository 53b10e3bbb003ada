# ai-local-core — developer and operator entry points. `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
BIN         := $(VENV)/bin
PIP_EXTRAS  ?= vision
# Molecule scenarios to run (default: every molecule/*/molecule.yml, the longest first so the
# pool's lanes end together: default and tunnels converge the whole stack).
LONG_SCENARIOS := default tunnels
SCENARIOS   ?= $(LONG_SCENARIOS) $(filter-out $(LONG_SCENARIOS),$(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# Operator targets (deploy, check, status, models, rotate, upgrade, tunnel-url, logs, ssh) act on
# INVENTORY, optionally narrowed with LIMIT (an Ansible host pattern). The sandbox inventory (the
# `make demo` container) gets the stand-in vars file automatically once `make demo` wrote it.
INVENTORY   ?= inventories/sandbox/hosts.yml
LIMIT       ?=
# Vault password source for production inventories (or export ANSIBLE_VAULT_PASSWORD_FILE).
VAULT_PASSWORD_FILE ?=
# Extra ansible-playbook arguments, e.g. ARGS="--tags gateway -v".
ARGS        ?=
# make logs: the systemd unit and how many journal lines.
UNIT        ?= ollama
LINES       ?= 100
# make upgrade: the Ollama version to move to (empty: the inventory's ollama_version).
VERSION     ?=
SANDBOX_VARS := $(if $(findstring inventories/sandbox,$(INVENTORY)),$(wildcard .cache/sandbox/standins.yml))
ANSIBLE_OPTS = -i $(INVENTORY) $(if $(LIMIT),--limit '$(LIMIT)') \
  $(if $(VAULT_PASSWORD_FILE),--vault-password-file $(VAULT_PASSWORD_FILE)) \
  $(if $(SANDBOX_VARS),-e @$(SANDBOX_VARS))
# MITOGEN=1: the operator targets run Ansible with mitogen's `mitogen_linear` strategy (the
# mitogen package in .venv): one Python per host for the whole run instead of one per task, a
# no-op site.yml over SSH in a fraction of the time (docs/benchmarks.md). Off by default (plain
# SSH with pipelining) until it is proven on every playbook and the VM (docs/operations.md).
MITOGEN     ?= 0
MITOGEN_ENV  = $(if $(filter 1,$(MITOGEN)),ANSIBLE_STRATEGY=mitogen_linear \
  ANSIBLE_STRATEGY_PLUGINS="$$($(BIN)/python -c 'import ansible_mitogen, os; \
  print(os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy"))')")
PLAYBOOK     = $(MITOGEN_ENV) $(BIN)/ansible-playbook $(ANSIBLE_OPTS)
# Scenarios run side by side (their containers mostly wait on apt and systemd, not on the CPU).
MOLECULE_JOBS ?= 2
# make test / make integration: 0 leaves out the qemu VM test (make vm-test).
VM_TEST ?= 1
VM_JOB       = $(if $(filter 0,$(VM_TEST)),,vm-test)
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

.PHONY: integration
integration: venv images ## Every Molecule scenario and make vm-test, MOLECULE_JOBS side by side (VM_TEST=0: no VM)
	molecule/run-scenarios -j $(MOLECULE_JOBS) $(VM_JOB) $(SCENARIOS)

.PHONY: test
test: venv images ## Everything CI runs: lint, Python tests, Molecule scenarios, VM test; MOLECULE_JOBS at a time
	molecule/run-scenarios -j $(MOLECULE_JOBS) $(VM_JOB) $(SCENARIOS) lint unit

.PHONY: demo-local
demo-local: venv ## Demo the Python services on this machine (Ollama stand-in + API server, loopback)
	$(BIN)/python -m tests.demo_local

.PHONY: demo
demo: venv images ## Sandbox container + site.yml with stand-ins, then a working and a refused request
	$(BIN)/python -m tests.sandbox.demo up -- $(ARGS)

.PHONY: demo-down
demo-down: ## Remove the sandbox container and its stand-in files
	$(BIN)/python -m tests.sandbox.demo down

.PHONY: deploy
deploy: venv ## Run playbooks/site.yml (INVENTORY=, LIMIT=, ARGS=)
	$(PLAYBOOK) playbooks/site.yml $(ARGS)

.PHONY: check
check: venv ## Dry run of site.yml: --check --diff, changes nothing
	$(PLAYBOOK) playbooks/site.yml --check --diff $(ARGS)

.PHONY: status
status: venv ## Status table of every layer (playbooks/status.yml)
	$(PLAYBOOK) playbooks/status.yml $(ARGS)

.PHONY: models
models: venv ## Pull/remove the declared models only (playbooks/models.yml)
	$(PLAYBOOK) playbooks/models.yml $(ARGS)

.PHONY: rotate
rotate: venv ## Apply rotated gateway keys/users and tunnel token from the vault, then test them
	$(PLAYBOOK) playbooks/rotate-credentials.yml $(ARGS)

.PHONY: upgrade
upgrade: venv ## Upgrade Ollama (VERSION=X.Y.Z or the inventory's pin), rolls back on failure
	$(PLAYBOOK) playbooks/upgrade-ollama.yml $(if $(VERSION),-e upgrade_ollama_version=$(VERSION)) $(ARGS)

.PHONY: services
services: venv ## Redeploy the Python services only (playbooks/services.yml)
	$(PLAYBOOK) playbooks/services.yml $(ARGS)

.PHONY: tunnel-url
tunnel-url: venv ## Print the Cloudflare quick-tunnel URL or the Tailscale name of each node
	$(PLAYBOOK) playbooks/tunnel-url.yml $(ARGS)

.PHONY: logs
logs: venv ## Journal of one unit on the nodes (UNIT=ollama|ai-local-core-api|nginx|..., LINES=100)
	$(BIN)/ansible $(if $(LIMIT),'$(LIMIT)',llm_nodes) $(ANSIBLE_OPTS) --become -m ansible.builtin.command \
	  -a "journalctl --no-pager -o short-iso -n $(LINES) -u $(UNIT)"

.PHONY: ssh
ssh: venv ## Open a shell on the first host of LIMIT (or of INVENTORY)
	@host="$$($(BIN)/ansible $(if $(LIMIT),'$(LIMIT)',llm_nodes) -i $(INVENTORY) --list-hosts | sed -n '2{s/^ *//;p;}')"; \
	test -n "$$host" || { echo "no host matches $(if $(LIMIT),$(LIMIT),llm_nodes) in $(INVENTORY)"; exit 1; }; \
	cmd="$$($(BIN)/ansible-inventory -i $(INVENTORY) $(if $(VAULT_PASSWORD_FILE),--vault-password-file $(VAULT_PASSWORD_FILE)) --host "$$host" | $(BIN)/python -c 'import json, shlex, sys; \
	v = json.load(sys.stdin); h = v.get("ansible_host", sys.argv[1]); \
	podman = v.get("ansible_connection", "").endswith("podman"); \
	ssh = ["ssh"] + shlex.split(v.get("ansible_ssh_common_args", "")) \
	  + (["-p", str(v["ansible_port"])] if "ansible_port" in v else []) \
	  + (["-i", v["ansible_ssh_private_key_file"]] if "ansible_ssh_private_key_file" in v else []) \
	  + [(v["ansible_user"] + "@" if "ansible_user" in v else "") + h]; \
	print(shlex.join(["podman", "exec", "-it", h, "bash", "-l"] if podman else ssh))' "$$host")"; \
	echo "$$cmd"; exec $$cmd

.PHONY: vm-test
vm-test: venv ## Debian 12 qemu VM: site.yml over SSH (cut off, resumed), verify, faults, firewall from outside, reboot, verify
	$(BIN)/python -m tests.vm.vm_test

.PHONY: bench
bench: venv ## Benchmarks on loopback (gateway, streaming, rate limit, 200 streams, CLIs) + docs/benchmarks.md
	@$(BIN)/python -m bench.run; rc=$$?; $(BIN)/python -m bench.report; exit $$rc

.PHONY: bench-report
bench-report: venv ## Regenerate docs/benchmarks.md and docs/img/bench-*.png from .cache/bench/latest.json
	$(BIN)/python -m bench.report

.PHONY: clean
clean: ## Remove caches and build outputs (keeps .venv and the image cache)
	rm -rf .cache build dist .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
