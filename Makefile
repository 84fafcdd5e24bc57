# Flask Deploy Lab: `make bench` measures, `make test` tests.
# Everything a target needs is installed by `make setup`, which the main
# targets call first; a second run finds it all cached.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# podman runs with the project's own settings; the host's config is untouched.
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Molecule and testinfra find the project's Python through this.
export PYTHONDONTWRITEBYTECODE := 1
# Under make a skipped test fails: a skip for a missing program hides a gap.
export FDL_NO_SKIP ?= 1

PY_REQUIREMENTS := requirements.txt app/requirements.txt loadtest/requirements.txt pyproject.toml

.PHONY: help setup doctor packages venv image lint lab-up lab-down test test-unit test-app test-offline test-vagrant test-lab \
	molecule test-e2e test-two-app test-fresh bench compare locust-ui locust-ui-stop faults clean \
	vagrant-packages vagrant-box vagrant-up-test

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: packages venv image  ## install what everything needs (cached), then make doctor
	@scripts/doctor.sh --summary

doctor:  ## one line per prerequisite: present or missing, version, package, how to install it
	@scripts/doctor.sh

packages:
	@scripts/install-packages.sh

venv: $(VENV)/.installed

$(VENV)/.installed: $(PY_REQUIREMENTS) | packages
	@echo "venv: installing pinned requirements"
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	@$(BIN)/pip install -q -r requirements.txt -r loadtest/requirements.txt
	@$(BIN)/pip install -q --no-binary psycopg2 -r app/requirements.txt
	@$(BIN)/pip install -q --no-deps -e .
	@touch $@

image: packages
	@scripts/build-image.sh

lint: venv  ## ruff, yamllint, ansible-lint (production profile)
	ruff check .
	ruff format --check .
	yamllint --strict .
	ansible-lint

lab-up: setup  ## start the podman lab from inventory/topology.yml (INVENTORY=inventory/lab-two-app: two app hosts)
	ansible-playbook $(if $(INVENTORY),-i "$(INVENTORY)") playbooks/lab.yml

lab-down: venv  ## remove the lab's containers and network
	ansible-playbook playbooks/lab.yml -e lab_state=absent

test-unit: test-app test-offline  ## test-app and test-offline, one after the other

test-app: setup  ## the app and every WSGI server on a throwaway PostgreSQL and Redis (the Celery tasks with real workers)
	pytest tests/app

# vagrant-packages: tests/repo proves that every program `vagrant up` needs comes
# from what it installs, which only holds once it has installed them (16 s)
test-offline: setup vagrant-packages  ## the controller package, the load test's pieces, the faults' judges and host-side scripts, input and repository checks
	pytest tests/controller tests/loadtest tests/playbooks tests/repo tests/faults

test-vagrant: setup  ## the Vagrantfile and the inventories, offline
	pytest tests/vagrant

test-lab: setup  ## a second lab from the topology: up, checked, down
	pytest tests/lab

# Molecule's scenarios: the stack's (default) and one per role alone. Each has
# containers and a network of its own, so they run side by side (make -j): the
# roles' end while the stack converges. Each one's output is printed whole
# when it ends.
MOLECULE_SCENARIOS := $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml))

molecule: setup  ## every scenario side by side: the stack (every server switch) and each role alone; converge, idempotence, testinfra
	$(MAKE) --no-print-directory --output-sync=target -j$(words $(MOLECULE_SCENARIOS)) $(addprefix molecule-scenario-,$(MOLECULE_SCENARIOS))

molecule-scenario-%:
	molecule test -s $*

molecule-two-app: setup  ## the stack scenario on inventory/topology-two-app.yml: two app hosts behind nginx
	FDL_MOLECULE_INVENTORY=inventory-two-app/ molecule test -s default

test-fresh: setup  ## make setup's package step on a new container of the base image (pristine Debian 12)
	pytest -s tests/fresh

test: setup lint test-app test-beside-molecule test-e2e test-faults test-two-app  ## the whole suite (what CI runs)

# Molecule's stack scenario is make test's longest step (about 24 min), most
# of it one host's converges in a row. Beside it run the role scenarios, then
# the offline suites (nothing in them times a server), the fresh-machine
# suite and the converge of the lab that the suites after it share (their own
# containers each). The app's suite, which times real servers, runs before,
# and the faults and the load runs after, alone on the machine: they measure.
MOLECULE_ROLE_SCENARIOS := $(filter-out default,$(MOLECULE_SCENARIOS))

test-beside-molecule:
	$(MAKE) --no-print-directory --output-sync=target -j$(words $(MOLECULE_SCENARIOS)) molecule-scenario-default test-beside-stack INVENTORY="$(INVENTORY)"

