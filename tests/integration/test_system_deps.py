"""`make system-deps` (bin/system-deps): installs what the tests need as root; anyone else, or
--check, gets one line naming what is missing and how to install it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bin" / "system-deps"
ABSENT = "optuna-spark-no-such-package"


def run(*argv: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SYSTEM_DEPS_EXTRA"}
    if extra:
        env["SYSTEM_DEPS_EXTRA"] = extra
    return subprocess.run(list(argv), text=True, capture_output=True, env=env, timeout=120)


def test_everything_the_tests_need_is_installed_here() -> None:
    proc = run(str(SCRIPT), "--check")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_missing_package_is_named_in_one_line_with_the_fix() -> None:
    proc = run(str(SCRIPT), "--check", extra=ABSENT)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ABSENT in lines[0] and "apt-get install" in lines[0], proc.stderr


def test_a_user_who_cannot_install_is_told_what_to_install() -> None:
    assert os.geteuid() == 0, "this test switches to an unprivileged user: run the suite as root"
    proc = run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
               str(SCRIPT), extra=ABSENT)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("system-deps: missing Debian packages: ") and ABSENT in lines[0]
