"""Atomic trial state changes (runner.trials) on a real SQLite file shared by many threads, each
with its own storage and connections, as concurrent Spark tasks have."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from runner.task import ReleasingRetryCallback
from runner.trials import dead_trial_ids, fail_dead_trials, live_trial_ids, take_waiting_trial, transition

THREADS = 8


def open_storage(path: Path, callback: Any = None) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}},
                                      heartbeat_interval=1, grace_period=2,
                                      heartbeat_stale_trial_callback=callback)


def in_threads(fn: Any) -> list[Any]:
    """Run fn(i) in THREADS threads released at once; return their results."""
    start = threading.Barrier(THREADS)
    out: list[Any] = [None] * THREADS

    def run(i: int) -> None:
        start.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def states(study: optuna.Study) -> dict[int, TrialState]:
    return {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}


def test_transition_only_from_the_expected_state(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    tid = storage.create_new_trial(study._study_id)
    assert not transition(storage, tid, TrialState.WAITING, TrialState.RUNNING)
    assert transition(storage, tid, TrialState.RUNNING, TrialState.FAIL)
    assert not transition(storage, tid, TrialState.RUNNING, TrialState.FAIL)
    frozen = storage.get_trial(tid)
    assert frozen.state == TrialState.FAIL and frozen.datetime_complete is not None


def test_each_waiting_trial_is_taken_by_exactly_one_task(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    study = optuna.create_study(study_name="s", storage=open_storage(path))
    for i in range(THREADS // 2):
        study.enqueue_trial({"x": float(i)})
    storages = [open_storage(path) for _ in range(THREADS)]
    taken = in_threads(lambda i: take_waiting_trial(storages[i], study._study_id))
    won = [t for t in taken if t is not None]
    assert len(won) == len(set(won)) == THREADS // 2  # no trial twice, none left behind
    assert list(states(study).values()) == [TrialState.RUNNING] * (THREADS // 2)
    assert all(t.datetime_start is not None for t in study.get_trials(deepcopy=False))


def test_a_dead_trial_is_failed_and_retried_once_whoever_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    storage = open_storage(path)
    study = optuna.create_study(study_name="s", storage=storage)
    stale = storage.create_new_trial(study._study_id)
    storage.record_heartbeat(stale)
    orphan = storage.create_new_trial(study._study_id)  # its task died before the first beat
    time.sleep(3.2)  # SQLite's CURRENT_TIMESTAMP has whole seconds
    alive = storage.create_new_trial(study._study_id)
    storage.record_heartbeat(alive)
    released: list[int] = []

    class CountingBudget:
        def release(self) -> None:
            released.append(1)

    def fail(i: int) -> list[int]:
        callback = ReleasingRetryCallback(max_retry=3, budget=CountingBudget())
        mine = open_storage(path, callback)
        return fail_dead_trials(optuna.load_study(study_name="s", storage=mine), 2, callback)

    failed = sorted(t for r in in_threads(fail) for t in r)
    assert failed == sorted([stale, orphan])
    assert len(released) == 2
    now = states(study)
    assert now[stale] == now[orphan] == TrialState.FAIL and now[alive] == TrialState.RUNNING
    copies = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["retry_history"][0] for t in copies) == [0, 1]


def test_young_trials_are_not_dead(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    storage.create_new_trial(study._study_id)           # no beat yet, but just started
    beating = storage.create_new_trial(study._study_id)
    storage.record_heartbeat(beating)
    assert dead_trial_ids(storage, study._study_id, grace_period=60) == []
    assert len(live_trial_ids(storage, study._study_id, grace_period=60)) == 2
    time.sleep(2.2)  # whole seconds in SQLite
    assert len(dead_trial_ids(storage, study._study_id, grace_period=1)) == 2
    assert live_trial_ids(storage, study._study_id, grace_period=1) == []
