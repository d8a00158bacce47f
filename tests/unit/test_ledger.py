"""The exact budget and the runner's trial state changes (optuna_spark.ledger) on a real SQLite file,
with many threads each holding its own connections, as concurrent Spark tasks do. A retried call
stands for a commit whose acknowledgement was lost: the same call, the same token, again."""

from __future__ import annotations

import datetime
import math
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_spark.ledger import CLAIM_ATTR, ClaimLost, Ledger, Running, finished_trials, foreign_finished

THREADS = 8
KW = {"connect_args": {"timeout": 60}}


def setup(tmp_path: Path) -> tuple[optuna.Study, Ledger]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = optuna.storages.RDBStorage(url, engine_kwargs=KW)
    study = optuna.create_study(study_name="s", storage=storage)
    ledger = Ledger(url, KW, study._study_id, storage)
    ledger.create()
    ledger.reconcile()
    return study, ledger


def another(tmp_path: Path, study: optuna.Study) -> Ledger:
    url = f"sqlite:///{tmp_path / 's.db'}"
    return Ledger(url, KW, study._study_id, optuna.storages.RDBStorage(url, engine_kwargs=KW))


def in_threads(fn: Any, n: int = THREADS) -> list[Any]:
    start = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        start.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_claims_never_exceed_the_limit_under_concurrency(tmp_path: Path) -> None:
    study, ledger = setup(tmp_path)
    ledgers = [another(tmp_path, study) for _ in range(THREADS)]
    wins = in_threads(lambda i: sum(ledgers[i].claim(f"{i}-{k}", 50, 30) for k in range(20)))
    assert sum(wins) == 50
    assert ledger.claimed() == 50 and ledger.state() == (50, 50)


def test_a_retried_claim_counts_once(tmp_path: Path) -> None:
    _, ledger = setup(tmp_path)
    assert ledger.claim("a", 1, 30)
    assert ledger.claim("a", 1, 30)          # the same call again: it did commit
    assert not ledger.claim("b", 1, 30)
    assert ledger.claimed() == 1


def test_a_retried_release_gives_back_once(tmp_path: Path) -> None:
    _, ledger = setup(tmp_path)
    assert ledger.claim("a", 5, 30) and ledger.claim("b", 5, 30)
    ledger.release("a")
    ledger.release("a")
    assert ledger.claimed() == 1 and ledger.state() == (1, 1)


def test_a_trial_is_created_bound_to_its_claim_and_a_retry_finds_it(tmp_path: Path) -> None:
    study, ledger = setup(tmp_path)
    assert ledger.claim("a", 5, 30)
    trial_id = ledger.create_trial("a")
    assert ledger.create_trial("a") == trial_id   # retried: no second trial
    (t,) = study.get_trials(deepcopy=False)
    assert t._trial_id == trial_id and t.state == TrialState.RUNNING and t.system_attrs[CLAIM_ATTR] == "a"
    assert ledger.state() == (1, 0)
    ledger.release("a")                            # a bound claim is not given back this way
    assert ledger.claimed() == 1


def test_a_claim_given_back_meanwhile_rolls_the_creation_back(tmp_path: Path) -> None:
    study, ledger = setup(tmp_path)
    assert ledger.claim("a", 5, 30)
    ledger.release("a")  # what a sweep does to a claim that waited too long for its trial
    with pytest.raises(ClaimLost):
        ledger.create_trial("a")
    assert study.get_trials() == [] and ledger.claimed() == 0


