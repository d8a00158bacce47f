"""Trials the runner did not create are never failed by its stale-trial sweep: heartbeat-less
trials of a plain Optuna client (`optuna ask`, `study.optimize`) beside a run, and trials of
another run whose heartbeats are slower than this run's grace period."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from optuna_spark.ledger import finished_trials

pytestmark = pytest.mark.spark

BIN = Path(sys.executable).parent


def args(study: str, *extra: str) -> list[str]:
    return [str(BIN / "optuna-spark"), "tune", "--study", study, "--n-jobs", "2", "--master", "local[2]",
            "--output", "json", *extra]


def env() -> dict[str, str]:
    out = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    out.pop("OPTUNA_SPARK_CONFIG", None)
    return out


def test_heartbeat_less_trials_of_plain_clients_are_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'work' / 'optuna.db'}"
    (tmp_path / "work").mkdir()
    plain = optuna.create_study(study_name="mixed", storage=url)
    plain.optimize(lambda t: t.suggest_float("x", -10, 10) ** 2, n_trials=3)   # finished: they count
    asked = [plain.ask() for _ in range(2)]                                      # RUNNING, no heartbeat
    stop = threading.Event()
    beside: list[int] = []

    def client() -> None:  # a plain worker asking and telling beside the run, slower than its grace
        study = optuna.load_study(study_name="mixed", storage=url)
        while not stop.is_set():
            trial = study.ask()
            beside.append(trial.number)
            time.sleep(4)
            study.tell(trial, trial.suggest_float("x", -10, 10) ** 2)

    worker = threading.Thread(target=client)
    worker.start()
    try:
        done = subprocess.run(args("mixed", "--objective", "sleep", "--n-trials", "16", "--grace-period", "2",
                                   "--heartbeat-interval", "1"),
                              cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    finally:
        stop.set()
        worker.join()
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="mixed", storage=url).trials
    by_number = {t.number: t for t in trials}
    assert [by_number[t.number].state.name for t in asked] == ["RUNNING", "RUNNING"]
    assert beside and all(by_number[n].state.name == "COMPLETE" for n in beside)
    assert not [t for t in trials if t.state.name == "FAIL"]
    summary = json.loads(done.stdout)
    ours = [t for t in trials if "optuna_spark_claim" in t.system_attrs]
    # The budget counts every finished trial: the plain client's 3 before the run, ours, and the
    # ones the plain worker finished while the run was still claiming.
    assert summary["finished"] >= 16 and len(ours) <= 13
    for t in asked:  # still the client's to tell
        plain.tell(t, 1.0)


def test_a_run_with_a_longer_grace_period_keeps_its_trials(tmp_path: Path) -> None:
    """Run A beats every 20 s (grace 60 s); run B, beside it, judges trials after 2 s without a
    beat. B must judge A's trials by A's grace period, not its own."""
    (tmp_path / "slow.py").write_text("import time\n\ndef objective(trial):\n"
                                      "    x = trial.suggest_float('x', 0, 1)\n    time.sleep(6)\n    return x\n")
    a = subprocess.Popen(args("graces", "--objective", "slow:objective", "--n-trials", "4",
                              "--heartbeat-interval", "20", "--grace-period", "60"),
                         cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"sqlite:///{tmp_path / 'work' / 'optuna.db'}"
    for _ in range(600):
        time.sleep(0.2)
        try:
            if optuna.load_study(study_name="graces", storage=url).trials:
                break
        except Exception:
            pass
    b = subprocess.run(args("graces", "--objective", "slow:objective", "--n-trials", "4",
                            "--heartbeat-interval", "1", "--grace-period", "2"),
                       cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    out, err = a.communicate(timeout=600)
    assert a.returncode == 0, err[-3000:]
    assert b.returncode == 0, b.stderr[-3000:]
    trials = optuna.load_study(study_name="graces", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 == ["COMPLETE"] * finished_trials(trials)
