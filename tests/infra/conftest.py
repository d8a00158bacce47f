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

import json
import os
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROLES = ROOT / "roles"
DEFAULT_INVENTORY = "inventory/lab"
# Roles whose defaults/vars the tests read (each role's public variables carry its prefix).
ROLE_NAMES = ["preflight", "mysql", "spark", "optuna_runtime", "optuna_runner", "optuna_studies"]
PODMAN_CONNECTIONS = {"containers.podman.podman", "podman"}
INNER_ENV = "INFRA_VERIFY_INNER"


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
        items[:] = [i for i in items if i.get_closest_marker("fault") is None]

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("converge"):
            return 0
        if item.get_closest_marker("fault"):
            return 2
        return 1

    items.sort(key=rank)


# ----------------------------------------------------------------------------- the inventory


def inventory_path(config: pytest.Config) -> Path:
    raw = config.getoption("ansible_inventory", default=None) or os.environ.get("INFRA_INVENTORY") \
        or DEFAULT_INVENTORY
    path = Path(raw)
    return path if path.is_absolute() else (ROOT / path)


@dataclass(repr=False)
class Cluster:
    """The inventory, through Ansible's own API (vault-aware), and the role variables."""

    inventory: Path
    force_ansible: bool
    _loader: Any = None
    _inv: Any = None
    _vm: Any = None
    _role_layers: dict[str, tuple[dict, dict]] = field(default_factory=dict)
    _hosts: dict[str, Any] = field(default_factory=dict)
    _facts: dict[str, dict] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Cluster({self.inventory})"

    def __post_init__(self) -> None:
        from ansible import constants as C
        from ansible.cli import CLI
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.manager import VariableManager

        if not self.inventory.exists():
            raise pytest.UsageError(f"inventory {self.inventory} does not exist")
        self._loader = DataLoader()
        vault_files = [os.environ["ANSIBLE_VAULT_PASSWORD_FILE"]] if os.environ.get(
            "ANSIBLE_VAULT_PASSWORD_FILE") else list(C.DEFAULT_VAULT_PASSWORD_FILE or [])
        if vault_files:
            self._loader.set_vault_secrets(CLI.setup_vault_secrets(
                self._loader, vault_ids=[], vault_password_files=vault_files, ask_vault_pass=False))
        self._inv = InventoryManager(loader=self._loader, sources=[str(self.inventory)])
        self._vm = VariableManager(loader=self._loader, inventory=self._inv)

    # groups ------------------------------------------------------------------------------

    def group(self, name: str) -> list[str]:
        group = self._inv.groups.get(name)
        return sorted(h.name for h in group.get_hosts()) if group is not None else []

    @property
    def drivers(self) -> list[str]:
        return self.group("driver")

    @property
    def workers(self) -> list[str]:
        return self.group("workers")

    @property
    def nodes(self) -> list[str]:
        return sorted(set(self.drivers) | set(self.workers))

    def inventory_vars(self, name: str) -> dict[str, Any]:
        return self._vm.get_vars(host=self._inv.get_host(name), include_hostvars=True)

    # role variables ----------------------------------------------------------------------

    def _load(self, path: Path) -> dict:
        if not path.exists():
            return {}
        return self._loader.load_from_file(str(path), trusted_as_template=True) or {}

    def _layers(self, distribution: str, os_family: str) -> tuple[dict, dict]:
        key = f"{distribution}/{os_family}"
        if key not in self._role_layers:
            defaults: dict = {}
            role_vars: dict = {}
            for role in ROLE_NAMES:
                defaults.update(self._load(ROLES / role / "defaults" / "main.yml"))
                role_vars.update(self._load(ROLES / role / "vars" / "main.yml"))
                # The roles load vars/<distribution>.yml, else vars/<os_family>.yml.
                for name in (distribution, os_family):
                    found = self._load(ROLES / role / "vars" / f"{name}.yml")
                    if found:
                        role_vars.update(found)
                        break
            self._role_layers[key] = (defaults, role_vars)
        return self._role_layers[key]

    def facts(self, name: str) -> dict[str, Any]:
        """The few facts the role defaults use, read from the host itself."""
        if name not in self._facts:
            host = self.host(name)
            info = host.system_info
            distribution = {"debian": "Debian", "ubuntu": "Ubuntu"}.get(info.distribution,
                                                                         str(info.distribution).capitalize())
            os_family = "Debian" if distribution in ("Debian", "Ubuntu") else distribution
            vcpus = host.run("nproc").stdout.strip() or "1"
            self._facts[name] = {"distribution": distribution, "os_family": os_family,
                                 "architecture": info.arch, "processor_vcpus": int(vcpus)}
        return self._facts[name]

    def var(self, name: str, variable: str) -> Any:
        """`variable` as the roles see it on host `name` (defaults < inventory < role vars)."""
        from ansible.template import Templar

        facts = self.facts(name)
        defaults, role_vars = self._layers(facts["distribution"], facts["os_family"])
        merged = {**defaults, **self.inventory_vars(name), **role_vars}
        merged.setdefault("ansible_facts", facts)
        merged["playbook_dir"] = str(ROOT / "playbooks")
        if variable not in merged:
            raise KeyError(f"{variable} is defined neither in the inventory nor in the roles")
        return _plain(Templar(loader=self._loader, variables=merged).template(merged[variable]))

    # testinfra hosts ---------------------------------------------------------------------

    def host(self, name: str):
        if name not in self._hosts:
            hv = self.inventory_vars(name)
            connection = str(hv.get("ansible_connection", "ssh"))
            if connection in PODMAN_CONNECTIONS and not self.force_ansible:
                container = str(hv.get("ansible_host", name))
                user = hv.get("ansible_user")
                spec = f"podman://{user}@{container}" if user else f"podman://{container}"
                self._hosts[name] = testinfra.get_host(spec)
            else:
                native = connection in ("smart", "ssh", "paramiko_ssh", "local")
                self._hosts[name] = testinfra.get_host(
                    f"ansible://{name}", ansible_inventory=str(self.inventory),
                    force_ansible=self.force_ansible or not native)
        return self._hosts[name]

    # ansible ad-hoc ----------------------------------------------------------------------

    def ansible(self, pattern: str, module: str, args: str, *, timeout: float = 300,
                become: bool = False) -> subprocess.CompletedProcess[str]:
        cmd = [str(BIN / "ansible"), "-i", str(self.inventory), pattern, "-m", module, "-a", args]
        if become:
            cmd.append("--become")
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _plain(value: Any) -> Any:
    """Ansible's tagged values as plain Python values."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_CLUSTER: Cluster | None = None


def cluster_of(config: pytest.Config) -> Cluster:
    global _CLUSTER
    if _CLUSTER is None:
        _CLUSTER = Cluster(inventory_path(config),
                           bool(config.getoption("force_ansible", default=False)))
    return _CLUSTER


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cluster = cluster_of(metafunc.config)
    for fixture, hosts, what in (("driver", cluster.drivers, "driver"),
                                 ("worker", cluster.workers, "workers"),
                                 ("node", cluster.nodes, "driver/workers")):
        if fixture in metafunc.fixturenames:
            if not hosts:
                raise pytest.UsageError(f"{cluster.inventory}: no host in group {what}")
            metafunc.parametrize(fixture, hosts, indirect=True, ids=hosts)


@dataclass(repr=False)
class Node:
    """One inventory host: its name, its testinfra host, its role variables."""

    name: str
    host: Any
    cluster: Cluster

    def __repr__(self) -> str:
        return self.name

    def var(self, variable: str) -> Any:
        return self.cluster.var(self.name, variable)

    def run(self, command: str, *args: str) -> Any:
        return self.host.run(command, *args)

    def check(self, command: str, *args: str, what: str = "") -> str:
        """Run a command that must succeed; the failure names the host and the command."""
        out = self.host.run(command, *args)
        assert out.rc == 0, (f"{self.name}: {what or out.command!r} failed (rc {out.rc}): "
                             f"{(out.stderr or out.stdout).strip()[-800:]}")
        return out.stdout


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


# ------------------------------------------------------------------------------- helpers

def master_state(driver: Node) -> dict[str, Any]:
    """The Spark master's /json/, fetched on the driver from its cluster address."""
    url = f"http://{driver.var('spark_master_host')}:{driver.var('spark_master_webui_port')}/json/"
    return json.loads(http_get(driver, url))


def http_get(node: Node, url: str) -> str:
    code = ("import sys, urllib.request; "
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")
    return node.check(f"python3 -c {shlex.quote(code)} {shlex.quote(url)}", what=f"GET {url}")


def alive_worker_hosts(state: dict[str, Any]) -> set[str]:
    return {w.get("host") for w in state.get("workers", []) if w.get("state") == "ALIVE"}


def mysql_root(driver: Node, sql: str) -> list[list[str]]:
    """Rows of `sql` run as MySQL's root over the server's unix socket (root's auth plugin)."""
    socket = driver.var("__mysql_socket_effective")
    out = driver.check(f"mysql --protocol=socket -S {shlex.quote(socket)} -uroot -N -B -e {shlex.quote(sql)}",
                       what=f"mysql -uroot -e {sql!r}")
    return [line.split("\t") for line in out.splitlines() if line]


def random_token() -> str:
    return secrets.token_hex(8)
