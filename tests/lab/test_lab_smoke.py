"""The lab is a working multi-host cluster: Ansible reaches every host, systemd runs,
addresses are distinct and the network carries TCP between hosts by name."""
from __future__ import annotations

import ipaddress
import re
import stat
import subprocess

import pytest

pytestmark = pytest.mark.lab


def test_every_host_answers_an_ansible_ping(lab):
    proc = lab.ansible("all", "-m", "ansible.builtin.ping")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answered = set(re.findall(r"^(\S+) \| SUCCESS", proc.stdout, re.M))
    assert answered == set(lab.hosts), proc.stdout


def test_inventory_groups_and_generated_vars(lab):
    assert lab.driver.endswith("-driver")
    assert len(lab.workers) >= 1 and all(re.search(r"-worker\d+$", w) for w in lab.workers)
    all_vars = (lab.inventory / "group_vars" / "all" / "00-lab.yml").read_text()
    for key in ("lab_name", "cluster_driver_address", "cluster_network_cidr"):
        assert re.search(rf"^{key}: ", all_vars, re.M), key
    assert f'cluster_driver_address: "{lab.hosts[lab.driver]}"' in all_vars
    secret = lab.inventory / "group_vars" / "all" / "secrets.yml"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert re.search(r'^mysql_optuna_password: "[A-Za-z0-9_-]{20,}"$', secret.read_text(), re.M)


def test_addresses_are_distinct_and_match_the_containers(lab):
    cidr = re.search(r'^cluster_network_cidr: "([^"]+)"', (
        lab.inventory / "group_vars" / "all" / "00-lab.yml").read_text(), re.M).group(1)
    network = ipaddress.ip_network(cidr)
    assert len(set(lab.hosts.values())) == len(lab.hosts)
    for host, address in lab.hosts.items():
        assert ipaddress.ip_address(address) in network
        out = lab.sh(host, "ip -4 -o addr show scope global").stdout
        assert f" {address}/" in out, f"{host}: expected {address}, has {out}"


def test_hostnames_are_roles_and_resolve_between_hosts(lab):
    expected = {lab.driver: "driver"} | {w: w.rsplit("-", 1)[1] for w in lab.workers}
    for host, short in expected.items():
        assert lab.sh(host, "hostname").stdout.strip() == short
    worker = lab.workers[0]
    for host, short in expected.items():
        out = lab.sh(worker, f"getent hosts {short}").stdout.split()
        assert out and out[0] == lab.hosts[host], f"{short} from {worker}: {out}"


def test_systemd_is_running_on_every_host(lab):
    for host in lab.hosts:
        state = lab.sh(host, "systemctl is-system-running", check=False).stdout.strip()
        if state != "running":
            failed = lab.sh(host, "systemctl --failed --no-legend", check=False).stdout
            pytest.fail(f"{host}: systemd is {state!r}; failed units:\n{failed}")


def test_a_worker_reaches_a_tcp_port_on_the_driver(lab):
    port = 18765
    unit = "lab-smoke-http"
    lab.sh(lab.driver, f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null;"
           f" systemd-run --unit {unit} --property WorkingDirectory=/etc "
           f"python3 -m http.server {port} --bind 0.0.0.0")
    try:
        client = (
            "import time, urllib.request\n"
            "for _ in range(50):\n"
            "    try:\n"
            f"        print(urllib.request.urlopen('http://driver:{port}/hostname', timeout=2).read().decode()); break\n"
            "    except OSError: time.sleep(0.2)\n"
            "else: raise SystemExit('no answer from driver')\n")
        out = lab.sh(lab.workers[-1], f"python3 -c \"{client}\"").stdout
        assert out.strip() == "driver"
    finally:
        lab.sh(lab.driver, f"systemctl stop {unit}", check=False)


def test_pip_trusts_the_host_certificates(lab):
    conf = lab.sh(lab.driver, "cat /etc/pip.conf").stdout
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in conf


def test_lab_up_again_keeps_the_hosts_and_the_secret(lab):
    secret = lab.inventory / "group_vars" / "all" / "secrets.yml"
    before_secret = secret.read_text()

    def started() -> dict[str, str]:
        return {h: subprocess.run(["podman", "container", "inspect", "--format",
                                   "{{.Id}} {{.State.StartedAt}}", h], text=True,
                                  capture_output=True, check=True).stdout for h in lab.hosts}

    before = started()
    lab.lab("up")
    assert secret.read_text() == before_secret
    assert started() == before, "a second lab-up must keep running hosts as they are"
