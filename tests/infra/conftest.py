"""testinfra over the same Ansible inventory the playbooks converge.

Hosts come from the inventory's `driver` and `workers` groups; every test that takes `driver`,
`worker` or `node` is parametrised over those hosts (a lab of three workers yields three worker
results). The values the roles promise (bind address, grants, paths, versions) are resolved the
way Ansible resolves them: the roles' defaults, then the inventory (vault-aware), then the roles'
vars/ files, templated with Ansible's own Templar.

Options (all optional):
  --ansible-inventory=DIR      testinfra's own option; default $INFRA_INVENTORY or inventory/lab
  --ansible-vault-password-file=FILE   or ANSIBLE_VAULT_PASSWORD_FILE in the environment
  --force-ansible              testinfra's option: run every command through `ansible` modules
A host whose ansible_connection is containers.podman.podman is reached with testinfra's
podman:// backend (`podman exec`), unless --force-ansible; any other host through testinfra's
ansible:// backend (native SSH where Ansible uses SSH, Ansible modules otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra_lib import INNER_ENV, ROOT, Cluster, Node, cluster_of


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("infra", "optuna-spark infrastructure checks")
    group.addoption("--ansible-vault-password-file", default=None,
                    help="vault password file for the inventory (or ANSIBLE_VAULT_PASSWORD_FILE)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "converge: runs ansible-playbook against the inventory (slow)")
    config.addinivalue_line("markers", "fault: breaks a node on purpose and runs the suite on it")
    vault = config.getoption("--ansible-vault-password-file", default=None)
    if vault:
        # Every ansible command the tests start (and testinfra's ansible-inventory) reads it.
        os.environ["ANSIBLE_VAULT_PASSWORD_FILE"] = str(Path(vault).resolve())
    os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The converge runs first (the state checks then see the converged cluster), the fault test
    # last; a suite started by the fault test never collects the fault test (no recursion).
    if os.environ.get(INNER_ENV):
        # The suite the fault test runs on its broken node: the node checks only.
        items[:] = [i for i in items if i.get_closest_marker("fault") is None
                    and i.path.name != "test_fault_only_on_lab.py"]
    # Faults are injected on the lab only, never on a real cluster: an inventory that the lab did
    # not generate does not get the fault test (asked for by name, it is an error).
    cluster = cluster_of(config)
    faults = [i for i in items if i.get_closest_marker("fault") is not None]
    if faults and not cluster.is_lab:
        if (config.getoption("markexpr", default="") or "").strip() == "fault":
            raise pytest.UsageError(f"{cluster.inventory} is not a lab inventory: fault injection only "
                                    "ever runs on the lab (make lab-up)")
        config.hook.pytest_deselected(items=faults)
        items[:] = [i for i in items if i not in faults]
        config.stash[NOT_A_LAB] = str(cluster.inventory)

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("converge"):
            return 0
        if item.get_closest_marker("fault"):
            return 2
        return 1

    items.sort(key=rank)


NOT_A_LAB = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if NOT_A_LAB in config.stash:
        terminalreporter.write_line(f"fault test not run: {config.stash[NOT_A_LAB]} is not a lab inventory "
                                    "(faults are injected on the lab only)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cluster = cluster_of(metafunc.config)
    for fixture, hosts, what in (("driver", cluster.drivers, "driver"),
                                 ("worker", cluster.workers, "workers"),
                                 ("node", cluster.nodes, "driver/workers")):
        if fixture in metafunc.fixturenames:
            if not hosts:
                raise pytest.UsageError(f"{cluster.inventory}: no host in group {what}")
            metafunc.parametrize(fixture, hosts, indirect=True, ids=hosts)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return cluster_of(request.config)


def _node(request: pytest.FixtureRequest, cluster: Cluster) -> Node:
    return Node(request.param, cluster.host(request.param), cluster)


@pytest.fixture(scope="session")
def driver(request: pytest.FixtureRequest, cluster: Cluster) -> Node:
    return _node(request, cluster)


@pytest.fixture(scope="session")
def worker(request: pytest.FixtureRequest, cluster: Cluster) -> Node:
    return _node(request, cluster)


@pytest.fixture(scope="session")
def node(request: pytest.FixtureRequest, cluster: Cluster) -> Node:
    return _node(request, cluster)


@pytest.fixture(scope="session")
def the_driver(cluster: Cluster) -> Node:
    """The cluster's driver (for worker tests that compare with it or ask its master)."""
    if len(cluster.drivers) != 1:
        raise pytest.UsageError(f"{cluster.inventory}: group driver must hold exactly one host, "
                                f"has {cluster.drivers}")
    name = cluster.drivers[0]
    return Node(name, cluster.host(name), cluster)