def test_each_waiting_trial_is_taken_by_exactly_one_task(tmp_path: Path) -> None:
    study, ledger = setup(tmp_path)
    for i in range(THREADS // 2):
        study.enqueue_trial({"x": float(i)})
    ids = [t._trial_id for t in study.get_trials(deepcopy=False)]
    ledgers = [another(tmp_path, study) for _ in range(THREADS)]

    def take(i: int) -> int | None:
        assert ledgers[i].claim(f"t{i}", 100, 30)
        return ledgers[i].take_waiting(f"t{i}", ids)

    taken = [t for t in in_threads(take) if t is not None]
    assert sorted(taken) == sorted(ids)  # each once, none left behind
    assert states(study) == [TrialState.RUNNING] * (THREADS // 2)
    owner = next(i for i in range(THREADS) if ledgers[i].take_waiting(f"t{i}", ids) is not None)
    assert ledgers[owner].take_waiting(f"t{owner}", ids) in ids  # retried: the same trial


def test_finish_and_a_retried_finish(tmp_path: Path) -> None:
    study, ledger = setup(tmp_path)
    assert ledger.claim("a", 5, 30)
    trial_id = ledger.create_trial("a")
    assert ledger.finish("a", trial_id, TrialState.COMPLETE, [float("inf")])
    assert ledger.finish("a", trial_id, TrialState.COMPLETE, [float("inf")])  # retried
    (t,) = study.get_trials()
    assert t.state == TrialState.COMPLETE and t.value == float("inf") and ledger.claimed() == 1


@pytest.mark.parametrize("max_retry, copies", [(2, 1), (0, 0), (None, 0)])
def test_fail_enqueues_a_retry_and_gives_the_claim_back_in_one_step(tmp_path: Path, max_retry, copies) -> None:
    study, ledger = setup(tmp_path)
    assert ledger.claim("a", 5, 30)
    trial_id = ledger.create_trial("a")
    optuna.Trial(study, trial_id).suggest_float("x", 0, 1)
    study._storage.set_trial_user_attr(trial_id, "host", "w1")
    assert ledger.fail(trial_id, "its task died", max_retry)
    assert not ledger.fail(trial_id, "its task died", max_retry)  # retried, or a second sweeper
    assert not ledger.finish("a", trial_id, TrialState.COMPLETE, [1.0])  # the late tell loses
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_reason"] == "its task died"
    assert [t.state for t in trials[1:]] == [TrialState.WAITING] * copies
    if copies:
        copy = trials[1]
        assert copy.params == trials[0].params and copy.user_attrs == {}
        assert copy.system_attrs == {"failed_trial": 0, "retry_history": [0]}
        assert ledger.claimed() == 0 and finished_trials(trials) == 0
    else:
        assert ledger.claimed() == 1 and finished_trials(trials) == 1


def test_a_tell_and_a_sweep_racing_on_sqlite_have_one_winner(tmp_path: Path) -> None:
    """Optuna's read-then-write tell on SQLite could overwrite the sweep's FAIL with COMPLETE
    and the trial would count twice (once itself, once its retry)."""
    study, ledger = setup(tmp_path)
    ledgers = [another(tmp_path, study) for _ in range(THREADS)]
    for round_ in range(10):
        token = f"r{round_}"
        assert ledger.claim(token, 1000, 30)
        trial_id = ledger.create_trial(token)

        def act(i: int) -> bool:
            if i % 2:
                return ledgers[i].finish(token, trial_id, TrialState.COMPLETE, [1.0])
            return ledgers[i].fail(trial_id, "stale", 2)

        won = in_threads(act)
        finishes, fails = sum(won[1::2]), sum(won[0::2])
        assert (finishes, fails) in ((THREADS // 2, 0), (0, 1)), won  # finish retries all agree
        state = study._storage.get_trial(trial_id).state
        assert state == (TrialState.COMPLETE if finishes else TrialState.FAIL)
    trials = study.get_trials()
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert finished_trials(trials) + len(waiting) == 10 == ledger.claimed() + len(waiting)


def test_the_sweep_fails_only_dead_trials_of_this_runner(tmp_path: Path) -> None:
    study, ledger = setup(tmp_path)
    storage = study._storage
    for token, grace in (("dead", 1), ("silent", 1), ("patient", 60), ("alive", 1), ("unbound", 1)):
        assert ledger.claim(token, 100, grace)
    dead, silent, patient, alive = (ledger.create_trial(t) for t in ("dead", "silent", "patient", "alive"))
    storage.record_heartbeat(dead)
    storage.record_heartbeat(patient)
    asked = study.ask()                           # a plain Optuna client: no heartbeat, no claim
    time.sleep(2.2)                               # SQLite's CURRENT_TIMESTAMP has whole seconds
    storage.record_heartbeat(alive)
    assert sorted(ledger.sweep(max_retry=2)) == sorted([dead, silent])
    now = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert now[dead] == now[silent] == TrialState.FAIL
    assert now[patient] == now[alive] == now[asked._trial_id] == TrialState.RUNNING
    assert ledger.state() == (2, 0)              # patient, alive; the dead two and the unbound given back
    assert list(now.values()).count(TrialState.WAITING) == 2


def test_death_is_judged_on_the_databases_clock_and_the_trials_own_grace() -> None:
    t0 = datetime.datetime(2026, 1, 1, 12, 0, 0)
    beat = Running(1, "t", 30, bound_at=t0, heartbeat=t0 + datetime.timedelta(seconds=100))
    assert not beat.is_dead(t0 + datetime.timedelta(seconds=130))
    assert beat.is_dead(t0 + datetime.timedelta(seconds=131))
    never = Running(2, "t", 30, bound_at=t0, heartbeat=None)
    assert not never.is_dead(t0 + datetime.timedelta(seconds=30)) and never.is_dead(t0 + datetime.timedelta(seconds=31))


def test_reconcile_gives_back_claims_without_trials_and_recounts(tmp_path: Path) -> None:
    _, ledger = setup(tmp_path)
    for token in ("a", "b", "c"):
        assert ledger.claim(token, 10, 30)
    ledger.create_trial("a")
    ledger.reconcile()
    assert ledger.state() == (1, 0) and ledger.claimed() == 1


def test_a_study_deleted_and_created_again_never_counts_the_old_studys_claims(tmp_path: Path) -> None:
    """SQLite gives the new study the old one's id: its claim rows and counter must not count."""
    from optuna_spark.config import Job, ObjectiveSpec, StudySettings
    from optuna_spark.engine import prepare_study
    from optuna_spark.storage import StorageTarget

    url = f"sqlite:///{tmp_path / 's.db'}"
    target = StorageTarget(url)
    job = Job(StudySettings(name="again", storage=url, n_trials=3, n_jobs=1), ObjectiveSpec("q", "m", "f"))
    storage = optuna.storages.RDBStorage(url, engine_kwargs=KW)
    first = prepare_study(storage, target, job)
    ledger = Ledger(url, KW, first, storage)
    for token in ("a", "b", "c"):
        trial_id = ledger.claim_trial(token, 3, 30, {"host": "h"})
        assert trial_id is not None
        assert ledger.finish(token, trial_id, TrialState.COMPLETE, [1.0])
    assert ledger.claim_trial("d", 3, 30, {"host": "h"}) is None  # spent
    optuna.delete_study(study_name="again", storage=storage)
    second = prepare_study(storage, target, job)
    assert second == first  # the id is reused: the case this guards
    assert ledger.claimed() == 0 and ledger.state() == (0, 0)
    assert ledger.claim_trial("e", 3, 30, {"host": "h"}) is not None
    ledger.dispose()


def test_a_sweep_never_fails_a_trial_whose_heartbeat_came_back_after_its_scan(tmp_path: Path) -> None:
    """The sweep's scan saw the trial stale (its task cut off by an outage); the task's beat came
    in before the sweep's fail: the fail re-reads the heartbeat in its own transaction."""
    study, ledger = setup(tmp_path)
    trial_id = ledger.claim_trial("live", 5, 30, {"host": "h"})
    assert trial_id is not None
    long_ago = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=600)
    scanned_now, running = ledger.running()
    stale_view = [Running(r.trial_id, r.token, r.grace, long_ago, long_ago) for r in running]
    ledger.running = lambda: (scanned_now, stale_view)  # type: ignore[method-assign] - the scan, frozen
    assert stale_view[0].is_dead(scanned_now)
    study._storage.record_heartbeat(trial_id)  # the beat that arrives between scan and fail
    assert ledger.sweep(max_retry=2) == []
    assert study._storage.get_trial(trial_id).state == TrialState.RUNNING
    # A trial whose heartbeat really is old is still failed by the sweep.
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE trial_heartbeats SET heartbeat = :t WHERE trial_id = :i"),
                     {"t": long_ago, "i": trial_id})
    engine.dispose()
    assert ledger.sweep(max_retry=2) == [trial_id]


def test_counts() -> None:
    def trial(number: int, state: TrialState, **system_attrs: Any):
        t = create_trial(state=state, params={"x": 1.0}, distributions={"x": FloatDistribution(0, 2)},
                         value=1.0 if state == TrialState.COMPLETE else None, system_attrs=system_attrs)
        t.number = number
        return t

    trials = [
        trial(0, TrialState.COMPLETE, optuna_spark_claim="a"),
        trial(1, TrialState.FAIL, optuna_spark_claim="b"),           # stale, retried by #3
        trial(2, TrialState.FAIL),                                    # a plain client's failure
        trial(3, TrialState.FAIL, failed_trial=1, retry_history=[1]),  # stale again: retried by #4
        trial(4, TrialState.RUNNING, failed_trial=1, retry_history=[1, 3], optuna_spark_claim="c"),
        trial(5, TrialState.WAITING),
        trial(6, TrialState.RUNNING),                                 # optuna ask: counts once finished
    ]
    assert finished_trials(trials) == 2     # 0 and 2
    assert foreign_finished(trials) == 1    # 2


def test_the_database_counts_foreign_trials_as_the_specification_does(tmp_path: Path) -> None:
    """Ledger.foreign_finished (SQL, what each claim reads) against foreign_finished (Python over
    the trials): plain clients' trials in every state, retried FAILs of both, the runner's own."""
    study, ledger = setup(tmp_path)
    assert ledger.foreign_finished() == 0
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL):
        study.add_trial(create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None,
                                     params={}, distributions={}))
    study.enqueue_trial({})                                      # WAITING: not counted
    study.ask()                                                  # RUNNING (optuna ask): not yet
    assert ledger.foreign_finished() == foreign_finished(study.get_trials()) == 4
    # A plain client's FAIL #2 retried by its own RetryFailedTrialCallback: no longer counted.
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={},
                                 system_attrs={"failed_trial": 2, "retry_history": [2]}))
    assert ledger.foreign_finished() == foreign_finished(study.get_trials()) == 4
    # The runner's own trials never count as foreign, finished, failed or retried.
    assert ledger.claim_trial("a", 100, 30) is not None
    assert ledger.claim_trial("b", 100, 30) is not None
    trial_b = ledger.claim_trial("b", 100, 30)
    ledger.finish("a", ledger.claim_trial("a", 100, 30), TrialState.COMPLETE, [1.0])  # type: ignore[arg-type]
    assert ledger.fail(trial_b, "lost", max_retry=2)             # ours: FAIL + a WAITING retry
    assert ledger.foreign_finished() == foreign_finished(study.get_trials()) == 4


