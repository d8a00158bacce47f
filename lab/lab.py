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
RECIPE_VERSION = "1"
LABEL = "optuna-spark.lab"            # value: the lab name; on containers and networks
LABEL_ROLE = "optuna-spark.lab.role"  # driver | worker
LABEL_HOST = "optuna-spark.lab.host"  # driver, worker1, ...
LABEL_IP = "optuna-spark.lab.ip"      # the fixed cluster address, for reconnects
LABEL_MAC = "optuna-spark.lab.mac"    # the fixed MAC address, for reconnects
LABEL_IMAGE = "optuna-spark.lab.image"  # on images: the recipe hash
INVENTORY_MARKER = ".generated-by-lab"
HOST_CA_SUBDIR = "/usr/local/share/ca-certificates/lab-host"
SETUP_MARKER = "/etc/optuna-spark-lab.setup"
FIRST_HOST_OFFSET = 10                # driver = network + 10, worker i = network + 10 + i


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
        return ["driver"] + [f"worker{i}" for i in range(1, self.workers + 1)]

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
                "LAB_IMAGE_PACKAGES"):
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
             lab.s["LAB_DEBIAN_MIRROR"], lab.s["LAB_DEBIAN_SECURITY_MIRROR"]], capture=False)
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
            "--label", f"{LABEL_ROLE}={'driver' if host == 'driver' else 'worker'}",
            "--label", f"{LABEL_HOST}={host}", "--label", f"{LABEL_IP}={ip}",
            "--label", f"{LABEL_MAC}={mac}",
            "--network", lab.network, "--ip", ip, "--mac-address", mac, "--network-alias", host,
            "--systemd=always", "--stop-timeout", "20"]
    for ulimit in lab.s.get("LAB_ULIMITS", "").split():
        args += ["--ulimit", ulimit]
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


def network_attached(c: dict, network: str) -> bool:
    return network in (c.get("NetworkSettings", {}).get("Networks") or {})


def connect(lab: Lab, host: str, c: dict) -> None:
    labels = c["Config"]["Labels"]
    podman(lab, "network", "connect", "--ip", labels[LABEL_IP], "--mac-address", labels[LABEL_MAC],
           "--alias", host, lab.network, c["Name"])


def up(lab: Lab) -> None:
    require(lab)
    image = build_image(lab)
    with locked(f"lab-{lab.name}"):
        started = time.monotonic()
        subnet = ensure_network(lab)
        wanted = lab.hosts()
        existing = inspect_containers(lab)
        for host, c in existing.items():
            if host not in wanted:
                log(f"removing {c['Name']} (not in a lab of {lab.workers} workers)")
                podman(lab, "rm", "-f", c["Id"])
        for index, host in enumerate(wanted):
            ip = address_of(subnet, index)
            c = existing.get(host)
            if c and (c["Config"]["Labels"].get(LABEL_IP) != ip
                      or c["Config"]["Labels"].get(LABEL_MAC) != mac_of(lab, host)):
                log(f"recreating {c['Name']}: its address is not {ip} / {mac_of(lab, host)}")
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
        for host in wanted:
            name = lab.container(host)
            state = wait_for_systemd(lab, name)
            setup_container(lab, name)
            if state != "running":
                failed = podman(lab, "exec", name, "systemctl", "--failed", "--no-legend",
                                check=False).stdout.strip()
                log(f"{name}: systemd is {state}; failed units: {failed or '?'}")
        write_inventory(lab, subnet)
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


def write_inventory(lab: Lab, subnet: ipaddress.IPv4Network) -> None:
    inv = lab.inventory
    marker = inv / INVENTORY_MARKER
    if inv.exists() and any(inv.iterdir()) and not marker.exists():
        raise LabError(f"{rel(inv)} exists and was not generated by the lab; set LAB_INVENTORY")
    gv = inv / "group_vars" / "all"
    secret_file = gv / "secrets.yml"
    secret = secret_file.read_bytes() if secret_file.exists() else None
    # Rewritten from scratch each time (so removed workers and files disappear), but the
    # generated secrets survive.
    if inv.exists():
        shutil.rmtree(inv)
    gv.mkdir(parents=True)
    marker.write_text(f"{lab.name}\n")
    (inv / ".gitignore").write_text("# generated by lab/lab.py: never commit\n*\n")
    header = f"# Generated by lab/lab.py for lab {lab.name}; rewritten by every lab-up: do not edit.\n"
    ips = {host: address_of(subnet, i) for i, host in enumerate(lab.hosts())}

    def host_block(host: str) -> str:
        name = lab.container(host)
        return (f"        {name}:\n"
                f"          ansible_host: {q(name)}\n"
                f"          ansible_connection: containers.podman.podman\n"
                f"          ansible_python_interpreter: /usr/bin/python3\n"
                f"          cluster_address: {q(ips[host])}\n"
                f"          cluster_hostname: {q(host)}\n")

    hosts = header + "all:\n  children:\n    driver:\n      hosts:\n" + host_block("driver")
    hosts += "    workers:\n      hosts:\n" + "".join(host_block(h) for h in lab.hosts()[1:])
    (inv / "hosts.yml").write_text(hosts)
    (gv / "00-lab.yml").write_text(
        header
        + f"lab_name: {q(lab.name)}\n"
        + f"cluster_driver_address: {q(ips['driver'])}\n"
        + f"cluster_driver_hostname: \"driver\"\n"
        + f"cluster_network_cidr: {q(str(subnet))}\n"
        + f"cluster_network_name: {q(lab.network)}\n")
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
