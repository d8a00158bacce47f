"""The exact budget and every trial state change of the runner, each one transaction that a retry
cannot apply twice.

Optuna's `MaxTrialsCallback` checks the count after the fact, so N concurrent tasks overshoot by
up to N - 1. Here a task *claims* a slot before it takes a trial. A claim is a row of
`optuna_spark_claims`, keyed by a token the task draws for it; a counter row per study
(`optuna_spark_budget.claimed`) always equals the number of claim rows, and its conditional
`UPDATE ... WHERE claimed < limit` is what serializes the claims. A storage call can fail after
its commit (the acknowledgement was lost) and be retried (optuna_spark.outage): every operation below
checks first whether its token already did its work, so a retry never counts twice.

- `claim(token)`: a claim row and the counter, together.
- `create_trial(token)` / `take_waiting(token)`: the trial is created (or a WAITING one taken)
  in the same transaction that binds it to the claim; a claim given back meanwhile (see `sweep`)
  rolls the creation back. No trial without a claim, no claim with two trials.
- `claim_trial(token)`: what the task's loop calls: the claim, the trial (a WAITING one first),
  its binding, its first heartbeat and its `host` attribute, all in one transaction (one write
  per trial before the objective, instead of five).
- `finish(token, state, values)`: the runner's `tell`, conditional on the trial still RUNNING
  (one UPDATE, one winner: on SQLite, Optuna's own read-then-write `tell` could overwrite a FAIL
  set by a sweep, and the trial would count twice).
- `fail(token, reason, retry)`: FAIL a trial of this runner (its task died, or it ran past the
  trial timeout); with `retry`, a WAITING copy is enqueued (Optuna's `retry_history`
  convention) and the claim given back, in the same transaction.
- `sweep()`: trials of this runner whose heartbeats stopped, by the database's clock, for longer
  than the staleness window of the run that created them (`staleness_window`: the grace period,
  widened to cover a storage outage that the task waits out), are failed and retried; claims never
  bound to a trial for that long (their task died in between) are given back. Trials of other
  clients (`optuna ask`, a plain `study.optimize`, an older runner) are never touched.
- `beat(trial_id)`: a running trial's heartbeat, on connections of its own whose every wait is
  short (BEAT_TIMEOUT), so that a beat blocked by a silent partition cannot hold up the next one.

Trials of other clients count against the budget once finished (`limit` of `claim`); RUNNING or
WAITING ones do not. Every transaction that writes begins IMMEDIATE on SQLite (the write lock
first), so a read-then-write cannot interleave with another writer's (reads alone begin DEFERRED
and take no write lock); on MySQL, a transaction that creates, takes or fails a trial takes the
study's row lock before its first plain read (whose snapshot the rest of the transaction sees),
and the counter is only changed by conditional UPDATEs, which read its current value; lock order
is always the study's row, then the counter's.

The trial tables are Optuna's (`optuna.storages._rdb.models`, private), reached through
optuna_spark.optuna_internals, whose tests pin what is used here against the installed Optuna;
tests/unit/test_ledger.py pins the ledger's behaviour on top.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from optuna_spark.errors import OptunaSparkError
from optuna_spark.optuna_internals import frozen_trial_of, new_trial_in, rdb_models, set_trial_attr_in

BUDGET_TABLE = "optuna_spark_budget"
CLAIMS_TABLE = "optuna_spark_claims"
# System attribute of a trial this runner created or took: the token of its claim.
CLAIM_ATTR = "optuna_spark_claim"
# Seconds a heartbeat may wait for the storage (connecting, each read and write) before it gives
# up; the next beat tries again on a new connection.
BEAT_TIMEOUT = 3


def staleness_window(grace: float, heartbeat_interval: float, outage_timeout: float) -> int:
    """Seconds without a heartbeat, by the database's clock, after which a trial of a run with
    these settings is taken for dead: its grace period, or longer if a storage outage that its
    task waits out could make its heartbeats lapse for longer.

    A live task's heartbeats lapse by at most: the outage (a task that needs the storage gives up
    after `outage_timeout`; one that does not carries on, and its trial may then be failed), the
    interval before the outage and the one after it, one beat blocked when the storage came back
    (BEAT_TIMEOUT), and 2 s for the database clock's whole seconds. A trial whose task is alive is
    thus never failed as stale, whatever the outage up to `outage_timeout`. Stored with each claim
    (`grace`): every run judges a trial by the settings of the run that created it. Pure."""
    bound = outage_timeout + 2 * heartbeat_interval + BEAT_TIMEOUT + 2
    return int(math.ceil(max(grace, bound)))


class ClaimLost(OptunaSparkError, RuntimeError):
    """The claim is gone (given back by a sweep while its task was cut off): claim again."""


def retried_numbers(trials: Iterable[Any]) -> set[int]:
    """Numbers of the trials that went stale and were re-enqueued (Optuna's `retry_history`)."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", ()))
    return out


def _finished(trials: list[Any], only_foreign: bool = False) -> int:
    from optuna.trial import TrialState

    retried = retried_numbers(trials)
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in trials if t.state in done and not (t.state == TrialState.FAIL and t.number in retried)
               and not (only_foreign and is_ours(t)))


