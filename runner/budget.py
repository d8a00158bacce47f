"""An exact, study-wide trial budget shared by concurrent Spark tasks.

Optuna's `MaxTrialsCallback` checks the count after the fact, so N concurrent tasks overshoot by
up to N - 1. Here a task *claims* a slot before it asks for a trial, with one atomic
`UPDATE ... SET claimed = claimed + 1 WHERE claimed < budget` in the study's own database; the
update succeeds for at most `budget` claims in total, whatever the concurrency.

Invariant: claims = trials that are RUNNING, COMPLETE, PRUNED or FAIL, minus the FAIL trials
that were retried. WAITING trials (a stale trial's retry, or one the user enqueued) hold no claim:
the task that takes one claims first, like for a new trial. A trial that goes stale (its task died)
gives its claim back when the retry callback has enqueued its copy, and whoever claims next runs
the copy (tasks take WAITING trials first). State changes are atomic (runner.trials), so a WAITING
trial is taken, and a stale one failed and retried, exactly once. A claim lost between the UPDATE
and the trial's creation (a task killed in that instant) is given back within the run
(`LeakWatch`). `reconcile()` recomputes the count from the trials when a run starts and no other
run of the study is under way (no trial with a recent heartbeat); a second run started beside a
live one keeps the counter and shares the budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

TABLE = "optuna_spark_budget"


def retried_numbers(trials: Iterable[Any]) -> set[int]:
    """Numbers of the trials that went stale and were re-enqueued (Optuna's `retry_history`)."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", ()))
    return out


def counted_trials(trials: Iterable[Any]) -> int:
    """How many claims the trials hold (see the module's invariant). Pure: unit-tested."""
    from optuna.trial import TrialState

    trials = list(trials)
    retried = retried_numbers(trials)
    count = 0
    for t in trials:
        if t.state == TrialState.WAITING or (t.state == TrialState.FAIL and t.number in retried):
            continue
        count += 1
    return count


def finished_trials(trials: Iterable[Any]) -> int:
    """Trials that spent budget and ended: COMPLETE, PRUNED and FAIL (not the retried ones)."""
    from optuna.trial import TrialState

    trials = list(trials)
    retried = retried_numbers(trials)
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in trials if t.state in done and not (t.state == TrialState.FAIL and t.number in retried))


@dataclass
class LeakWatch:
    """Decides, for a task out of claims with no trial RUNNING, whether the study is done.

    Claims above what the trials hold are either in flight (a task between its claim and its
    trial's creation: milliseconds) or lost (that task died in between). A gap that stays for
    `patience` seconds while the counter does not change at all (`changes` counts every claim,
    release and repair, so a claim given back and taken again is seen) is a loss: "repair" gives
    the lost claims back, so that this run, not only the next one, ends at exactly its budget.
    Pure: unit-tested.
    """

    patience: float
    _seen: tuple[int, int, int] | None = None
    _since: float = 0.0

    def reset(self) -> None:
        self._seen = None

    def observe(self, claimed: int, changes: int, counted: int, now: float) -> Literal["done", "wait", "repair"]:
        if claimed <= counted:
            self._seen = None
            return "done"
        if self._seen != (claimed, changes, counted):
            self._seen, self._since = (claimed, changes, counted), now
            return "wait"
        if now - self._since >= self.patience:
            self._seen = None
            return "repair"
        return "wait"


class Budget:
    """The claim counter of one study, in a table beside Optuna's own."""

    def __init__(self, connect_url: str, engine_kwargs: dict[str, Any], study_id: int) -> None:
        from sqlalchemy import Column, Integer, MetaData, Table, create_engine

        self._engine = create_engine(connect_url, **engine_kwargs)
        self._meta = MetaData()
        self._table = Table(
            TABLE, self._meta,
            Column("study_id", Integer, primary_key=True, autoincrement=False),
            Column("claimed", Integer, nullable=False),
            # Bumped by every change of `claimed`: a version for LeakWatch's conditional repair.
            Column("changes", Integer, nullable=False, server_default="0"),
        )
        self.study_id = study_id

    def create(self) -> None:
        from sqlalchemy import inspect, text

        self._meta.create_all(self._engine, checkfirst=True)
        columns = {c["name"] for c in inspect(self._engine).get_columns(TABLE)}
        if "changes" not in columns:  # a table made by an earlier version of the runner
            with self._engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {TABLE} ADD COLUMN changes INTEGER NOT NULL DEFAULT 0"))

    def reconcile(self, claimed: int) -> None:
        """Set the counter to what the trials say (driver side, before tasks start)."""
        from sqlalchemy import insert, update

        t = self._table
        with self._engine.begin() as conn:
            res = conn.execute(update(t).where(t.c.study_id == self.study_id)
                               .values(claimed=claimed, changes=t.c.changes + 1))
            if res.rowcount == 0:
                conn.execute(insert(t).values(study_id=self.study_id, claimed=claimed, changes=0))

    def claim(self, limit: int) -> bool:
        from sqlalchemy import update

        t = self._table
        with self._engine.begin() as conn:
            res = conn.execute(
                update(t)
                .where(t.c.study_id == self.study_id, t.c.claimed < limit)
                .values(claimed=t.c.claimed + 1, changes=t.c.changes + 1)
            )
            return res.rowcount == 1

    def release(self) -> None:
        from sqlalchemy import update

        t = self._table
        with self._engine.begin() as conn:
            conn.execute(
                update(t).where(t.c.study_id == self.study_id, t.c.claimed > 0)
                .values(claimed=t.c.claimed - 1, changes=t.c.changes + 1)
            )

    def set_if_unchanged(self, changes: int, claimed: int) -> bool:
        """Set the counter if nothing changed it since `changes` was read (LeakWatch's repair)."""
        from sqlalchemy import update

        t = self._table
        with self._engine.begin() as conn:
            res = conn.execute(
                update(t).where(t.c.study_id == self.study_id, t.c.changes == changes)
                .values(claimed=claimed, changes=t.c.changes + 1)
            )
            return res.rowcount == 1

    def state(self) -> tuple[int, int]:
        """(claimed, changes)."""
        from sqlalchemy import select

        t = self._table
        with self._engine.connect() as conn:
            row = conn.execute(select(t.c.claimed, t.c.changes).where(t.c.study_id == self.study_id)).first()
            return (int(row[0]), int(row[1])) if row else (0, 0)

    def claimed(self) -> int:
        return self.state()[0]

    def dispose(self) -> None:
        self._engine.dispose()
