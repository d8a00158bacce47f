"""The clean controller: a copy of this checkout on it (as a fresh clone would hold it, with
the lab's inventory) and commands run there as the unprivileged operator."""
from __future__ import annotations

import shlex
import subprocess
import sys

from .hosts import inspect_containers
from .process import podman, run
from .settings import ROOT, Lab, LabError, log


def controller_name(lab: Lab) -> str:
    c = inspect_containers(lab).get("controller")
    if not c or not c["State"]["Running"]:
        raise LabError(f"lab {lab.name} has no running controller: make lab-up LAB_CONTROLLER=1")
    return str(c["Name"])


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
