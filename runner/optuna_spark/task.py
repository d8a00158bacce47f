"""Executor side: one Spark task pulls trials from the shared study until the budget is spent.

Runs inside a Spark Python worker. It imports only what a trial needs (Optuna, SQLAlchemy, the
objective) and reports back a small dict; it never raises to Spark for a failing objective.

A trial's life: claim a slot (optuna_spark.ledger), take a WAITING trial or create one bound to the
claim, evaluate the objective while heartbeats are recorded, and `finish` it. Every storage call
waits out outages (optuna_spark.outage); the ledger makes each one safe to retry.
"""

from __future__ import annotations

import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from optuna_spark.config import Job
from optuna_spark.errors import OptunaSparkError
from optuna_spark.ledger import ClaimLost, Ledger, staleness_window
from optuna_spark.optuna_internals import (
    cache_started_trial,
    optimize_loop,
    rdb_backend,
    refresh_trials_view,
    stop_requested,
    study_storage,
    values_problem,
)
from optuna_spark.optuna_internals import study_id as study_id_of
from optuna_spark.outage import OutageGuard, StorageOutage, database_probe, guarded_storage

# How often a task out of claims looks again while trials of this runner still run: it leaves this
# late after the study's last trial ends.
IDLE_POLL_SECONDS = 0.25
UNLIMITED = 2**31 - 1  # claims of a run with only a time budget
STOP_POLL_SECONDS = 0.5  # how often a task of the library's call looks for its stop


@dataclass(frozen=True)
class TaskInputs:
    """What the library (optuna_spark.optimize) ships to each task by value (cloudpickle), in
    place of the names the command line's Job carries: the objective and callbacks as callables
    (closures included), the study's own sampler and pruner, and Optuna's `catch`."""

    objective: Callable[..., Any] | None = None
    callbacks: tuple[Callable[[Any, Any], None], ...] | None = None
    sampler: Any = None
    pruner: Any = None
    # None: every exception of the objective fails its trial and the task goes on (the command
    # line). A tuple: as Optuna's `catch`, another exception fails its trial and ends the task.
    catch: tuple[type[BaseException], ...] | None = None
    gc_after_trial: bool = False  # Optuna's: gc.collect() after each trial


class ObjectiveRaised(OptunaSparkError, RuntimeError):
    """The objective raised an exception that `catch` does not name: its trial was failed and
    stored, and the task stops (Optuna's `study.optimize` re-raises it)."""

    def __init__(self, message: str, child_traceback: str) -> None:
        super().__init__(message)
        self.child_traceback = child_traceback

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:  # pickled across processes whole
        return type(self), (str(self), self.child_traceback)


def make_sampler(job: Job, index: int) -> Any:
    """The study's sampler for task `index`. Each task gets its own seed (--seed + index): with
    one seed, every task would propose the same first points. QMC is the exception: its tasks
    share one scrambled sequence (one seed) and take distinct points of it."""
    import zlib

    import optuna

    settings = job.study
    seed = None if settings.sampler_seed is None else settings.sampler_seed + index
    samplers = optuna.samplers
    if settings.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if settings.sampler == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    if settings.sampler == "gp":
        return samplers.GPSampler(seed=seed)
    if settings.sampler == "nsga2":
        return samplers.NSGAIISampler(seed=seed)
    if settings.sampler == "qmc":
        shared = settings.sampler_seed if settings.sampler_seed is not None else zlib.crc32(settings.name.encode())
        return _trial_number_qmc(shared, samplers.RandomSampler(seed=seed))
    return samplers.TPESampler(seed=seed, constant_liar=True)


def _trial_number_qmc(seed: int, independent: Any) -> Any:
    """Optuna's QMC sampler whose point is the trial's number in the shared sequence. Optuna's own
    takes the next index from a study attribute it reads, then writes: two tasks asking at once
    get the same point. A trial's number is unique in the study (given under the study's row
    lock), so concurrent tasks take distinct points. The first trials, before the search space is
    known, are the independent sampler's: seeded per task, as the other samplers."""
    from optuna.samplers import QMCSampler

    class TrialNumberQMCSampler(QMCSampler):
        _number = 0

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            self._number = trial.number
            return super().sample_relative(study, trial, search_space)

        def _find_sample_id(self, study: Any, search_space: Any) -> int:
            return int(self._number)

    return TrialNumberQMCSampler(seed=seed, scramble=True, independent_sampler=independent)


