"""Executor side: one Spark task pulls trials from the shared study until the budget is spent.

Runs inside a Spark Python worker. It imports only what a trial needs (Optuna, SQLAlchemy, the
objective) and reports back a small dict; it never raises to Spark for a failing objective.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from runner.config import Job
from runner.outage import OutageGuard, StorageOutage, database_probe, guarded_storage
from runner.trials import fail_dead_trials, take_waiting_trial

# How often a task out of claims looks again while trials still run elsewhere: it leaves this late
# after the study's last trial ends (a cheap query: only the RUNNING trials).
IDLE_POLL_SECONDS = 0.25


class ReleasingRetryCallback:
    """Optuna's stale-trial retry, plus: give the dead trial's budget claim back.

    The dead trial, now a retried FAIL, and its WAITING copy hold no claim (runner.budget); the
    task that takes the copy claims one. The copy is enqueued before the claim is released, so a
    task that wins that claim finds the copy to run.
    """

    def __init__(self, max_retry: int, budget: Any, guard: Any = None) -> None:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self._max_retry = max_retry
        self.budget = budget
        self.guard = guard

    def __call__(self, study: Any, trial: Any) -> None:
        history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
        will_retry = self._max_retry >= len(history)
        self._retry(study, trial)
        if will_retry and self.budget is not None:
            # Retried on its own: the trial is FAIL by now, a second pass would not come back here.
            if self.guard is not None:
                self.guard.call(self.budget.release, "giving a claim back")
            else:
                self.budget.release()


def make_sampler(job: Job, index: int) -> Any:
    import optuna

    seed = job.study.sampler_seed
    # Each task gets its own seed: with one seed, every task would propose the same first points.
    return optuna.samplers.TPESampler(seed=None if seed is None else seed + index, constant_liar=True)


def make_pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def wrap_objective(fn: Any, host: str) -> Any:
    """The static split (the seed's way, through study.optimize): store host and failure message."""
    import optuna

    def objective(trial: optuna.Trial) -> Any:
        trial.set_user_attr("host", host)
        try:
            return fn(trial)
        except optuna.TrialPruned:
            raise
        except (Exception, SystemExit) as exc:
            message = f"{type(exc).__name__}: {exc}"[:2000]
            trial.set_user_attr("fail_reason", message)
            if isinstance(exc, SystemExit):  # would escape Optuna's catch and strand the trial
                raise RuntimeError(message) from exc
            raise

    return objective


class Heartbeat(threading.Thread):
    """Records the trial's heartbeat every interval; a missed beat during an outage is harmless
    as long as the outage is shorter than the grace period."""

    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        super().__init__(name=f"heartbeat-{trial_id}", daemon=True)
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - next beat
                pass

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=self.interval + 1)


def run_one_trial(study: Any, objective: Any, host: str, heartbeat_interval: float, guard: OutageGuard) -> bool:
    """Ask, evaluate and tell one trial. The study's storage waits out outages (runner.outage),
    so an outage under the objective only pauses it. False: no trial was created (the storage
    failed at creation); the caller gives its claim back."""
    import optuna

    storage, study_id = study._storage, study._study_id
    try:
        trial_id = take_waiting_trial(storage, study_id)
        if trial_id is None:
            trial_id = storage.create_new_trial(study_id)
    except guard.errors as exc:
        guard.wait("creating a trial", exc)
        return False
    guard.call(lambda: storage.record_heartbeat(trial_id), "first heartbeat")
    beat = Heartbeat(storage, trial_id, heartbeat_interval)
    beat.start()
    try:
        _evaluate(study, trial_id, objective, host, guard)
    except optuna.exceptions.UpdateFinishedTrialError:
        # Another task took this trial for dead (its heartbeats lapsed in a storage outage longer
        # than the grace period) and enqueued a retry with the claim: drop this evaluation.
        pass
    finally:
        beat.stop()
    return True


def _evaluate(study: Any, trial_id: int, objective: Any, host: str, guard: OutageGuard) -> None:
    """Evaluate the trial and tell its result. Whatever the objective raises fails the trial,
    a database error of its own included; only the storage's own give-up (StorageOutage, after
    the outage timeout) and a trial finished elsewhere end the evaluation otherwise."""
    import optuna
    from optuna.trial import TrialState

    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr("host", host)
    value, state = None, TrialState.COMPLETE
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except (optuna.exceptions.UpdateFinishedTrialError, StorageOutage):
        raise
    except (Exception, SystemExit) as exc:
        message = f"{type(exc).__name__}: {exc}"[:2000]
        trial.set_user_attr("fail_reason", message)
        state = TrialState.FAIL
    if state == TrialState.COMPLETE:
        study.tell(trial, value, skip_if_finished=True)
    else:
        study.tell(trial, state=state, skip_if_finished=True)


