"""The seed's XGBoost study: an XGBRegressor on the red wine data, RMSE minimised.

Settings as in the seed (NVIDIA spark-rapids-examples, optuna/): 20 % validation split with
random_state 42, `reg:squarederror`, 1000 estimators, the same five-parameter search space; the
device is `cuda:<id>` of the GPU that Spark gave the task, or `cpu`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from typing import Any

import optuna

from runner.objectives.context import device_for_task, task_cpus

DATA_FILE = "winequality-red.csv"
N_ESTIMATORS = 1000
# Set by the task runner from the job (`--gpu`): a GPU study must not quietly run on the CPU.
REQUIRE_GPU_ENV = "OPTUNA_SPARK_REQUIRE_GPU"


@lru_cache(maxsize=1)
def load_split() -> tuple[Any, Any, Any, Any]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    with resources.files("runner.data").joinpath(DATA_FILE).open("rb") as fh:
        data = pd.read_csv(fh, sep=";")
    x = data.drop(columns=["quality"])
    y = data["quality"]
    return tuple(train_test_split(x, y, test_size=0.2, random_state=42))  # type: ignore[return-value]


def objective(trial: optuna.Trial) -> float:
    import xgboost as xgb
    from sklearn.metrics import root_mean_squared_error

    params = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "max_depth": trial.suggest_int("max_depth", 1, 10),
        "subsample": trial.suggest_float("subsample", 0.05, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.05, 1.0),
        "min_child_weight": trial.suggest_int("min_child_weight", 1, 20),
    }
    x_train, x_valid, y_train, y_valid = load_split()
    device = device_for_task(require_gpu=os.environ.get(REQUIRE_GPU_ENV) == "1")
    model = xgb.XGBRegressor(
        objective="reg:squarederror",
        n_estimators=N_ESTIMATORS,
        device=device,
        n_jobs=task_cpus(),
        **params,
    )
    model.fit(x_train, y_train, verbose=False)
    trial.set_user_attr("device", device)
    return float(root_mean_squared_error(y_valid, model.predict(x_valid)))
