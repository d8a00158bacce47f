"""One run of a contender that is not the runner, in its own process (the harness times it).

    PYTHON bench/peers.py CONTENDER --kind KIND --trials N --slots K --work DIR [--seed S]

CONTENDER:
- optuna-threads: `study.optimize(n_jobs=K)` in this process, a fresh SQLite file (the project's
  venv: the runner's own Optuna).
- hyperopt-sparktrials: Hyperopt's `fmin(..., trials=SparkTrials(parallelism=K),
  max_queue_len=K)`, TPE, on `local[K]` (bench/.venv). `max_queue_len` at the parallelism, as
  Databricks' "Hyperopt concepts" page advises ("it can be helpful to increase this beyond the
  default value of 1, but generally no larger than the SparkTrials setting parallelism",
  docs.databricks.com/machine-learning/automl-hyperparam-tuning/hyperopt-concepts.html); with
  fmin's default of 1, SparkTrials ran about one trial a second whatever K.
- ray-tune-optuna: Ray Tune's `Tuner` with `OptunaSearch` (the same Optuna sampler), K concurrent
  trials (`max_concurrent_trials=K`) on a local Ray of K logical CPUs (`ray.init(num_cpus=K)`),
  one CPU per trial, results under DIR (bench/.venv, `ray[tune]`).
- mlflow-spark-optuna: MLflow's `MlflowSparkStudy(...).optimize(n_jobs=K)` (mlflow.pyspark.optuna:
  Optuna on Spark, MLflow runs as the storage), tracking store an SQLite file (bench/.venv).

Prints one JSON line: trials finished, states, what the contender's own store says, and `config`:
the settings that differ from the contender's defaults (the harness keeps them with the run).
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
         max_evals=trials, trials=spark_trials, show_progressbar=False, max_queue_len=slots,
         rstate=np.random.default_rng(seed))
    states: dict[str, int] = {}
    for t in spark_trials.trials:
        name = {2: "COMPLETE", 3: "FAIL", 4: "CANCEL"}.get(t["state"], str(t["state"]))
        states[name] = states.get(name, 0) + 1
    spark.stop()
    return {"states": states, "config": {"max_queue_len": slots, "parallelism": slots}}


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


def ray_tune_optuna(kind: str, trials: int, slots: int, work: Path, seed: int | None,
                    sampler_name: str = "tpe") -> dict[str, Any]:
    import logging

    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    # The trial processes import bench_objectives and trace like every contender's.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=slots, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                       if k in (bench_objectives.TRACE_ENV, "PYTHONPATH")
                                       or k.startswith("BENCH_LN_")}})
    fn = bench_objectives.ray_fn(kind)
    search = OptunaSearch(metric="loss", mode="min", sampler=sampler(sampler_name, seed))
    tuner = tune.Tuner(
        fn, param_space={"x": tune.uniform(-10, 10)},
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=slots),
        run_config=tune.RunConfig(name="bench", storage_path=str(work / "ray_results"), verbose=0),
    )
    grid = tuner.fit()
    states: dict[str, int] = {}
    for result in grid:
        name = "FAIL" if result.error else "COMPLETE"
        states[name] = states.get(name, 0) + 1
    ray.shutdown()
    return {"states": states, "config": {"ray": ray.__version__, "max_concurrent_trials": slots, "num_cpus": slots}}


CONTENDERS = {
    "optuna-threads": optuna_threads,
    "hyperopt-sparktrials": hyperopt_sparktrials,
    "mlflow-spark-optuna": mlflow_spark_optuna,
    "ray-tune-optuna": ray_tune_optuna,
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
