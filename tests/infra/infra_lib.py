"""The inventory, its hosts and the roles' variables, for the checks in tests/infra."""

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
ROLE_NAMES = ["preflight", "mysql", "spark", "optuna_runtime", "optuna_runner", "optuna_studies", "optuna_firewall",
              "optuna_dashboard"]
PODMAN_CONNECTIONS = {"containers.podman.podman", "podman"}
INNER_ENV = "INFRA_VERIFY_INNER"


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

    @property
    def is_lab(self) -> bool:
        """An inventory that lab/lab.py generated (its marker file and its lab_name): the only kind
        the fault test may break a node of."""
        if not (self.inventory / ".generated-by-lab").is_file() or not self.drivers:
            return False
        return "lab_name" in self.inventory_vars(self.drivers[0])

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
        # Roles read other hosts' inventory variables (every node's cluster_address).
        merged.setdefault("groups", {g: self.group(g) for g in self._inv.groups})
        merged.setdefault("hostvars", {h: self.inventory_vars(h) for h in self.nodes})
        if variable not in merged:
            raise KeyError(f"{variable} is defined neither in the inventory nor in the roles")
        return _plain(Templar(loader=self._loader, variables=merged).template(merged[variable]))

    # testinfra hosts ---------------------------------------------------------------------

    def host(self, name: str):
        """The testinfra host for inventory host `name` (checked reachable once)."""
        if name not in self._hosts:
            hv = self.inventory_vars(name)
            connection = str(hv.get("ansible_connection", "ssh"))
            if connection in PODMAN_CONNECTIONS and not self.force_ansible:
                container = str(hv.get("ansible_host", name))
                user = hv.get("ansible_user")
                host = testinfra.get_host(f"podman://{user}@{container}" if user else f"podman://{container}")
            elif connection in ("smart", "ssh") and not self.force_ansible:
                # The playbooks' own path: ssh as the inventory's login user, root through sudo
                # (the plays' `become: true`; the inventory sets no ansible_become).
                host = testinfra.get_host(self._ssh_spec(name, hv), sudo=True, **self._ssh_kwargs(hv))
            else:
                native = connection in ("paramiko_ssh", "local")
                host = testinfra.get_host(f"ansible://{name}", ansible_inventory=str(self.inventory),
                                          force_ansible=self.force_ansible or not native)
            probe = host.run("true")
            assert probe.rc == 0, (f"{name}: unreachable through {host.backend.get_connection_type()}"
                                   f" (rc {probe.rc}): {(probe.stderr or probe.stdout).strip()[-400:]}")
            self._hosts[name] = host
        return self._hosts[name]

    def _template(self, hv: dict[str, Any], value: Any) -> Any:
        from ansible.template import Templar

        return _plain(Templar(loader=self._loader, variables=hv).template(value))

    def _ssh_spec(self, name: str, hv: dict[str, Any]) -> str:
        address = str(self._template(hv, hv.get("ansible_host", name)))
        user = hv.get("ansible_user")
        port = hv.get("ansible_port")
        spec = "ssh://" + (f"{self._template(hv, user)}@" if user else "") + address
        return spec + (f":{self._template(hv, port)}" if port else "")

    def _ssh_kwargs(self, hv: dict[str, Any]) -> dict[str, Any]:
        extra = " ".join(str(self._template(hv, hv[k])) for k in ("ansible_ssh_common_args",
                                                                    "ansible_ssh_extra_args") if hv.get(k))
        address = str(self._template(hv, hv.get("ansible_host", "")))
        kwargs: dict[str, Any] = {"ssh_extra_args": f"-o BatchMode=yes {extra}".strip(), "timeout": 30,
                                  # One ssh connection per host for the whole suite.
                                  "controlpath": f"/tmp/optuna-spark-testinfra-{os.getuid()}-{address}",
                                  "controlpersist": 120}
        key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
        if key:
            kwargs["ssh_identity_file"] = str(self._template(hv, key))
        return kwargs

    # ansible ad-hoc ----------------------------------------------------------------------

    def ansible(self, pattern: str, module: str, args: str, *,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """An ad-hoc module run, as the playbooks connect (ansible_user, ansible_become, vault)."""
        cmd = [str(BIN / "ansible"), "-i", str(self.inventory), pattern, "--become", "-m", module, "-a", args]
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


def listening_addresses(node: Node, port: int | str) -> list[str]:
    """The local addresses with a TCP listener on `port` (IPv4-mapped IPv6 shown as IPv4; a
    wildcard shows as 0.0.0.0, ::, or *)."""
    out = node.check("ss -Hltn", what="ss -Hltn")
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, lport = fields[3].rpartition(":")
        if lport != str(port):
            continue
        address = address.strip("[]")
        if address.startswith("::ffff:") and "." in address:
            address = address[len("::ffff:"):]
        found.add(address.split("%")[0])
    return sorted(found)


_ARCHIVE_SHA256: dict[str, str] = {}


def archive_sha256(driver: Node) -> str:
    """sha256 of the driver's packed runtime (computed once per run: it is ~600 MB)."""
    if driver.name not in _ARCHIVE_SHA256:
        _ARCHIVE_SHA256[driver.name] = driver.host.file(driver.var("optuna_runtime_archive_path")).sha256sum
    return _ARCHIVE_SHA256[driver.name]


def random_token() -> str:
    return secrets.token_hex(8)