def make_pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


class Heartbeat(threading.Thread):
    """Records the trial's heartbeat every interval (`beat`: Ledger.beat); beats missed in a
    storage outage that the task waits out are covered by the run's staleness window
    (optuna_spark.ledger.staleness_window)."""

    def __init__(self, beat: Callable[[int], None], trial_id: int, interval: float) -> None:
        super().__init__(name=f"heartbeat-{trial_id}", daemon=True)
        self.beat, self.trial_id, self.interval = beat, trial_id, interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.beat(self.trial_id)
            except Exception:  # noqa: BLE001 - next beat
                pass

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=self.interval + 1)


def new_token() -> str:
    """A claim's token: drawn once per claim, kept across the retries of its storage calls."""
    return uuid.uuid4().hex


@dataclass
class Outcome:
    state: Any
    values: list[float] | None
    reason: str | None = None  # a FAIL's message (the trial's `fail_reason`)


def resolve_outcome(study: Any, frozen: Any, result: Any, error: BaseException | None, pruned: bool) -> Outcome:
    """What `study.tell` would store for the objective's result, with Optuna's own checks (one
    value per direction, finite numbers); a pruned trial keeps its last intermediate value."""
    from optuna.trial import TrialState

    if pruned:
        values = None
        if frozen.last_step is not None and len(study.directions) == 1:
            last = frozen.intermediate_values[frozen.last_step]
            if values_problem(study, [last]) is None:
                values = [float(last)]
        return Outcome(TrialState.PRUNED, values)
    if error is not None:
        return Outcome(TrialState.FAIL, None, f"{type(error).__name__}: {error}"[:2000])
    if result is None:
        return Outcome(TrialState.FAIL, None, "the objective returned None")
    values = list(result) if isinstance(result, (list, tuple)) else [result]
    problem = values_problem(study, values)
    if problem is not None:
        return Outcome(TrialState.FAIL, None, problem[:2000])
    return Outcome(TrialState.COMPLETE, [float(v) for v in values])