@pytest.mark.parametrize("in_list", [500, 2])  # the window as an IN list, and as a range (a long unfinished set)
def test_the_kept_foreign_count_stays_equal_to_a_fresh_count_as_the_study_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_list: int) -> None:
    """`foreign_finished` reads only the trials from its frontier on and keeps the rest: a
    long-lived ledger, after every step of a random mix of plain clients' and the runner's trials
    (a foreign RUNNING trial that holds the frontier back and ends late, WAITING trials taken
    after the frontier moved past older ones, retries of FAILs far below the frontier), counts
    what a fresh ledger and the Python specification count."""
    import random

    from optuna_spark import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "UNFINISHED_IN_LIST", in_list)
    study, kept = setup(tmp_path)
    rng = random.Random(7)
    held = study.ask()                                           # a plain client's, ends at the end
    asked: list[optuna.trial.Trial] = []
    foreign_fails: list[int] = []
    for step in range(120):
        move = rng.choice(["add", "add", "fail", "ask", "tell", "enqueue", "ours", "ours", "retry"])
        if move == "add":
            study.add_trial(create_trial(state=rng.choice([TrialState.COMPLETE, TrialState.PRUNED]),
                                         value=1.0, params={}, distributions={}))
        elif move == "fail":
            study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={}))
            foreign_fails.append(study.get_trials(deepcopy=False)[-1].number)
        elif move == "ask":
            asked.append(study.ask())
        elif move == "tell" and asked:
            study.tell(asked.pop(rng.randrange(len(asked))), 1.0)
        elif move == "enqueue":
            study.enqueue_trial({})
        elif move == "ours":
            trial_id = kept.claim_trial(f"t{step}", 10_000, 30)
            assert trial_id is not None
            kept.finish(f"t{step}", trial_id, rng.choice([TrialState.COMPLETE, TrialState.FAIL]), [1.0])
        elif move == "retry" and foreign_fails:
            number = foreign_fails.pop(0)                        # the oldest: far below the frontier
            study.add_trial(create_trial(state=TrialState.WAITING, params={}, distributions={},
                                         system_attrs={"failed_trial": number, "retry_history": [number]}))
        fresh = another(tmp_path, study)
        assert kept.foreign_finished() == fresh.foreign_finished() == foreign_finished(study.get_trials())
        fresh.dispose()
    assert held._trial_id in kept._counted.unfinished            # in the window, one row
    study.tell(held, 1.0)
    for trial in asked:
        study.tell(trial, 1.0)
    waiting = [t._trial_id for t in study.get_trials() if t.state == TrialState.WAITING]
    assert kept.foreign_finished() == foreign_finished(study.get_trials())
    assert all(w in kept._counted.unfinished or w > kept._counted.seen for w in waiting)
    taken = [kept.claim_trial(f"w{i}", 10_000, 30) for i in range(len(waiting))]
    assert sorted(t for t in taken if t is not None) == sorted(waiting)   # every WAITING one found
    for i, trial_id in enumerate(taken):
        kept.finish(f"w{i}", trial_id, TrialState.COMPLETE, [1.0])  # type: ignore[arg-type]
    assert kept.foreign_finished() == foreign_finished(study.get_trials())
    assert not kept._counted.unfinished and kept._counted.seen == study.get_trials()[-1]._trial_id  # nothing re-read
    live = kept.claim_trial("live", 10_000, 30)                  # the sweep's scan starts at the frontier too
    kept.foreign_finished()
    assert [r.trial_id for r in kept.running()[1]] == [live] == [r.trial_id for r in another(tmp_path, study).running()[1]]
    # The runner numbers its new trials as Optuna does, between plain clients' ones: 0, 1, ...
    # in creation order.
    trials = sorted(study.get_trials(), key=lambda t: t._trial_id)
    assert [t.number for t in trials] == list(range(len(trials)))


