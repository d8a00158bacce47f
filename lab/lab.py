#!/usr/bin/env python3
"""A multi-host lab of systemd containers (one driver, N workers) on a private podman network.

Verbs: image, up, down, status, clean, inventory, and the fault handles stop, kill, start,
disconnect, connect (see lab/README.md). Settings live in lab/lab.env; the environment
overrides them. Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
ROOT = LAB_DIR.parent
WORK = ROOT / "work" / "lab"
SETTINGS_FILE = LAB_DIR / "lab.env"
CUSTOMIZE = LAB_DIR / "image" / "customize.sh"
STATIC_GROUP_VARS = LAB_DIR / "group_vars" / "all"

# Bump when the build procedure below changes in a way that changes the image.
RECIPE_VERSION = "2"
LABEL = "optuna-spark.lab"            # value: the lab name; on containers and networks
LABEL_ROLE = "optuna-spark.lab.role"  # driver | worker
LABEL_HOST = "optuna-spark.lab.host"  # driver, worker1, ...
LABEL_IP = "optuna-spark.lab.ip"      # the fixed cluster address, for reconnects
LABEL_MAC = "optuna-spark.lab.mac"    # the fixed MAC address, for reconnects
LABEL_CAPS = "optuna-spark.lab.caps"  # the added capabilities (a change recreates the host)
LABEL_IMAGE = "optuna-spark.lab.image"  # on images: the recipe hash
INVENTORY_MARKER = ".generated-by-lab"
HOST_CA_SUBDIR = "/usr/local/share/ca-certificates/lab-host"
SETUP_MARKER = "/etc/optuna-spark-lab.setup"
FIRST_HOST_OFFSET = 10                # driver = network + 10, worker i = network + 10 + i
EXTRA_HOST_OFFSETS = {"controller": 5, "intruder": 6}  # outside the inventory, below the driver
SSH_KEY = "id_ed25519"
KNOWN_HOSTS = "known_hosts"


class LabError(Exception):
    """A problem the user can fix: printed in one line, exit status 1."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- settings
def load_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for lineno, raw in enumerate(SETTINGS_FILE.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise LabError(f"{SETTINGS_FILE}:{lineno}: expected NAME=value")
        settings[key.strip()] = value.strip()
    for key in list(settings):
        if key in os.environ:
            settings[key] = os.environ[key]
    return settings


@dataclass(frozen=True)
class Lab:
    s: dict[str, str]

    @property
    def name(self) -> str:
        return self.s["LAB_NAME"]

    @property
    def workers(self) -> int:
        try:
            n = int(self.s["LAB_WORKERS"])
        except ValueError:
            raise LabError(f"LAB_WORKERS must be a number, not {self.s['LAB_WORKERS']!r}") from None
        if not 1 <= n <= 50:
            raise LabError("LAB_WORKERS must be between 1 and 50")
        return n

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    @property
    def inventory(self) -> Path:
        if self.s.get("LAB_INVENTORY"):
            path = Path(self.s["LAB_INVENTORY"])
            return path if path.is_absolute() else ROOT / path
        return ROOT / "inventory" / ("lab" if self.name == "optuna-lab" else f"lab-{self.name}")

    def container(self, host: str) -> str:
        return f"{self.name}-{host}"

    def hosts(self) -> list[str]:
        """The cluster's hosts: the inventory's driver and workers."""
        return ["driver"] + [f"worker{i}" for i in range(1, self.workers + 1)]

    def extras(self) -> list[str]:
        """Hosts on the lab network outside the inventory, asked for by the settings."""
        return [h for h, key in (("controller", "LAB_CONTROLLER"), ("intruder", "LAB_INTRUDER"))
                if self.s.get(key, "0") == "1"]

    @property
    def login_user(self) -> str:
        return self.s.get("LAB_LOGIN_USER") or "admin"

    @property
    def controller_user(self) -> str:
        return self.s.get("LAB_CONTROLLER_USER") or "ops"

    @property
    def ssh_dir(self) -> Path:
        return self.inventory / ".ssh"  # a dot: Ansible never reads it as an inventory source

    def podman_base(self) -> list[str]:
        base = ["podman"]
        if self.s.get("LAB_OCI_RUNTIME"):
            base += ["--runtime", self.s["LAB_OCI_RUNTIME"]]
        return base


def validate_name(name: str) -> None:
    import re
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,40}", name):
        raise LabError(f"LAB_NAME {name!r}: use lower-case letters, digits, '-', '_', '.'")


