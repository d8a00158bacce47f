"""optuna_spark.ledger against a real MariaDB (REPEATABLE READ, row locks), many threads each with its
own connections: the budget, trial numbers and the tell/sweep race, as on SQLite (tests/unit)."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from optuna_spark.ledger import Ledger, finished_trials

pytestmark = pytest.mark.mysql

THREADS = 8


def url(mariadb) -> str:
    return f"mysql+pymysql://{mariadb.user}:{mariadb.password}@{mariadb.host}:{mariadb.port}/optuna"


def ledger_for(mariadb, study: optuna.Study) -> Ledger:
    kw = {"pool_pre_ping": True}
    return Ledger(url(mariadb), kw, study._study_id, optuna.storages.RDBStorage(url(mariadb), engine_kwargs=kw))


def in_threads(fn: Any) -> list[Any]:
    start = threading.Barrier(THREADS)
    out: list[Any] = [None] * THREADS

    def run(i: int) -> None:
        start.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def fresh_study(mariadb) -> optuna.Study:
    return optuna.create_study(study_name=f"ledger-{uuid.uuid4().hex[:8]}", storage=url(mariadb))


def test_concurrent_claims_and_creations_give_the_budget_with_distinct_numbers(mariadb) -> None:
    study = fresh_study(mariadb)
    setup = ledger_for(mariadb, study)
    setup.create()
    setup.reconcile()
    ledgers = [ledger_for(mariadb, study) for _ in range(THREADS)]

    def work(i: int) -> int:
        made = 0
        while True:
            token = uuid.uuid4().hex
            if not ledgers[i].claim(token, 40, 30):
                return made
            trial_id = ledgers[i].create_trial(token)
            assert ledgers[i].create_trial(token) == trial_id  # a retry finds the same trial
            assert ledgers[i].finish(token, trial_id, TrialState.COMPLETE, [float(i)])
            made += 1

    assert sum(in_threads(work)) == 40
    trials = study._storage.get_all_trials(study._study_id)  # no cache: every row
    assert len(trials) == 40 == len({t.number for t in trials}) == finished_trials(trials)
    assert sorted(t.number for t in trials) == list(range(40))
    assert setup.claimed() == 40


def test_a_tell_and_a_sweep_racing_have_one_winner_and_retry_copies_get_their_own_numbers(mariadb) -> None:
    study = fresh_study(mariadb)
    setup = ledger_for(mariadb, study)
    setup.create()
    setup.reconcile()
    ledgers = [ledger_for(mariadb, study) for _ in range(THREADS)]
    for round_ in range(8):
        token = uuid.uuid4().hex
        assert setup.claim(token, 1000, 30)
        trial_id = setup.create_trial(token)

        def act(i: int) -> bool:
            if i % 2:
                return ledgers[i].finish(token, trial_id, TrialState.COMPLETE, [1.0])
            return ledgers[i].fail(trial_id, "stale", 2)

        won = in_threads(act)
        assert (sum(won[1::2]), sum(won[0::2])) in ((THREADS // 2, 0), (0, 1)), won
    trials = study._storage.get_all_trials(study._study_id)
    assert len({t.number for t in trials}) == len(trials)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert finished_trials(trials) == setup.claimed() == 8 - len(waiting)


def test_the_loops_one_transaction_claims_exactly_with_waiting_trials_first_and_counts_foreign_ones(mariadb) -> None:
    """Ledger.claim_trial (claim, trial, binding, heartbeat, host in one transaction) on MariaDB:
    the budget less the foreign finished trials, distinct numbers, enqueued trials taken once
    each, retries finding their own trial; Ledger.foreign_finished as the Python specification."""
    from optuna.trial import create_trial

    from optuna_spark.ledger import foreign_finished

    study = fresh_study(mariadb)
    setup = ledger_for(mariadb, study)
    setup.create()
    setup.reconcile()
    for value in (1.0, 2.0, 3.0):  # a plain client's finished trials: they count against the budget
        study.add_trial(create_trial(value=value, params={}, distributions={}))
    for k in range(4):
        study.enqueue_trial({"k": k})
    ledgers = [ledger_for(mariadb, study) for _ in range(THREADS)]
    assert setup.foreign_finished() == foreign_finished(study.get_trials()) == 3

    def work(i: int) -> list[int]:
        got = []
        while True:
            token = uuid.uuid4().hex
            limit = 40 - ledgers[i].foreign_finished()
            trial_id = ledgers[i].claim_trial(token, limit, 30, {"host": f"h{i}"})
            if trial_id is None:
                return got
            assert ledgers[i].claim_trial(token, limit, 30, {"host": f"h{i}"}) == trial_id  # a retry
            assert ledgers[i].finish(token, trial_id, TrialState.COMPLETE, [float(i)])
            got.append(trial_id)

    ran = [t for got in in_threads(work) for t in got]
    trials = study._storage.get_all_trials(study._study_id)  # no cache: every row
    assert len(ran) == len(set(ran)) == 37 and setup.claimed() == 37
    assert len(trials) == 40 == len({t.number for t in trials}) == finished_trials(trials)
    assert [t.number for t in sorted(trials, key=lambda t: t._trial_id)] == list(range(40))  # as Optuna numbers
    enqueued = [t for t in trials if "fixed_params" in t.system_attrs]
    assert len(enqueued) == 4 and all(t._trial_id in ran and t.state == TrialState.COMPLETE for t in enqueued)
    assert all(t.user_attrs["host"].startswith("h") for t in trials if t._trial_id in ran)
    assert setup.foreign_finished() == foreign_finished(trials) == 3


def test_an_idle_claim_takes_no_lock_while_the_budget_is_spent(mariadb) -> None:
    """A task out of claims polls `claim_trial(idle=True)`: with the budget spent it is refused
    by a plain read, not by a transaction waiting for the study's row lock (another client holds
    it here: a refused poll does not queue behind it, nor make others queue behind it)."""
    import pymysql

    study = fresh_study(mariadb)
    setup = ledger_for(mariadb, study)
    setup.create()
    setup.reconcile()
    assert setup.claim_trial(uuid.uuid4().hex, 1, 30) is not None
    holder = pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user,
                             password=mariadb.password, database="optuna")
    try:
        with holder.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT study_id FROM studies WHERE study_id = %s FOR UPDATE", (study._study_id,))
        out: list[Any] = []
        poll = threading.Thread(target=lambda: out.append(setup.claim_trial(uuid.uuid4().hex, 1, 30, idle=True)))
        poll.start()
        poll.join(timeout=30)  # the lock is held for as long as this test waits
        assert not poll.is_alive() and out == [None]
    finally:
        holder.rollback()
        holder.close()


def test_the_runners_sessions_are_in_utc_whatever_the_servers_time_zone(mariadb) -> None:
    """Staleness is NOW() against heartbeats written with NOW(): in the server's local time, a DST
    change would make every running trial look an hour stale (or dead ones an hour fresh). The
    runner's connections (the ledger's and Optuna's, through StorageTarget) run in UTC."""
    from sqlalchemy import create_engine, text

    from optuna_spark.storage import StorageTarget, open_rdb_storage

    target = StorageTarget(f"mysql+pymysql://{mariadb.user}@{mariadb.host}:{mariadb.port}/optuna", mariadb.password)
    mariadb.sql("SET GLOBAL time_zone = '+05:30'")  # a server away from UTC (no tz tables needed)
    try:
        engine = create_engine(target.connect_url(), **target.engine_kwargs())
        with engine.connect() as conn:
            offset = conn.execute(text("SELECT TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW())")).scalar()
            zone = conn.execute(text("SELECT @@session.time_zone")).scalar()
        engine.dispose()
        assert (offset, zone) == (0, "+00:00")
        storage = open_rdb_storage(target)
        study = optuna.create_study(study_name="utc", storage=storage, load_if_exists=True)
        ledger = Ledger(target.connect_url(), target.engine_kwargs(), study._study_id, storage)
        ledger.create()
        ledger.ensure()
        trial_id = ledger.claim_trial("utc-token", 5, 30, {"host": "h"})
        assert trial_id is not None
        storage.record_heartbeat(trial_id)  # Optuna's own write, through the same kind of session
        now, running = ledger.running()
        assert now is not None and [r.trial_id for r in running] == [trial_id]
        assert not running[0].is_dead(now)
        assert abs((now - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)).total_seconds()) < 120
        ledger.beat(trial_id)  # the runner's heartbeats, on connections of their own: in UTC too
        now, running = ledger.running()
        assert running[0].heartbeat is not None and abs((now - running[0].heartbeat).total_seconds()) <= 1
        assert abs(ledger.database_time() - time.time()) < 5  # --timeout's clock: the epoch, whatever the zone
        ledger.dispose()
    finally:
        mariadb.sql("SET GLOBAL time_zone = 'SYSTEM'")