def finished_trials(trials: Iterable[Any]) -> int:
    """Trials that spent budget and ended: COMPLETE, PRUNED and FAIL (not the retried ones)."""
    return _finished(list(trials))


def is_ours(trial: Any) -> bool:
    return CLAIM_ATTR in trial.system_attrs


def foreign_finished(trials: Iterable[Any]) -> int:
    """Finished trials of other clients (no claim of this runner): they count against the budget
    (see `claim`). The specification of `Ledger.foreign_finished`, which counts the same in SQL
    (tests/unit/test_ledger.py holds them equal)."""
    return _finished(list(trials), only_foreign=True)


@dataclass(frozen=True)
class Running:
    """A RUNNING trial of this runner, as the sweep sees it (pure: `is_dead` is unit-tested)."""

    trial_id: int
    token: str
    grace: float
    bound_at: datetime.datetime | None
    heartbeat: datetime.datetime | None

    def is_dead(self, now: datetime.datetime) -> bool:
        """No heartbeat for longer than its run's staleness window (`grace`, see
        `staleness_window`), by the database's clock; a trial that never beat counts from the
        moment it was bound to its claim."""
        last = self.heartbeat or self.bound_at
        return last is not None and (now - last).total_seconds() > self.grace


def _naive(value: Any) -> Any:
    return value.replace(tzinfo=None) if isinstance(value, datetime.datetime) else value


# A known set of unfinished trials longer than this is read as a range from its oldest (SQL's IN
# list stays short; SQLite caps a statement's parameters).
UNFINISHED_IN_LIST = 500


@dataclass
class ForeignCount:
    """`Ledger.foreign_finished`'s running count (pure: unit-tested), and the window of the study's
    trials that may still change.

    A finished trial never changes again (no state, attribute or claim is added to it), and a
    study's trials become visible in id order (each is created under the study's row lock,
    Optuna's and the ledger's alike). So everything of a trial is known once it was seen finished,
    and what may change is: the trials seen unfinished (`unfinished`, any client's: WAITING or
    RUNNING) and those above the newest trial seen (`seen`). `advance` takes the rows of that
    window, `(trial_id, number, state, ours)`, with the `retry_history` attributes `(trial_id,
    json)` of the trials above `seen` (written when a trial is created), and returns the count of
    every finished foreign trial less the retried FAILs. A trial that never ends (another client's,
    killed) stays in the window, one row, instead of holding back a range."""

    seen: int = 0                                    # the newest trial id seen
    unfinished: frozenset[int] = frozenset()         # trials seen WAITING or RUNNING
    finished: int = 0                                # finished foreign trials seen
    failed: frozenset[int] = frozenset()             # their FAILs' numbers
    retried: frozenset[int] = frozenset()            # numbers in any retry_history seen
    retried_fails: int = 0                           # len(failed & retried), kept as they grow

    def window(self, column: Any) -> Any:
        """The SQL condition on a trial id column for the trials that may have changed."""
        if not self.unfinished:
            return column > self.seen
        if len(self.unfinished) > UNFINISHED_IN_LIST:
            return column >= min(self.unfinished)
        return (column > self.seen) | column.in_(sorted(self.unfinished))

    def advance(self, rows: Sequence[Sequence[Any]], histories: Iterable[Sequence[Any]]) -> int:
        from optuna.trial import TrialState

        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        # Computed aside and stored at the end: a call that raises halfway changes nothing.
        seen, unfinished = self.seen, set(self.unfinished)
        finished, failed, retried, retried_fails = self.finished, set(self.failed), set(self.retried), \
            self.retried_fails
        for trial_id, number, state, ours in rows:
            trial_id = int(trial_id)
            if trial_id <= self.seen and trial_id not in self.unfinished:
                continue  # final and counted already (a range read of a long unfinished set)
            seen = max(seen, trial_id)
            if TrialState(state) not in done:
                unfinished.add(trial_id)
                continue
            unfinished.discard(trial_id)
            if ours:
                continue
            finished += 1
            if TrialState(state) == TrialState.FAIL and int(number) not in failed:
                failed.add(int(number))
                retried_fails += int(number) in retried
        for trial_id, text in histories:
            if int(trial_id) <= self.seen:
                continue  # read with an earlier call already
            for n in _numbers(text):
                if n not in retried:
                    retried.add(n)
                    retried_fails += n in failed
        self.seen, self.unfinished, self.finished = seen, frozenset(unfinished), finished
        self.failed, self.retried, self.retried_fails = frozenset(failed), frozenset(retried), retried_fails
        return finished - retried_fails


