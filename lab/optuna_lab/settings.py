"""Paths, labels and constants of the lab, its settings (lab/lab.env overridden by the
environment) as a typed frozen dataclass, and the Lab those settings describe."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent
ROOT = LAB_DIR.parent
WORK = ROOT / "work" / "lab"
SETTINGS_FILE = LAB_DIR / "lab.env"
CUSTOMIZE = LAB_DIR / "image" / "customize.sh"
STATIC_GROUP_VARS = LAB_DIR / "group_vars" / "all"

# Bump when the build procedure (image.py) changes in a way that changes the image.
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


@dataclass(frozen=True)
class Settings:
    """Every setting of lab/lab.env, as its raw text. The field `workers` is the variable
    LAB_WORKERS (see env_name); lab/lab.env documents them and holds their defaults, the
    environment overrides them. The defaults here are only what a lab.env without the line means."""

    name: str = ""
    workers: str = ""
    inventory: str = ""
    subnet: str = ""
    image: str = ""
    image_repo: str = ""
    debian_suite: str = ""
    debian_mirror: str = ""
    debian_security_mirror: str = ""
    image_packages: str = ""
    login_user: str = ""
    oci_runtime: str = ""
    ulimits: str = ""
    host_ca_dir: str = ""
    caps: str = ""
    shm_size: str = ""
    pids_limit: str = ""
    controller: str = "0"
    controller_packages: str = ""
    controller_user: str = ""
    intruder: str = "0"

    @staticmethod
    def env_name(field: str) -> str:
        """The variable of a field in lab/lab.env and the environment: workers -> LAB_WORKERS."""
        return "LAB_" + field.upper()

    def value(self, env_name: str) -> str:
        """A setting by its variable name (LAB_WORKERS)."""
        return str(getattr(self, env_name.removeprefix("LAB_").lower()))


def read_settings_file(path: Path) -> dict[str, str]:
    """NAME=value lines; '#' starts a comment line; no quoting, no expansion."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise LabError(f"{path}:{lineno}: expected NAME=value")
        values[key.strip()] = value.strip()
    return values


def load_settings(path: Path = SETTINGS_FILE, environ: dict[str, str] | None = None) -> Settings:
    """lab/lab.env, each of its settings overridden by the environment variable of that name."""
    env = os.environ if environ is None else environ
    from_file = read_settings_file(path)
    values: dict[str, str] = {}
    for f in fields(Settings):
        key = Settings.env_name(f.name)
        if key in env:
            values[f.name] = env[key]
        elif key in from_file:
            values[f.name] = from_file[key]
    return Settings(**values)


@dataclass(frozen=True)
class Lab:
    """One lab: its settings and the names, hosts and paths derived from them."""

    s: Settings

    @property
    def name(self) -> str:
        return self.s.name

    @property
    def workers(self) -> int:
        try:
            n = int(self.s.workers)
        except ValueError:
            raise LabError(f"LAB_WORKERS must be a number, not {self.s.workers!r}") from None
        if not 1 <= n <= 50:
            raise LabError("LAB_WORKERS must be between 1 and 50")
        return n

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    @property
    def inventory(self) -> Path:
        if self.s.inventory:
            path = Path(self.s.inventory)
            return path if path.is_absolute() else ROOT / path
        return ROOT / "inventory" / ("lab" if self.name == "optuna-lab" else f"lab-{self.name}")

    def container(self, host: str) -> str:
        return f"{self.name}-{host}"

    def hosts(self) -> list[str]:
        """The cluster's hosts: the inventory's driver and workers."""
        return ["driver"] + [f"worker{i}" for i in range(1, self.workers + 1)]

    def extras(self) -> list[str]:
        """Hosts on the lab network outside the inventory, asked for by the settings."""
        return [h for h, wanted in (("controller", self.s.controller), ("intruder", self.s.intruder))
                if wanted == "1"]

    @property
    def login_user(self) -> str:
        return self.s.login_user or "admin"

    @property
    def controller_user(self) -> str:
        return self.s.controller_user or "ops"

    @property
    def ssh_dir(self) -> Path:
        return self.inventory / ".ssh"  # a dot: Ansible never reads it as an inventory source

    def podman_base(self) -> list[str]:
        base = ["podman"]
        if self.s.oci_runtime:
            base += ["--runtime", self.s.oci_runtime]
        return base


def validate_name(name: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,40}", name):
        raise LabError(f"LAB_NAME {name!r}: use lower-case letters, digits, '-', '_', '.'")


def rel(path: Path) -> str:
    """A path relative to the checkout when it is inside it (for messages)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