@dataclass
class TrialLoop:
    """The claim / take / evaluate / finish loop of one task."""

    job: Job
    study: Any
    ledger: Ledger
    guard: OutageGuard
    objective: Callable[[Any], Any]
    host: str
    # --timeout: the moment after which no trial starts, by the database's clock (seconds since
    # the epoch), the one clock the driver and every executor share; None: no time budget.
    deadline: float | None = None
    share: int | None = None  # --split static: at most this many trials
    callbacks: tuple[Callable[[Any, Any], None], ...] = ()  # the user's, after each trial
    on_start: Callable[[int], None] = lambda trial_id: None
    on_end: Callable[[int], None] = lambda trial_id: None
    # Around the objective's own call only (not the storage reads and writes before and after it,
    # which wait out outages): what --trial-timeout times (optuna_spark.supervisor).
    on_objective_start: Callable[[int], None] = lambda trial_id: None
    on_objective_end: Callable[[int], None] = lambda trial_id: None
    catch: tuple[type[BaseException], ...] | None = None  # TaskInputs.catch
    gc_after_trial: bool = False
    # The library's call: a study system attribute that, once set (study.stop() on the driver or
    # in a task, an objective's exception not in `catch`), stops every task of the call.
    stop_key: str | None = None
    last_stop_check: float = field(default=0.0)
    ran: int = 0
    last_sweep: float = field(default=0.0)
    idle: bool = False  # the last claim was refused (the budget is spent, for now)
    local_deadline: float | None = None  # `deadline` on this process's monotonic clock

    @property
    def settings(self) -> Any:
        return self.job.study

    def run(self) -> int:
        # As in Study.optimize: objectives and callbacks may call study.stop().
        with optimize_loop(self.study):
            return self._run()

    def _stopped(self) -> bool:
        if self.stop_key is None or time.monotonic() - self.last_stop_check < STOP_POLL_SECONDS:
            return False
        self.last_stop_check = time.monotonic()
        storage, study_id = study_storage(self.study), study_id_of(self.study)
        attrs = self.guard.call(lambda: storage.get_study_system_attrs(study_id), "polling")
        return bool(attrs.get(self.stop_key))

    def stop_call(self) -> None:
        """Every task of this call stops claiming (the library's `study.stop()`)."""
        if self.stop_key is not None:
            storage, study_id, key = study_storage(self.study), study_id_of(self.study), self.stop_key
            self.guard.call(lambda: storage.set_study_system_attr(study_id, key, True), "stopping the call")

    def _run(self) -> int:
        while not self._out_of_time() and (self.share is None or self.ran < self.share):
            if self._stopped():
                break
            # As Optuna's ask and tell do: the sampler's per-trial view of the study is read
            # afresh for each trial (without this, TPE would see the study as it was at the task's
            # first trial, forever).
            refresh_trials_view(self.study)
            self._maybe_sweep()
            token = new_token()
            try:
                trial_id = self._claim(token)
            except ClaimLost:
                continue  # given back by a sweep while this task was cut off: claim again
            self.idle = trial_id is None
            if trial_id is None:
                if self._done():
                    break
                time.sleep(IDLE_POLL_SECONDS)
                continue
            self._register(trial_id)
            self.on_start(trial_id)
            try:
                finished = self._evaluate(token, trial_id)
            finally:
                self.on_end(trial_id)
            self.ran += 1
            if self.gc_after_trial:
                import gc

                gc.collect()
            if finished and self.callbacks:
                frozen = self.guard.call(partial(study_storage(self.study).get_trial, trial_id), "reading a trial")
                for callback in self.callbacks:
                    callback(self.study, frozen)
            if stop_requested(self.study):  # the objective or a callback called study.stop()
                self.stop_call()
                break
        return self.ran

    def _out_of_time(self) -> bool:
        if self.deadline is None:
            return False
        if self.local_deadline is None:
            # The time left by the database's clock, read once, then counted down on this
            # process's monotonic clock: this host's own clock, however far off, plays no part.
            now = self.guard.call(self.ledger.database_time, "reading the database's clock")
            self.local_deadline = time.monotonic() + (self.deadline - now)
        return time.monotonic() >= self.local_deadline

    def _maybe_sweep(self) -> None:
        # A task that just came back from an outage lets the others' heartbeats resume first.
        interval = self.settings.heartbeat_interval
        recent_outage = self.guard.last_outage_end is not None and \
            time.monotonic() - self.guard.last_outage_end < 2 * interval
        if time.monotonic() - self.last_sweep >= interval and not recent_outage:
            self.guard.call(lambda: self.ledger.sweep(self.settings.max_retry), "failing stale trials")
            self.last_sweep = time.monotonic()

    def _claim(self, token: str) -> int | None:
        """The trial this task runs next, claimed, created (or a WAITING one taken), bound and
        given its first heartbeat in one transaction; None when the budget is spent. Finished
        trials of other clients count against the budget (counted by the database)."""
        # Read on every claim, whatever the budget: it also moves the ledger's frontier, where
        # the claim's search for WAITING trials starts (a few rows, however large the study).
        foreign = self.guard.call(self.ledger.foreign_finished, "polling")
        if self.settings.n_trials is None:
            limit = UNLIMITED
        elif self.settings.budget_scope == "call":
            # optimize(n_trials=N): N claims more than the study held when this call began.
            limit = int(self.job.extra.get("claim_base", 0)) + self.settings.n_trials
        else:
            limit = self.settings.n_trials - foreign
        attrs = {"host": self.host}
        window = staleness_window(self.settings.grace_period, self.settings.heartbeat_interval,
                                  self.settings.outage_timeout)
        return self.guard.call(lambda: self.ledger.claim_trial(token, limit, window, attrs, idle=self.idle),
                               "claiming a trial")

    def _done(self) -> bool:
        """Out of claims: done unless trials of this runner still run (one may die and give its
        claim back) or claims wait for their trial (in flight, or lost: the sweep returns them)."""
        _, unbound = self.guard.call(self.ledger.state, "reading the budget")
        _, running = self.guard.call(self.ledger.running, "polling")
        return not running and not unbound

    def _register(self, trial_id: int) -> None:
        """Optuna's cached storage learns of the new trial (its writes, the objective's suggests,
        need it in the cache): the trial alone is read, not the study's every trial."""
        storage, study_id = study_storage(self.study), study_id_of(self.study)
        cached = getattr(storage, "_inner", storage)
        if not cache_started_trial(cached, study_id, lambda: self.guard.call(
                lambda: rdb_backend(cached).get_trial(trial_id), "reading a trial")):
            self.guard.call(lambda: storage.get_all_trials(study_id, deepcopy=False), "polling")

    def _evaluate(self, token: str, trial_id: int) -> bool:
        """True: the trial was finished here (not dropped)."""
        import optuna

        study = self.study
        try:
            trial = optuna.Trial(study, trial_id)  # its `host` attribute was set with the claim
            result, error, pruned = None, None, False
            raised: ObjectiveRaised | None = None
            self.on_objective_start(trial_id)
            try:
                result = self.objective(trial)
            except optuna.TrialPruned:
                pruned = True
            except (optuna.exceptions.UpdateFinishedTrialError, StorageOutage):
                raise
            except (Exception, SystemExit) as exc:  # the objective's failure, whatever it is
                error = exc
                raised = None if self.catch is None or isinstance(exc, self.catch) else \
                    ObjectiveRaised(f"trial {trial.number} failed: {type(exc).__name__}: {exc}"[:2000],
                                    traceback.format_exc()[-4000:])
            finally:
                self.on_objective_end(trial_id)
            frozen = study_storage(study).get_trial(trial_id)
            outcome = resolve_outcome(study, frozen, result, error, pruned)
            if outcome.reason is not None:
                trial.set_user_attr("fail_reason", outcome.reason)
            try:
                study.sampler.after_trial(study, frozen, outcome.state, outcome.values)
            except Exception:  # noqa: BLE001 - a sampler's bookkeeping must not lose the result
                pass
            finished = bool(self.guard.call(lambda: self.ledger.finish(token, trial_id, outcome.state,
                                                                       outcome.values), "telling a result"))
            if raised is not None:
                self.stop_call()  # as Optuna's optimize, which stops at an exception it does not catch
                raise raised
            return finished
        except optuna.exceptions.UpdateFinishedTrialError:
            # A sweep took this trial for dead (its heartbeats lapsed for longer than the run's
            # staleness window: an outage longer than --outage-timeout) and enqueued its retry:
            # this evaluation is dropped.
            return False


