"""Bad inventories stop site.yml in its preflight, before any host is changed.

Inventory-level mistakes must stop the run before a node is even contacted: their hosts sit on
TEST-NET-1 (192.0.2.0/24, unroutable) behind ssh, so any attempt to reach one would show up as
UNREACHABLE. The unsupported-OS case needs facts, so its nodes are this machine (local
connection), and the run must stop before the first play that changes anything.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from ansible_lib import run_tool, tool

PASSWORD = "Preflight-Test-0123-xyzQ"
FIRST_CHANGING_PLAY = "MySQL/MariaDB on the driver"


def _inventory(tmp_path: Path, driver: list[str], workers: list[str], *, password: str | None = PASSWORD,
               local: bool = False, extra: dict | None = None) -> Path:
    def host(i: int, name: str) -> tuple[str, dict]:
        if local:
            return name, {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                          "cluster_address": "127.0.0.1"}
        return name, {"ansible_host": f"192.0.2.{10 + i}", "ansible_connection": "ssh",
                      "cluster_address": f"192.0.2.{10 + i}"}

    groups: dict = {}
    i = 0
    for group, names in (("driver", driver), ("workers", workers)):
        hosts = {}
        for name in names:
            key, value = host(i, name)
            hosts[key] = value
            i += 1
        groups[group] = {"hosts": hosts} if hosts else {}
    inv = tmp_path / "inventory"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    gvars: dict = {"cluster_network_cidr": "192.0.2.0/24"}
    if password is not None:
        gvars["mysql_optuna_password"] = password
    gvars.update(extra or {})
    (inv / "group_vars" / "all" / "vars.yml").write_text(yaml.safe_dump(gvars))
    return inv


def _site(inv: Path, *extra: str):
    return run_tool(tool("ansible-playbook"), "-i", str(inv), "site.yml", *extra, timeout=300)


def _assert_stopped(proc, message: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert message in re.sub(r"\s+", " ", out), out
    assert "UNREACHABLE" not in out, out
    assert f"PLAY [{FIRST_CHANGING_PLAY}" not in out, out
    recap = out.split("PLAY RECAP", 1)[1]
    assert not re.search(r"changed=[1-9]", recap), out


@pytest.mark.parametrize(
    ("driver", "workers", "message"),
    [
        ([], ["w1", "w2"], "exactly one host in group 'driver' (found 0"),
        (["d1", "d2"], ["w1"], "exactly one host in group 'driver' (found 2: d1, d2)"),
        (["d1"], [], "at least one host in group 'workers' (found none)"),
        (["d1"], ["d1", "w1"], "Host d1 is both the driver and a worker"),
    ],
    ids=["no-driver", "two-drivers", "no-workers", "driver-is-worker"],
)
def test_bad_inventory_shape(tmp_path: Path, driver, workers, message) -> None:
    inv = _inventory(tmp_path, driver, workers)
    _assert_stopped(_site(inv), message)


def test_missing_password(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, ["d1"], ["w1"], password=None)
    _assert_stopped(_site(inv), "mysql_optuna_password is not set")


def test_the_example_placeholder_is_refused(tmp_path: Path) -> None:
    example = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventory" / "example" / "group_vars" / "all"
                              / "vault.yml.example").read_text())["mysql_optuna_password"]
    inv = _inventory(tmp_path, ["d1"], ["w1"], password=example)
    _assert_stopped(_site(inv), "mysql_optuna_password is the example placeholder")


@pytest.mark.parametrize("password", ["short", "optuna_password", "MySecretPassword2024!", "aaaaaaaaaaaaaaaa1A",
                                      "lowercaseonlybutlong", "abcdefgh1234xy", "qwerty-Qwerty-12345"],
                         ids=["short", "the-seed's", "common-word", "few-distinct", "one-class", "two-classes-short",
                              "keyboard-walk"])
def test_weak_passwords_are_refused(tmp_path: Path, password: str) -> None:
    inv = _inventory(tmp_path, ["d1"], ["w1"], password=password)
    proc = _site(inv)
    _assert_stopped(proc, "mysql_optuna_password is")
    if len(password) >= 16:  # shorter ones also occur in the task names
        assert password not in proc.stdout + proc.stderr, "the refused password was printed"


@pytest.mark.parametrize("password", ["Preflight-Test-0123-xyzQ", "k3Jd9x_Lq2ZpW8vR", "tangerine-violin-copper-lagoon-77"])
def test_strong_passwords_pass(tmp_path: Path, password: str) -> None:
    inv = _inventory(tmp_path, ["node-d"], ["node-w"], password=password, local=True,
                     extra={"preflight_require_systemd": False})
    proc = run_tool(tool("ansible-playbook"), "-i", str(inv), "playbooks/preflight.yml", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_missing_cluster_address(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, ["d1"], ["w1"])
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    del hosts["all"]["children"]["workers"]["hosts"]["w1"]["cluster_address"]
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    _assert_stopped(_site(inv), "Host w1 has no 'cluster_address'")


def test_bad_network(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, ["d1"], ["w1"], extra={"cluster_network_cidr": "10.0.0.0"})
    _assert_stopped(_site(inv), "cluster_network_cidr must look like 10.89.0.0/24")


def test_unsupported_os(tmp_path: Path) -> None:
    """This machine's OS, declared unsupported: facts are read, nothing is changed."""
    inv = _inventory(tmp_path, ["node-d"], ["node-w"], local=True)
    supported = json.dumps({"preflight_supported_os": {"Plan9": ["4"]}})
    proc = _site(inv, "-e", supported)
    _assert_stopped(proc, "supported: Plan9 4.")
    assert "PLAY [Preflight | cluster nodes" in proc.stdout


def test_good_inventory_passes_preflight(tmp_path: Path) -> None:
    """The same local inventory with the real support list gets through the preflight.

    (This test machine runs no systemd as PID 1, so that one check is switched off here.)
    """
    inv = _inventory(tmp_path, ["node-d"], ["node-w"], local=True,
                     extra={"preflight_require_systemd": False})
    proc = run_tool(tool("ansible-playbook"), "-i", str(inv), "playbooks/preflight.yml", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reported = re.findall(r"(node-[dw])'s clock is 0.0 s off the controller's", proc.stdout)
    assert sorted(reported) == ["node-d", "node-w"]


def test_a_node_whose_clock_is_off_is_stopped_and_every_offset_reported(tmp_path: Path) -> None:
    """The nodes' `date` an hour ahead of the controller's clock (a `date` first on the PATH)."""
    import os
    import shutil

    fake = tmp_path / "bin"
    fake.mkdir()
    real = shutil.which("date")
    (fake / "date").write_text(f'#!/bin/sh\nexec {real} -d "@$(( $({real} +%s) + 3600 ))" "$@"\n')
    (fake / "date").chmod(0o755)
    inv = _inventory(tmp_path, ["node-d"], ["node-w"], local=True, extra={"preflight_require_systemd": False})
    off = run_tool(tool("ansible-playbook"), "-i", str(inv), "playbooks/preflight.yml", timeout=300,
                   env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    _assert_stopped(off, "s off the controller's (more than preflight_max_clock_offset, 5 s): synchronize")
    offsets = re.findall(r"node-[dw]'s clock is ([0-9.]+) s off", off.stdout)
    assert offsets and all(3590 < float(o) <= 3600 for o in offsets), offsets
