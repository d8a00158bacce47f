"""A task's trial loop (optuna_spark.task.TrialLoop) on a real SQLite storage, several loops at once."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from optuna_spark.config import Job, ObjectiveSpec, StudySettings
from optuna_spark.ledger import Ledger, finished_trials
from optuna_spark.outage import OutageGuard, guarded_storage
from optuna_spark.task import TrialLoop, resolve_outcome

KW = {"connect_args": {"timeout": 60}}


def job(tmp_path: Path, **kw: Any) -> Job:
    settings = {"name": "s", "storage": f"sqlite:///{tmp_path / 's.db'}", "n_trials": 12, "n_jobs": 3,
                "heartbeat_interval": 1, "grace_period": 2, **kw}
    return Job(study=StudySettings(**settings), objective=ObjectiveSpec("q", "m", "f"))


def loop(tmp_path: Path, the_job: Job, objective: Any, directions: list[str] | None = None) -> TrialLoop:
    url = the_job.study.storage
    rdb = optuna.storages.RDBStorage(url, engine_kwargs=KW)
    guard = OutageGuard(lambda: True, 5)
    study = optuna.create_study(study_name="s", storage=guarded_storage(optuna.storages.get_storage(rdb), guard),
                                directions=directions or ["minimize"], load_if_exists=True)
    ledger = Ledger(url, KW, study._study_id, rdb)
    ledger.create()
    ledger.ensure()
    return TrialLoop(the_job, study, ledger, guard, objective, "h")


def test_loops_at_once_end_at_exactly_the_budget(tmp_path: Path) -> None:
    the_job = job(tmp_path)
    loop(tmp_path, the_job, None).ledger.reconcile()
    loops = [loop(tmp_path, the_job, lambda t: t.suggest_float("x", 0, 1)) for _ in range(3)]
    threads = [threading.Thread(target=lp.run) for lp in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trials = optuna.load_study(study_name="s", storage=the_job.study.storage).trials
    assert sum(lp.ran for lp in loops) == 12 == len(trials) == finished_trials(trials)
    assert {t.user_attrs["host"] for t in trials} == {"h"}


def test_the_objectives_failures_are_fail_trials_with_their_message(tmp_path: Path) -> None:
    def objective(trial: optuna.Trial) -> Any:
        n = trial.number
        if n == 0:
            raise ValueError("bad x")
        if n == 1:
            raise SystemExit(3)
        if n == 2:
            return float("nan")
        return None

    lp = loop(tmp_path, job(tmp_path, n_trials=4), objective)
    lp.ledger.reconcile()
    assert lp.run() == 4
    trials = lp.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 4
    assert [t.user_attrs["fail_reason"][:21] for t in trials] == [
        "ValueError: bad x", "SystemExit: 3", "The value nan is not ", "the objective returne"]


def test_a_trial_taken_for_dead_while_it_runs_is_dropped_not_a_crash(tmp_path: Path) -> None:
    """Its heartbeats lapsed (a storage outage longer than the grace period), a sweep failed it
    and enqueued the retry: the evaluation ends quietly and the retry runs next."""
    holder: list[TrialLoop] = []

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            assert holder[0].ledger.fail(trial._trial_id, "stale", 2)
            return trial.suggest_float("y", 0, 1) + x  # writes to a finished trial
        return x

    lp = loop(tmp_path, job(tmp_path, n_trials=2), objective)
    holder.append(lp)
    lp.ledger.reconcile()
    lp.run()
    assert [t.state for t in lp.study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def test_the_objective_alone_is_between_its_two_hooks(tmp_path: Path) -> None:
    """--trial-timeout times from on_objective_start to on_objective_end: the objective's own call,
    not the storage reads and writes of the trial around it (they wait out outages)."""
    events: list[tuple[str, int]] = []

    def objective(trial: optuna.Trial) -> float:
        events.append(("objective", trial._trial_id))
        if trial.number == 1:
            raise ValueError("fails")
        return trial.suggest_float("x", 0, 1)

    lp = loop(tmp_path, job(tmp_path, n_trials=2), objective)
    lp.ledger.reconcile()
    finish = lp.ledger.finish

    def recorded_finish(token: str, trial_id: int, *args: Any) -> Any:
        events.append(("finish", trial_id))
        return finish(token, trial_id, *args)

    lp.ledger.finish = recorded_finish  # type: ignore[method-assign]
    for name in ("on_start", "on_end", "on_objective_start", "on_objective_end"):
        setattr(lp, name, lambda trial_id, name=name: events.append((name, trial_id)))
    assert lp.run() == 2
    ids = [t._trial_id for t in lp.study.get_trials()]
    assert events == [e for i in ids for e in (("on_start", i), ("on_objective_start", i), ("objective", i),
                                               ("on_objective_end", i), ("finish", i), ("on_end", i))]


def test_outcomes_follow_optunas_tell() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    trial = study.ask()
    frozen = study._storage.get_trial(trial._trial_id)
    assert resolve_outcome(study, frozen, (1, 2.5), None, False).values == [1.0, 2.5]
    assert resolve_outcome(study, frozen, 1.0, None, False).state == TrialState.FAIL  # one value for two
    single = optuna.create_study()
    t = single.ask()
    t.report(0.5, 3)
    pruned = resolve_outcome(single, single._storage.get_trial(t._trial_id), None, None, True)
    assert pruned.state == TrialState.PRUNED and pruned.values == [0.5]
    assert math.isinf(resolve_outcome(single, single._storage.get_trial(t._trial_id), math.inf, None, False).values[0])


def test_each_sampler_and_its_seed_per_task(tmp_path: Path) -> None:
    from optuna_spark.task import make_sampler

    expected = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
                "nsga2": "NSGAIISampler", "qmc": "QMCSampler"}
    for name, cls in expected.items():
        sampler = make_sampler(job(tmp_path, sampler=name, sampler_seed=10), 3)
        assert cls in [c.__name__ for c in type(sampler).__mro__]
    first, second = (make_sampler(job(tmp_path, sampler="random", sampler_seed=10), i) for i in (0, 1))
    assert first._rng.rng.random() != second._rng.rng.random()   # seeds 10 and 11
    again = make_sampler(job(tmp_path, sampler="random", sampler_seed=10), 0)
    assert make_sampler(job(tmp_path, sampler="random", sampler_seed=10), 0)._rng.rng.random() == \
        again._rng.rng.random()
    qmc = [make_sampler(job(tmp_path, sampler="qmc"), i)._seed for i in (0, 1)]
    assert qmc[0] == qmc[1]  # one shared sequence


def test_qmc_tasks_take_the_sequences_point_of_their_trials_number(tmp_path: Path) -> None:
    """Optuna's QMC sampler reads then writes its next index (two tasks at once get one point);
    the runner's takes the trial's number, unique in the study: tasks asking at the same time
    take distinct points, and the same number gives the same point in any task."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from optuna_spark.task import make_sampler

    the_job = job(tmp_path, sampler="qmc", sampler_seed=5)
    a, b = make_sampler(the_job, 0), make_sampler(the_job, 1)
    space = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    study = optuna.create_study()

    def point(sampler: Any, number: int) -> tuple[float, float]:
        t = create_trial(state=TrialState.RUNNING, params={}, distributions={})
        t.number = number
        out = sampler.sample_relative(study, t, space)
        return out["x"], out["y"]

    points = [point(a if n % 2 else b, n) for n in range(1, 9)]
    assert len(set(points)) == 8
    assert point(a, 3) == point(b, 3)