# ---------------------------------------------------------------- processes
def run(cmd: list[str], *, check: bool = True, capture: bool = True, input: str | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, text=True, input=input, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise LabError(f"{shlex.join(cmd)} failed ({proc.returncode}): {err[-1] if err else ''}")
    return proc


def podman(lab: Lab, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return run(lab.podman_base() + list(args), **kw)


def find_tool(name: str) -> str | None:
    """shutil.which, plus the sbin folders that a non-root PATH often lacks."""
    found = shutil.which(name)
    if found or "/" in name:
        return found or (name if Path(name).is_file() else None)
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        if Path(folder, name).is_file():
            return str(Path(folder, name))
    return None


def require(lab: Lab, *, build: bool = False) -> None:
    """Say clearly what is missing on this host, with the Debian package that brings it."""
    missing = []
    if not shutil.which("podman"):
        missing.append("podman (Debian package: podman)")
    helpers = ("/usr/lib/podman", "/usr/libexec/podman", "/usr/local/lib/podman",
               "/usr/local/libexec/podman")
    for helper, package in (("netavark", "netavark"), ("aardvark-dns", "aardvark-dns")):
        if not any(Path(d, helper).is_file() for d in helpers) and not find_tool(helper):
            missing.append(f"{helper} (Debian package: {package}; podman's network and its DNS)")
    rt = lab.s.get("LAB_OCI_RUNTIME")
    if rt and not find_tool(rt):
        missing.append(f"OCI runtime {rt} (Debian package: {rt}; or set LAB_OCI_RUNTIME= for podman's default)")
    if build:
        if not find_tool("debootstrap"):
            missing.append("debootstrap (Debian package: debootstrap; or set LAB_IMAGE to an existing image)")
        if os.geteuid() != 0:
            missing.append("root: debootstrap must run as root (or set LAB_IMAGE to an existing image)")
    if missing:
        raise LabError("missing on this host: " + "; ".join(missing))


@contextlib.contextmanager
def locked(name: str):
    """Serialise builds / lab changes between concurrent invocations (make, pytest, people)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / f"{name}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another lab command holding {name}.lock ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- image
def recipe_hash(lab: Lab) -> str:
    h = hashlib.sha256()
    for key in ("LAB_DEBIAN_SUITE", "LAB_DEBIAN_MIRROR", "LAB_DEBIAN_SECURITY_MIRROR",
                "LAB_IMAGE_PACKAGES", "LAB_LOGIN_USER"):
        h.update(f"{key}={lab.s[key]}\n".encode())
    h.update(f"RECIPE_VERSION={RECIPE_VERSION}\n".encode())
    h.update(CUSTOMIZE.read_bytes())
    return h.hexdigest()[:12]


def image_ref(lab: Lab) -> str:
    return lab.s["LAB_IMAGE"] or f"{lab.s['LAB_IMAGE_REPO']}:{recipe_hash(lab)}"


def image_exists(lab: Lab, ref: str) -> bool:
    return podman(lab, "image", "exists", ref, check=False).returncode == 0


def remove_build_dir(path: Path) -> None:
    """Remove a (possibly half-built) debootstrap root: unmount what a killed run left mounted
    first, and never cross into another file system."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run(["umount", "-l", mnt], check=False)
    run(["rm", "-rf", "--one-file-system", str(path)])


# A mirror connection can stall: wget gives up on a silent connection after WGET_TIMEOUT_S and
# tries again; a whole debootstrap that still takes longer than DEBOOTSTRAP_TIMEOUT_S is killed
# and run again (the package cache keeps what was already fetched).
WGET_TIMEOUT_S = 30
DEBOOTSTRAP_TIMEOUT_S = 300
DEBOOTSTRAP_ATTEMPTS = 3


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def debootstrap(lab: Lab, rootfs: Path, cache: Path) -> None:
    wgetrc = WORK / "wgetrc"
    wgetrc.write_text(f"timeout = {WGET_TIMEOUT_S}\ntries = 5\nwaitretry = 5\n")
    cmd = [find_tool("debootstrap") or "debootstrap", "--variant=minbase",
           f"--include={lab.s['LAB_IMAGE_PACKAGES']}", f"--cache-dir={cache}",
           lab.s["LAB_DEBIAN_SUITE"], str(rootfs), lab.s["LAB_DEBIAN_MIRROR"]]
    why = ""
    for attempt in range(1, DEBOOTSTRAP_ATTEMPTS + 1):
        # Its own process group, so that wget and the chroot helpers go with it; a SIGTERM to us
        # (a CI step's time limit, Ctrl-C) ends it too instead of leaving it writing the rootfs.
        previous = signal.signal(signal.SIGTERM, _exit_on_signal)
        proc = subprocess.Popen(cmd, env={**os.environ, "WGETRC": str(wgetrc)}, start_new_session=True)
        try:
            if proc.wait(timeout=DEBOOTSTRAP_TIMEOUT_S) == 0:
                return
            why = f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            why = f"no end after {DEBOOTSTRAP_TIMEOUT_S} s"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            signal.signal(signal.SIGTERM, previous)
        log(f"debootstrap failed ({why}), try {attempt} of {DEBOOTSTRAP_ATTEMPTS}")
        remove_build_dir(rootfs)
        time.sleep(5)
    raise LabError(f"debootstrap of {lab.s['LAB_DEBIAN_SUITE']} from {lab.s['LAB_DEBIAN_MIRROR']} "
                   f"failed {DEBOOTSTRAP_ATTEMPTS} times (last: {why}); see its output above")


def build_image(lab: Lab) -> str:
    ref = image_ref(lab)
    if lab.s["LAB_IMAGE"]:
        if not image_exists(lab, ref):
            log(f"LAB_IMAGE={ref} is not here: pulling it")
            podman(lab, "pull", ref, capture=False)
        return ref
    if image_exists(lab, ref):
        return ref
    require(lab, build=True)
    with locked("image-build"):
        if image_exists(lab, ref):  # built by a concurrent run while we waited
            return ref
        for stale in WORK.glob("build-*"):
            log(f"removing leftover build {stale.name}")
            remove_build_dir(stale)
        digest = ref.rsplit(":", 1)[1]
        build = WORK / f"build-{digest}"
        rootfs = build / "rootfs"
        cache = WORK / "debs"
        build.mkdir(parents=True)
        cache.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log(f"building {ref} with debootstrap ({lab.s['LAB_DEBIAN_SUITE']}, minbase; ~2 min)")
        debootstrap(lab, rootfs, cache)
        shutil.copy(CUSTOMIZE, rootfs / "tmp" / "customize.sh")
        run(["chroot", str(rootfs), "/bin/sh", "/tmp/customize.sh", lab.s["LAB_DEBIAN_SUITE"],
             lab.s["LAB_DEBIAN_MIRROR"], lab.s["LAB_DEBIAN_SECURITY_MIRROR"], lab.s["LAB_LOGIN_USER"]],
            capture=False)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run(lab.podman_base() + [
            "import", "--quiet", "--change", 'CMD ["/sbin/init"]',
            "--change", "STOPSIGNAL SIGRTMIN+3",
            "--change", f"LABEL {LABEL_IMAGE}={digest}", "-", ref],
            stdin=tar.stdout, text=True, capture_output=True)
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise LabError(f"podman import of {ref} failed: {imp.stderr.strip()}")
        remove_build_dir(build)
        log(f"built {ref} in {time.monotonic() - started:.0f} s")
        return ref


# ---------------------------------------------------------------- containers
def inspect_containers(lab: Lab) -> dict[str, dict]:
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


def ensure_network(lab: Lab) -> ipaddress.IPv4Network:
    res = podman(lab, "network", "inspect", lab.network, check=False)
    if res.returncode == 0:
        net = json.loads(res.stdout)[0]
        if net.get("labels", {}).get(LABEL) != lab.name:
            raise LabError(f"network {lab.network} exists but was not made by lab {lab.name}; "
                           "remove it or choose another LAB_NAME")
    else:
        args = ["network", "create", "--label", f"{LABEL}={lab.name}"]
        if lab.s.get("LAB_SUBNET"):
            args += ["--subnet", lab.s["LAB_SUBNET"]]
        podman(lab, *args, lab.network)
        log(f"created network {lab.network}")
        net = json.loads(podman(lab, "network", "inspect", lab.network).stdout)[0]
    if not net.get("dns_enabled", False):
        raise LabError(f"network {lab.network} has no DNS (podman needs netavark + aardvark-dns, "
                       "Debian packages netavark and aardvark-dns)")
    subnets = [ipaddress.ip_network(s["subnet"]) for s in net.get("subnets", [])]
    v4 = [s for s in subnets if s.version == 4]
    if not v4:
        raise LabError(f"network {lab.network} has no IPv4 subnet")
    wanted = lab.s.get("LAB_SUBNET")
    if wanted and ipaddress.ip_network(wanted, strict=False) != v4[0]:
        raise LabError(f"network {lab.network} has subnet {v4[0]}, not LAB_SUBNET={wanted}: "
                       "lab-down first to change it")
    return v4[0]


def address_of(subnet: ipaddress.IPv4Network, index: int) -> str:
    addr = subnet.network_address + FIRST_HOST_OFFSET + index
    if addr not in subnet or addr == subnet.broadcast_address:
        raise LabError(f"subnet {subnet} is too small for {index + 1} hosts")
    return str(addr)


def host_address(lab: Lab, subnet: ipaddress.IPv4Network, host: str) -> str:
    if host in EXTRA_HOST_OFFSETS:
        return str(subnet.network_address + EXTRA_HOST_OFFSETS[host])
    return address_of(subnet, lab.hosts().index(host))


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
            "--label", f"{LABEL_MAC}={mac}", "--label", f"{LABEL_CAPS}={lab.s.get('LAB_CAPS', '')}",
            "--network", lab.network, "--ip", ip, "--mac-address", mac, "--network-alias", host,
            "--systemd=always", "--stop-timeout", "20"]
    for ulimit in lab.s.get("LAB_ULIMITS", "").split():
        args += ["--ulimit", ulimit]
    if lab.s.get("LAB_CAPS"):
        args += ["--cap-add", lab.s["LAB_CAPS"]]
    if lab.s.get("LAB_SHM_SIZE"):
        args += ["--shm-size", lab.s["LAB_SHM_SIZE"]]
    if lab.s.get("LAB_PIDS_LIMIT"):
        args += ["--pids-limit", lab.s["LAB_PIDS_LIMIT"]]
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
    ca_dir = lab.s.get("LAB_HOST_CA_DIR")
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


def ensure_keypair(lab: Lab) -> str:
    """The lab's ssh key pair (made once per lab, kept across lab-up runs); returns the public key."""
    key = lab.ssh_dir / SSH_KEY
    if not key.exists():
        tool = find_tool("ssh-keygen")
        if tool is None:
            raise LabError("missing on this host: ssh-keygen (Debian package: openssh-client)")
        check_inventory_dir(lab)
        lab.ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (lab.inventory / INVENTORY_MARKER).write_text(f"{lab.name}\n")
        (lab.inventory / ".gitignore").write_text("# generated by lab/lab.py: never commit\n*\n")
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
    import socket

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


def setup_controller(lab: Lab, name: str) -> None:
    """A clean controller: the README's controller prerequisites and an unprivileged operator."""
    marker = "/etc/optuna-spark-lab.controller"
    if podman(lab, "exec", name, "test", "-e", marker, check=False).returncode == 0:
        return
    packages = lab.s.get("LAB_CONTROLLER_PACKAGES", "").split()
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


def network_attached(c: dict, network: str) -> bool:
    return network in (c.get("NetworkSettings", {}).get("Networks") or {})


def connect(lab: Lab, host: str, c: dict) -> None:
    labels = c["Config"]["Labels"]
    podman(lab, "network", "connect", "--ip", labels[LABEL_IP], "--mac-address", labels[LABEL_MAC],
           "--alias", host, lab.network, c["Name"])


def up(lab: Lab) -> None:
    require(lab)
    check_inventory_dir(lab)
    image = build_image(lab)
    with locked(f"lab-{lab.name}"):
        started = time.monotonic()
        subnet = ensure_network(lab)
        existing = inspect_containers(lab)
        # Extra hosts, once started, stay until lab-down (a later plain lab-up keeps them).
        wanted = lab.hosts() + sorted(set(lab.extras()) | (set(existing) & set(EXTRA_HOST_OFFSETS)))
        for host, c in existing.items():
            if host not in wanted:
                log(f"removing {c['Name']} (not in a lab of {lab.workers} workers)")
                podman(lab, "rm", "-f", c["Id"])
        public_key = ensure_keypair(lab)
        for host in wanted:
            ip = host_address(lab, subnet, host)
            c = existing.get(host)
            if c and (c["Config"]["Labels"].get(LABEL_IP) != ip
                      or c["Config"]["Labels"].get(LABEL_MAC) != mac_of(lab, host)
                      or c["Config"]["Labels"].get(LABEL_CAPS, "") != lab.s.get("LAB_CAPS", "")):
                log(f"recreating {c['Name']}: its address or capabilities are not {ip} / {mac_of(lab, host)} / "
                    f"{lab.s.get('LAB_CAPS', '')}")
                podman(lab, "rm", "-f", c["Id"])
                c = None
            if c and not c["State"]["Running"]:
                log(f"starting {c['Name']} (was {c['State']['Status']})")
                if podman(lab, "start", c["Id"], check=False).returncode != 0:
                    log(f"cannot start {c['Name']}: recreating it")
                    podman(lab, "rm", "-f", c["Id"])
                    c = None
            if c:
                if not network_attached(c, lab.network):
                    log(f"reconnecting {c['Name']} to {lab.network}")
                    connect(lab, host, c)
                if c["ImageName"] != image and c["Image"] != image:
                    log(f"note: {c['Name']} runs {c['ImageName']}, not {image}; "
                        "lab-down + lab-up to move to the new image")
            else:
                stale = podman(lab, "container", "exists", lab.container(host), check=False)
                if stale.returncode == 0:
                    raise LabError(f"a container named {lab.container(host)} exists but is not "
                                   f"labelled {LABEL}={lab.name}; remove it or choose another LAB_NAME")
                create_container(lab, image, host, ip)
        host_keys: dict[str, str] = {}
        for host in wanted:
            name = lab.container(host)
            state = wait_for_systemd(lab, name)
            setup_container(lab, name)
            if host == "controller":
                setup_controller(lab, name)
            if host in lab.hosts():
                authorize_login(lab, name, public_key)
                host_keys[host] = host_key(lab, name)
            if state != "running":
                failed = podman(lab, "exec", name, "systemctl", "--failed", "--no-legend",
                                check=False).stdout.strip()
                log(f"{name}: systemd is {state}; failed units: {failed or '?'}")
        for host in lab.hosts():
            wait_for_ssh(host_address(lab, subnet, host), lab.container(host))
        write_inventory(lab, subnet, host_keys, [h for h in wanted if h in EXTRA_HOST_OFFSETS])
        log(f"lab {lab.name} is up in {time.monotonic() - started:.0f} s: 1 driver, "
            f"{lab.workers} workers on {subnet}; inventory {rel(lab.inventory)}")


# ---------------------------------------------------------------- inventory
def rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


def q(value: object) -> str:
    """A YAML scalar: JSON strings and numbers are valid YAML."""
    return json.dumps(value)


def check_inventory_dir(lab: Lab) -> None:
    inv = lab.inventory
    if inv.exists() and any(inv.iterdir()) and not (inv / INVENTORY_MARKER).exists():
        raise LabError(f"{rel(inv)} exists and was not generated by the lab; set LAB_INVENTORY")


def write_inventory(lab: Lab, subnet: ipaddress.IPv4Network, host_keys: dict[str, str],
                    extras: list[str]) -> None:
    """The lab's inventory: every host reached over ssh, as the login user, with sudo."""
    check_inventory_dir(lab)
    inv = lab.inventory
    gv = inv / "group_vars" / "all"
    secret_file = gv / "secrets.yml"
    secret = secret_file.read_bytes() if secret_file.exists() else None
    # Rewritten from scratch each time (so removed workers and files disappear), but the
    # generated secrets and the ssh key pair survive.
    for entry in list(inv.iterdir()) if inv.exists() else []:
        if entry.name != lab.ssh_dir.name:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    gv.mkdir(parents=True)
    (inv / INVENTORY_MARKER).write_text(f"{lab.name}\n")
    (inv / ".gitignore").write_text("# generated by lab/lab.py: never commit\n*\n")
    header = f"# Generated by lab/lab.py for lab {lab.name}; rewritten by every lab-up: do not edit.\n"
    ips = {host: host_address(lab, subnet, host) for host in lab.hosts() + extras}

    known = lab.ssh_dir / KNOWN_HOSTS
    known.write_text("".join(f"{ips[h]},{lab.container(h)},{h} {key}\n" for h, key in sorted(host_keys.items())))
    known.chmod(0o644)

    def host_block(host: str) -> str:
        name = lab.container(host)
        return (f"            {name}:\n"
                f"              ansible_host: {q(ips[host])}\n"
                f"              cluster_address: {q(ips[host])}\n"
                f"              cluster_hostname: {q(host)}\n")

    ssh_args = (f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes "
                "-o PasswordAuthentication=no")
    # Connection variables on the cluster's group, not on 'all': the implicit localhost (tasks
    # delegated to the controller) must not inherit the login user. No ansible_become here: the
    # plays say `become: true` where they need root, and a variable would override a task's
    # `become: false` (a fetch that must run as the login user).
    hosts = (header + "all:\n  children:\n    cluster:\n"
             + "      # Every host is reached over ssh as an unprivileged user who may become root with\n"
             + "      # sudo (the plays say become: true), as on a real cluster; the key and the hosts'\n"
             + "      # keys are this lab's own (.ssh/).\n"
             + "      vars:\n"
             + f"        ansible_user: {q(lab.login_user)}\n"
             + "        ansible_python_interpreter: /usr/bin/python3\n"
             + f"        ansible_ssh_private_key_file: {q(str(lab.ssh_dir / SSH_KEY))}\n"
             + f"        ansible_ssh_common_args: {q(ssh_args)}\n"
             + "      children:\n        driver:\n          hosts:\n" + host_block("driver")
             + "        workers:\n          hosts:\n" + "".join(host_block(h) for h in lab.hosts()[1:]))
    (inv / "hosts.yml").write_text(hosts)
    (gv / "00-lab.yml").write_text(
        header
        + f"lab_name: {q(lab.name)}\n"
        + f"cluster_driver_address: {q(ips['driver'])}\n"
        + f"cluster_driver_hostname: \"driver\"\n"
        + f"cluster_network_cidr: {q(str(subnet))}\n"
        + f"cluster_network_name: {q(lab.network)}\n"
        + "".join(f"lab_{h}_address: {q(ips[h])}\n" for h in extras))
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret or (
            "# Generated once per lab by lab/lab.py (kept across lab-up runs); never commit.\n"
            f"mysql_optuna_password: {q(secrets.token_urlsafe(24))}\n").encode())
    for src in sorted(STATIC_GROUP_VARS.glob("*.yml")):
        shutil.copy(src, gv / src.name)


