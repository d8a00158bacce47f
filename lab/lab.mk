# The podman lab (lab/README.md). Included by the top-level Makefile.
# Settings: lab/lab.env; override any of them on the command line, e.g.
#   make lab-up LAB_WORKERS=3      make lab-up LAB_NAME=ansdev
# Variables set on the make command line reach lab.py through the environment.
LAB := $(PYTHON) lab/lab.py
LAB_HOST ?=

.PHONY: lab-image lab-up lab-down lab-status lab-clean lab-ping lab-test \
        lab-stop lab-kill lab-start lab-disconnect lab-connect

lab-image: ## build the lab's Debian image (cached: rebuilt only when its recipe changes)
	$(LAB) image

lab-up: ## start the lab (1 driver + LAB_WORKERS workers) and write its inventory
	$(LAB) up

lab-down: ## remove this lab's containers, network, inventory (LAB_PURGE=1: and the image)
	$(LAB) down $(if $(filter 1,$(LAB_PURGE)),--purge)

lab-status: ## show the lab's hosts, addresses and systemd states
	$(LAB) status

lab-clean: ## lab-down + remove the cached image and build leftovers
	$(LAB) clean

lab-ping: ## ansible ping every lab host
	$(BIN)/ansible -i $$($(LAB) inventory-path) all -m ansible.builtin.ping

lab-test: venv ## the lab's smoke and fault tests (brings the lab up if needed)
	$(BIN)/pytest -q tests/lab

# Fault handles: make lab-kill LAB_HOST=worker1
lab-stop lab-kill lab-start lab-disconnect lab-connect:
	@test -n "$(LAB_HOST)" || { echo "usage: make $@ LAB_HOST=driver|workerN"; exit 2; }
	$(LAB) $(patsubst lab-%,%,$@) $(LAB_HOST)
