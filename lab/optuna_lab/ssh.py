"""ssh into the lab: the lab's own key pair, the login user's authorized key, the hosts' own
keys (for known_hosts) and waiting for sshd to answer."""
from __future__ import annotations

import socket
import time

from .inventory import check_inventory_dir, mark_inventory_dir
from .process import find_tool, podman, run
from .settings import SSH_KEY, Lab, LabError, log, rel


def ensure_keypair(lab: Lab) -> str:
    """The lab's ssh key pair (made once per lab, kept across lab-up runs); returns the public key."""
    key = lab.ssh_dir / SSH_KEY
    if not key.exists():
        tool = find_tool("ssh-keygen")
        if tool is None:
            raise LabError("missing on this host: ssh-keygen (Debian package: openssh-client)")
        check_inventory_dir(lab)
        lab.ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        mark_inventory_dir(lab)
        run([tool, "-q", "-t", "ed25519", "-N", "", "-C", f"optuna-spark-lab-{lab.name}", "-f", str(key)])
        log(f"made the lab's ssh key {rel(key)}")
    return (lab.ssh_dir / f"{SSH_KEY}.pub").read_text().strip()


def authorize_login(lab: Lab, name: str, public_key: str) -> None:
    """The login user accepts the lab's key (rewritten on every lab-up: cheap and idempotent)."""
    user = lab.login_user
    script = (f"install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh && "
              f"cat > /home/{user}/.ssh/authorized_keys.new && "
              f"chown {user}:{user} /home/{user}/.ssh/authorized_keys.new && "
              f"chmod 0600 /home/{user}/.ssh/authorized_keys.new && "
              f"mv /home/{user}/.ssh/authorized_keys.new /home/{user}/.ssh/authorized_keys")
    podman(lab, "exec", "-i", name, "sh", "-c", script, input=public_key + "\n")


def host_key(lab: Lab, name: str, timeout: float = 60) -> str:
    """The host's own ed25519 key (made at its first start), for the lab's known_hosts."""
    deadline = time.monotonic() + timeout
    while True:
        res = podman(lab, "exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False)
        if res.returncode == 0 and res.stdout.startswith("ssh-ed25519 "):
            return " ".join(res.stdout.split()[:2])
        if time.monotonic() >= deadline:
            raise LabError(f"{name}: no ssh host key after {timeout:.0f} s (is ssh.service running? "
                           f"podman exec {name} systemctl status ssh)")
        time.sleep(1)


def wait_for_ssh(address: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, 22), timeout=3) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise LabError(f"{name}: sshd does not answer on {address}:22 after {timeout:.0f} s")
        time.sleep(0.5)
