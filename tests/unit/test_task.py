"""A trial left RUNNING without any heartbeat (its task died right after creating it) is failed
and retried, on a real SQLite storage with heartbeats on."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from runner.task import ReleasingRetryCallback, fail_orphaned_trials


def test_orphaned_running_trial_is_failed_and_retried(tmp_path: Path) -> None:
    callback = ReleasingRetryCallback(max_retry=2, budget=None)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1,
                                         grace_period=2, heartbeat_stale_trial_callback=callback)
    study = optuna.create_study(study_name="s", storage=storage)
    orphan = storage.create_new_trial(study._study_id)      # no heartbeat ever recorded
    beating = storage.create_new_trial(study._study_id)
    storage.record_heartbeat(beating)
    assert fail_orphaned_trials(study, grace_period=60, callback=callback) == 0  # too young
    time.sleep(1.1)
    assert fail_orphaned_trials(study, grace_period=1, callback=callback) == 1
    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan] == TrialState.FAIL and states[beating] == TrialState.RUNNING
    retry = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].system_attrs["retry_history"] == [0]
