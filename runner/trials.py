"""Atomic trial state changes between concurrent Spark tasks.

Optuna's `set_trial_state_values` reads the trial, checks its state and writes it back. On MySQL
the read holds a row lock (`SELECT ... FOR UPDATE`); on SQLite it does not, so two tasks could
both take the same WAITING trial or both fail the same stale trial (and both enqueue a retry).
Every change here is instead one conditional `UPDATE ... WHERE trial_id = ? AND state = ?`, which
exactly one caller wins on every backend: the budget's bookkeeping (runner.budget) relies on it.

The trial table is Optuna's (`optuna.storages._rdb.models`, a private module); the tests in
tests/unit/test_trials.py pin the behaviour against the installed Optuna.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any


def rdb_backend(storage: Any) -> Any | None:
    """The RDBStorage behind a study's storage (Optuna wraps it in a cache), or None."""
    backend = getattr(storage, "_backend", storage)
    return backend if hasattr(backend, "engine") and hasattr(backend, "scoped_session") else None


def _utcnow() -> datetime.datetime:
    # RDBStorage stores trial datetimes as naive UTC.
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def transition(storage: Any, trial_id: int, old: Any, new: Any) -> bool:
    """Move a trial from state `old` to `new` if it is still in `old`. True: this caller won."""
    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy import update

    rdb = rdb_backend(storage)
    if rdb is None:
        raise TypeError("atomic trial transitions need an RDB storage")
    table = models.TrialModel.__table__
    values: dict[str, Any] = {"state": new}
    if new == TrialState.RUNNING:
        values["datetime_start"] = _utcnow()
    elif new.is_finished():
        values["datetime_complete"] = _utcnow()
    with rdb.engine.begin() as conn:
        res = conn.execute(
            update(table).where(table.c.trial_id == trial_id, table.c.state == old).values(**values)
        )
        return res.rowcount == 1


def take_waiting_trial(storage: Any, study_id: int) -> int | None:
    """Take the oldest WAITING trial (a stale trial's retry, or one the user enqueued), as
    `study.ask()` would, but atomically. None: there is none left to take."""
    from optuna.trial import TrialState

    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    for t in sorted(waiting, key=lambda t: t.number):
        if transition(storage, t._trial_id, TrialState.WAITING, TrialState.RUNNING):
            return int(t._trial_id)
    return None


def running_trials(storage: Any, study_id: int, grace_period: float) -> list[tuple[int, bool]]:
    """The RUNNING trials as (trial_id, dead). Dead: the last heartbeat is older than the grace
    period (by the database's clock, as Optuna measures it), or there never was one and the trial
    started longer ago than that (the task died between creating the trial and its first beat,
    which Optuna's own stale check never catches)."""
    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy import func, select

    rdb = rdb_backend(storage)
    if rdb is None:
        return []
    trial, beat = models.TrialModel, models.TrialHeartbeatModel
    with rdb.engine.connect() as conn:
        db_now = conn.execute(select(func.now())).scalar()
        rows = conn.execute(
            select(trial.trial_id, trial._datetime_start_utc, beat.heartbeat)
            .select_from(trial)
            .outerjoin(beat, beat.trial_id == trial.trial_id)
            .where(trial.study_id == study_id, trial.state == TrialState.RUNNING)
        ).all()
    grace = datetime.timedelta(seconds=grace_period)
    db_now = db_now.replace(tzinfo=None) if db_now is not None else None
    out = []
    for trial_id, started, heartbeat in rows:
        if heartbeat is not None:
            dead = db_now is not None and db_now - heartbeat > grace
        else:
            dead = started is not None and _utcnow() - started > grace
        out.append((int(trial_id), bool(dead)))
    return out


def dead_trial_ids(storage: Any, study_id: int, grace_period: float) -> list[int]:
    """RUNNING trials whose task is gone (see running_trials)."""
    return [tid for tid, dead in running_trials(storage, study_id, grace_period) if dead]


def live_trial_ids(storage: Any, study_id: int, grace_period: float) -> list[int]:
    """RUNNING trials whose task is alive: another run of the study is under way."""
    return [tid for tid, dead in running_trials(storage, study_id, grace_period) if not dead]


def fail_dead_trials(study: Any, grace_period: float, callback: Any) -> list[int]:
    """Fail the dead RUNNING trials and run the retry callback once for each: only the caller
    whose UPDATE changed the row does, so a trial is never retried twice."""
    from optuna.trial import TrialState

    storage = study._storage
    failed = []
    for trial_id in dead_trial_ids(storage, study._study_id, grace_period):
        if transition(storage, trial_id, TrialState.RUNNING, TrialState.FAIL):
            failed.append(trial_id)
            if callback is not None:
                callback(study, copy.deepcopy(storage.get_trial(trial_id)))
    return failed
