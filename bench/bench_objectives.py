"""The benchmarks' objectives: one file that every contender imports, so each runs the same load.

The runner takes `bench/bench_objectives.py:NAME` (shipped to the executors with --py-files);
Optuna's threads and MLflow's Spark study call the same functions; Hyperopt calls `hyperopt_fn`
with the same kinds. Every objective suggests one float (so the sampler and the storage do their
usual work), sleeps, and returns a cheap value.

Durations:
- `sleep_half` 0.5 s, `sleep_one` 1 s, `zero` none (a storage-bound load), `zero_sleep_half`
  0.5 s with `zero`'s value (the lab's start-up runs).
- `lognormal`: median BENCH_LN_MEDIAN s (default 1), shape BENCH_LN_SIGMA (default 1: the slowest
  trial of 100 about 10x the median), drawn from a generator seeded with BENCH_LN_SEED and the
  trial's number, so every Optuna-based contender runs the same multiset of durations, in the
  order its trials are numbered. Hyperopt does not tell the objective its trial id: there the
  draw is seeded with the suggested x instead (same distribution, not the same multiset).

Trace: with OPTUNA_SPARK_BENCH_TRACE=DIR set (Spark's local mode passes the environment on to
its Python workers), each call appends `lane number start end` (lane: process.thread) (Unix seconds, around the sleep
only: the objective's own time, without the suggest's storage write) to DIR/HOST-PID.trace, one
file per process, so the harness sees every contender's trials the same way. `zero` returns its
process id and start time packed in its value (encode_pid_time), so that the lab benchmark can
chain a task's trials and time them to the microsecond from the storage alone (with the runner's
`host` attribute), whatever the precision of the database's datetimes, without one more write.
"""

from __future__ import annotations

import math
import os
import random
import socket
import threading
import time
from typing import Any

TRACE_ENV = "OPTUNA_SPARK_BENCH_TRACE"
KINDS = ("sleep_half", "sleep_one", "zero", "lognormal")


def lognormal_seconds(key: Any) -> float:
    median = float(os.environ.get("BENCH_LN_MEDIAN", "1.0"))
    sigma = float(os.environ.get("BENCH_LN_SIGMA", "1.0"))
    seed = os.environ.get("BENCH_LN_SEED", "13")
    return median * math.exp(sigma * random.Random(f"{seed}:{key}").gauss(0.0, 1.0))


def duration(kind: str, key: Any) -> float:
    if kind == "sleep_half":
        return 0.5
    if kind == "sleep_one":
        return 1.0
    if kind == "zero":
        return 0.0
    if kind == "lognormal":
        return lognormal_seconds(key)
    raise ValueError(f"unknown kind {kind!r}")


def _run(kind: str, number: int, key: Any) -> float:
    seconds = duration(kind, key)
    start = time.time()
    if seconds > 0:
        time.sleep(seconds)
    end = time.time()
    trace = os.environ.get(TRACE_ENV)
    if trace:
        path = os.path.join(trace, f"{socket.gethostname()}-{os.getpid()}.trace")
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{os.getpid()}.{threading.get_ident()} {number} {start:.6f} {end:.6f}\n")
    return start


def _optuna(kind: str, trial: Any) -> float:
    x = trial.suggest_float("x", -10, 10)
    start = _run(kind, trial.number, trial.number)
    if kind == "zero":
        return encode_pid_time(os.getpid(), start)
    return (x - 2) ** 2


def encode_pid_time(pid: int, start: float) -> float:
    """`zero`'s value: the process id, and the objective's start modulo 1000 s as the fraction
    (microseconds survive in a float64 for pids below 2**22)."""
    return pid + (start % 1000.0) / 1000.0


def decode_pid_time(value: float, near: float) -> tuple[int, float]:
    """(pid, start) back from `zero`'s value; `near` is any time within 500 s of the start (the
    trial's stored start, whatever its precision)."""
    pid = int(value)
    frac = (value - pid) * 1000.0
    base = near - (near % 1000.0)
    candidates = [base - 1000.0 + frac, base + frac, base + 1000.0 + frac]
    return pid, min(candidates, key=lambda t: abs(t - near))


def sleep_half(trial: Any) -> float:
    return _optuna("sleep_half", trial)


def sleep_one(trial: Any) -> float:
    return _optuna("sleep_one", trial)


def zero(trial: Any) -> float:
    return _optuna("zero", trial)


def lognormal(trial: Any) -> float:
    return _optuna("lognormal", trial)


def zero_sleep_half(trial: Any) -> float:
    """0.5 s like sleep_half, with zero's value (pid and start packed): the lab's start-up runs."""
    trial.suggest_float("x", -10, 10)
    start = _run("sleep_half", trial.number, trial.number)
    return encode_pid_time(os.getpid(), start)


def hyperopt_fn(kind: str) -> Any:
    """Hyperopt's objective for a kind: takes {'x': float}, returns the loss."""

    def fn(params: dict[str, float]) -> float:
        x = float(params["x"])
        _run(kind, -1, repr(x))
        return (x - 2) ** 2

    return fn


def ray_fn(kind: str) -> Any:
    """Ray Tune's function trainable for a kind: takes {'x': float}, reports {'loss': ...} once
    (lognormal: seeded with x, as for Hyperopt)."""

    def fn(config: dict[str, float]) -> None:
        from ray import tune

        x = float(config["x"])
        _run(kind, -1, repr(x))
        tune.report({"loss": (x - 2) ** 2})

    return fn