def test_a_trial_that_never_ends_costs_one_row_per_claim_not_a_range(tmp_path: Path) -> None:
    """Another client's trial killed RUNNING stays unfinished for ever: the kept count reads it
    (and the trials in flight) on each call, not every trial created after it."""
    from optuna_spark.ledger import ForeignCount

    study, kept = setup(tmp_path)
    stuck = study.ask()                                          # killed: RUNNING for ever
    for _ in range(50):
        study.add_trial(create_trial(value=1.0, params={}, distributions={}))
    assert kept.foreign_finished() == 50
    read: list[int] = []
    original = ForeignCount.advance

    def counting(self: ForeignCount, rows: Any, histories: Any) -> int:
        read.append(len(rows))
        return original(self, rows, histories)

    ForeignCount.advance = counting  # type: ignore[method-assign]
    try:
        study.add_trial(create_trial(value=1.0, params={}, distributions={}))
        assert kept.foreign_finished() == 51
    finally:
        ForeignCount.advance = original  # type: ignore[method-assign]
    assert read == [2]                                           # the stuck trial and the new one
    study.tell(stuck, 1.0)
    assert kept.foreign_finished() == 52 == foreign_finished(study.get_trials())


def test_the_kept_count_changes_nothing_when_a_call_fails_and_ignores_odd_histories() -> None:
    from optuna_spark.ledger import ForeignCount

    counted = ForeignCount()
    rows = [(1, 0, TrialState.FAIL, False), (2, 1, TrialState.COMPLETE, False)]
    assert counted.advance(rows, [(2, '[0, "x", true]')]) == 1      # FAIL #0 retried; odd entries ignored
    before = (counted.seen, counted.finished, counted.failed, counted.retried, counted.retried_fails)
    with pytest.raises(ValueError):
        counted.advance([(3, 2, TrialState.COMPLETE, False), (4, 3, "no such state", False)], [])
    assert (counted.seen, counted.finished, counted.failed, counted.retried, counted.retried_fails) == before
    assert counted.advance([(3, 2, TrialState.COMPLETE, False)], [(3, "not json")]) == 2


