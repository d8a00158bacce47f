"""--trial-timeout's supervisor (optuna_spark.supervisor) with real forked children: a hung trial is
stopped and failed, heartbeats go on while it hangs, a crashed trial is failed, and a child that
keeps dying before any trial ends the task."""

from __future__ import annotations

import os
import re
import time
from typing import Any

from optuna_spark.supervisor import child_done, supervise


def run(plan: dict[int, Any], **kw: Any):
    """plan[n](conn) is what the n-th child (from 0) does."""
    forks = [-1]
    beats: list[int] = []
    failed: list[tuple[int, str]] = []

    def child_main(conn: Any, share_left: Any) -> None:
        plan[forks[0]](conn)

    seen = supervise(child_main, trial_timeout=kw.get("timeout", 1.0), heartbeat_interval=0.1,
                     record_heartbeat=beats.append, fail_trial=lambda t, r: failed.append((t, r)),
                     share=kw.get("share"), before_fork=lambda: forks.__setitem__(0, forks[0] + 1))
    return seen, beats, failed, forks[0] + 1


def hang_holding_the_gil(conn: Any) -> None:
    conn.send(("start", 7))
    conn.send(("run", 7))
    re.match(r"(a+)+$", "a" * 64 + "b")  # catastrophic backtracking: never lets the GIL go


def finish_one(conn: Any) -> None:
    conn.send(("start", 8))
    conn.send(("run", 8))
    conn.send(("ran", 8))
    conn.send(("end", 8))
    child_done(conn, None)


def test_a_hung_trial_is_failed_and_its_process_replaced_while_its_heartbeats_went_on() -> None:
    seen, beats, failed, children = run({0: hang_holding_the_gil, 1: finish_one})
    assert failed == [(7, "trial timeout: ran longer than 1 s (its process was stopped)")]
    assert seen.timed_out == [7] and seen.started == 2 and seen.error is None and children == 2
    assert 7 in beats  # recorded by the supervisor while the child held its GIL


def test_only_the_objectives_run_is_timed_not_the_storage_waits_around_it() -> None:
    """A trial whose set-up and result's writes wait out a storage outage longer than the
    timeout, its objective quick, is not a trial timeout; its heartbeats go on meanwhile."""
    def slow_storage_quick_objective(conn: Any) -> None:
        conn.send(("start", 5))
        time.sleep(0.8)          # the trial's set-up, waiting out an outage
        conn.send(("run", 5))
        time.sleep(0.3)          # the objective: within the 1 s timeout
        conn.send(("ran", 5))
        time.sleep(1.2)          # ledger.finish, waiting out an outage
        conn.send(("end", 5))
        child_done(conn, None)

    seen, beats, failed, children = run({0: slow_storage_quick_objective})
    assert failed == [] and seen.timed_out == [] and seen.started == 1 and children == 1
    assert beats.count(5) >= 10  # every 0.1 s for about 2.3 s


def test_a_trial_whose_process_dies_is_failed() -> None:
    def crash(conn: Any) -> None:
        conn.send(("start", 3))
        time.sleep(0.2)
        os._exit(9)

    seen, _, failed, _ = run({0: crash, 1: finish_one})
    assert failed == [(3, "the trial's process died (exit code 9)")] and seen.died == [3]


def test_a_child_dying_before_any_trial_ends_the_task() -> None:
    def die(conn: Any) -> None:
        os._exit(1)

    seen, _, failed, children = run({0: die, 1: die, 2: die, 3: finish_one})
    assert children == 3 and failed == []
    assert seen.error == "the task's trial process died 3 times before starting a trial (exit code 1)"


def test_an_error_of_the_child_comes_back_with_its_traceback() -> None:
    def broken(conn: Any) -> None:
        try:
            raise ImportError("no module named 'objective'")
        except ImportError as exc:
            child_done(conn, exc)

    seen, _, _, _ = run({0: broken})
    assert seen.error == "ImportError: no module named 'objective'" and "Traceback" in (seen.traceback or "")
