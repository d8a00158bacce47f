"""The seed's plain study: minimise (x - 2)^2 + (y - 3)^2 over x, y in [-10, 10]."""

from __future__ import annotations

import optuna


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_float("y", -10, 10)
    return (x - 2) ** 2 + (y - 3) ** 2
