"""The lab is reached like real hosts: sshd on every host, an unprivileged login user with sudo,
the lab's own key pair and known_hosts, no podman connection in the inventory; and the clean
controller has only what README.md lists for a controller."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def hostvars(lab) -> dict[str, dict]:
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(lab.inventory), "--list"],
                         cwd=ROOT, text=True, capture_output=True, check=True).stdout
    return json.loads(out)["_meta"]["hostvars"]


def ssh(lab, host: str, *command: str, user: str | None = None, known_hosts: Path | None = None,
        key: Path | None = None) -> subprocess.CompletedProcess[str]:
    hv = hostvars(lab)[host]
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts or lab.inventory / '.ssh' / 'known_hosts'}",
            "-i", str(key or hv["ansible_ssh_private_key_file"]),
            "-l", user or hv["ansible_user"], hv["ansible_host"], *command]
    return subprocess.run(argv, text=True, capture_output=True, timeout=60)


def test_the_inventory_reaches_hosts_over_ssh_as_an_unprivileged_user(lab):
    text = (lab.inventory / "hosts.yml").read_text() + "".join(
        p.read_text() for p in (lab.inventory / "group_vars").rglob("*.yml"))
    assert "podman" not in text and "ansible_connection" not in text
    # No ansible_become in the inventory: the plays ask for it (a variable would override a
    # task's `become: false`).
    assert "ansible_become" not in text
    for host, hv in hostvars(lab).items():
        assert hv["ansible_user"] == "admin" and hv["ansible_host"] == hv["cluster_address"], host
        key = Path(hv["ansible_ssh_private_key_file"])
        assert key.parent == lab.inventory / ".ssh" and oct(key.stat().st_mode & 0o777) == "0o600"
    proc = lab.ansible("all", "-m", "ansible.builtin.command", "-a", "id -un")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.findall(r"^\S+ \| CHANGED \| rc=0 >>\n(\S+)", proc.stdout, re.M) == ["admin"] * len(lab.hosts)
    proc = lab.ansible("all", "--become", "-m", "ansible.builtin.command", "-a", "id -un")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.findall(r"^\S+ \| CHANGED \| rc=0 >>\n(\S+)", proc.stdout, re.M) == ["root"] * len(lab.hosts)


def test_root_and_passwords_cannot_log_in(lab):
    proc = ssh(lab, lab.driver, "true", user="root")
    assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr
    sshd = lab.sh(lab.driver, "sshd -T").stdout
    assert re.search(r"^permitrootlogin no$", sshd, re.M) and re.search(r"^passwordauthentication no$", sshd, re.M)


def test_host_keys_are_checked_and_each_host_has_its_own(lab, tmp_path):
    known = (lab.inventory / ".ssh" / "known_hosts").read_text().splitlines()
    keys = [line.split()[-1] for line in known]
    assert len(keys) == len(lab.hosts) == len(set(keys)), known
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = ssh(lab, lab.driver, "true", known_hosts=empty)
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr, proc.stderr
    # A key that is not the lab's is refused.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    proc = ssh(lab, lab.driver, "true", key=other)
    assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr


def test_on_driver_takes_the_same_ssh_path(lab):
    proc = subprocess.run([sys.executable, str(ROOT / "bin" / "on-driver"), str(lab.inventory), "--",
                           "sh", "-c", "id -un; hostname; echo \"$SSH_CONNECTION\""],
                          cwd=ROOT, text=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    user, host, connection = proc.stdout.splitlines()
    assert (user, host) == ("admin", "driver") and connection.split()[2] == lab.hosts[lab.driver]


@pytest.fixture(scope="module")
def controller(lab):
    """The lab's clean controller (started here if the lab has none yet)."""
    up = lab.lab("up", check=False, env_extra={"LAB_CONTROLLER": "1"})
    assert up.returncode == 0, up.stderr
    return f"{lab.name}-controller"


def test_the_controller_has_only_the_readme_prerequisites(lab, controller):
    readme = (ROOT / "README.md").read_text()
    packages = [p for p in re.search(r"^LAB_CONTROLLER_PACKAGES=(.*)$", (ROOT / "lab" / "lab.env").read_text(),
                                     re.M).group(1).split()]
    listed = re.search(r"controller prerequisites[^\n]*\n(?:[^\n]*\n){0,6}", readme, re.I)
    assert listed, "README.md must list the controller prerequisites"
    for package in packages:
        assert f"`{package}`" in listed.group(0), f"README's controller prerequisites lack {package}"
    have = lab.sh(controller, "dpkg-query -W -f='${binary:Package} ${Status}\\n' 2>/dev/null | "
                              "awk '$NF == \"installed\" {print $1}'").stdout.split()
    for absent in ("gcc", "pkg-config", "libmariadb-dev", "default-libmysqlclient-dev", "python3-dev",
                   "openjdk-17-jre-headless", "podman", "python3-pip"):
        assert not any(h.split(":")[0] == absent for h in have), f"the controller has {absent}"
    for present in packages:
        assert any(h.split(":")[0] == present for h in have), f"the controller lacks {present}"


def test_on_controller_runs_as_the_operator_in_a_clean_environment(lab, controller):
    env = dict(os.environ, LEAK_CHECK="from-the-host")
    proc = subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), "on-controller", "--", "sh", "-c",
                           "id -un; pwd; env; sudo -n true 2>&1 || echo no-sudo; "
                           "test -e .venv/bin/python && readlink -f .venv/bin/python || echo no-venv-yet"],
                          cwd=ROOT, text=True, capture_output=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ops" and lines[1] == str(ROOT)
    assert "LEAK_CHECK" not in proc.stdout and "VIRTUAL_ENV" not in proc.stdout
    assert "no-sudo" in proc.stdout
    venv_python = lines[-1]
    assert venv_python == "no-venv-yet" or venv_python.startswith("/usr/bin/python3"), venv_python