def run_task(job_json: str, password: str | None, index: int, deadline: float | None) -> dict[str, Any]:
    import warnings

    import optuna
    from optuna.trial import TrialState

    from runner import objectives
    from runner.budget import Budget, LeakWatch, counted_trials
    from runner.objectives.xgboost_wine import REQUIRE_GPU_ENV
    from runner.storage import StorageTarget, open_rdb_storage

    started = time.monotonic()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    job = Job.from_json(job_json)
    if job.gpu:
        os.environ[REQUIRE_GPU_ENV] = "1"
    host = socket.gethostname()
    settings = job.study
    target = StorageTarget(settings.storage, password)

    fn = objectives.load(job.objective)
    objective = fn
    guard = OutageGuard(database_probe(target.connect_url(), target.engine_kwargs()), settings.outage_timeout)
    callback = ReleasingRetryCallback(settings.max_retry, None, guard)
    rdb = open_rdb_storage(target, settings.heartbeat_interval, settings.grace_period, callback)
    storage = guarded_storage(optuna.storages.get_storage(rdb), guard)
    study = guard.call(lambda: optuna.load_study(
        study_name=settings.name, storage=storage,
        sampler=make_sampler(job, index), pruner=make_pruner(settings.pruner),
    ), "loading the study")
    run = 0

    def out_of_time() -> bool:
        return deadline is not None and time.time() >= deadline

    if settings.split == "static":
        from runner.config import static_shares

        assert settings.n_trials is not None
        share = static_shares(settings.n_trials, settings.n_jobs)[index]
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        counter: list[int] = []
        study.optimize(wrap_objective(fn, host), n_trials=share, timeout=timeout, catch=(Exception,), gc_after_trial=False,
                       callbacks=[lambda _s, _t: counter.append(1)])
        run = len(counter)
        return {"index": index, "host": host, "trials": run, "error": None,
                "seconds": round(time.monotonic() - started, 3)}

    budget = None
    if settings.n_trials is not None:
        budget = Budget(target.connect_url(), target.engine_kwargs(), study._study_id)
        callback.budget = budget
    last_stale_check = 0.0
    watch = LeakWatch(patience=float(settings.grace_period))

    def check_stale() -> None:
        # Stale trials (their task died) are failed and re-enqueued, their claim handed back.
        nonlocal last_stale_check
        if time.monotonic() - last_stale_check >= settings.heartbeat_interval:
            guard.call(lambda: fail_dead_trials(study, settings.grace_period, callback), "failing stale trials")
            last_stale_check = time.monotonic()

    try:
        while not out_of_time():
            check_stale()
            if budget is not None:
                claimed = guard.call(lambda: budget.claim(settings.n_trials), "claiming a trial")
                if not claimed:
                    # Out of claims. Trials still running elsewhere may go stale (a dead executor)
                    # and give their claim back: wait for them rather than leave early. WAITING
                    # trials hold no claim (runner.budget): left over, they wait for a next run.
                    running = guard.call(lambda: study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), "polling")
                    if running:
                        watch.reset()
                    else:
                        # Nothing running: done, unless claims were lost by a task that died
                        # between claiming and creating its trial (runner.budget.LeakWatch).
                        seen, changes = guard.call(budget.state, "reading the budget")
                        trials = guard.call(lambda: study.get_trials(deepcopy=False), "polling")
                        counted = counted_trials(trials)
                        verdict = watch.observe(seen, changes, counted, time.monotonic())
                        if verdict == "done":
                            break
                        if verdict == "repair":
                            guard.call(lambda: budget.set_if_unchanged(changes, counted), "repairing the budget")
                            continue
                    time.sleep(IDLE_POLL_SECONDS)
                    continue
            if run_one_trial(study, objective, host, settings.heartbeat_interval, guard):
                run += 1
            elif budget is not None:
                guard.call(budget.release, "giving a claim back")
    finally:
        if budget is not None:
            budget.dispose()
    return {"index": index, "host": host, "trials": run, "error": None,
            "seconds": round(time.monotonic() - started, 3)}
