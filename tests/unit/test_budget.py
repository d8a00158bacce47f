"""The exact budget: claim counting (pure) and the atomic claim on a real SQLite file."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from runner.budget import Budget, counted_trials, finished_trials


def trial(number: int, state: TrialState, **system_attrs):
    t = create_trial(state=state, params={"x": 1.0}, distributions={"x": FloatDistribution(0, 2)},
                     value=1.0 if state == TrialState.COMPLETE else None, system_attrs=system_attrs)
    t.number = number
    return t


def test_a_retried_stale_trial_holds_no_claim() -> None:
    trials = [
        trial(0, TrialState.COMPLETE),
        trial(1, TrialState.FAIL),                                  # stale, retried by #3
        trial(2, TrialState.FAIL),                                  # objective failure
        trial(3, TrialState.FAIL, failed_trial=1, retry_history=[1]),  # went stale again: #4
        trial(4, TrialState.RUNNING, failed_trial=1, retry_history=[1, 3]),
        trial(5, TrialState.WAITING),                               # enqueued: no claim yet
    ]
    assert counted_trials(trials) == 3  # 0, 2, 4
    assert finished_trials(trials) == 2  # 0 and 2


def test_claims_never_exceed_the_budget_under_concurrency(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    budget = Budget(url, {"connect_args": {"timeout": 60}}, study_id=1)
    budget.create()
    budget.reconcile(3)
    wins: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        b = Budget(url, {"connect_args": {"timeout": 60}}, study_id=1)
        for _ in range(20):
            if b.claim(50):
                with lock:
                    wins.append(1)
        b.dispose()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 47
    assert budget.claimed() == 50
    budget.release()
    assert budget.claimed() == 49 and budget.claim(50) and not budget.claim(50)


def test_reconcile_creates_then_updates(tmp_path: Path) -> None:
    budget = Budget(f"sqlite:///{tmp_path / 'b.db'}", {}, study_id=7)
    budget.create()
    assert budget.claimed() == 0
    budget.reconcile(5)
    budget.reconcile(2)
    assert budget.claimed() == 2


def test_counts_match_a_real_study() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    assert counted_trials(study.trials) == finished_trials(study.trials) == 4


def test_leak_watch_waits_for_claims_in_flight_then_repairs_a_lasting_gap() -> None:
    from runner.budget import LeakWatch

    watch = LeakWatch(patience=5)
    assert watch.observe(claimed=10, changes=20, counted=10, now=0) == "done"
    assert watch.observe(claimed=10, changes=20, counted=9, now=1) == "wait"    # a claim in flight
    assert watch.observe(claimed=10, changes=20, counted=10, now=2) == "done"   # ... its trial came
    assert watch.observe(claimed=10, changes=20, counted=8, now=3) == "wait"
    assert watch.observe(claimed=10, changes=20, counted=8, now=7.9) == "wait"
    assert watch.observe(claimed=10, changes=22, counted=8, now=8) == "wait"    # released, re-taken
    assert watch.observe(claimed=10, changes=22, counted=8, now=12.9) == "wait"
    assert watch.observe(claimed=10, changes=22, counted=8, now=13) == "repair"
    assert watch.observe(claimed=10, changes=22, counted=8, now=13.5) == "wait"  # patience again
    watch.reset()
    assert watch.observe(claimed=10, changes=22, counted=8, now=14) == "wait"


def test_a_repair_loses_to_any_change_since_it_looked(tmp_path: Path) -> None:
    budget = Budget(f"sqlite:///{tmp_path / 'b.db'}", {}, study_id=1)
    budget.create()
    budget.reconcile(10)
    claimed, changes = budget.state()
    budget.release()
    assert budget.claim(10)                       # back at 10 claims, but not unchanged
    assert budget.state() == (10, changes + 2)
    assert not budget.set_if_unchanged(changes, 8) and budget.claimed() == 10
    assert budget.set_if_unchanged(changes + 2, 8) and budget.state() == (8, changes + 3)


def test_a_table_of_an_earlier_version_gets_the_new_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "b.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE optuna_spark_budget (study_id INTEGER PRIMARY KEY, claimed INTEGER NOT NULL)")
        c.execute("INSERT INTO optuna_spark_budget VALUES (1, 4)")
    budget = Budget(f"sqlite:///{path}", {}, study_id=1)
    budget.create()
    assert budget.state() == (4, 0) and budget.claim(5) and budget.state() == (5, 1)