# one after another (a goal per make: several goals would share the jobs)
test-beside-stack: $(addprefix molecule-scenario-,$(MOLECULE_ROLE_SCENARIOS))
	$(MAKE) --no-print-directory test-offline
	$(MAKE) --no-print-directory test-vagrant
	$(MAKE) --no-print-directory test-lab
	$(MAKE) --no-print-directory test-fresh
	$(MAKE) --no-print-directory lab-converge INVENTORY="$(INVENTORY)"

vagrant-packages:  ## what vagrant up with libvirt needs (libvirt, qemu, vagrant-libvirt), then its doctor
	@scripts/install-packages.sh --vm
	@FDL_PREREQUISITES=scripts/prerequisites-vm.txt scripts/doctor.sh --programs-only

vagrant-box: vagrant-packages  ## build the local libvirt box of Debian bookworm (cached)
	@scripts/build-vagrant-box.sh

vagrant-up-test: setup vagrant-box  ## vagrant up for real: 2 VMs, provision, switch, a load cell, report, destroy; each step timed
	fdl-vagrant-e2e $(if $(TOPOLOGY),--topology "$(TOPOLOGY)") $(if $(SERVER),--server "$(SERVER)")

clean: lab-down  ## lab-down, and drop caches and reports
	rm -rf .cache reports

bench: lab-up  ## converge and load-test each server on a concurrency ladder, then the report (SERVERS= ENDPOINTS= LADDER= DELAYS= USERS= DURATION= REPEATS=)
	fdl-bench

compare: venv  ## run B against run A per configuration, exit 1 on a regression (A= B= THRESHOLD= OUT= GATE_SINGLE_RUNS=1)
	@test -n "$(A)" && test -n "$(B)" || { echo "usage: make compare A=<run dir> B=<run dir> [THRESHOLD=0.05] [OUT=<dir>] [GATE_SINGLE_RUNS=1]" >&2; exit 2; }
	fdl-compare "$(A)" "$(B)" $(if $(THRESHOLD),--threshold "$(THRESHOLD)") $(if $(OUT),--out "$(OUT)") $(if $(filter 1 yes true,$(GATE_SINGLE_RUNS)),--gate-single-runs)

locust-ui: venv  ## Locust's web UI behind nginx (TLS, user locust, password in credentials/); prints its URL
	ansible-playbook playbooks/loadtest.yml -e locust_ui=true

locust-ui-stop: venv  ## stop the web UI and keep its run in reports/<run-id>/ui/, with its report
	ansible-playbook playbooks/loadtest.yml -e locust_state=stopped

test-two-app: setup  ## the lab of inventory/topology-two-app.yml: nginx spreads over both app hosts, fails over, takes one back
	pytest tests/two_app $(TEST_TWO_APP_FLAGS)

test-e2e: lab-up  ## a distributed Locust run through the lab, the report rendered in Chromium (INVENTORY= another lab)
	$(if $(INVENTORY),ANSIBLE_INVENTORY="$(INVENTORY)") pytest tests/e2e $(TEST_E2E_FLAGS)

faults: lab-up  ## every fault against every concurrent server, a line each and a table (FAULTS= SERVERS= FAULTS_ANSIBLE_ARGS=)
	fdl-faults --servers $(or $(SERVERS),all)

.PHONY: faults-quick test-faults molecule-two-app test-beside-molecule test-beside-stack lab-converge
faults-quick: lab-up  ## two faults (kill-worker, pg-restart) on gunicorn-gthread: the kill and restart paths, quickly
	fdl-faults --only kill-worker pg-restart --servers gunicorn-gthread

# make test's: the same two on the default server, with two app workers (the
# sizing rule gives the lab's one-CPU app host one process, and kill-worker
# needs a sibling); --no-skip: a fault that measured nothing fails (a SKIP for
# want of a second worker too). Alone it converges first.
test-faults: lab-up
	fdl-faults --only kill-worker pg-restart --no-skip $(TEST_FAULTS_FLAGS) $(if $(INVENTORY),-- -i "$(INVENTORY)")

# make test's lab suites share one lab and one converge: the two-app lab (the
# default lab's hosts and app2), converged once by lab-converge with
# fdl-faults' settings while Molecule runs; test-e2e, test-faults and
# test-two-app take the stack as they find it, and test-two-app removes app2
# at its end, leaving the default lab.
test: INVENTORY := inventory/lab-two-app
test: TEST_E2E_FLAGS := --lab-converged
test: TEST_FAULTS_FLAGS := --no-converge
test: TEST_TWO_APP_FLAGS := --lab-converged

# the stack as fdl-faults converges it (two app workers), for --no-converge
# runs and the suites' --lab-converged
lab-converge: lab-up
	fdl-faults --converge-only $(if $(INVENTORY),-- -i "$(INVENTORY)")