# ---------------------------------------------------------------- down, status, faults
def down(lab: Lab, purge: bool) -> None:
    require(lab)
    with locked(f"lab-{lab.name}"):
        for c in inspect_containers(lab).values():
            podman(lab, "rm", "-f", "-t", "5", c["Id"])
            log(f"removed {c['Name']}")
        res = podman(lab, "network", "inspect", lab.network, check=False)
        if res.returncode == 0:
            if json.loads(res.stdout)[0].get("labels", {}).get(LABEL) == lab.name:
                podman(lab, "network", "rm", lab.network)
                log(f"removed network {lab.network}")
            else:
                log(f"kept network {lab.network}: not made by lab {lab.name}")
        inv = lab.inventory
        if (inv / INVENTORY_MARKER).exists():
            shutil.rmtree(inv)
            log(f"removed {rel(inv)}")
    if purge:
        remove_images(lab)


def remove_images(lab: Lab) -> None:
    """The built image of this recipe, unless a container (of any lab) still uses it. A user's
    LAB_IMAGE and images of other recipes are left alone."""
    if lab.s["LAB_IMAGE"]:
        log(f"kept LAB_IMAGE={lab.s['LAB_IMAGE']}: not built by the lab")
        return
    ref = image_ref(lab)
    if not image_exists(lab, ref):
        return
    res = podman(lab, "rmi", ref, check=False)
    log(f"removed image {ref}" if res.returncode == 0
        else f"kept image {ref}: a container still uses it")