def test_the_tasks_cache_sees_every_trial_it_started_end(tmp_path: Path) -> None:
    """The loop puts each trial it starts into Optuna's cached storage (instead of reading the
    whole study): a WAITING trial older than the cache's last finished trial, taken and run here,
    is seen finished by the sampler's next read, with its value and the task's `host`."""
    the_job = job(tmp_path, n_trials=4)
    lp = loop(tmp_path, the_job, lambda t: t.suggest_float("x", 0, 1))
    lp.ledger.reconcile()
    lp.study.enqueue_trial({"x": 0.25})                  # trial 0, WAITING: older than what follows
    for _ in range(2):                                   # trials 1, 2: finished by another client
        lp.study.add_trial(optuna.trial.create_trial(value=1.0, params={}, distributions={}))
    lp.study.get_trials()                                # the cache's last finished trial is now #2
    assert lp.run() == 2                                 # the budget (4) less the two foreign trials
    seen = {t.number: t for t in lp.study.get_trials(deepcopy=False)}
    assert [seen[n].state for n in range(4)] == [TrialState.COMPLETE] * 4
    assert seen[0].params == {"x": 0.25} and seen[0].value == 0.25 and seen[0].user_attrs["host"] == "h"
    assert seen[3].user_attrs["host"] == "h" and 0 <= seen[3].value <= 1


