"""Executor side: one Spark task pulls trials from the shared study until the budget is spent.

Runs inside a Spark Python worker. It imports only what a trial needs (Optuna, SQLAlchemy, the
objective) and reports back a small dict; it never raises to Spark for a failing objective.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from runner.config import Job

IDLE_POLL_SECONDS = 1.0


class ReleasingRetryCallback:
    """Optuna's stale-trial retry, plus: give the dead trial's budget claim back.

    The copy is enqueued first and the claim released after, so that at no instant do the
    trials hold more claims than the counter has given out (see runner.budget).
    """

    def __init__(self, max_retry: int, budget: Any) -> None:
        from optuna.storages import RetryFailedTrialCallback

        self._retry = RetryFailedTrialCallback(max_retry=max_retry)
        self._max_retry = max_retry
        self.budget = budget

    def __call__(self, study: Any, trial: Any) -> None:
        history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
        will_retry = self._max_retry >= len(history)
        self._retry(study, trial)
        if will_retry and self.budget is not None:
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
    """Store the executor's host on each trial and the message of a failing objective."""
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


def run_task(job_json: str, password: str | None, index: int, deadline: float | None) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from runner import objectives
    from runner.budget import Budget
    from runner.objectives.xgboost_wine import REQUIRE_GPU_ENV
    from runner.storage import StorageTarget, open_rdb_storage

    started = time.monotonic()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    job = Job.from_json(job_json)
    if job.gpu:
        os.environ[REQUIRE_GPU_ENV] = "1"
    host = socket.gethostname()
    settings = job.study
    target = StorageTarget(settings.storage, password)

    fn = objectives.load(job.objective)
    callback = ReleasingRetryCallback(settings.max_retry, None)
    storage = open_rdb_storage(target, settings.heartbeat_interval, settings.grace_period, callback)
    study = optuna.load_study(
        study_name=settings.name, storage=storage,
        sampler=make_sampler(job, index), pruner=make_pruner(settings.pruner),
    )
    objective = wrap_objective(fn, host)
    run = 0

    def out_of_time() -> bool:
        return deadline is not None and time.time() >= deadline

    if settings.split == "static":
        from runner.config import static_shares

        assert settings.n_trials is not None
        share = static_shares(settings.n_trials, settings.n_jobs)[index]
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        counter: list[int] = []
        study.optimize(objective, n_trials=share, timeout=timeout, catch=(Exception,), gc_after_trial=False,
                       callbacks=[lambda _s, _t: counter.append(1)])
        run = len(counter)
        return {"index": index, "host": host, "trials": run, "error": None,
                "seconds": round(time.monotonic() - started, 3)}

    budget = None
    if settings.n_trials is not None:
        budget = Budget(target.connect_url(), target.engine_kwargs(), study._study_id)
        callback.budget = budget
    try:
        while not out_of_time():
            if budget is not None and not budget.claim(settings.n_trials):  # type: ignore[arg-type]
                # Out of claims. Trials still running elsewhere may go stale (a dead executor)
                # and give their claim back: wait for them rather than leave early.
                active = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
                if not active:
                    break
                time.sleep(IDLE_POLL_SECONDS)
                optuna.storages.fail_stale_trials(study)
                continue
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
            run += 1
    finally:
        if budget is not None:
            budget.dispose()
    return {"index": index, "host": host, "trials": run, "error": None,
            "seconds": round(time.monotonic() - started, 3)}