def clean(lab: Lab) -> None:
    down(lab, purge=True)
    for stale in WORK.glob("build-*"):
        remove_build_dir(stale)
    if (WORK / "debs").exists():
        shutil.rmtree(WORK / "debs")
        log("removed the debootstrap package cache")


def status(lab: Lab, quiet: bool) -> int:
    require(lab)
    containers = inspect_containers(lab)
    healthy = True
    lines = [f"lab {lab.name}: image {image_ref(lab)}, network {lab.network}, "
             f"inventory {rel(lab.inventory)}"]
    for host in lab.hosts() + sorted(set(containers) - set(lab.hosts())):
        c = containers.get(host)
        if not c:
            lines.append(f"  {lab.container(host):28} missing")
            healthy = False
            continue
        running = c["State"]["Running"]
        nets = c.get("NetworkSettings", {}).get("Networks") or {}
        ip = nets.get(lab.network, {}).get("IPAddress") or "disconnected"
        sd = systemd_state(lab, c["Name"]) if running else "-"
        ok = running and ip != "disconnected" and sd in ("running", "degraded")
        healthy &= ok
        lines.append(f"  {c['Name']:28} {host:9} {c['State']['Status']:8} {ip:15} systemd {sd}")
    if not (lab.inventory / "hosts.yml").exists():
        healthy = False
        lines.append("  (no inventory: run lab-up)")
    if not quiet:
        print("\n".join(lines))
    return 0 if healthy else 1