@dataclass
class TaskParts:
    """What a task's trial loop works with, built in the process that runs the trials."""

    job: Job
    host: str
    guard: OutageGuard
    rdb: Any
    storage: Any
    study: Any
    ledger: Ledger
    objective: Callable[[Any], Any]
    callbacks: tuple[Callable[[Any, Any], None], ...] = ()
    catch: tuple[type[BaseException], ...] | None = None
    gc_after_trial: bool = False

    def close(self) -> None:
        self.ledger.dispose()
        self.rdb.engine.dispose()


def build_parts(job: Job, password: str | None, index: int, data: Any = None,
                inputs: TaskInputs | None = None) -> TaskParts:
    import warnings

    import optuna

    from optuna_spark import objectives
    from optuna_spark.objectives.context import require_gpu
    from optuna_spark.storage import SCHEMA_CHECKED_BY, StorageTarget, open_rdb_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if job.gpu:
        require_gpu()
    settings = job.study
    target = StorageTarget(settings.storage, password)
    inputs = inputs or TaskInputs()
    objective = inputs.objective if inputs.objective is not None else objectives.load(job.objective)
    if data is not None:
        # --data: the task's one copy of the data set; each trial gets its own shallow copy of it.
        objective = _with_data(objective, data)
    callbacks = inputs.callbacks if inputs.callbacks is not None else \
        tuple(objectives.load(spec) for spec in job.callbacks)
    guard = OutageGuard(database_probe(target.connect_url(), target.engine_kwargs()), settings.outage_timeout)
    rdb = open_rdb_storage(target, checked_by=job.extra.get(SCHEMA_CHECKED_BY))
    storage = guarded_storage(optuna.storages.get_storage(rdb), guard)
    study = guard.call(lambda: optuna.load_study(
        study_name=settings.name, storage=storage,
        sampler=_task_sampler(job, index, inputs), pruner=make_pruner(settings.pruner)
        if inputs.pruner is None else inputs.pruner,
    ), "loading the study")
    ledger = Ledger(target.connect_url(), target.engine_kwargs(), study_id_of(study), rdb)
    return TaskParts(job, socket.gethostname(), guard, rdb, storage, study, ledger, objective, callbacks,
                     inputs.catch, inputs.gc_after_trial)