def test_claim_trial_is_one_exact_transaction(tmp_path: Path) -> None:
    """The loop's claim: within the limit under concurrency, a retry finds its own trial, the
    oldest WAITING trial is taken first, the trial starts with its heartbeat and `host`."""
    study, ledger = setup(tmp_path)
    study.enqueue_trial({"x": 1.0})
    study.enqueue_trial({"x": 2.0})
    first_waiting = study.get_trials()[0]._trial_id
    ledgers = [another(tmp_path, study) for _ in range(THREADS)]

    def run(i: int) -> list[int]:
        got = []
        for k in range(10):
            trial_id = ledgers[i].claim_trial(f"{i}-{k}", 30, 30, {"host": f"h{i}"})
            if trial_id is not None:
                assert ledgers[i].claim_trial(f"{i}-{k}", 30, 30, {"host": f"h{i}"}) == trial_id  # a retry
                got.append(trial_id)
        return got

    won = [t for got in in_threads(run) for t in got]
    trials = study.get_trials()
    assert len(won) == len(set(won)) == 30 and ledger.claimed() == 30 and ledger.state() == (30, 0)
    assert len(trials) == 30 and all(t.state == TrialState.RUNNING for t in trials)
    assert [t.number for t in sorted(trials, key=lambda t: t._trial_id)] == list(range(30))  # as Optuna numbers
    assert first_waiting in won and [t.system_attrs["fixed_params"] for t in trials[:2]] == [{"x": 1.0}, {"x": 2.0}]
    assert all(t.system_attrs[CLAIM_ATTR] and t.user_attrs["host"].startswith("h") for t in trials)
    now, running = ledger.running()
    assert len(running) == 30 and all(r.heartbeat is not None for r in running)
    assert ledger.claim_trial("late", 30, 30) is None and ledger.claimed() == 30
    assert ledger.claim_trial("late", 31, 30) is not None       # a limit that grew (a foreign trial failed)


