"""Shared fixtures of the lab tests: bring the podman lab up once per session (never skip)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = [sys.executable, str(ROOT / "lab" / "lab.py")]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LabHandle:
    name: str
    inventory: Path
    hosts: dict[str, str]      # inventory host (container name) -> cluster address
    driver: str
    workers: list[str]

    def lab(self, *args: str, check: bool = True,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(LAB + list(args), cwd=ROOT, text=True, capture_output=True,
                              check=check, timeout=900, env={**os.environ, **(env_extra or {})})

    def sh(self, host: str, script: str, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside a lab host (through podman, like Ansible's connection)."""
        proc = subprocess.run(["podman", "exec", host, "sh", "-c", script], text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"{host}: {script!r} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        return proc

    def ansible(self, pattern: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, ANSIBLE_DEPRECATION_WARNINGS="False", ANSIBLE_NOCOLOR="1")
        return subprocess.run([str(BIN / "ansible"), "-i", str(self.inventory), pattern, *args],
                              cwd=ROOT, text=True, capture_output=True, env=env, timeout=300)


def _inventory_hosts(inventory: Path) -> tuple[dict[str, str], str, list[str]]:
    """Read hosts.yml through ansible-inventory (what playbooks will see)."""
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                         cwd=ROOT, text=True, capture_output=True, check=True).stdout
    data = json.loads(out)
    hostvars = data["_meta"]["hostvars"]
    hosts = {h: v["cluster_address"] for h, v in hostvars.items()}
    return hosts, data["driver"]["hosts"][0], sorted(data["workers"]["hosts"])


@pytest.fixture(scope="session")
def lab() -> LabHandle:
    missing = [tool for tool in ("podman",) if not shutil.which(tool)]
    if missing:
        pytest.fail("the lab tests need podman (Debian packages: podman runc debootstrap; "
                    "see lab/README.md): missing " + ", ".join(missing), pytrace=False)
    if not (BIN / "ansible").exists():
        pytest.fail(f"no ansible next to {sys.executable}: run `make venv`", pytrace=False)
    # Always lab-up (idempotent, a second or two): the lab then matches its settings, whatever an
    # earlier run left (a lab grown by the day-2 tests, a stopped host).
    up = subprocess.run(LAB + ["up"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        pytest.fail(f"lab-up failed:\n{up.stderr}", pytrace=False)
    inventory = ROOT / subprocess.run(LAB + ["inventory-path"], cwd=ROOT, text=True,
                                      capture_output=True, check=True).stdout.strip()
    hosts, driver, workers = _inventory_hosts(inventory)
    name = os.environ.get("LAB_NAME", "optuna-lab")
    return LabHandle(name=name, inventory=inventory, hosts=hosts, driver=driver, workers=workers)
