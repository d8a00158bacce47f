"""The lab's hosts: systemd containers found by label, created with fixed addresses, MACs and
capabilities, waited for (systemd), and set up once (host CAs, pip; the controller's packages)."""
from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path
from typing import Any

from .process import podman
from .settings import (
    EXTRA_HOST_OFFSETS,
    HOST_CA_SUBDIR,
    LABEL,
    LABEL_CAPS,
    LABEL_HOST,
    LABEL_IP,
    LABEL_MAC,
    LABEL_ROLE,
    SETUP_MARKER,
    Lab,
    LabError,
    log,
)


def inspect_containers(lab: Lab) -> dict[str, dict[str, Any]]:
    """This lab's containers (found by label, never by name alone), by host name."""
    ids = podman(lab, "ps", "-a", "-q", "--filter", f"label={LABEL}={lab.name}").stdout.split()
    if not ids:
        return {}
    data = json.loads(podman(lab, "container", "inspect", *ids).stdout)
    found = {}
    for c in data:
        host = c["Config"]["Labels"].get(LABEL_HOST)
        if host:
            found[host] = c
    return found


def role_of(host: str) -> str:
    return host if host in EXTRA_HOST_OFFSETS else ("driver" if host == "driver" else "worker")


def mac_of(lab: Lab, host: str) -> str:
    """A fixed, locally administered MAC per lab host: a reconnected host comes back with the
    same MAC as well as the same address, so its peers' ARP caches stay right (with a new MAC
    the driver kept the old one and could not reach a reconnected worker)."""
    digest = hashlib.sha256(f"{lab.name}/{host}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02,) + tuple(digest[:5]))


def create_container(lab: Lab, image: str, host: str, ip: str) -> None:
    name = lab.container(host)
    mac = mac_of(lab, host)
    args = ["run", "-d", "--name", name, "--hostname", host,
            "--label", f"{LABEL}={lab.name}",
            "--label", f"{LABEL_ROLE}={role_of(host)}",
            "--label", f"{LABEL_HOST}={host}", "--label", f"{LABEL_IP}={ip}",
            "--label", f"{LABEL_MAC}={mac}", "--label", f"{LABEL_CAPS}={lab.s.caps}",
            "--network", lab.network, "--ip", ip, "--mac-address", mac, "--network-alias", host,
            "--systemd=always", "--stop-timeout", "20"]
    for ulimit in lab.s.ulimits.split():
        args += ["--ulimit", ulimit]
    if lab.s.caps:
        args += ["--cap-add", lab.s.caps]
    if lab.s.shm_size:
        args += ["--shm-size", lab.s.shm_size]
    if lab.s.pids_limit:
        args += ["--pids-limit", lab.s.pids_limit]
    podman(lab, *args, image, "/sbin/init")
    log(f"started {name} ({host}, {ip})")


def systemd_state(lab: Lab, name: str) -> str:
    res = podman(lab, "exec", name, "systemctl", "is-system-running", check=False, timeout=30)
    return (res.stdout or res.stderr).strip() or f"unknown (rc {res.returncode})"


def wait_for_systemd(lab: Lab, name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        state = systemd_state(lab, name)
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise LabError(f"{name}: systemd did not finish booting in {timeout:.0f} s (state: {state})")


def setup_container(lab: Lab, name: str) -> None:
    """Per-container host quirks, once: trust the host's extra CAs, point pip at the bundle."""
    if podman(lab, "exec", name, "test", "-e", SETUP_MARKER, check=False).returncode == 0:
        return
    ca_dir = lab.s.host_ca_dir
    if ca_dir and Path(ca_dir).is_dir():
        certs = sorted(Path(ca_dir).rglob("*.crt"))
        if certs:
            podman(lab, "exec", name, "mkdir", "-p", HOST_CA_SUBDIR)
            for cert in certs:
                podman(lab, "cp", str(cert), f"{name}:{HOST_CA_SUBDIR}/{cert.name}")
            podman(lab, "exec", name, "update-ca-certificates")
    pip_conf = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
    podman(lab, "exec", "-i", name, "sh", "-c", "cat > /etc/pip.conf", input=pip_conf)
    podman(lab, "exec", name, "touch", SETUP_MARKER)


def setup_controller(lab: Lab, name: str) -> None:
    """A clean controller: the README's controller prerequisites and an unprivileged operator."""
    marker = "/etc/optuna-spark-lab.controller"
    if podman(lab, "exec", name, "test", "-e", marker, check=False).returncode == 0:
        return
    packages = lab.s.controller_packages.split()
    user = lab.controller_user
    log(f"{name}: installing the controller prerequisites ({' '.join(packages)})")
    script = ("set -e; export DEBIAN_FRONTEND=noninteractive; "
              "apt-get -o Acquire::http::Timeout=30 -o Acquire::Retries=3 update -qq; "
              "apt-get -o Acquire::http::Timeout=30 -o Acquire::Retries=3 install -y -qq "
              f"--no-install-recommends {' '.join(shlex.quote(p) for p in packages)} >/dev/null; "
              f"id {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}; "
              f"touch {marker}")
    for attempt in range(1, 4):
        res = podman(lab, "exec", name, "sh", "-c", script, check=False, timeout=900)
        if res.returncode == 0:
            return
        log(f"{name}: installing the controller prerequisites failed (try {attempt} of 3): "
            f"{(res.stderr or res.stdout).strip()[-300:]}")
        time.sleep(5)
    raise LabError(f"{name}: could not install the controller prerequisites")
