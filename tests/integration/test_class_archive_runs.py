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
