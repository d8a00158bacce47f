"""Against a real MariaDB: the study runs, and its password shows up nowhere."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from procwatch import Seen, watch

pytestmark = [pytest.mark.spark, pytest.mark.mysql]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mysql_study_keeps_its_password_out_of_argv_logs_and_spark_ui(mariadb, password_file: Path,
                                                                       tmp_path: Path) -> None:
    ui_port = _free_port()
    args = [str(Path(sys.executable).parent / "optuna-spark"), "tune", "--study", "secret-check",
            "--objective", "sleep", "--n-trials", "16", "--n-jobs", "2", "--storage", mariadb.url(),
            "--password-file", str(password_file), "--conf", f"spark.ui.port={ui_port}", "--output", "json"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_ui, process_lists, tree = [], [], Seen()
    while proc.poll() is None:
        process_lists.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)
        watch(proc.pid, tree)
        try:
            base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
            apps = json.load(urllib.request.urlopen(base, timeout=2))
            seen_ui.append(urllib.request.urlopen(f"{base}/{apps[0]['id']}/environment", timeout=2).read().decode())
        except Exception:
            pass
        time.sleep(0.5)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["finished"] == 16

    study = optuna.load_study(study_name="secret-check",
                              storage=f"mysql+pymysql://{mariadb.user}:{mariadb.password}@{mariadb.host}:{mariadb.port}/optuna")
    assert len(study.trials) == 16

    secret = mariadb.password
    assert seen_ui, "the Spark UI's environment page was never reachable during the run"
    assert any("spark.pyspark.python" in page for page in seen_ui)
    assert len(process_lists) > 2
    run_dir = next((tmp_path / "work" / "runs").iterdir())
    for name, text in [("stdout", out), ("stderr", err), ("spark.log", (run_dir / "spark.log").read_text()),
                       ("job.json", (run_dir / "job.json").read_text()),
                       *[("process list", p) for p in process_lists], *[("Spark UI", p) for p in seen_ui],
                       *tree.texts()]:
        assert secret not in text, f"the storage password appears in the {name}"


def test_password_from_the_environment_stays_out_of_spark_submits_environment(mariadb, run_cli,
                                                                              tmp_path: Path) -> None:
    """The password given in OPTUNA_SPARK_STORAGE_PASSWORD reaches the Spark application through a
    0600 file of the run's private directory, not through spark-submit's environment."""
    args = [str(Path(sys.executable).parent / "optuna-spark"), "tune", "--study", "env-pw", "--n-trials", "6",
            "--storage", mariadb.url(), "--output", "json"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OPTUNA_SPARK_STORAGE_PASSWORD": mariadb.password}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, modes = Seen(), set()
    while proc.poll() is None:
        watch(proc.pid, seen)
        for f in (tmp_path / "work" / "runs").glob("*/private/storage-password"):
            try:
                modes.add(stat.S_IMODE(f.stat().st_mode))
            except FileNotFoundError:
                pass
        time.sleep(0.3)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out)["finished"] == 6
    assert mariadb.password not in out + err
    assert modes == {0o600}
    assert not list((tmp_path / "work" / "runs").glob("*/private"))
    children = {pid: e for pid, e in seen.environs.items() if pid != proc.pid}
    assert len(children) >= 3  # spark-submit's JVM, the Python driver, its Python workers
    for pid, child_env in children.items():
        assert "OPTUNA_SPARK_STORAGE_PASSWORD" not in child_env, seen.cmdlines[pid]
        assert mariadb.password not in "\n".join(child_env.values()) + seen.cmdlines[pid]
    # Optuna's own command line reads the same study through the runner's storage settings.
    cli = run_cli("optuna", "--storage", mariadb.url(), "--", "trials", "--study-name", "env-pw", "-f", "json",
                  env={"OPTUNA_SPARK_STORAGE_PASSWORD": mariadb.password})
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert [t["state"] for t in json.loads(cli.stdout)] == ["COMPLETE"] * 6


def test_a_database_restart_mid_study_loses_nothing(mariadb, password_file: Path, tmp_path: Path) -> None:
    """MariaDB is stopped for 15 s (as on the lab) while objectives report intermediate values
    every 0.1 s: tasks wait it out, the study ends with exactly its budget, every trial COMPLETE
    with all its reports, none left RUNNING."""
    url_with_pw = f"mysql+pymysql://{mariadb.user}:{mariadb.password}@{mariadb.host}:{mariadb.port}/optuna"
    (tmp_path / "reporting.py").write_text(
        "import time\n\ndef objective(trial):\n    x = trial.suggest_float('x', -10, 10)\n"
        "    for step in range(5):\n        trial.report(x * x + step, step)\n        time.sleep(0.1)\n"
        "    return x * x\n")
    args = [str(Path(sys.executable).parent / "optuna-spark"), "tune", "--study", "restart",
            "--objective", "reporting:objective", "--n-trials", "40", "--n-jobs", "2", "--storage", mariadb.url(),
            "--password-file", str(password_file), "--output", "json"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, before = time.time() + 180, 0
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            before = len(optuna.load_study(study_name="restart", storage=url_with_pw).trials)
            if before >= 8:
                break
        except Exception:
            pass
    mariadb.stop()
    assert 8 <= before < 40, "the restart must fall in the middle of the study"
    time.sleep(15)
    mariadb.start()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out)
    trials = optuna.load_study(study_name="restart", storage=url_with_pw).trials
    assert summary["finished"] == 40
    assert [t.state.name for t in trials].count("COMPLETE") == 40
    assert all(len(t.intermediate_values) == 5 for t in trials)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
