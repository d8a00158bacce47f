"""Waiting out outages (optuna_spark.outage) with a fake clock and probe; and an objective's own
database error, which is the trial's failure, not an outage (real SQLite storage)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from optuna_spark.outage import REACHABLE_RETRIES, OutageGuard, StorageOutage, guarded_storage


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def down(message: str = "Lost connection to MySQL server") -> OperationalError:
    return OperationalError("COMMIT", {}, Exception(2013, message))


def test_a_call_waits_for_the_database_itself_then_succeeds() -> None:
    clock = Clock()
    answers = iter([False, False, False, True])   # what the database says when probed
    calls = []

    def fn() -> str:
        calls.append(clock.now)
        if len(calls) == 1:
            raise down()
        return "ok"

    guard = OutageGuard(lambda: next(answers), timeout=60, clock=lambda: clock.now, sleep=clock.sleep)
    assert guard.call(fn, "reporting") == "ok"
    assert len(calls) == 2 and clock.sleeps == [0.25, 0.5]  # backed off while it did not answer
    assert guard.last_outage_end == clock.now


def test_an_outage_longer_than_the_timeout_gives_up_with_one_line() -> None:
    clock = Clock()
    guard = OutageGuard(lambda: False, timeout=10, clock=lambda: clock.now, sleep=clock.sleep)
    with pytest.raises(StorageOutage) as info:
        guard.call(lambda: (_ for _ in ()).throw(down("Can't connect")), "claiming a trial")
    assert str(info.value) == "storage unavailable for 10 s (claiming a trial): (2013, \"Can't connect\")"
    assert 10 <= clock.now <= 15 and max(clock.sleeps) <= 5.0
    assert not isinstance(info.value, Exception)  # an objective's `except Exception` cannot swallow it


def test_an_error_while_the_database_answers_is_retried_a_few_times_then_raised() -> None:
    clock = Clock()
    calls = []

    def fn() -> None:
        calls.append(1)
        raise OperationalError("INSERT", {}, Exception(1406, "Data too long for column"))

    guard = OutageGuard(lambda: True, timeout=60, clock=lambda: clock.now, sleep=clock.sleep)
    with pytest.raises(OperationalError):
        guard.call(fn, "x")
    assert len(calls) == REACHABLE_RETRIES + 1


def test_other_errors_pass_through_untouched() -> None:
    guard = OutageGuard(lambda: pytest.fail("probed"), timeout=1)
    with pytest.raises(KeyError):
        guard.call(lambda: {}["x"], "x")


def test_the_objectives_own_database_error_fails_the_trial_and_is_no_outage(tmp_path: Path) -> None:
    """The database is 'down' for the guard the whole time: had the objective's error been taken
    for an outage, the guard would give up (StorageOutage) instead of failing the trial."""
    from optuna_spark.config import Job, ObjectiveSpec, StudySettings
    from optuna_spark.ledger import Ledger
    from optuna_spark.task import TrialLoop

    url = f"sqlite:///{tmp_path / 's.db'}"
    rdb = optuna.storages.RDBStorage(url)
    guard = OutageGuard(lambda: False, timeout=0.01)
    study = optuna.create_study(study_name="s", storage=guarded_storage(optuna.storages.get_storage(rdb), guard))
    ledger = Ledger(url, {}, study._study_id, rdb)
    ledger.create()
    ledger.reconcile()

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise down("the user's own database is down")

    job = Job(study=StudySettings(name="s", storage=url, n_trials=1), objective=ObjectiveSpec("o", "m", "f"))
    assert TrialLoop(job, study, ledger, guard, objective, "h").run() == 1
    (t,) = study.get_trials()
    assert t.state == TrialState.FAIL
    assert t.user_attrs["fail_reason"].startswith("OperationalError: (builtins.Exception) (2013, \"the user's own")


def test_a_broken_connection_is_retried_as_long_as_an_outage_may_last() -> None:
    """A lost commit acknowledgement, again and again, while the database answers: not the call's
    own error, so not limited to a few tries; only to the outage timeout."""
    import optuna

    clock = Clock()
    calls = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= 10:
            try:
                raise down("Lost connection to MySQL server during query")
            except OperationalError as exc:  # as Optuna wraps it
                raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from exc
        return "ok"

    guard = OutageGuard(lambda: True, timeout=60, clock=lambda: clock.now, sleep=clock.sleep)
    assert guard.call(fn, "x") == "ok" and len(calls) == 11
    forever = OutageGuard(lambda: True, timeout=1, clock=lambda: clock.now, sleep=clock.sleep)
    with pytest.raises(StorageOutage, match="storage connections kept breaking for 1 s"):
        forever.call(lambda: (_ for _ in ()).throw(down()), "x")
