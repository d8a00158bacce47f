"""A fixed-cost objective for benchmarks: 0.5 s of wall time, a cheap value to minimise."""

from __future__ import annotations

import time

import optuna

SECONDS = 0.5


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    time.sleep(SECONDS)
    return (x - 2) ** 2