def _task_sampler(job: Job, index: int, inputs: TaskInputs) -> Any:
    """The study's own sampler (the library's, this task's copy of it), its random state drawn
    anew where tasks run side by side, as Optuna's `study.optimize(n_jobs=...)` does for its
    threads; or the command line's sampler by name, seeded per task."""
    if inputs.sampler is None:
        return make_sampler(job, index)
    if job.study.n_jobs > 1:
        inputs.sampler.reseed_rng()
    return inputs.sampler


def _require_sqlite_file(url: str) -> None:
    """A task must find the study's SQLite file where the driver made it: SQLAlchemy would create
    an empty one instead, and the study would not be found."""
    from optuna_spark.storage import sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise RuntimeError(f"the study's SQLite file {path} is not visible on {socket.gethostname()}: the executors "
                           "of a cluster need a storage they all reach (MySQL or PostgreSQL)")


def _with_data(objective: Callable[..., Any], data: Any) -> Callable[[Any], Any]:
    """The objective called with a trial's own (shallow, copy-on-write) copy of the task's data
    set: what one trial does to it, another never sees (optuna_spark.dataset.trial_copy)."""
    from optuna_spark.dataset import copy_on_write, trial_copy

    copy_on_write()

    def with_data(trial: Any) -> Any:
        return objective(trial, trial_copy(data))

    return with_data


def run_task(job_json: str, password: str | None, index: int, deadline: float | None,
             data: Any = None, data_id: int | None = None, inputs: TaskInputs | None = None) -> dict[str, Any]:
    """`data`: the broadcast of the pickled data set (--data), unpickled here once for all the
    task's trials (optuna_spark.dataset.task_data)."""
    started = time.monotonic()
    job = Job.from_json(job_json)
    if job.study.sqlite_must_exist:
        _require_sqlite_file(job.study.storage)
    shares = job.extra.get("shares")
    share = None if shares is None else int(shares[index])
    frame, loaded = None, {}
    if data is not None and data_id is None:  # a DataFrame already in this process (through Spark)
        frame = data
    elif data is not None and data_id is not None:
        from optuna_spark import dataset

        before = dataset.load_count()
        frame = dataset.task_data(data, data_id)
        loaded = {"data_loads": dataset.load_count() - before,
                  "data_load_seconds": round(dataset.last_load_seconds(), 4)}
    if job.study.trial_timeout is not None:
        result = _run_supervised(job, password, index, deadline, share, frame, inputs)
    else:
        result = _run_here(job, password, index, deadline, share, frame, inputs)
    return {"index": index, "host": socket.gethostname(), "error": None, **result, **loaded,
            "seconds": round(time.monotonic() - started, 3)}


def _run_here(job: Job, password: str | None, index: int, deadline: float | None,
              share: int | None, data: Any = None, inputs: TaskInputs | None = None) -> dict[str, Any]:
    """The trials in this process, heartbeats from a thread."""
    parts = build_parts(job, password, index, data, inputs)
    beats: dict[int, Heartbeat] = {}

    def on_start(trial_id: int) -> None:  # the first heartbeat was recorded with the claim
        beats[trial_id] = Heartbeat(parts.ledger.beat, trial_id, job.study.heartbeat_interval)
        beats[trial_id].start()

    def on_end(trial_id: int) -> None:
        beat = beats.pop(trial_id, None)
        if beat is not None:
            beat.stop()

    loop = TrialLoop(job, parts.study, parts.ledger, parts.guard, parts.objective, parts.host, deadline,
                     share=share, callbacks=parts.callbacks, on_start=on_start, on_end=on_end, catch=parts.catch,
                     gc_after_trial=parts.gc_after_trial, stop_key=job.extra.get("stop_key"))
    try:
        return {"trials": loop.run()}
    finally:
        parts.close()