def fault(lab: Lab, verb: str, host: str) -> None:
    require(lab)
    containers = inspect_containers(lab)
    short = host.removeprefix(f"{lab.name}-")
    c = containers.get(short)
    if not c:
        raise LabError(f"no host {host!r} in lab {lab.name} (hosts: {', '.join(sorted(containers))})")
    name = c["Name"]
    if verb == "stop":
        podman(lab, "stop", name)
    elif verb == "kill":
        podman(lab, "kill", "--signal", "KILL", name)
    elif verb == "start":
        podman(lab, "start", name)
        wait_for_systemd(lab, name)
        c = inspect_containers(lab)[short]
        if not network_attached(c, lab.network):
            connect(lab, short, c)
    elif verb == "disconnect":
        if network_attached(c, lab.network):
            podman(lab, "network", "disconnect", lab.network, name)
    elif verb == "connect":
        if not network_attached(c, lab.network):
            connect(lab, short, c)
    log(f"{verb} {name}: done")


# ---------------------------------------------------------------- the clean controller
def controller_name(lab: Lab) -> str:
    c = inspect_containers(lab).get("controller")
    if not c or not c["State"]["Running"]:
        raise LabError(f"lab {lab.name} has no running controller: make lab-up LAB_CONTROLLER=1")
    return c["Name"]


