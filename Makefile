# ai-local-core — developer and operator entry points. `make help` lists every target.
# Runs on GNU make 3.81 (macOS's /usr/bin/make) and newer. The shell's options are part of SHELL,
# not .SHELLFLAGS (which 3.81 ignores): make then runs every recipe as `$(SHELL) -c 'recipe'`, so
# a failing command, an unset variable or a failing pipe stage stops the recipe everywhere.
SHELL := /bin/bash -eu -o pipefail
.DEFAULT_GOAL := help

VENV        ?= .venv
BIN         := $(VENV)/bin
# The interpreter that creates the venv: Python 3.11+ (ansible-core 2.19 and other locked wheels
# need it; the package itself still runs on the nodes' Python 3.10). Empty: the first 3.11+ of
# python3 (so Linux and CI keep their usual python3), python3.13, python3.12, python3.11.
PYTHON      ?=
# What `make venv` installs from requirements/ (one lock, constraints.txt, pins both sets):
#   dev        requirements/dev.in (the controller set + the test toolchain) and this package
#              editable with PIP_EXTRAS: what make lint/unit/test/demo need (Linux; CI);
#   controller requirements/controller.in only: what the operator targets need (deploy, check,
#              status, models, rotate, upgrade, services, tunnel-url, smoke, logs, ssh).
# Default: controller on macOS, dev elsewhere.
UNAME_S     := $(shell uname -s)
VENV_SET    ?= $(if $(filter Darwin,$(UNAME_S)),controller,dev)
# Extras of the package in the dev set (empty: none).
PIP_EXTRAS  ?= vision
PKG_SPEC     = .$(if $(strip $(PIP_EXTRAS)),[$(strip $(PIP_EXTRAS))])
# Shell code: sets py to the interpreter for a new venv, or fails saying what to install.
PY_CANDIDATES = $(if $(PYTHON),$(PYTHON),python3 python3.13 python3.12 python3.11)
FIND_PYTHON  = py=""; \
  for c in $(PY_CANDIDATES); do \
    if "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then py=$$c; break; fi; \
  done; \
  if [ -z "$$py" ]; then \
    echo "error: the venv needs Python 3.11 or newer (ansible-core 2.19). Found:" >&2; \
    for c in $(PY_CANDIDATES); do \
      echo "  $$c: $$(command -v "$$c" >/dev/null 2>&1 && "$$c" -V 2>&1 || echo 'not found')" >&2; \
    done; \
    echo "macOS (its python3 is 3.9): brew install python@3.12, then: make setup PYTHON=python3.12" >&2; \
    echo "Debian/Ubuntu: apt-get install python3.11-venv, then: make setup PYTHON=python3.11" >&2; \
    exit 1; \
  fi
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
# The operator targets run Ansible with mitogen's `mitogen_linear` strategy (the mitogen package
# in .venv): one Python per host for the whole run instead of one per task, a no-op site.yml over
# SSH in a fraction of the time (docs/benchmarks.md). Proven on every playbook: the Molecule
# scenarios converge, re-run and verify (check mode, the day-2 playbooks) with it, make demo and
# make vm-test deploy over SSH with it. MITOGEN=0: plain SSH with pipelining (docs/operations.md).
MITOGEN     ?= 1
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
# molecule/run-scenarios runs its make-target jobs (vm-test, lint, unit) with this make (gmake
# stays gmake), not with whatever `make` is first on PATH.
export MAKE

.PHONY: help
help: ## List the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: host-packages venv ## Install host packages (Linux, as root) and the pinned .venv
	@echo "setup done: activate with 'source $(BIN)/activate' or use the make targets"

.PHONY: host-packages
host-packages: ## Install the Debian/Ubuntu packages the tests need (podman, runc, debootstrap)
	@pkgs="$$(grep -vE '^[[:space:]]*(#|$$)' requirements/apt.txt | tr '\n' ' ')"; \
	if [ "$$(uname -s)" = "Darwin" ]; then \
	  echo "macOS: no host packages: the operator targets need only the venv (VENV_SET=$(VENV_SET))."; \
	  echo "       The tests and the sandbox demo (make test, make molecule, make vm-test, make demo) need Linux."; \
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
venv: $(BIN)/.installed-$(VENV_SET) ## Create .venv with the pinned set VENV_SET (dev: + the package, editable)
$(BIN)/.installed-$(VENV_SET): pyproject.toml requirements/controller.in requirements/dev.in requirements/constraints.txt
	@case "$(VENV_SET)" in dev | controller) ;; \
	  *) echo "error: VENV_SET=$(VENV_SET): use dev (tests, Linux) or controller (operator targets only)" >&2; exit 2 ;; \
	esac; \
	if [ -x $(BIN)/python ]; then \
	  $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	    echo "error: $(VENV) has $$($(BIN)/python -V 2>&1); it needs Python 3.11+: rm -rf $(VENV), then make setup (on macOS: PYTHON=python3.12)" >&2; exit 1; }; \
	else \
	  $(FIND_PYTHON); \
	  echo "creating $(VENV) with $$py ($$("$$py" -V 2>&1))"; \
	  "$$py" -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt \
	  $(if $(filter dev,$(VENV_SET)),-r requirements/dev.in -e '$(PKG_SPEC)',-r requirements/controller.in)
	@touch $@