def test_claim_trial_takes_no_trial_for_a_claim_given_back(tmp_path: Path) -> None:
    study, ledger = setup(tmp_path)
    assert ledger.claim("a", 5, 30)          # a claim made without its trial (an older runner)
    assert ledger.claim_trial("a", 5, 30) is not None and ledger.claimed() == 1  # bound, not counted twice
    assert ledger.state() == (1, 0)


def test_an_idle_claim_reads_the_counter_first_and_still_finds_its_retry_and_a_slot_given_back(tmp_path: Path) -> None:
    """`idle=True` (the task's last claim was refused): refused without the locking transaction
    while the budget is spent, yet a retried token still gets its own trial, and a slot given back
    by a failed-and-retried trial is taken (the WAITING copy first)."""
    study, ledger = setup(tmp_path)
    first = ledger.claim_trial("a", 2, 30, idle=True)
    second = ledger.claim_trial("b", 2, 30)
    assert first is not None and second is not None and ledger.claimed() == 2
    lock_study = ledger._lock_study
    ledger._lock_study = lambda session: pytest.fail("an idle claim refused by the counter took the lock")  # type: ignore[method-assign]
    assert ledger.claim_trial("c", 2, 30, idle=True) is None and ledger.state() == (2, 0)
    ledger._lock_study = lock_study  # type: ignore[method-assign]
    assert ledger.claim_trial("b", 2, 30, idle=True) == second          # a retry of a committed claim
    assert ledger.fail(first, "lost", max_retry=1) and ledger.claimed() == 1
    retry = ledger.claim_trial("d", 2, 30, idle=True)
    assert retry is not None and study._storage.get_trial(retry).system_attrs["retry_history"] == [0]
    assert ledger.claim_trial("e", 2, 30, idle=True) is None and ledger.claimed() == 2


