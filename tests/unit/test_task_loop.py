"""One trial's life in a task (runner.task.run_one_trial) on a real SQLite storage."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from runner.outage import OutageGuard
from runner.task import ReleasingRetryCallback, run_one_trial
from runner.trials import transition


def make_study(tmp_path: Path) -> optuna.Study:
    callback = ReleasingRetryCallback(max_retry=2, budget=None)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1,
                                         grace_period=2, heartbeat_stale_trial_callback=callback)
    return optuna.create_study(study_name="s", storage=storage)


def test_a_failing_objective_is_a_fail_trial_with_its_message(tmp_path: Path) -> None:
    study = make_study(tmp_path)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise ValueError("bad x")

    assert run_one_trial(study, objective, "h", heartbeat_interval=1, guard=OutageGuard(lambda: True, 5))
    (t,) = study.get_trials()
    assert t.state == TrialState.FAIL and t.user_attrs == {"host": "h", "fail_reason": "ValueError: bad x"}


def test_a_trial_taken_for_dead_while_it_runs_is_dropped_not_a_crash(tmp_path: Path) -> None:
    """Its heartbeats lapsed (a storage outage longer than the grace period), another task failed
    it and enqueued the retry: the evaluation ends quietly and the retry is left to run."""
    study = make_study(tmp_path)
    callback = ReleasingRetryCallback(max_retry=2, budget=None)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        assert transition(study._storage, trial._trial_id, TrialState.RUNNING, TrialState.FAIL)
        callback(study, study._storage.get_trial(trial._trial_id))
        return trial.suggest_float("y", 0, 1) + x  # writes to a finished trial

    assert run_one_trial(study, objective, "h", heartbeat_interval=1, guard=OutageGuard(lambda: True, 5))
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]
