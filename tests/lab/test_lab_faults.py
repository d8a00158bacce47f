"""The fault handles that later tests use: each one really does what it says, and every host
comes back as it was (same address, same name, systemd running). They act on the last worker."""
from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.lab

PROBE = ("import socket, sys\n"
         "s = socket.socket(); s.settimeout(2)\n"
         "try: s.connect((sys.argv[1], 9)); print('open')\n"
         "except ConnectionRefusedError: print('reachable')\n"
         "except OSError as e: print('unreachable', e)\n")


def reach(lab, src: str, address: str) -> str:
    """'reachable' (the host answered, with a refusal on the discard port) or 'unreachable ...'."""
    return lab.sh(src, f"python3 -c \"{PROBE}\" {address}").stdout.strip()


def state(host: str) -> dict:
    return json.loads(subprocess.run(["podman", "container", "inspect", host], text=True,
                                     capture_output=True, check=True).stdout)[0]["State"]


@pytest.fixture
def victim(lab):
    host = lab.workers[-1]
    yield host
    # whatever happened, leave the lab as it was
    lab.lab("start", host.rsplit("-", 1)[1], check=False)
    lab.lab("connect", host.rsplit("-", 1)[1], check=False)


def test_disconnect_cuts_a_host_off_and_connect_brings_it_back_with_its_address(lab, victim):
    address = lab.hosts[victim]
    assert reach(lab, lab.driver, address) == "reachable"
    lab.lab("disconnect", victim.rsplit("-", 1)[1])
    assert reach(lab, lab.driver, address).startswith("unreachable")
    assert lab.lab("status", "--quiet", check=False).returncode == 1
    lab.lab("connect", victim.rsplit("-", 1)[1])
    assert f" {address}/" in lab.sh(victim, "ip -4 -o addr show scope global").stdout
    assert reach(lab, lab.driver, address) == "reachable"
    short = victim.rsplit("-", 1)[1]
    assert lab.sh(lab.driver, f"getent hosts {short}").stdout.split()[0] == address
    assert lab.sh(victim, "getent hosts driver").stdout.split()[0] == lab.hosts[lab.driver]


def test_kill_then_start_restores_a_host(lab, victim):
    short = victim.rsplit("-", 1)[1]
    lab.lab("kill", short)
    st = state(victim)
    assert not st["Running"] and st["ExitCode"] == 137
    lab.lab("start", short)
    assert state(victim)["Running"]
    assert lab.sh(victim, "systemctl is-system-running", check=False).stdout.strip() == "running"
    assert reach(lab, lab.driver, lab.hosts[victim]) == "reachable"


def test_stop_shuts_a_host_down_cleanly(lab, victim):
    short = victim.rsplit("-", 1)[1]
    lab.lab("stop", short)
    st = state(victim)
    assert not st["Running"] and st["ExitCode"] != 137, st
    assert reach(lab, lab.driver, lab.hosts[victim]).startswith("unreachable")
    lab.lab("start", short)
    assert lab.lab("status", "--quiet", check=False).returncode == 0