def test_the_kept_foreign_count_and_window_hold_beside_plain_clients_on_mariadb(mariadb) -> None:
    """What the ledger's incremental count and its window rest on, on MariaDB (REPEATABLE READ,
    the study's row lock, auto-increment ids): while plain Optuna clients ask, tell, add and
    enqueue trials in threads and runner tasks claim and finish theirs, long-lived ledgers count
    what a fresh ledger and the Python specification count, every trial is numbered 0, 1, ...
    in id order, and every enqueued trial is found and run once."""
    from optuna.trial import create_trial

    from optuna_spark.ledger import foreign_finished

    study = fresh_study(mariadb)
    setup = ledger_for(mariadb, study)
    setup.create()
    setup.reconcile()
    ledgers = [ledger_for(mariadb, study) for _ in range(THREADS)]
    counts: list[tuple[int, int]] = []

    def work(i: int) -> int:
        runs = 0
        plain = optuna.load_study(study_name=study.study_name, storage=url(mariadb))
        for k in range(12):
            if i % 2:  # a plain client
                trial = plain.ask()
                if k % 3 == 0:
                    plain.enqueue_trial({"k": k})
                if k % 4 == 0:
                    plain.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={}))
                plain.tell(trial, float(k))
            else:      # a runner task
                token = uuid.uuid4().hex
                trial_id = ledgers[i].claim_trial(token, 10_000, 30, {"host": f"h{i}"})
                assert trial_id is not None
                assert ledgers[i].finish(token, trial_id, TrialState.COMPLETE, [float(k)])
                runs += 1
            counts.append((ledgers[i].foreign_finished(), i))
        return runs

    assert sum(in_threads(work)) == 12 * THREADS // 2
    while True:  # the enqueued trials left: every one found once, by a long-lived ledger
        token = uuid.uuid4().hex
        trial_id = ledgers[0].claim_trial(token, 10_000, 30)
        trial = study._storage.get_trial(trial_id)
        if "fixed_params" not in trial.system_attrs:
            ledgers[0].finish(token, trial_id, TrialState.COMPLETE, [0.0])
            break
        assert ledgers[0].finish(token, trial_id, TrialState.COMPLETE, [0.0])
    trials = study._storage.get_all_trials(study._study_id)
    assert [t.number for t in sorted(trials, key=lambda t: t._trial_id)] == list(range(len(trials)))
    assert not [t for t in trials if t.state == TrialState.WAITING]
    expected = foreign_finished(trials)
    assert all(ledger.foreign_finished() == expected for ledger in ledgers)
    assert ledger_for(mariadb, study).foreign_finished() == expected
