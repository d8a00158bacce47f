"""The seed's XGBoost study: an XGBRegressor on the red wine data, RMSE minimised.

Settings as in the seed (NVIDIA spark-rapids-examples, optuna/): 20 % validation split with
random_state 42, `reg:squarederror`, 1000 estimators, the same five-parameter search space; the
device is `cuda:<id>` of the GPU that Spark gave the task, or `cpu`.

With a pruner (`--pruner median|hyperband`), each boosting round reports the validation RMSE as
the trial's intermediate value, and a trial the pruner stops ends PRUNED at that round.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import optuna

from runner.objectives.context import device_for_task, gpu_required, task_cpus

DATA_FILE = "winequality-red.csv"
N_ESTIMATORS = 1000


@lru_cache(maxsize=1)
def load_split() -> tuple[Any, Any, Any, Any]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    with resources.files("runner.data").joinpath(DATA_FILE).open("rb") as fh:
        data = pd.read_csv(fh, sep=";")
    x = data.drop(columns=["quality"])
    y = data["quality"]
    return tuple(train_test_split(x, y, test_size=0.2, random_state=42))  # type: ignore[return-value]


def pruning_callback(trial: optuna.Trial) -> Any:
    """An XGBoost training callback: report each round's validation RMSE, stop when the pruner
    says so (the objective then raises TrialPruned)."""
    import xgboost as xgb

    class Pruning(xgb.callback.TrainingCallback):
        pruned_at: int | None = None

        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            rmse = evals_log["validation_0"]["rmse"][-1]
            trial.report(float(rmse), epoch)
            if trial.should_prune():
                self.pruned_at = epoch
                return True  # stop training
            return False

    return Pruning()


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
    device = device_for_task(require_gpu=gpu_required())
    pruning = None if isinstance(trial.study.pruner, optuna.pruners.NopPruner) else pruning_callback(trial)
    model = xgb.XGBRegressor(
        objective="reg:squarederror",
        n_estimators=N_ESTIMATORS,
        device=device,
        n_jobs=task_cpus(),
        eval_metric="rmse",
        callbacks=None if pruning is None else [pruning],
        **params,
    )
    trial.set_user_attr("device", device)
    if pruning is None:
        model.fit(x_train, y_train, verbose=False)
    else:
        model.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], verbose=False)
        if pruning.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at boosting round {pruning.pruned_at}")
    return float(root_mean_squared_error(y_valid, model.predict(x_valid)))
