# testinfra checks of a converged cluster (tests/infra/README.md). Included by the top-level
# Makefile, which sets BIN.
#   make verify                         everything: node checks, idempotence and --check runs, fault test
#   make verify-quick                   the node checks only (no ansible-playbook run, no fault)
#   make verify-fault                   only the fault test (stops a worker, runs the suite, restores it)
#   make verify INVENTORY=inventory/prod VAULT_PASSWORD_FILE=~/.vault-pass
VERIFY_INVENTORY = $(if $(strip $(INVENTORY)),$(INVENTORY),inventory/lab)
VAULT_PASSWORD_FILE ?= $(ANSIBLE_VAULT_PASSWORD_FILE)
VERIFY_ARGS ?=
VERIFY_PYTEST = ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(BIN)/pytest tests/infra -p no:cacheprovider -rfE \
	--ansible-inventory=$(VERIFY_INVENTORY) \
	$(if $(strip $(VAULT_PASSWORD_FILE)),--ansible-vault-password-file=$(VAULT_PASSWORD_FILE)) $(VERIFY_ARGS)

.PHONY: verify verify-quick verify-fault

verify: venv ## testinfra: every node as promised, a second converge changes nothing, --check, the fault test
	$(VERIFY_PYTEST)

verify-quick: venv ## testinfra: the node checks only (no converge runs, no fault test)
	$(VERIFY_PYTEST) -m "not converge and not fault"

verify-fault: venv ## testinfra: stop spark-worker on one worker, the suite must name exactly that
	$(VERIFY_PYTEST) -m fault