def test_the_sampler_sees_the_study_grow_trial_after_trial(tmp_path: Path) -> None:
    """Optuna's ask/tell reset the study's per-trial view of its trials; the loop does too:
    TPE leaves its random start-up once the study has its n_startup_trials, and sees them all."""
    seen: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(len(trial.study._get_trials(deepcopy=False, use_cache=True)))
        return trial.suggest_float("x", 0, 1)

    lp = loop(tmp_path, job(tmp_path, n_trials=6), objective)
    lp.ledger.reconcile()
    assert lp.run() == 6
    assert seen == [1, 2, 3, 4, 5, 6]  # the trials before it, and itself (RUNNING)


def test_a_task_polls_idle_after_a_refused_claim_and_not_after_a_trial(tmp_path: Path) -> None:
    """After a refused claim (the budget spent for now, a claim of another task still in flight)
    the loop's next claim is `idle` (a plain read first, optuna_spark.ledger.Ledger._spent); after a
    claim that got a trial it is not."""
    lp = loop(tmp_path, job(tmp_path, n_trials=3), lambda t: t.suggest_float("x", 0, 1))
    lp.ledger.reconcile()
    real_claim, real_state = lp.ledger.claim_trial, lp.ledger.state
    idle_flags: list[bool] = []
    states = iter([(1, 1)])  # the first check after a refusal: another task's claim in flight

    def claim_trial(token: str, limit: int, grace: float, attrs: Any = None, idle: bool = False) -> Any:
        idle_flags.append(idle)
        if len(idle_flags) == 2:
            return None  # refused once with budget left (as if the counter were full for a moment)
        return real_claim(token, limit, grace, attrs, idle=idle)

    lp.ledger.claim_trial = claim_trial  # type: ignore[method-assign]
    lp.ledger.state = lambda: next(states, None) or real_state()  # type: ignore[method-assign]
    assert lp.run() == 3
    assert idle_flags == [False, False, True, False, False]


def test_the_deadline_is_the_databases_clock_whatever_this_hosts_clock_says(tmp_path: Path) -> None:
    """--timeout is a moment of the database's clock (the driver reads it once); an executor whose
    own clock is an hour ahead of the database's still runs trials until that moment, and stops
    then (its clock's offset plays no part: the time left is counted on its monotonic clock)."""
    import time

    the_job = job(tmp_path, n_trials=None, timeout=1.5)
    lp = loop(tmp_path, the_job, lambda t: (time.sleep(0.1), t.suggest_float("x", 0, 1))[1])
    lp.ledger.reconcile()
    lp.ledger.database_time = lambda: time.time() - 3600.0  # type: ignore[method-assign] - this host: +1 h
    lp.deadline = lp.ledger.database_time() + 1.5  # as the driver states it
    started = time.monotonic()
    ran = lp.run()
    assert ran >= 5 and time.monotonic() - started < 1.5 + 1.0
