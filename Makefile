# optuna-spark — one entry point for the runner, the lab, the playbooks and the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed
# INVENTORY empty: the embedded default (Spark local[*], SQLite storage under work/).
INVENTORY ?=
TUNE_ARGS ?=

export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv lock tune tune-xgboost status report system-deps test test-unit test-integration lint clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

venv: $(STAMP) ## create/update .venv from the lock file

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

lock: ## re-resolve requirements/lock.txt from pyproject.toml
	rm -rf work/lockenv && $(PYTHON) -m venv work/lockenv
	work/lockenv/bin/pip install --quiet setuptools wheel '.[xgboost,report,java,data,dev]'
	{ head -2 $(LOCK); work/lockenv/bin/pip freeze --all --exclude optuna-spark --exclude pip; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

# With INVENTORY set, the runner runs on the cluster's driver (bin/on-driver: ssh as the
# inventory's login user) and reads /etc/optuna-spark/runner.toml there: MySQL storage, spark:// master.
# optuna-spark on the driver: the runner as its account (roles/optuna_runner), run by the login user.
REMOTE_RUNNER ?= optuna-spark
RUNNER = $(if $(strip $(INVENTORY)),$(BIN)/python bin/on-driver $(INVENTORY) -- $(REMOTE_RUNNER),$(BIN)/optuna-spark)

tune: venv ## run the seed's plain study (local Spark + SQLite; on the cluster with INVENTORY=...)
	$(RUNNER) tune --objective quadratic --study optuna-spark --n-trials 200 $(TUNE_ARGS)

tune-xgboost: venv ## run the seed's XGBoost study on the wine data (INVENTORY=... for the cluster)
	$(RUNNER) tune --objective xgboost-wine --study optuna-spark-xgboost --n-trials 100 $(TUNE_ARGS)

status: venv ## both studies' state (INVENTORY=... for the cluster's MySQL)
	$(RUNNER) status --study optuna-spark
	$(RUNNER) status --study optuna-spark-xgboost

# The report is made where the storage is (on the driver with INVENTORY) and comes back as a tar
# on stdout: nothing to copy by hand.
STUDY ?= optuna-spark
REPORT_DIR ?= reports/$(STUDY)
report: venv ## a study's report in REPORT_DIR: offline HTML, PNG plots, trials.csv (STUDY=..., INVENTORY=...)
	@mkdir -p $(REPORT_DIR)
	set -o pipefail; $(RUNNER) report --study $(STUDY) --output-dir - | tar -x -C $(REPORT_DIR)
	@echo "report: $(REPORT_DIR)/report.html"

system-deps: ## the Debian packages the tests need: installed as root, named in one line otherwise
	@bin/system-deps

test: system-deps venv ## every test: unit, integration (real spark-submit), lab, playbooks
	$(BIN)/pytest -q

test-unit: venv ## fast tests only
	$(BIN)/pytest -q tests/unit

clean: ## remove local state (venv, work/)
	rm -rf $(VENV) work

-include lab/lab.mk
-include playbooks/ansible.mk
-include tests/infra/infra.mk

.PHONY: bench
bench: venv ## parallel efficiency: runner (shared/static split) vs Optuna's threads, side by side
	$(BIN)/python bench/efficiency.py

.PHONY: test-day2
test-day2: venv ## day-2 operations on a converged lab: add a worker, rolling restart, backup/restore, cleanup, uninstall (last)
	OPTUNA_SPARK_INVENTORY=$(if $(strip $(INVENTORY)),$(INVENTORY),inventory/lab) $(BIN)/pytest -q -p no:cacheprovider tests/day2

.PHONY: test-cluster
test-cluster: venv ## end to end on a converged lab: both studies, both runtimes, faults
	OPTUNA_SPARK_INVENTORY=$(if $(strip $(INVENTORY)),$(INVENTORY),inventory/lab) $(BIN)/pytest -q -p no:cacheprovider tests/cluster
