"""`--trial-timeout`: a task's trials run in a child process that can be replaced.

A hung objective (a deadlock, a network call that never returns, C code that holds the GIL)
cannot be interrupted from inside its process. With a trial timeout, the Spark task (the
supervisor, in Spark's Python worker) forks a child that runs the task's trial loop
(optuna_spark.task.TrialLoop) and tells it, through a pipe, when each trial starts and ends, and when
its objective is called and returns. The supervisor records the running trial's heartbeats
itself (they go on whatever the objective holds), and when a trial's objective runs past the
timeout, it kills the child's whole process group, fails
the trial with that reason (it counts as a finished FAIL trial, not retried: it would hang again)
and forks a new child, which carries on with the budget. A child that dies in a trial (a crash of
native code, `os._exit`) fails that trial the same way.

What is timed is the objective's own call, from its start to its return (storage waits in its own
calls, `suggest_*` or `report`, included): not the storage reads and writes around it (the trial's
set-up, its result's writes), which wait out storage outages, and not the user's callbacks, which
run after the trial has ended.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A child that dies this many times in a row before it starts a trial (its objective does not
# import, its storage refuses it) ends the task with an error instead of being replaced again.
MAX_EARLY_DEATHS = 3
POLL_SECONDS = 0.2


@dataclass
class Current:
    trial_id: int
    started: float
    last_beat: float
    running_since: float | None = None  # its objective's call; None: not in the objective


@dataclass
class Supervision:
    """What the supervisor saw, for the task's result."""

    started: int = 0        # trials the children started
    timed_out: list[int] = field(default_factory=list)
    died: list[int] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the process that forked it ends (a lost executor)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervise(child_main: Callable[[Any, int | None], None], *, trial_timeout: float, heartbeat_interval: float,
              record_heartbeat: Callable[[int], None], fail_trial: Callable[[int, str], None],
              share: int | None, before_fork: Callable[[], None] = lambda: None,
              clock: Callable[[], float] = time.monotonic) -> Supervision:
    """Run `child_main(conn, share_left)` in forked children until one reports it is done.

    The child sends ("start", trial_id) when a trial is bound to it, ("run", trial_id) and
    ("ran", trial_id) around the objective's call (the time that `trial_timeout` limits),
    ("end", trial_id) when the trial is finished, and finally ("done", error, traceback) on `conn`.
    `record_heartbeat(trial_id)` and `fail_trial(trial_id, reason)` run here, in the supervisor."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    seen = Supervision()
    early_deaths = 0
    while True:
        left = None if share is None else max(0, share - seen.started)
        receiver, sender = ctx.Pipe(duplex=False)
        before_fork()

        def run_child(conn: Any = sender, share_left: int | None = left, parent_end: Any = receiver) -> None:
            os.setpgid(0, 0)  # its own process group: a timeout kills whatever it started too
            _die_with_parent()
            parent_end.close()
            child_main(conn, share_left)

        child = ctx.Process(target=run_child, name="optuna-spark-trials", daemon=False)
        child.start()
        sender.close()
        current: Current | None = None
        started_here = 0
        outcome = "died"
        while True:
            message = None
            try:
                if receiver.poll(POLL_SECONDS):
                    message = receiver.recv()
            except (EOFError, OSError):
                outcome = "died"
                break
            now = clock()
            if message is not None:
                kind = message[0]
                if kind == "start":
                    current = Current(int(message[1]), now, now)
                    seen.started += 1
                    started_here += 1
                elif kind == "run" and current is not None:
                    current.running_since = now
                elif kind == "ran" and current is not None:
                    current.running_since = None
                elif kind == "end":
                    current = None
                elif kind == "done":
                    seen.error, seen.traceback = message[1], message[2]
                    outcome = "done"
                    break
            if current is not None and current.running_since is not None and \
                    now - current.running_since > trial_timeout:
                outcome = "timeout"
                break
            if current is not None and now - current.last_beat >= heartbeat_interval:
                current.last_beat = now
                try:
                    record_heartbeat(current.trial_id)
                except Exception:  # noqa: BLE001 - the next beat; a long outage ends in a sweep
                    pass
            if message is None and not child.is_alive():
                outcome = "died"
                break
        if outcome == "done":
            child.join(timeout=30)
            _kill_group(child.pid)
            receiver.close()
            return seen
        _kill_group(child.pid)
        child.join(timeout=30)
        receiver.close()
        if current is None:
            early_deaths = 0 if started_here else early_deaths + 1
            if early_deaths >= MAX_EARLY_DEATHS:
                seen.error = (f"the task's trial process died {early_deaths} times before starting a trial "
                              f"(exit code {child.exitcode})")
                return seen
            continue
        early_deaths = 0
        if outcome == "timeout":
            seen.timed_out.append(current.trial_id)
            fail_trial(current.trial_id, f"trial timeout: ran longer than {trial_timeout:g} s (its process was "
                                         "stopped)")
        else:
            seen.died.append(current.trial_id)
            fail_trial(current.trial_id, f"the trial's process died (exit code {child.exitcode})")


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def child_done(conn: Any, error: BaseException | None) -> None:
    """The child's last message: ("done", error line or None, traceback or None)."""
    if error is None:
        conn.send(("done", None, None))
    else:
        message = f"{type(error).__name__}: {error}".strip().splitlines()[0][:2000]
        tb = getattr(error, "child_traceback", None) or traceback.format_exc()
        conn.send(("done", message, tb[-4000:]))
    conn.close()
