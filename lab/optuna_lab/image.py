"""The lab's Debian image: its recipe hash, the debootstrap run and the build (cached by hash)."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .process import find_tool, locked, podman, require, run
from .settings import CUSTOMIZE, LABEL_IMAGE, RECIPE_VERSION, WORK, Lab, LabError, log

# A mirror connection can stall: wget gives up on a silent connection after WGET_TIMEOUT_S and
# tries again; a whole debootstrap that still takes longer than DEBOOTSTRAP_TIMEOUT_S is killed
# and run again (the package cache keeps what was already fetched).
WGET_TIMEOUT_S = 30
DEBOOTSTRAP_TIMEOUT_S = 300
DEBOOTSTRAP_ATTEMPTS = 3


def recipe_hash(lab: Lab) -> str:
    h = hashlib.sha256()
    for key in ("LAB_DEBIAN_SUITE", "LAB_DEBIAN_MIRROR", "LAB_DEBIAN_SECURITY_MIRROR",
                "LAB_IMAGE_PACKAGES", "LAB_LOGIN_USER"):
        h.update(f"{key}={lab.s.value(key)}\n".encode())
    h.update(f"RECIPE_VERSION={RECIPE_VERSION}\n".encode())
    h.update(CUSTOMIZE.read_bytes())
    return h.hexdigest()[:12]


def image_ref(lab: Lab) -> str:
    return lab.s.image or f"{lab.s.image_repo}:{recipe_hash(lab)}"


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


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def debootstrap(lab: Lab, rootfs: Path, cache: Path) -> None:
    wgetrc = WORK / "wgetrc"
    wgetrc.write_text(f"timeout = {WGET_TIMEOUT_S}\ntries = 5\nwaitretry = 5\n")
    cmd = [find_tool("debootstrap") or "debootstrap", "--variant=minbase",
           f"--include={lab.s.image_packages}", f"--cache-dir={cache}",
           lab.s.debian_suite, str(rootfs), lab.s.debian_mirror]
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
    raise LabError(f"debootstrap of {lab.s.debian_suite} from {lab.s.debian_mirror} "
                   f"failed {DEBOOTSTRAP_ATTEMPTS} times (last: {why}); see its output above")


def build_image(lab: Lab) -> str:
    ref = image_ref(lab)
    if lab.s.image:
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
        log(f"building {ref} with debootstrap ({lab.s.debian_suite}, minbase; ~2 min)")
        debootstrap(lab, rootfs, cache)
        shutil.copy(CUSTOMIZE, rootfs / "tmp" / "customize.sh")
        run(["chroot", str(rootfs), "/bin/sh", "/tmp/customize.sh", lab.s.debian_suite,
             lab.s.debian_mirror, lab.s.debian_security_mirror, lab.s.login_user],
            capture=False)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run(lab.podman_base() + [
            "import", "--quiet", "--change", 'CMD ["/sbin/init"]',
            "--change", "STOPSIGNAL SIGRTMIN+3",
            "--change", f"LABEL {LABEL_IMAGE}={digest}", "-", ref],
            stdin=tar.stdout, text=True, capture_output=True)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise LabError(f"podman import of {ref} failed: {imp.stderr.strip()}")
        remove_build_dir(build)
        log(f"built {ref} in {time.monotonic() - started:.0f} s")
        return ref