def _run_supervised(job: Job, password: str | None, index: int, deadline: float | None,
                    share: int | None, data: Any = None, inputs: TaskInputs | None = None) -> dict[str, Any]:
    """The trials in a child process that a trial past --trial-timeout replaces (optuna_spark.supervisor);
    heartbeats from here."""
    from optuna_spark.storage import SCHEMA_CHECKED_BY, StorageTarget, open_rdb_storage
    from optuna_spark.supervisor import child_done, supervise

    settings = job.study
    assert settings.trial_timeout is not None
    target = StorageTarget(settings.storage, password)
    guard = OutageGuard(database_probe(target.connect_url(), target.engine_kwargs()), settings.outage_timeout)
    rdb = open_rdb_storage(target, checked_by=job.extra.get(SCHEMA_CHECKED_BY))
    study_id = guard.call(lambda: rdb.get_study_id_from_name(settings.name), "loading the study")
    ledger = Ledger(target.connect_url(), target.engine_kwargs(), study_id, rdb)

    def child_main(conn: Any, share_left: int | None) -> None:
        # Connections pooled in this (the parent's) memory belong to the parent: never use or close them.
        rdb.engine.dispose(close=False)
        ledger.dispose(close=False)
        try:
            parts = build_parts(job, password, index, data, inputs)  # forked: the parent's copy of the data

            def on_start(trial_id: int) -> None:  # the first heartbeat was recorded with the claim
                conn.send(("start", trial_id))

            # The supervisor times only the objective ("run" to "ran"): a storage outage waited out
            # before or after it (the trial's set-up, its result's writes) is not a trial timeout.
            loop = TrialLoop(job, parts.study, parts.ledger, parts.guard, parts.objective, parts.host, deadline,
                             share=share_left, callbacks=parts.callbacks, on_start=on_start, catch=parts.catch,
                             gc_after_trial=parts.gc_after_trial, stop_key=job.extra.get("stop_key"),
                             on_end=lambda trial_id: conn.send(("end", trial_id)),
                             on_objective_start=lambda trial_id: conn.send(("run", trial_id)),
                             on_objective_end=lambda trial_id: conn.send(("ran", trial_id)))
            loop.run()
            parts.close()
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the supervisor
            child_done(conn, exc)
            return
        child_done(conn, None)

    def fail_trial(trial_id: int, reason: str) -> None:
        # A FAIL that counts (its claim kept): run again, it would hang or crash again.
        guard.call(lambda: ledger.fail(trial_id, reason, max_retry=None), "failing a trial")

    try:
        seen = supervise(child_main, trial_timeout=settings.trial_timeout,
                         heartbeat_interval=settings.heartbeat_interval, record_heartbeat=ledger.beat,
                         fail_trial=fail_trial, share=share)
    finally:
        ledger.dispose()
        rdb.engine.dispose()
    if seen.error is not None:
        prefix = f"{ObjectiveRaised.__name__}: "
        if seen.error.startswith(prefix):  # the objective's own exception, not `catch`-ed
            raise ObjectiveRaised(seen.error[len(prefix):], seen.traceback or "")
        raise TaskFailed(seen.error, seen.traceback or "")
    return {"trials": seen.started, "timed_out": len(seen.timed_out), "died": len(seen.died)}


class TaskFailed(OptunaSparkError, RuntimeError):
    """The trial process reported an error (its traceback is the child's)."""

    def __init__(self, message: str, child_traceback: str) -> None:
        super().__init__(message)
        self.child_traceback = child_traceback

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:  # pickled across processes whole
        return type(self), (str(self), self.child_traceback)


def safe_task(index: int, job_json: str, password: str | None, deadline: float | None, data: Any = None,
              data_id: int | None = None, inputs: TaskInputs | None = None) -> dict[str, Any]:
    """`run_task`, whose every failure comes back as the result's `error` and `traceback` (the
    password taken out) instead of an exception that Spark or joblibspark would mangle."""
    try:
        return run_task(job_json, password, index, deadline, data, data_id, inputs)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the driver
        return error_result(index, exc, password)


def error_result(index: int, exc: BaseException, password: str | None) -> dict[str, Any]:
    ours = isinstance(exc, (TaskFailed, ObjectiveRaised))
    message = str(exc) if ours else f"{type(exc).__name__}: {exc}"
    tb = getattr(exc, "child_traceback", None) or traceback.format_exc()
    if password:
        message, tb = message.replace(password, "***"), tb.replace(password, "***")
    return {"index": index, "host": socket.gethostname(), "trials": 0,
            "error": message.strip().splitlines()[0][:2000] if message.strip() else type(exc).__name__,
            "traceback": tb[-4000:], "seconds": None, "objective_raised": isinstance(exc, ObjectiveRaised)}
