"""One run of a contender that is not the runner, in its own process (the harness times it).

    PYTHON bench/peers.py CONTENDER --kind KIND --trials N --slots K --work DIR [--seed S]

CONTENDER:
- optuna-threads: `study.optimize(n_jobs=K)` in this process, a fresh SQLite file (the project's
  venv: the runner's own Optuna).
- hyperopt-sparktrials: Hyperopt's `fmin(..., trials=SparkTrials(parallelism=K))`, TPE, on
  `local[K]` (bench/.venv).
- mlflow-spark-optuna: MLflow's `MlflowSparkStudy(...).optimize(n_jobs=K)` (mlflow.pyspark.optuna:
  Optuna on Spark, MLflow runs as the storage), tracking store an SQLite file (bench/.venv).

Prints one JSON line: trials finished, states, and what the contender's own store says.
The objective is bench/bench_objectives.py's KIND, traced like every contender's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_objectives  # noqa: E402


def _spark(slots: int, name: str) -> Any:
    # Executors' Python: this interpreter (Spark would take `python3` from PATH otherwise), and
    # bench/ on their path for the objectives module.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{slots}]").appName(name)
             .config("spark.ui.showConsoleProgress", "false").config("spark.ui.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def sampler(name: str, seed: int | None) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed) if name == "random" else optuna.samplers.TPESampler(seed=seed)


def optuna_threads(kind: str, trials: int, slots: int, work: Path, seed: int | None,
                   sampler_name: str = "tpe") -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{work / 'optuna.db'}"
    study = optuna.create_study(study_name="bench", storage=url, sampler=sampler(sampler_name, seed))
    study.optimize(getattr(bench_objectives, kind), n_trials=trials, n_jobs=slots)
    states: dict[str, int] = {}
    for t in optuna.load_study(study_name="bench", storage=url).get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {"states": states, "storage": url}


def hyperopt_sparktrials(kind: str, trials: int, slots: int, work: Path, seed: int | None,
                         sampler_name: str = "tpe") -> dict[str, Any]:
    import numpy as np
    from hyperopt import SparkTrials, fmin, hp, rand, tpe

    spark = _spark(slots, "bench-hyperopt")
    spark_trials = SparkTrials(parallelism=slots, spark_session=spark)
    fmin(bench_objectives.hyperopt_fn(kind), {"x": hp.uniform("x", -10, 10)}, algo=rand.suggest if sampler_name == "random" else tpe.suggest,
         max_evals=trials, trials=spark_trials, show_progressbar=False,
         rstate=np.random.default_rng(seed))
    states: dict[str, int] = {}
    for t in spark_trials.trials:
        name = {2: "COMPLETE", 3: "FAIL", 4: "CANCEL"}.get(t["state"], str(t["state"]))
        states[name] = states.get(name, 0) + 1
    spark.stop()
    return {"states": states}


def mlflow_spark_optuna(kind: str, trials: int, slots: int, work: Path, seed: int | None,
                        sampler_name: str = "tpe") -> dict[str, Any]:
    import logging

    import mlflow
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    # The executors' MlflowClient reads the tracking URI from the environment too.
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment("bench", artifact_location=str(work / "artifacts"))
    spark = _spark(slots, "bench-mlflow")
    from mlflow.optuna.storage import MlflowStorage
    from mlflow.pyspark.optuna.study import MlflowSparkStudy

    storage = MlflowStorage(experiment_id=experiment_id)
    study = MlflowSparkStudy("bench", storage, sampler=sampler(sampler_name, seed),
                             mlflow_tracking_uri=uri)
    study.optimize(getattr(bench_objectives, kind), n_trials=trials, n_jobs=slots)
    spark.stop()
    states: dict[str, int] = {}
    loaded = optuna.load_study(study_name="bench", storage=MlflowStorage(experiment_id=experiment_id))
    for t in loaded.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {"states": states, "storage": uri}


CONTENDERS = {
    "optuna-threads": optuna_threads,
    "hyperopt-sparktrials": hyperopt_sparktrials,
    "mlflow-spark-optuna": mlflow_spark_optuna,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--kind", choices=bench_objectives.KINDS, required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    out = CONTENDERS[args.contender](args.kind, args.trials, args.slots, args.work, args.seed, args.sampler)
    out["seconds"] = round(time.time() - started, 3)
    print("@bench " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