def test_trial_times_are_stored_as_optunas_own_on_a_host_not_on_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a host not on UTC, a WAITING trial the runner takes and finishes reads back (through
    Optuna) with the start time a trial Optuna creates gets, near the local clock, and a duration
    not off by the host's UTC offset (Optuna 5 stores naive UTC, reads local)."""
    monkeypatch.setenv("TZ", "IST-5:30")  # UTC+05:30, a POSIX rule: no tzdata needed
    time.tzset()
    try:
        assert datetime.datetime.now().astimezone().utcoffset() == datetime.timedelta(hours=5, minutes=30)
        study, ledger = setup(tmp_path)
        study.enqueue_trial({})
        trial_id = ledger.claim_trial("a", 10, 30)
        assert trial_id is not None
        assert ledger.finish("a", trial_id, TrialState.COMPLETE, [1.0])
        created = ledger.claim_trial("b", 10, 30)  # a new trial: Optuna's own clock
        assert created is not None
        taken, new = study._storage.get_trial(trial_id), study._storage.get_trial(created)
        now = datetime.datetime.now()
        assert abs((taken.datetime_start - now).total_seconds()) < 60
        assert abs((new.datetime_start - taken.datetime_start).total_seconds()) < 60
        assert datetime.timedelta(0) <= taken.duration < datetime.timedelta(seconds=60)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_on_sqlite_the_ledgers_reads_do_not_wait_for_a_writer(tmp_path: Path, journal_mode: str) -> None:
    """A writer holds SQLite's write lock (a claim in progress, another run's transaction): the
    ledger's reads (the foreign count before each claim, the budget's state, the sweep's scan,
    the idle poll) go on instead of queueing for the write lock, in WAL and rollback-journal mode;
    its writes still wait for it."""
    import sqlite3

    study, ledger = setup(tmp_path)
    with sqlite3.connect(tmp_path / "s.db") as db:  # WAL: what the runner sets (spark_app); delete: SQLite's default
        assert db.execute(f"PRAGMA journal_mode={journal_mode}").fetchone() == (journal_mode,)
    assert ledger.claim_trial("a", 5, 30) is not None
    writer = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        out: list[Any] = []

        def reads() -> None:
            out.append((ledger.foreign_finished(), ledger.state(), ledger.claimed(), len(ledger.running()[1]),
                        ledger.claim_trial("b", 1, 30, idle=True)))

        reader = threading.Thread(target=reads)
        reader.start()
        reader.join(timeout=30)  # KW's busy timeout is 60 s: a read queueing for the lock would still wait
        assert not reader.is_alive() and out == [(0, (1, 0), 1, 1, None)]
        blocked = threading.Thread(target=lambda: out.append(ledger.claim_trial("c", 5, 30)))
        blocked.start()
        blocked.join(timeout=1)
        assert blocked.is_alive()  # a write waits for the writer
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    blocked.join(timeout=60)
    assert not blocked.is_alive() and out[-1] is not None


def test_a_call_after_an_interrupted_one_counts_its_trials_in_flight_as_not_spent(tmp_path: Path) -> None:
    """optimize(n_trials=N) right after a call whose trials were left RUNNING (Ctrl-C, a lost
    executor): the sweep will give those claims back and re-enqueue the trials, so the next
    call's base leaves them out (else it would run N plus those)."""
    from optuna_spark.config import Job, ObjectiveSpec, StudySettings
    from optuna_spark.engine import prepare_study
    from optuna_spark.storage import StorageTarget

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = optuna.storages.RDBStorage(url, engine_kwargs=KW)
    job = Job(StudySettings(name="call", storage=url, n_trials=5, n_jobs=1, budget_scope="call"),
              ObjectiveSpec("q", "m", "f"))
    study_id = prepare_study(storage, StorageTarget(url), job)
    ledger = Ledger(url, KW, study_id, storage)
    done = ledger.claim_trial("done", 5, 30, {"host": "h"})
    assert done is not None and ledger.finish("done", done, TrialState.COMPLETE, [1.0])
    for token in ("left-1", "left-2"):  # the interrupted call's trials, still RUNNING
        assert ledger.claim_trial(token, 5, 30, {"host": "h"}) is not None
    assert ledger.claimed() == 3
    prepare_study(storage, StorageTarget(url), job)
    assert job.extra["claim_base"] == 1
    ledger.dispose()


def test_the_staleness_window_covers_an_outage_the_task_waits_out() -> None:
    """A live task's heartbeats lapse by at most the outage (up to --outage-timeout), an interval
    before and after it, one beat blocked when the storage came back, and the database clock's
    whole seconds: the window is the grace period, or that bound when it is longer."""
    from optuna_spark.ledger import BEAT_TIMEOUT, staleness_window

    assert staleness_window(30, 10, 120) == 120 + 2 * 10 + BEAT_TIMEOUT + 2  # the defaults
    assert staleness_window(600, 10, 120) == 600                             # a longer grace stays
    assert staleness_window(3, 1, 2.5) == math.ceil(2.5 + 2 + BEAT_TIMEOUT + 2)   # whole seconds, up


