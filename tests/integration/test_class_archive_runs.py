"""The driver JVM's class-data archive on real spark-submit runs (Spark local mode, the system's
Java): the first run writes it, the next one maps it, and a run where Java could not write one
(a non-empty Spark conf directory) or where it is turned off runs as before and writes none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optuna_spark import class_archive

VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.spark


def _env(cache: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "XDG_CACHE_HOME": str(cache)}
    for name in ("OPTUNA_SPARK_CONFIG", "OPTUNA_SPARK_STORAGE_PASSWORD", "SPARK_CONF_DIR", *class_archive.CLASSPATH_ENV):
        env.pop(name, None)
    return env


def _tune(tmp_path: Path, cache: Path, study: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """One run; also every file of the cache that a process mapped while it ran (/proc/PID/maps)."""
    cmd = [str(VENV_BIN / "optuna-spark"), "tune", "--objective", "quadratic", "--study", study, "--n-trials", "6",
           "--n-jobs", "2", "--master", "local[2]", "--output", "json", *extra]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    mapped: set[str] = set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        for maps in Path("/proc").glob("[0-9]*/maps"):
            try:
                text = maps.read_text()
            except OSError:
                continue
            mapped.update(line.split()[-1] for line in text.splitlines() if str(cache) in line)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), mapped


def _finished(proc: subprocess.CompletedProcess[str]) -> int:
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["states"] == {"COMPLETE": 6}
    return int(summary["finished"])


def _archives(cache: Path) -> list[Path]:
    return sorted((cache / "optuna-spark" / "class-archives").glob("*"))


def test_first_run_writes_the_archive_and_the_next_maps_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _ = _tune(tmp_path, cache, "a")
    assert _finished(first) == 6
    written = _archives(cache)
    assert len(written) == 1 and written[0].suffix == ".jsa" and written[0].stat().st_size > 1_000_000, written
    logs = list((tmp_path / "work" / "runs").glob("a-*/spark.log"))
    assert any(f"writes a class-data archive at exit, once: {written[0]}" in p.read_text() for p in logs)

    second, mapped = _tune(tmp_path, cache, "b")
    assert _finished(second) == 6
    assert str(written[0]) in mapped, mapped  # the driver's JVM mapped the archive
    assert _archives(cache) == written  # nothing written again, no file left half-written
    assert "cds" not in second.stderr.lower()


def test_no_archive_where_java_cannot_write_one_or_when_turned_off(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    conf = tmp_path / "conf"
    conf.mkdir()
    # A non-empty conf directory on the class path: a JVM asked to archive would exit with status 1.
    (conf / "spark-defaults.conf").write_text("spark.ui.showConsoleProgress false\n")
    proc, mapped = _tune(tmp_path, cache, "c", "--spark-conf-dir", str(conf))
    assert _finished(proc) == 6
    assert _archives(cache) == [] and not mapped

    proc, mapped = _tune(tmp_path, cache, "d", "--class-archive", "false")
    assert _finished(proc) == 6
    assert _archives(cache) == [] and not mapped


def test_a_jvm_that_cannot_write_the_archive_changes_nothing_of_the_run(tmp_path: Path) -> None:
    """The JVM checks its class path when it writes the archive, at exit: a conf directory that
    was empty when the run started and is not by then makes it exit with status 1 after the
    run's summary. The run still ends as its study did, and no later run asks again."""
    cache, conf = tmp_path / "cache", tmp_path / "conf"
    conf.mkdir()
    cmd = [str(VENV_BIN / "optuna-spark"), "tune", "--objective", "quadratic", "--study", "e", "--n-trials", "6",
           "--n-jobs", "2", "--master", "local[2]", "--output", "json", "--spark-conf-dir", str(conf)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    dumping = False
    while not dumping and proc.poll() is None and time.monotonic() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                dumping = dumping or (b"-XX:ArchiveClassesAtExit=" + str(cache).encode()) in cmdline.read_bytes()
            except OSError:
                continue
        time.sleep(0.1)
    assert dumping, "the driver's JVM was not asked to write an archive"
    (conf / "notes.txt").write_text("made non-empty while the run goes on\n")
    out, err = proc.communicate(timeout=300)
    assert _finished(subprocess.CompletedProcess(cmd, proc.returncode, out, err)) == 6
    log = next((tmp_path / "work" / "runs").glob("e-*/spark.log")).read_text()
    assert "Cannot have non-empty directory in paths" in log or "non-empty directory" in log
    assert "could not write its class-data archive" in log
    folder = cache / "optuna-spark" / "class-archives"
    assert [p.suffix for p in folder.iterdir()] == [".refused"]

    (conf / "notes.txt").unlink()  # the same class path again: not asked again
    again, mapped = _tune(tmp_path, cache, "f", "--spark-conf-dir", str(conf))
    assert _finished(again) == 6 and not mapped
    assert [p.suffix for p in folder.iterdir()] == [".refused"]
    logs = [p.read_text() for p in (tmp_path / "work" / "runs").glob("f-*/spark.log")]
    assert logs and not any("writes a class-data archive" in text for text in logs)