def checkout_files() -> list[str]:
    """What a fresh clone of this checkout would hold, with its uncommitted changes: the tracked
    and the untracked-but-not-ignored files (no .venv, no work/)."""
    res = run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    return sorted({f for f in res.stdout.split("\0") if f and (ROOT / f).is_file()})


def sync_controller(lab: Lab) -> str:
    """Copy the checkout (as a fresh clone would have it) and the lab's generated inventory to
    the controller, at the same path, owned by the operator; the controller's own .venv and
    work/ are kept, anything else there is replaced."""
    name = controller_name(lab)
    user = lab.controller_user
    files = checkout_files()
    if lab.inventory.exists():
        files += [str(p.relative_to(ROOT)) for p in sorted(lab.inventory.rglob("*")) if p.is_file()]
    root = shlex.quote(str(ROOT))
    podman(lab, "exec", name, "sh", "-c",
           f"mkdir -p {root} && chown {user}: {root} && "
           f"find {root} -mindepth 1 -maxdepth 1 ! -name .venv ! -name work -exec rm -rf {{}} +")
    tar = subprocess.Popen(["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", "-"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    imp = subprocess.Popen(lab.podman_base() + ["exec", "-i", "-u", user, name, "tar", "-C", str(ROOT),
                                                "--no-same-owner", "-xf", "-"],
                           stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert tar.stdin is not None and tar.stdout is not None
    tar.stdout.close()
    tar.stdin.write("\0".join(files).encode())
    tar.stdin.close()
    _, err = imp.communicate()
    if tar.wait() != 0 or imp.returncode != 0:
        raise LabError(f"copying the checkout to {name} failed: {err.strip()[-300:]}")
    log(f"copied the checkout ({len(files)} files) to {name}:{ROOT}")
    return name


def on_controller(lab: Lab, command: list[str]) -> int:
    """Run COMMAND on the controller, in the checkout, as the operator, with a clean environment:
    nothing of this machine's environment, packages or venv reaches it."""
    if not command:
        raise LabError("usage: lab/lab.py on-controller -- COMMAND [ARG...]")
    name = sync_controller(lab)
    user = lab.controller_user
    env = ["env", "-i", f"HOME=/home/{user}", f"USER={user}", f"LOGNAME={user}", "LANG=C.UTF-8",
           "PATH=/usr/local/bin:/usr/bin:/bin", "TERM=dumb", "PYTHONUNBUFFERED=1"]
    tty = ["-t"] if sys.stdout.isatty() else []
    argv = lab.podman_base() + ["exec", "-i", *tty, "-u", user, "-w", str(ROOT), name, *env, *command]
    log(f"on {name} as {user}: {shlex.join(command)}")
    return subprocess.call(argv)


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab/lab.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("image", help="build the lab image (cached by recipe hash)")
    sub.add_parser("image-ref", help="print the image the lab runs")
    sub.add_parser("inventory-path", help="print where the lab's inventory is written")
    sub.add_parser("up", help="create/start the lab and write its inventory (idempotent)")
    p = sub.add_parser("down", help="remove this lab's containers, network and inventory")
    p.add_argument("--purge", action="store_true", help="also remove the built lab image, if unused")
    sub.add_parser("clean", help="down --purge, and drop build leftovers and package cache")
    p = sub.add_parser("status", help="show the lab; exit 1 unless every host is up")
    p.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("sync-controller", help="copy the checkout and the lab's inventory to the controller")
    p = sub.add_parser("on-controller", help="run a command in the checkout on the clean controller")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    for verb, text in (("stop", "stop a host (systemd shuts down cleanly)"),
                       ("kill", "SIGKILL a host's container"),
                       ("start", "start a stopped/killed host again, wait for systemd"),
                       ("disconnect", "cut a host off the lab network"),
                       ("connect", "reconnect a host, with its old address and name")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("host", help="driver, worker1, ... or the container name")
    args = parser.parse_args(argv)
    try:
        lab = Lab(load_settings())
        validate_name(lab.name)
        if args.verb == "image":
            require(lab)
            print(build_image(lab))
        elif args.verb == "image-ref":
            print(image_ref(lab))
        elif args.verb == "inventory-path":
            print(rel(lab.inventory))
        elif args.verb == "up":
            up(lab)
        elif args.verb == "down":
            down(lab, purge=args.purge or os.environ.get("LAB_PURGE") == "1")
        elif args.verb == "clean":
            clean(lab)
        elif args.verb == "status":
            return status(lab, args.quiet)
        elif args.verb == "sync-controller":
            require(lab)
            sync_controller(lab)
        elif args.verb == "on-controller":
            require(lab)
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            return on_controller(lab, command)
        else:
            fault(lab, args.verb, args.host)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