# The lock holds public versions only: local version labels (torch's +cpu) are cut, and pip still
# prefers a local build of the same version where an index offers one (2.13.0+cpu matches ==2.13.0
# and sorts above it). `--all` keeps setuptools and wheel (controller.in); pip itself and the
# package are left out. The freeze goes to a temp file first: a failure leaves the old lock.
.PHONY: lock
lock: ## Re-resolve requirements/dev.in + the package into requirements/constraints.txt
	@$(FIND_PYTHON); rm -rf .cache/lock-venv && "$$py" -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install -q --upgrade pip
	.cache/lock-venv/bin/pip install -q -r requirements/dev.in -e '$(PKG_SPEC)'
	.cache/lock-venv/bin/pip freeze --all --exclude-editable \
	  | grep -viE '^(pip|ai-local-core|ai_local_core)==' \
	  | sed -E 's/^([^=]+==[^+]+)[+].*$$/\1/' > .cache/constraints.txt.new
	mv .cache/constraints.txt.new requirements/constraints.txt
	rm -rf .cache/lock-venv

# The node set: the versions role ai_services installs on a node (roles/ai_services/files/
# node-constraints.txt), one per package for the nodes' Python 3.10-3.13, Linux x86_64 + aarch64;
# the lock's versions where they resolve there (run after `make lock`). Installs nothing; then
# checks the result.
.PHONY: lock-node
lock-node: venv ## Re-resolve the package + [vision] for the nodes' Pythons into roles/ai_services/files/node-constraints.txt
	$(BIN)/python requirements/check_resolve.py --lock-node
	$(BIN)/python requirements/check_resolve.py --set node

.PHONY: resolve-check
resolve-check: venv ## Check (installs nothing) that the controller set (macOS + Linux) and the node set (Python 3.10-3.13) resolve
	$(BIN)/python requirements/check_resolve.py

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
	@rc=0; $(BIN)/pytest -q --durations=15 || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

.PHONY: molecule
molecule: venv images ## Run every Molecule scenario (SCENARIOS="base ..." to pick, MOLECULE_JOBS=2)
	molecule/run-scenarios -j $(MOLECULE_JOBS) $(SCENARIOS)

.PHONY: integration
integration: venv images ## Every Molecule scenario and make vm-test, MOLECULE_JOBS side by side (VM_TEST=0: no VM)
	molecule/run-scenarios -j $(MOLECULE_JOBS) $(VM_JOB) $(SCENARIOS)

.PHONY: test
test: venv ## Everything CI runs: lint, Python tests, Molecule scenarios, VM test; MOLECULE_JOBS at a time
	molecule/run-scenarios -j $(MOLECULE_JOBS) $(VM_JOB) images $(firstword $(SCENARIOS)) unit $(wordlist 2,999,$(SCENARIOS)) lint

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

.PHONY: upgrade-driver
upgrade-driver: venv ## Upgrade the NVIDIA driver within its branch: one reboot, nvidia-smi and Ollama-on-GPU verify, holds again
	$(PLAYBOOK) playbooks/upgrade-driver.yml $(ARGS)

.PHONY: services
services: venv ## Redeploy the Python services only (playbooks/services.yml)
	$(PLAYBOOK) playbooks/services.yml $(ARGS)

.PHONY: tunnel-url
tunnel-url: venv ## Print the Cloudflare quick-tunnel URL or the Tailscale name of each node
	$(PLAYBOOK) playbooks/tunnel-url.yml $(ARGS)

.PHONY: smoke
smoke: venv ## From here, via the tunnel/tailnet URL (or SMOKE_URL=): /healthz, a completion, a 401; timed
	$(PLAYBOOK) playbooks/smoke.yml $(if $(SMOKE_URL),-e 'smoke_url=$(SMOKE_URL)') $(ARGS)

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
	@rc=0; $(BIN)/python -m bench.run || rc=$$?; $(BIN)/python -m bench.report; exit $$rc

.PHONY: bench-report
bench-report: venv ## Regenerate docs/benchmarks.md and docs/img/bench-*.png from .cache/bench/latest.json
	$(BIN)/python -m bench.report

.PHONY: clean
clean: ## Remove caches and build outputs (keeps .venv and the image cache)
	rm -rf .cache build dist .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