def _numbers(text: str) -> list[int]:
    """The trial numbers of a `retry_history` attribute's JSON (anything else in it is ignored)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return []
    items = value if isinstance(value, list) else []
    return [int(n) for n in items if isinstance(n, int) and not isinstance(n, bool)]


class Ledger:
    """Claims and trial state changes of one study. `rdb` is the task's Optuna RDBStorage (its
    trial-building helpers are used inside the ledger's own transactions)."""

    def __init__(self, connect_url: str, engine_kwargs: dict[str, Any], study_id: int, rdb: Any = None) -> None:
        from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, func

        self._engine = create_engine(connect_url, **engine_kwargs)
        # Reads (the foreign count, the budget's state, the sweep's scan): on MySQL the same
        # engine; on SQLite an engine whose transactions begin DEFERRED (a shared lock, many
        # readers at once) while the writes' begin IMMEDIATE (the write lock first).
        self._reader = self._engine
        if self._engine.dialect.name == "sqlite":
            if self._engine.url.database not in (None, "", ":memory:"):  # one file, two engines
                self._reader = create_engine(connect_url, **engine_kwargs)
                _explicit_begin(self._reader, "BEGIN")
            _explicit_begin(self._engine, "BEGIN IMMEDIATE")
        self._beats = _beat_engine(connect_url, engine_kwargs)

        self._meta = MetaData()
        self._budget = Table(
            BUDGET_TABLE, self._meta,
            Column("study_id", Integer, primary_key=True, autoincrement=False),
            Column("claimed", Integer, nullable=False),
            Column("changes", Integer, nullable=False, server_default="0"),
        )
        self._claims = Table(
            CLAIMS_TABLE, self._meta,
            Column("token", String(64), primary_key=True),
            Column("study_id", Integer, nullable=False, index=True),
            Column("trial_id", Integer, nullable=True, index=True),
            Column("grace", Integer, nullable=False),
            Column("claimed_at", DateTime, nullable=False, server_default=func.now()),
            Column("bound_at", DateTime, nullable=True),
            Column("finished", Integer, nullable=True),  # the state `finish` or `fail` set
        )
        self.study_id = study_id
        self.rdb = rdb
        self._counted = ForeignCount()

    # ------------------------------------------------------------------ set-up (driver)

    def create(self) -> None:
        from sqlalchemy import inspect, text

        self._meta.create_all(self._engine, checkfirst=True)
        columns = {c["name"] for c in inspect(self._engine).get_columns(BUDGET_TABLE)}
        if "changes" not in columns:  # a table made by an early version of the runner
            with self._engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {BUDGET_TABLE} ADD COLUMN changes INTEGER NOT NULL DEFAULT 0"))

    def ensure(self) -> None:
        """The study's counter row (a run that shares a live run's counter still needs one)."""
        from sqlalchemy import insert, select
        from sqlalchemy.exc import IntegrityError

        b = self._budget
        try:
            with self._engine.begin() as conn:
                if conn.execute(select(b.c.study_id).where(b.c.study_id == self.study_id)).first() is None:
                    conn.execute(insert(b).values(study_id=self.study_id, claimed=0, changes=0))
        except IntegrityError:
            pass  # another run created it in between

    def reconcile(self) -> None:
        """When no run of the study is under way: give back the claims that never got a trial,
        drop the claims whose trial is not a trial of this study (a study deleted and created
        again under the same name can get the old one's id, on SQLite: its rows are another
        study's), and set the counter to the number of claim rows (a counter of an older runner
        version counted every trial)."""
        from sqlalchemy import delete, func, insert, select, update
        models = rdb_models()

        b, c, t = self._budget, self._claims, models.TrialModel.__table__
        ours = select(t.c.trial_id).where(t.c.trial_id == c.c.trial_id, t.c.study_id == self.study_id).exists()
        with self._engine.begin() as conn:
            self._lock_counter(conn)
            conn.execute(delete(c).where(c.c.study_id == self.study_id, c.c.trial_id.is_(None)))
            conn.execute(delete(c).where(c.c.study_id == self.study_id, ~ours))
            rows = conn.execute(select(func.count()).select_from(c).where(c.c.study_id == self.study_id)).scalar()
            res = conn.execute(update(b).where(b.c.study_id == self.study_id)
                               .values(claimed=rows, changes=b.c.changes + 1))
            if res.rowcount == 0:
                conn.execute(insert(b).values(study_id=self.study_id, claimed=rows, changes=0))

    # ------------------------------------------------------------------ claims

    def _lock_study(self, session: Any) -> None:
        """Optuna's own lock for numbering a study's trials (its study row, FOR UPDATE)."""
        models = rdb_models()

        models.StudyModel.find_or_raise_by_id(self.study_id, session, for_update=True)

    def _lock_counter(self, conn: Any) -> None:
        from sqlalchemy import select

        b = self._budget
        conn.execute(select(b.c.claimed).where(b.c.study_id == self.study_id).with_for_update())

    def claim(self, token: str, limit: int, grace: float) -> bool:
        """Take one of `limit` slots under `token`. True also when a first attempt of this very
        call committed and its acknowledgement was lost."""
        from sqlalchemy import select

        c = self._claims
        with self._engine.begin() as conn:
            if conn.execute(select(c.c.token).where(c.c.token == token)).first() is not None:
                return True
            return self._take_slot(conn, token, limit, grace)

    def _take_slot(self, conn: Any, token: str, limit: int, grace: float) -> bool:
        """The counter, if below `limit`, and the claim row (no trial yet), in the caller's transaction."""
        from sqlalchemy import func, insert, update

        b, c = self._budget, self._claims
        res = conn.execute(update(b).where(b.c.study_id == self.study_id, b.c.claimed < limit)
                           .values(claimed=b.c.claimed + 1, changes=b.c.changes + 1))
        if res.rowcount != 1:
            return False
        conn.execute(insert(c).values(token=token, study_id=self.study_id, trial_id=None,
                                      grace=int(math.ceil(grace)), claimed_at=func.now()))
        return True

    def release(self, token: str) -> None:
        """Give back a claim that has no trial (nothing to run, or its creation failed)."""
        from sqlalchemy import delete

        c = self._claims
        with self._engine.begin() as conn:
            self._lock_counter(conn)
            gone = conn.execute(delete(c).where(c.c.token == token, c.c.trial_id.is_(None))).rowcount
            self._count_down(conn, gone)

    def _count_down(self, conn: Any, n: int) -> None:
        from sqlalchemy import update

        if n:
            b = self._budget
            conn.execute(update(b).where(b.c.study_id == self.study_id)
                         .values(claimed=b.c.claimed - n, changes=b.c.changes + 1))

    def state(self) -> tuple[int, int]:
        """(claims held, claims with no trial yet)."""
        from sqlalchemy import func, select

        c = self._claims
        with self._reader.connect() as conn:
            rows = conn.execute(select(c.c.trial_id.is_(None), func.count()).where(c.c.study_id == self.study_id)
                                .group_by(c.c.trial_id.is_(None))).all()
        unbound = sum(int(n) for is_null, n in rows if is_null)
        return sum(int(n) for _, n in rows), unbound

    def claimed(self) -> int:
        from sqlalchemy import select

        b = self._budget
        with self._reader.connect() as conn:
            value = conn.execute(select(b.c.claimed).where(b.c.study_id == self.study_id)).scalar()
        return int(value or 0)

    # ------------------------------------------------------------------ trials

    def _session(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(bind=self._engine, expire_on_commit=False)

    def _bound(self, session: Any, token: str) -> int | None:
        """The trial already bound to `token` (a retried call), or None; ClaimLost if the claim
        is gone."""
        from sqlalchemy import select

        c = self._claims
        row = session.execute(select(c.c.trial_id).where(c.c.token == token)).first()
        if row is None:
            raise ClaimLost(token)
        return None if row[0] is None else int(row[0])

    def _bind(self, session: Any, token: str, trial_id: int) -> None:
        from sqlalchemy import func, update
        models = rdb_models()

        c = self._claims
        res = session.execute(update(c).where(c.c.token == token, c.c.trial_id.is_(None))
                              .values(trial_id=trial_id, bound_at=func.now()))
        if res.rowcount != 1:
            raise ClaimLost(token)
        set_trial_attr_in(self.rdb, session, models.TrialSystemAttributeModel, trial_id,
                                                CLAIM_ATTR, token)

    def create_trial(self, token: str) -> int:
        """A new RUNNING trial bound to the claim `token` (or the one a lost-acknowledged first
        attempt created)."""
        with self._session() as session, session.begin():
            # The study's row lock comes first: on MySQL (REPEATABLE READ) the first plain read
            # fixes the transaction's snapshot, and the new trial's number is counted from it.
            self._lock_study(session)
            done = self._bound(session, token)
            if done is not None:
                return done
            trial_id = self._new_trial(session)
            self._bind(session, token, trial_id)
            return trial_id

    def claim_trial(self, token: str, limit: int, grace: float,
                    user_attrs: dict[str, Any] | None = None, idle: bool = False) -> int | None:
        """`claim`, then `take_waiting` of the study's oldest WAITING trial or `create_trial`,
        in one transaction, with the trial's first heartbeat and `user_attrs` (the task's host):
        the loop's one write before the objective. None: the budget is spent. A retry of a call
        whose commit was not acknowledged finds its trial by `token`. `idle`: the task's last
        claim was refused; a plain read of the counter first (`_spent`) spares the study's row lock
        while the budget stays spent."""
        from optuna.trial import TrialState
        from sqlalchemy import func, insert, select, update
        models = rdb_models()

        c, t = self._claims, models.TrialModel.__table__
        if idle and self._spent(token, limit):
            return None
        with self._session() as session, session.begin():
            self._lock_study(session)  # before any plain read: see create_trial
            row = session.execute(select(c.c.trial_id).where(c.c.token == token)).first()
            if row is not None and row[0] is not None:
                return int(row[0])
            if row is None and not self._take_slot(session, token, limit, grace):
                return None
            trial_id, created = None, False
            # A WAITING trial is not final: it is in the window of trials that may have changed.
            waiting = session.execute(select(t.c.trial_id).where(t.c.study_id == self.study_id,
                                                                 self._counted.window(t.c.trial_id),
                                                                 t.c.state == TrialState.WAITING)
                                      .order_by(t.c.number)).scalars().all()
            for candidate in waiting:
                res = session.execute(update(t).where(t.c.trial_id == candidate, t.c.state == TrialState.WAITING)
                                      .values(state=TrialState.RUNNING, datetime_start=_trial_clock()))
                if res.rowcount == 1:
                    trial_id = int(candidate)
                    break
            if trial_id is None:
                trial_id, created = self._new_trial(session), True
            self._bind(session, token, trial_id)
            # A new trial has no attribute or heartbeat yet: plain INSERTs. (An UPDATE or DELETE
            # that matches no row of the newest trial id would take a gap lock on MySQL up to the
            # index's end, and two studies' claims inserting there would deadlock.)
            u, h = models.TrialUserAttributeModel.__table__, models.TrialHeartbeatModel.__table__
            for key, value in (user_attrs or {}).items():
                if created:
                    session.execute(insert(u).values(trial_id=trial_id, key=key, value_json=json.dumps(value)))
                else:
                    _upsert_attr(session, models.TrialUserAttributeModel, trial_id, key, value)
            if created or session.execute(select(h.c.trial_id).where(h.c.trial_id == trial_id)).first() is None:
                session.execute(insert(h).values(trial_id=trial_id, heartbeat=func.now()))
            else:
                session.execute(update(h).where(h.c.trial_id == trial_id).values(heartbeat=func.now()))
            return trial_id

    def _new_trial(self, session: Any) -> int:
        """A new RUNNING trial of the study, as Optuna's `_create_new_trial` makes one (numbered
        after the study's trials, its start time in naive UTC), under the study's row lock that
        the caller holds. Optuna counts the study's trials for the number, which grows with the
        study; the number of the study's newest trial plus one is the same count (trials are
        numbered 0, 1, ... in creation order under that lock) read from the end of the study's
        index, whatever the study's size."""
        from optuna.trial import TrialState
        from sqlalchemy import insert, select
        models = rdb_models()

        t = models.TrialModel.__table__
        newest = session.execute(select(t.c.number).where(t.c.study_id == self.study_id)
                                 .order_by(t.c.trial_id.desc()).limit(1)).scalar()
        number = 0 if newest is None else int(newest) + 1
        res = session.execute(insert(t).values(study_id=self.study_id, number=number, state=TrialState.RUNNING,
                                               datetime_start=_trial_clock()))
        return int(res.inserted_primary_key[0])

    def _spent(self, token: str, limit: int) -> bool:
        """The budget is spent and `token` holds no claim, by a plain read (no row lock on MySQL, no
        write lock on SQLite): a task out of claims polls without taking the study's row lock the
        others need to create their trials. Only a shortcut: the counter only moves under locks,
        so a stale read here either refuses a slot a moment too long (the task polls again) or
        goes on to the locking transaction, whose conditional UPDATE decides."""
        from sqlalchemy import select

        b, c = self._budget, self._claims
        with self._reader.connect() as conn:
            claimed = conn.execute(select(b.c.claimed).where(b.c.study_id == self.study_id)).scalar()
            if claimed is None or int(claimed) < limit:
                return False
            return conn.execute(select(c.c.token).where(c.c.token == token)).first() is None

    def foreign_finished(self) -> int:
        """`foreign_finished` of the study's trials, counted by the database: finished trials
        without this runner's claim, less the FAILs that were retried (Optuna's `retry_history`).
        Kept incrementally (`ForeignCount`): each call reads only the trials that may have changed
        since the last one (those in flight, and the new ones), so a claim's cost does not grow
        with the study. Also what moves the window the claim's search for WAITING trials and the
        sweep's scan of RUNNING ones read."""
        models = rdb_models()
        from sqlalchemy import select

        t, a = models.TrialModel.__table__, models.TrialSystemAttributeModel.__table__
        ours = select(a.c.trial_id).where(a.c.trial_id == t.c.trial_id, a.c.key == CLAIM_ATTR).exists()
        counted = self._counted
        with self._reader.connect() as conn:
            rows = conn.execute(select(t.c.trial_id, t.c.number, t.c.state, ours)
                                .where(t.c.study_id == self.study_id, counted.window(t.c.trial_id))
                                .order_by(t.c.trial_id)).all()
            histories = conn.execute(select(a.c.trial_id, a.c.value_json)
                                     .select_from(a.join(t, t.c.trial_id == a.c.trial_id))
                                     .where(t.c.study_id == self.study_id, t.c.trial_id > counted.seen,
                                            a.c.key == "retry_history")).all()
        return counted.advance(rows, histories)

    def take_waiting(self, token: str, waiting_ids: Sequence[int]) -> int | None:
        """Take the first of `waiting_ids` still WAITING (oldest first: a retry, or a trial the
        user enqueued) and bind it to the claim. None: all were taken by others."""
        from optuna.trial import TrialState
        from sqlalchemy import update
        models = rdb_models()

        t = models.TrialModel.__table__
        with self._session() as session, session.begin():
            done = self._bound(session, token)
            if done is not None:
                return done
            for trial_id in waiting_ids:
                res = session.execute(update(t).where(t.c.trial_id == trial_id, t.c.state == TrialState.WAITING)
                                      .values(state=TrialState.RUNNING, datetime_start=_trial_clock()))
                if res.rowcount == 1:
                    self._bind(session, token, trial_id)
                    return int(trial_id)
        return None

    def finish(self, token: str, trial_id: int, state: Any, values: Sequence[float] | None) -> bool:
        """Set a RUNNING trial's final state and values; False if it is no longer RUNNING (a
        sweep took it for dead). True for a retry whose first attempt committed."""
        from optuna.trial import TrialState
        from sqlalchemy import select, update
        models = rdb_models()

        t, c = models.TrialModel.__table__, self._claims
        with self._session() as session, session.begin():
            row = session.execute(select(c.c.finished).where(c.c.token == token)).first()
            if row is not None and row[0] is not None:
                return int(row[0]) == int(state)
            res = session.execute(update(t).where(t.c.trial_id == trial_id, t.c.state == TrialState.RUNNING)
                                  .values(state=state, datetime_complete=_trial_clock()))
            if res.rowcount != 1:
                # Not RUNNING any more: finished by this very call (a concurrent duplicate; a
                # locking read sees past the snapshot) or taken for dead by a sweep.
                row = session.execute(select(c.c.finished).where(c.c.token == token).with_for_update()).first()
                return row is not None and row[0] is not None and int(row[0]) == int(state)
            if values is not None:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
                for objective, value in enumerate(values):
                    stored, kind = models.TrialValueModel.value_to_stored_repr(float(value))
                    existing = models.TrialValueModel.find_by_trial_and_objective(trial, objective, session)
                    if existing is None:
                        session.add(models.TrialValueModel(trial_id=trial_id, objective=objective, value=stored,
                                                           value_type=kind))
                    else:
                        existing.value, existing.value_type = stored, kind
            session.execute(update(c).where(c.c.token == token).values(finished=int(state)))
            return True

    def fail(self, trial_id: int, reason: str, max_retry: int | None, stale_after: float | None = None) -> bool:
        """FAIL a RUNNING trial of this runner with `reason`; with `max_retry` (None: never
        retry) and retries left, enqueue its WAITING copy and give its claim back. One
        transaction; False if the trial was no longer RUNNING (someone else decided).
        `stale_after` (the sweep's): only if its last heartbeat, read again under the lock in
        this transaction, is older than that many seconds by the database's clock (a beat that
        came in after the sweep's scan keeps a live trial alive)."""
        from optuna.trial import FrozenTrial, TrialState
        from sqlalchemy import delete, select, update
        models = rdb_models()

        t, c = models.TrialModel.__table__, self._claims
        with self._session() as session, session.begin():
            self._lock_study(session)  # before any plain read: see create_trial
            self._lock_counter(session)
            if stale_after is not None and not self._still_stale(session, trial_id, stale_after):
                return False
            frozen = frozen_trial_of(self.rdb, models.TrialModel.find_or_raise_by_id(trial_id, session))
            res = session.execute(update(t).where(t.c.trial_id == trial_id, t.c.state == TrialState.RUNNING)
                                  .values(state=TrialState.FAIL, datetime_complete=_trial_clock()))
            if res.rowcount != 1:
                return False
            _upsert_attr(session, models.TrialUserAttributeModel, trial_id, "fail_reason", reason)
            history = list(frozen.system_attrs.get("retry_history", [])) + [frozen.number]
            token_row = session.execute(select(c.c.token).where(c.c.trial_id == trial_id)).first()
            token = None if token_row is None else token_row[0]
            if token is not None:
                session.execute(update(c).where(c.c.token == token).values(finished=int(TrialState.FAIL)))
            if max_retry is None or len(history) > max_retry:
                return True
            user_attrs = {k: v for k, v in frozen.user_attrs.items() if k not in ("host", "fail_reason")}
            system_attrs = {"failed_trial": frozen.system_attrs.get("failed_trial", frozen.number),
                            "retry_history": history}
            template = FrozenTrial(number=-1, state=TrialState.WAITING, value=None, values=None,
                                   datetime_start=None, datetime_complete=None, params=frozen.params,
                                   distributions=frozen.distributions, user_attrs=user_attrs,
                                   system_attrs=system_attrs, intermediate_values={}, trial_id=-1)
            new_trial_in(self.rdb, self.study_id, copy.deepcopy(template), session)
            if token is not None:
                self._count_down(session, session.execute(delete(c).where(c.c.token == token)).rowcount)
            return True

    def _still_stale(self, session: Any, trial_id: int, stale_after: float) -> bool:
        """The trial's heartbeat (or its claim's binding, before a first beat), read with a
        lock (the latest committed value, not a snapshot), is older than `stale_after`."""
        from sqlalchemy import func, select
        models = rdb_models()

        h, c = models.TrialHeartbeatModel.__table__, self._claims
        now = _naive(session.execute(select(func.now())).scalar())
        beat = session.execute(select(h.c.heartbeat).where(h.c.trial_id == trial_id).with_for_update()).scalar()
        if beat is None:
            beat = session.execute(select(c.c.bound_at).where(c.c.trial_id == trial_id)).scalar()
        beat = _naive(beat)
        return now is not None and beat is not None and (now - beat).total_seconds() > stale_after

    def running(self) -> tuple[datetime.datetime | None, list[Running]]:
        """The database's clock now, and this runner's RUNNING trials of the study (each in the
        window of trials that may have changed: a RUNNING trial is not final, see ForeignCount)."""
        from optuna.trial import TrialState
        from sqlalchemy import func, select
        models = rdb_models()

        t, h, c = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__, self._claims
        with self._reader.connect() as conn:
            now = _naive(conn.execute(select(func.now())).scalar())
            rows = conn.execute(
                select(c.c.trial_id, c.c.token, c.c.grace, c.c.bound_at, h.c.heartbeat)
                .select_from(c.join(t, (t.c.trial_id == c.c.trial_id) & (t.c.study_id == c.c.study_id))
                             .outerjoin(h, h.c.trial_id == c.c.trial_id))
                .where(c.c.study_id == self.study_id, self._counted.window(c.c.trial_id),
                       t.c.state == TrialState.RUNNING)
            ).all()
        return now, [Running(int(r[0]), r[1], float(r[2]), _naive(r[3]), _naive(r[4])) for r in rows]

    def sweep(self, max_retry: int) -> list[int]:
        """Fail and retry this runner's dead trials; give back claims that never got a trial.
        Returns the trials failed here."""
        from sqlalchemy import select

        now, running = self.running()
        failed: list[int] = []
        if now is None:
            return failed
        for r in running:
            if r.is_dead(now) and self.fail(
                    r.trial_id, f"its task stopped sending heartbeats for over {r.grace:g} s "
                                "(a lost executor, a killed run or a long storage outage)", max_retry,
                    stale_after=r.grace):
                failed.append(r.trial_id)
        c = self._claims
        with self._reader.connect() as conn:
            rows = conn.execute(select(c.c.token, c.c.grace, c.c.claimed_at)
                                .where(c.c.study_id == self.study_id, c.c.trial_id.is_(None))).all()
        for token, grace, claimed_at in rows:
            claimed_at = _naive(claimed_at)
            if claimed_at is not None and (now - claimed_at).total_seconds() > grace:
                self.release(token)
        return failed

    def beat(self, trial_id: int) -> None:
        """Record the trial's heartbeat (the database's clock, as Optuna's `record_heartbeat`), on
        the heartbeats' own connections: it fails within BEAT_TIMEOUT instead of waiting for a
        storage that does not answer (`staleness_window` counts on it)."""
        from sqlalchemy import func, insert, update
        models = rdb_models()

        h = models.TrialHeartbeatModel.__table__
        with self._beats.begin() as conn:
            res = conn.execute(update(h).where(h.c.trial_id == trial_id).values(heartbeat=func.now()))
            if res.rowcount == 0:
                conn.execute(insert(h).values(trial_id=trial_id, heartbeat=func.now()))

    def database_time(self) -> float:
        """The database's clock now, in seconds since the epoch (`database_time`)."""
        with self._reader.connect() as conn:
            return database_time(conn)

    def dispose(self, close: bool = True) -> None:
        """The engines' pools; `close=False` in a forked child (the parent's connections)."""
        self._engine.dispose(close=close)
        if self._reader is not self._engine:
            self._reader.dispose(close=close)
        self._beats.dispose(close=close)


def database_time(conn: Any) -> float:
    """The database's clock now, in seconds since the epoch, with sub-second precision: the one
    clock that the driver and every executor share (a run's --timeout is a moment by it)."""
    from sqlalchemy import text

    dialect = conn.dialect.name
    if dialect == "sqlite":
        query = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    elif dialect == "postgresql":
        query = "SELECT EXTRACT(EPOCH FROM clock_timestamp())"
    else:  # MySQL, MariaDB
        query = "SELECT UNIX_TIMESTAMP(NOW(6))"
    return float(conn.execute(text(query)).scalar())


def _beat_engine(connect_url: str, engine_kwargs: dict[str, Any]) -> Any:
    """An engine for heartbeats alone: every wait cut to BEAT_TIMEOUT, no ping before a checkout
    (a dead pooled connection fails the beat, and the next one connects anew)."""
    from sqlalchemy import create_engine

    from optuna_spark.outage import quick_connect_args

    kwargs = {k: v for k, v in engine_kwargs.items()
              if k not in ("pool_size", "max_overflow", "pool_pre_ping", "connect_args")}
    connect_args = quick_connect_args(engine_kwargs.get("connect_args", {}), BEAT_TIMEOUT)
    if not connect_url.startswith("sqlite"):
        kwargs.update(pool_size=1, max_overflow=2, pool_timeout=BEAT_TIMEOUT)
    return create_engine(connect_url, connect_args=connect_args, **kwargs)


def _explicit_begin(engine: Any, statement: str) -> None:
    """SQLite: no implicit transactions of the driver; each one begins with `statement`."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)


def _trial_clock() -> datetime.datetime:
    """A trial's start or end time as Optuna 5's RDBStorage stores it: naive UTC (its model reads
    it back as local time), whatever the host's time zone. (Heartbeats, claims and the sweep use
    the database's clock, `func.now()`, on both sides.)"""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _upsert_attr(session: Any, model: Any, trial_id: int, key: str, value: Any) -> None:
    from sqlalchemy import delete, insert

    table = model.__table__
    session.execute(delete(table).where(table.c.trial_id == trial_id, table.c.key == key))
    session.execute(insert(table).values(trial_id=trial_id, key=key, value_json=json.dumps(value)))