def test_a_trial_whose_task_waits_out_an_outage_is_never_swept(tmp_path: Path) -> None:
    """A task cut off from the storage for longer than the grace period but less than the outage
    timeout: its heartbeats lapsed, another task sweeps, and its trial stays RUNNING (its claim
    carries the run's staleness window, not the bare grace period); the trial ends COMPLETE."""
    from sqlalchemy import create_engine, text

    from optuna_spark.config import Job, ObjectiveSpec, StudySettings
    from optuna_spark.outage import OutageGuard, guarded_storage
    from optuna_spark.task import TrialLoop

    study, ledger = setup(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    job = Job(StudySettings(name="s", storage=url, n_trials=1, n_jobs=1, heartbeat_interval=1, grace_period=2,
                            outage_timeout=20), ObjectiveSpec("q", "m", "f"))
    sweeper = another(tmp_path, study)
    swept: list[list[int]] = []

    def objective(trial: optuna.Trial) -> float:
        # Its last beat 12 s ago (> grace 2 s, < outage timeout 20 s), as after such an outage.
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-12 seconds') "
                              "WHERE trial_id = :i"), {"i": trial._trial_id})
        engine.dispose()
        swept.append(sweeper.sweep(max_retry=2))
        return trial.suggest_float("x", 0, 1)

    guard = OutageGuard(lambda: True, 5)
    mine = optuna.load_study(study_name="s", storage=guarded_storage(optuna.storages.get_storage(ledger.rdb), guard))
    assert TrialLoop(job, mine, ledger, guard, objective, "h").run() == 1
    assert swept == [[]]
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]


def test_a_beat_is_the_databases_clock_on_connections_of_its_own(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    study, ledger = setup(tmp_path)
    trial_id = ledger.claim_trial("t", 5, 30, {"host": "h"})
    assert trial_id is not None
    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-100 seconds')"))
    ledger.beat(trial_id)
    plain = ledger.create_trial("u") if ledger.claim("u", 5, 30) else None  # bound, never beaten
    assert plain is not None
    ledger.beat(plain)
    with engine.connect() as conn:
        ages = conn.execute(text("SELECT trial_id, (julianday('now') - julianday(heartbeat)) * 86400 "
                                 "FROM trial_heartbeats ORDER BY trial_id")).all()
    engine.dispose()
    assert [row[0] for row in ages] == [trial_id, plain] and all(row[1] < 3 for row in ages)
    assert ledger.running()[1] and not ledger.sweep(max_retry=2)


def test_the_databases_clock_in_seconds_since_the_epoch(tmp_path: Path) -> None:
    _, ledger = setup(tmp_path)
    assert abs(ledger.database_time() - time.time()) < 1.0  # SQLite: this host's clock, to the ms


def test_a_static_split_after_a_killed_run_shares_out_its_trials_in_flight(tmp_path: Path) -> None:
    """`--split static` after a killed run: the trials it left RUNNING come back (a sweep fails
    and re-enqueues them, giving their claims back); the shares must cover them, else the run
    ends short by as many."""
    from optuna_spark.config import Job, ObjectiveSpec, StudySettings
    from optuna_spark.engine import prepare_study
    from optuna_spark.storage import StorageTarget

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = optuna.storages.RDBStorage(url, engine_kwargs=KW)
    job = Job(StudySettings(name="st", storage=url, n_trials=8, n_jobs=2, split="static"),
              ObjectiveSpec("q", "m", "f"))
    study_id = prepare_study(storage, StorageTarget(url), job)
    assert job.extra["shares"] == [4, 4]
    ledger = Ledger(url, KW, study_id, storage)
    for token in ("done-1", "done-2"):
        trial_id = ledger.claim_trial(token, 8, 1, {"host": "h"})
        assert trial_id is not None and ledger.finish(token, trial_id, TrialState.COMPLETE, [1.0])
    for token in ("killed-1", "killed-2", "killed-3"):  # the killed run's, still RUNNING
        assert ledger.claim_trial(token, 8, 1, {"host": "h"}) is not None
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:  # their task died a while ago
        conn.execute(text("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-100 seconds')"))
    engine.dispose()
    prepare_study(storage, StorageTarget(url), job)  # the same command again
    assert job.extra["shares"] == [3, 3]  # 8 less the 2 finished (not 8 - 5: the 3 killed come back)
    ledger.dispose()
