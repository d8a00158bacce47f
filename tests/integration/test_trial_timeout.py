"""--trial-timeout on real spark-submit runs: hung objectives (one asleep, one holding the GIL in
a regular expression) are failed with that reason, their processes replaced, and the study still
ends at exactly its budget; a study whose every trial hangs fails in one line."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from optuna_spark.ledger import finished_trials

pytestmark = pytest.mark.spark

HANGS = """
import re
import time

def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    if trial.number == 2:
        time.sleep(10**6)
    if trial.number == 5:
        re.match(r"(a+)+$", "a" * 64 + "b")  # holds the GIL: no thread of this process runs
    return x * x
"""


def test_hung_trials_are_failed_and_the_study_reaches_its_budget(run_cli, tmp_path: Path) -> None:
    (tmp_path / "hangs.py").write_text(HANGS)
    proc = run_cli("tune", "--study", "hangs", "--objective", "hangs:objective", "--n-trials", "12",
                   "--n-jobs", "2", "--trial-timeout", "9", "--heartbeat-interval", "1", "--grace-period", "3",
                   "--outage-timeout", "1",
                   "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    trials = optuna.load_study(study_name="hangs", storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}").trials
    assert summary["finished"] == 12 == len(trials) == finished_trials(trials)
    failed = {t.number: t.user_attrs["fail_reason"] for t in trials if t.state.name == "FAIL"}
    # A trial that hangs fails by the timeout, not by a stale heartbeat (its staleness window,
    # 1 + 2 x 1 + 5 = 8 s, is shorter than the timeout, 9 s): the supervisor kept beating for it.
    assert failed == {2: "trial timeout: ran longer than 9 s (its process was stopped)",
                      5: "trial timeout: ran longer than 9 s (its process was stopped)"}
    assert sum(t.get("timed_out", 0) for t in summary["tasks"]) == 2


def test_every_trial_hanging_is_a_failed_run_in_one_line(run_cli, tmp_path: Path) -> None:
    (tmp_path / "stuck.py").write_text("import time\n\ndef objective(trial):\n    time.sleep(10**6)\n")
    proc = run_cli("tune", "--study", "stuck", "--objective", "stuck:objective", "--n-trials", "2",
                   "--n-jobs", "2", "--trial-timeout", "2")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == ("optuna-spark: every trial failed; first reason: trial timeout: "
                                                    "ran longer than 2 s (its process was stopped)")
