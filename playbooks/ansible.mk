# Playbook targets (docs/ansible.md). Included by the top-level Makefile, which sets BIN.
#   make converge                       the container lab (inventory/lab)
#   make converge-fast                  the same, skipping roles that nothing changed (roles/converge_gate)
#   make converge INVENTORY=inventory/prod ANSIBLE_ARGS=--ask-vault-pass
ANSIBLE_INVENTORY_DIR = $(if $(strip $(INVENTORY)),$(INVENTORY),inventory/lab)
ANSIBLE_ARGS ?=
ANSIBLE_PLAYBOOK = ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(BIN)/ansible-playbook -i $(ANSIBLE_INVENTORY_DIR) $(ANSIBLE_ARGS)

.PHONY: converge converge-fast converge-check idempotence lint lint-ansible test-ansible

converge: venv ## provision the cluster: MySQL, Spark, the packed runtime, the studies (site.yml)
	$(ANSIBLE_PLAYBOOK) site.yml

converge-fast: venv ## converge with the gate: a role whose inputs and state on every host are those of its last full run ends at once
	$(ANSIBLE_PLAYBOOK) site.yml -e converge_gate_enabled=true

converge-check: venv ## dry run: --check --diff, changes nothing and shows no secret
	$(ANSIBLE_PLAYBOOK) site.yml --check --diff

idempotence: venv ## converge again: fails unless every host reports changed=0
	@set -o pipefail; log=$$(mktemp); \
	$(ANSIBLE_PLAYBOOK) site.yml | tee $$log; \
	if grep -E '^[^ ].*: ok=[0-9]+ +changed=[1-9]' $$log; then \
	  echo "idempotence: FAILED (a second converge changed something)"; rm -f $$log; exit 1; \
	fi; rm -f $$log; echo "idempotence: OK (changed=0 on every host)"

lint-ansible: venv ## ansible-lint (production profile), yamllint, syntax check
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(BIN)/ansible-playbook -i localhost, --syntax-check site.yml

lint-python: venv ## ruff and mypy (strict) on the optuna_spark package
	$(BIN)/ruff check runner/optuna_spark
	$(BIN)/mypy

lint: lint-ansible lint-python ## every linter: ruff, mypy, ansible-lint, yamllint

test-ansible: venv ## lint and preflight tests of the playbooks (no hosts needed)
	$(BIN)/pytest -q tests/ansible
