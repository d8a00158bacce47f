"""Running commands (podman among them), finding host tools, checking the host's
prerequisites, and the lock that serialises concurrent lab commands."""
from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .settings import WORK, Lab, LabError, log


def run(cmd: list[str], *, check: bool = True, capture: bool = True, input: str | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, text=True, input=input, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise LabError(f"{shlex.join(cmd)} failed ({proc.returncode}): {err[-1] if err else ''}")
    return proc


def podman(lab: Lab, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
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
    rt = lab.s.oci_runtime
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
def locked(name: str) -> Iterator[None]:
    """Serialise builds / lab changes between concurrent invocations (make, pytest, people)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / f"{name}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another lab command holding {name}.lock ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
