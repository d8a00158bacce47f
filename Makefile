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

.PHONY: help venv class-archive lock tune tune-xgboost status report system-deps test test-unit test-integration lint clean clean-studies

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

venv: $(STAMP) ## create/update .venv from the lock file

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(MAKE) --no-print-directory class-archive
	@touch $@

# The driver JVM's class-data archive (runner/optuna_spark/class_archive.py), written now by a
# 2-trial run rather than at the end of the first real one; never fails the venv (no Java yet:
# the first run that can will write it).
class-archive: ## write the Spark driver JVM's class-data archive into ~/.cache/optuna-spark (faster start-ups)
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	if OPTUNA_SPARK_CONFIG=/dev/null $(BIN)/optuna-spark tune --objective quadratic --study class-archive --n-trials 2 \
	    --n-jobs 2 --master 'local[2]' --storage "sqlite:///$$d/w.db" --work-dir "$$d" --output json >/dev/null 2>"$$d/err"; \
	then w=$$(sed -n 's/.*archive at exit, once: //p' "$$d"/runs/*/spark.log); \
	  if [ -n "$$w" ] && [ -f "$$w" ]; then echo "class-archive: written: $$w"; \
	  else echo "class-archive: none written (one in place, or none possible with this Java and Spark)"; fi; \
	else echo "class-archive: not written: $$(tail -1 "$$d/err")"; fi

lock: ## re-resolve requirements/lock.txt from pyproject.toml
	rm -rf work/lockenv && $(PYTHON) -m venv work/lockenv
	work/lockenv/bin/pip install --quiet setuptools wheel '.[xgboost,report,java,data,connect,notebook,mlflow,dev]'
	{ head -2 $(LOCK); work/lockenv/bin/pip freeze --all --exclude optuna-spark --exclude pip; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

# With INVENTORY set, the runner runs on the cluster's driver (bin/on-driver: ssh as the
# inventory's login user) and reads /etc/optuna-spark/runner.toml there: MySQL storage, spark:// master.
# optuna-spark on the driver: the runner as its account (roles/optuna_runner), run by the login user.
REMOTE_RUNNER ?= optuna-spark
RUNNER = $(if $(strip $(INVENTORY)),$(BIN)/python bin/on-driver $(INVENTORY) -- $(REMOTE_RUNNER),$(BIN)/optuna-spark)

tune: venv ## run the seed's plain study (local Spark + SQLite; on the cluster with INVENTORY=...)
	$(RUNNER) tune --objective quadratic --study optuna-spark --n-trials 200 $(TUNE_ARGS)

# Locally, the XGBoost study keeps its best trials' models in ARTIFACT_DIR (ARTIFACT_DIR= keeps
# none). On a cluster the folder must be one every node writes: none is set up, so no flag there.
ARTIFACT_DIR ?= work/artifacts
XGBOOST_ARTIFACTS = $(if $(strip $(INVENTORY)),,$(if $(strip $(ARTIFACT_DIR)),--artifact-dir $(abspath $(ARTIFACT_DIR))))
tune-xgboost: venv ## run the seed's XGBoost study on the wine data, best models kept in ARTIFACT_DIR (INVENTORY=... for the cluster)
	$(RUNNER) tune --objective xgboost-wine --study optuna-spark-xgboost --n-trials 100 $(XGBOOST_ARTIFACTS) $(TUNE_ARGS)

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

# The local studies (work/optuna.db, the default storage) and the models kept in work/artifacts
# stay: `make clean-studies` deletes the studies.
clean: ## remove the venv and the runs' scratch folders; the studies and kept models in work/ stay
	rm -rf $(VENV) work/runs work/lockenv

clean-studies: ## delete the local studies (work/optuna.db*): asks first; CONFIRM=yes to skip the question
	@ls work/optuna.db* >/dev/null 2>&1 || { echo "clean-studies: no local studies in work/"; exit 0; }; \
	if [ "$(CONFIRM)" != yes ]; then \
	  if [ -t 0 ]; then read -r -p "Delete every local study in work/optuna.db? [y/N] " answer; else answer=; fi; \
	  case "$$answer" in [yY]|[yY][eE][sS]) ;; *) echo "clean-studies: kept (CONFIRM=yes to delete without asking)"; exit 1;; esac; \
	fi; \
	rm -f work/optuna.db work/optuna.db-wal work/optuna.db-shm work/optuna.db-journal && echo "clean-studies: deleted work/optuna.db"

-include lab/lab.mk
-include playbooks/ansible.mk
-include tests/infra/infra.mk


.PHONY: test-day2
test-day2: venv ## day-2 operations on a converged lab: add a worker, rolling restart, backup/restore, cleanup, uninstall (last)
	OPTUNA_SPARK_INVENTORY=$(if $(strip $(INVENTORY)),$(INVENTORY),inventory/lab) $(BIN)/pytest -q -p no:cacheprovider tests/day2

.PHONY: test-cluster
test-cluster: venv ## end to end on a converged lab: both studies, both runtimes, faults
	OPTUNA_SPARK_INVENTORY=$(if $(strip $(INVENTORY)),$(INVENTORY),inventory/lab) $(BIN)/pytest -q -p no:cacheprovider tests/cluster

# ---------------------------------------------------------------------------- benchmarks (BENCHMARKS.md)
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_RUN := $(BIN)/python bench/run.py
# `make bench` sizes: about 50 minutes on a 2-core machine (BENCHMARKS.md's local tables).
# Ray Tune's full shape: BENCH_THROUGHPUT_TRIALS=10000 (over 11 minutes per contender).
BENCH_ROUNDS ?= 2
# The fixed split's wall varies with which task draws the long trials: 4 rounds for its median.
BENCH_HEAVY_TAIL_ROUNDS ?= 4
BENCH_THROUGHPUT_TRIALS ?= 1600
# Hyperopt's SparkTrials runs about one trial a second whatever its parallelism: the throughput
# table with every contender is a smaller one.
BENCH_PEERS_TRIALS ?= 160

.PHONY: bench bench-venv bench-10k bench-efficiency bench-startup bench-growth bench-claims bench-report bench-lab

bench-venv: $(BENCH_STAMP) ## bench/.venv: the peers (Hyperopt, MLflow, Ray Tune) and py-spy, pinned in bench/requirements.txt

$(BENCH_STAMP): bench/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	@touch $@

bench: venv bench-venv ## the local benchmarks, every contender side by side (~50 min): bench/results, BENCHMARKS.md
	$(BENCH_RUN) efficiency --rounds $(BENCH_ROUNDS)
	$(BENCH_RUN) heavy-tail --rounds $(BENCH_HEAVY_TAIL_ROUNDS) --contenders runner-shared,runner-static,optuna-threads
	$(BENCH_RUN) throughput --trials $(BENCH_THROUGHPUT_TRIALS) --rounds 1 --contenders runner-shared,runner-static,optuna-threads
	$(BENCH_RUN) throughput --trials $(BENCH_PEERS_TRIALS) --rounds 1 --name throughput-peers
	$(BENCH_RUN) startup --rounds $(BENCH_ROUNDS)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/library_memory.py
	$(BIN)/python bench/study_growth.py
	$(BIN)/python bench/report.py

bench-10k: venv ## Ray Tune's full shape, 10,000 x 1 s on 16 tasks (~35 min): bench/results/throughput-10k.json, BENCHMARKS.md
	$(BENCH_RUN) throughput --trials 10000 --rounds 1 --contenders runner-shared,runner-static,optuna-threads --name throughput-10k
	$(BIN)/python bench/report.py

bench-efficiency: venv ## the README's table only: runner (shared/static) vs Optuna's threads (bench/efficiency.py)
	$(BIN)/python bench/efficiency.py

bench-startup: venv ## one command's start-up and tail on local[16], and what each start-up measure is worth (~4 min): bench/results/cost-startup.json
	$(BIN)/python bench/startup.py $(BENCH_STARTUP_ARGS)
	$(BIN)/python bench/report.py

bench-growth: venv ## the runner's own per-trial cost at 1,000 / 10,000 / 100,000 trials in the study (~10 min): bench/results/cost-study-growth.json
	$(BIN)/python bench/study_growth.py
	$(BIN)/python bench/report.py

bench-claims: venv ## claims/s and claim latency against a private MariaDB at 1-64 concurrent tasks, and the lock's queueing model (~8 min): bench/results/cost-cluster-growth.json
	$(BIN)/python bench/claim_concurrency.py
	$(BIN)/python bench/report.py

bench-report: venv ## BENCHMARKS.md and the plots from bench/results/*.json
	$(BIN)/python bench/report.py

bench-lab: venv ## workload 4 and the lab parts of 5 on INVENTORY (default inventory/lab), through the driver
	$(BIN)/python bench/lab.py --inventory $(if $(strip $(INVENTORY)),$(INVENTORY),inventory/lab) $(BENCH_LAB_ARGS)
	$(BIN)/python bench/report.py
