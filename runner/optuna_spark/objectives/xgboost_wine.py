"""The seed's XGBoost study: an XGBRegressor on the red wine data, RMSE minimised.

Settings as in the seed (NVIDIA spark-rapids-examples, optuna/): 20 % validation split with
random_state 42, `reg:squarederror`, 1000 estimators, the same five-parameter search space; the
device is `cuda:<id>` of the GPU that Spark gave the task, or `cpu`.

With a pruner (`--pruner median|hyperband`), each boosting round reports the validation RMSE as
the trial's intermediate value, and a trial the pruner stops ends PRUNED at that round.

With `--data` (and `--target`, default `quality`), the same study runs on the user's table: the
objective receives it as a pandas DataFrame (the label column's name in `data.attrs["target"]`),
every other column is a feature, and the split is made once per task, not per trial.

With an artifact folder (`--artifact-dir DIR`, `optimize(artifact_dir=DIR)`; `make tune-xgboost`
passes `work/artifacts`), a trial keeps its trained model when it ends COMPLETE with an RMSE among
the best KEEP_BEST of the study's COMPLETE trials at that moment: `model-trial-<number>.json`
(XGBoost's JSON format) through Optuna's artifacts API (`upload_artifact` to the study's
`FileSystemArtifactStore`). Other trials, pruned and failed ones keep nothing, so a study of 100
trials keeps a handful of models, the best trial's among them (a model kept by a trial that was
later beaten stays). Without a folder, nothing is saved. Fetch one with
`optuna.artifacts.download_artifact(artifact_store=FileSystemArtifactStore(DIR), artifact_id=...,
file_path=...)` (the ids: `get_all_artifact_meta(trial)`), then `xgboost.XGBRegressor().load_model(path)`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import optuna

from optuna_spark.objectives.context import device_for_task, gpu_required, task_cpus

DATA_FILE = "winequality-red.csv"
TARGET = "quality"
N_ESTIMATORS = 1000
KEEP_BEST = 3  # a trial keeps its model when its RMSE is among the best KEEP_BEST at its end


@lru_cache(maxsize=1)
def load_split() -> tuple[Any, Any, Any, Any]:
    import pandas as pd

    with resources.files("optuna_spark.data").joinpath(DATA_FILE).open("rb") as fh:
        data = pd.read_csv(fh, sep=";")
    return split(data, TARGET)


def split(data: Any, target: str) -> tuple[Any, Any, Any, Any]:
    from sklearn.model_selection import train_test_split

    x = data.drop(columns=[target])
    y = data[target]
    return tuple(train_test_split(x, y, test_size=0.2, random_state=42))


# The split of the data set the task received (--data): made once, kept with the task's frame
# (each trial gets its own copy of that frame: optuna_spark.dataset.origin finds the frame it came from).
_split_of: tuple[Any, tuple[Any, Any, Any, Any]] | None = None


def split_of(data: Any) -> tuple[Any, Any, Any, Any]:
    from optuna_spark.dataset import origin

    global _split_of
    frame = origin(data)
    if _split_of is None or _split_of[0] is not frame:
        _split_of = (frame, split(frame, frame.attrs.get("target", TARGET)))
    return _split_of[1]


def pruning_callback(trial: optuna.Trial) -> Any:
    """An XGBoost training callback: report each round's validation RMSE, stop when the pruner
    says so (the objective then raises TrialPruned)."""
    import xgboost as xgb

    class Pruning(xgb.callback.TrainingCallback):
        pruned_at: int | None = None

        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
            rmse = evals_log["validation_0"]["rmse"][-1]
            trial.report(float(rmse), epoch)
            if trial.should_prune():
                self.pruned_at = epoch
                return True  # stop training
            return False

    return Pruning()


def objective(trial: optuna.Trial, data: Any = None) -> float:
    import xgboost as xgb
    from sklearn.metrics import root_mean_squared_error

    params = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "max_depth": trial.suggest_int("max_depth", 1, 10),
        "subsample": trial.suggest_float("subsample", 0.05, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.05, 1.0),
        "min_child_weight": trial.suggest_int("min_child_weight", 1, 20),
    }
    x_train, x_valid, y_train, y_valid = load_split() if data is None else split_of(data)
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
    rmse = float(root_mean_squared_error(y_valid, model.predict(x_valid)))
    keep_model(trial, model, rmse)
    return rmse


def among_best(value: float, others: Any, k: int = KEEP_BEST, maximize: bool = False) -> bool:
    """Whether `value` is among the best `k` once added to `others` (the values of the study's
    other COMPLETE trials): fewer than `k` of them are strictly better. A tie keeps. Pure."""
    if k <= 0 or value != value:  # NaN: never among the best
        return False
    better = sum(1 for v in others if (v > value if maximize else v < value))
    return better < k


def keep_model(trial: optuna.Trial, model: Any, rmse: float) -> str | None:
    """Keep the trained model as the trial's artifact when the study has an artifact folder and
    the RMSE is among the best KEEP_BEST so far; the artifact id, or None when nothing was kept
    (a model that cannot be written is said in a warning and the trial's `model_not_kept`
    attribute; the trial keeps its value)."""
    import os
    import tempfile

    from optuna.artifacts import upload_artifact
    from optuna.trial import TrialState

    from optuna_spark.tracking import artifact_store_or_none

    store = artifact_store_or_none(trial)
    if store is None:
        return None
    study = trial.study
    if len(study.directions) != 1:
        return None
    others = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.number != trial.number and t.values]
    if not among_best(rmse, others, maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE):
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="optuna-spark-model-") as folder:
            path = os.path.join(folder, f"model-trial-{trial.number}.json")
            model.save_model(path)
            return str(upload_artifact(artifact_store=store, file_path=path, study_or_trial=trial,
                                       mimetype="application/json"))
    except OSError as exc:
        # The trial trained and scored: a model that cannot be kept (a full disk, a folder this
        # executor cannot write) is said, not a reason to fail the trial.
        import warnings

        warnings.warn(f"trial {trial.number}: its model was not kept: {exc}", stacklevel=2)
        trial.set_user_attr("model_not_kept", str(exc)[:500])
        return None
