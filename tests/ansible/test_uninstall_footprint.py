"""Each role removes what it puts on a host (playbooks/uninstall.yml imports its
tasks/uninstall-network.yml and tasks/uninstall.yml), from the list its converge gate hashes: for a
driver and a worker of a lab-like inventory, every file and directory that a role's gate names is
removed by the uninstall of that role or of the role that owns it (the mysql role's CA that the
runtime copies, the spark role's secret that the runner copies, the configuration directory they
share), and each role stops its own units and removes its own accounts. The dashboard's removal
is still the playbook's own. The lab runs it: tests/day2/test_5_uninstall.py."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from ansible_lib import REPO, run_tool, tool

ROLES = ["mysql", "optuna_firewall", "spark", "optuna_runtime", "optuna_runner"]
DRIVER_ONLY = {"mysql", "optuna_runner"}

INVENTORY = """all:
  children:
    cluster:
      vars:
        ansible_connection: local
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
        ansible_user: admin
      children:
        driver:
          hosts:
            node-driver: {cluster_address: 10.9.0.10}
        workers:
          hosts:
            node-worker1: {cluster_address: 10.9.0.11}
"""

PLAY = """- hosts: cluster
  gather_facts: false
  tasks:
    - name: Every role's defaults, vars and Debian vars
      ansible.builtin.include_vars: "{{ item }}"
      loop: "{{ files }}"
    - name: Both lists of every role
      ansible.builtin.copy:
        content: >-
          {{ {'gate': {'mysql': __mysql_converge_gate, 'optuna_firewall': __optuna_firewall_converge_gate,
                       'spark': __spark_converge_gate, 'optuna_runtime': __optuna_runtime_converge_gate,
                       'optuna_runner': __optuna_runner_converge_gate},
              'uninstall': {'mysql': __mysql_uninstall, 'optuna_firewall': __optuna_firewall_uninstall,
                            'spark': __spark_uninstall, 'optuna_runtime': __optuna_runtime_uninstall,
                            'optuna_runner': __optuna_runner_uninstall},
              'daemon': __mysql_daemon_effective, 'operators': optuna_runner_operators} | to_json }}
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0644"
"""


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("footprint")
    (tmp / "hosts.yml").write_text(INVENTORY)
    (tmp / "play.yml").write_text(PLAY)
    files = [str(REPO / "roles" / r / d) for r in ["converge_gate", *ROLES] for d in ("defaults/main.yml", "vars/main.yml")
             if (REPO / "roles" / r / d).is_file()]
    files += [str(REPO / "roles" / r / "vars" / "Debian.yml") for r in ("mysql", "optuna_runtime")]
    proc = run_tool(tool("ansible-playbook"), "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml"),
                    "-e", json.dumps({"files": files, "out": str(tmp)}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {h: json.loads((tmp / f"{h}.json").read_text()) for h in ("node-driver", "node-worker1")}


def _removed(uninstall: dict[str, dict], roles: list[str]) -> list[PurePosixPath]:
    out = []
    for role in roles:
        u = uninstall[role]
        for key in ("paths", "network_paths", "data_paths", "shared_dirs"):
            out += [PurePosixPath(p) for p in u.get(key, [])]
    return out


@pytest.mark.parametrize("host", ["node-driver", "node-worker1"])
def test_every_file_and_directory_a_gate_hashes_is_removed(lists: dict[str, dict], host: str) -> None:
    data = lists[host]
    roles = [r for r in ROLES if host == "node-driver" or r not in DRIVER_ONLY]
    removed = _removed(data["uninstall"], roles)
    for role in roles:
        gate = data["gate"][role]
        for path in gate.get("files", []) + gate.get("paths", []) + gate.get("sized", []):
            p = PurePosixPath(path)
            assert any(p == r or r in p.parents for r in removed), f"{host}: {role}'s gate names {path}, no uninstall removes it"


@pytest.mark.parametrize("host", ["node-driver", "node-worker1"])
def test_each_role_stops_its_units_and_removes_its_accounts(lists: dict[str, dict], host: str) -> None:
    data = lists[host]
    gate, un = data["gate"], data["uninstall"]
    assert un["spark"]["units"] == gate["spark"]["units"] and gate["spark"]["units"]
    assert un["spark"]["users"] == gate["spark"]["users"] and un["spark"]["groups"] == gate["spark"]["groups"]
    assert un["optuna_firewall"]["units"] == gate["optuna_firewall"]["units"]
    if host == "node-driver":
        # the server stays (its own configuration, on localhost); the backup timer goes
        assert un["mysql"]["units"] == [u for u in gate["mysql"]["units"] if u != data["daemon"]]
        # the operators are login users: they keep their accounts
        assert un["optuna_runner"]["users"] == [u for u in gate["optuna_runner"]["users"] if u not in data["operators"]]
        assert data["operators"] == ["admin"] and un["optuna_runner"]["users"] == ["optuna-spark"]
        assert un["optuna_runner"]["groups"] == gate["optuna_runner"]["groups"]


def test_the_playbook_imports_each_roles_uninstall() -> None:
    text = (REPO / "playbooks" / "uninstall.yml").read_text()
    for role in ROLES + ["converge_gate"]:
        assert f"name: {role}\n" in text, f"playbooks/uninstall.yml does not import {role}"
        assert (REPO / "roles" / role / "tasks" / "uninstall.yml").is_file()
    for role in ("mysql", "optuna_runner", "spark"):
        assert (REPO / "roles" / role / "tasks" / "uninstall-network.yml").is_file()
    assert "/tmp/mysql.sock" not in text and "/opt/spark" not in text, "a path a role owns, hard-coded"
    assert Path(REPO / "roles" / "optuna_firewall" / "tasks" / "uninstall.yml").read_text().count("uninstall") >= 1
