"""The library on the lab: a user's script calls `optuna_spark.optimize` on the cluster's
standalone master (its RPC secret) and MySQL, started by `optuna-spark submit` as the runner
account, like `tune`. Budgets are per call and exact; the trials run on the workers."""

from __future__ import annotations

import json

from cluster_lib import on_driver, runner, status, worker_names

# A script as a user writes it: the objective is a closure defined in the script, shipped by value.
SCRIPT = r'''
import json, sys

import optuna
import optuna_spark

name, n_trials = sys.argv[1], int(sys.argv[2])
shift = 2.0


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    return (x - shift) ** 2


seen = []
study = optuna.create_study(storage=optuna_spark.rdb_storage(), study_name=name, load_if_exists=True)
first = optuna_spark.optimize(study, objective, n_trials=n_trials, n_jobs=4,
                              callbacks=[lambda s, t: seen.append(t.number)])
second = optuna_spark.optimize(study, objective, n_trials=n_trials, n_jobs=4)
from pyspark.sql import SparkSession

print("RESULT " + json.dumps({
    "master": SparkSession.getActiveSession().sparkContext.master,
    "runs": [first.n_trials_run, second.n_trials_run], "finished": second.n_finished,
    "states": second.states, "hosts": second.trials_per_host, "callbacks": len(seen),
    "storage": study._storage._backend.engine.url.get_backend_name(),
}))
'''


def test_a_script_calls_optimize_on_the_standalone_master_and_mysql(study_name: str) -> None:
    assert runner_put("/tmp/optuna_spark_library_check.py", SCRIPT)
    proc = runner("submit", "/tmp/optuna_spark_library_check.py", "--", study_name, "20", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    got = json.loads(line[len("RESULT "):])
    assert got["master"].startswith("spark://"), got
    assert got["storage"] == "mysql", got
    assert got["runs"] == [20, 20] and got["finished"] == 40 and got["states"] == {"COMPLETE": 40}, got
    assert got["callbacks"] == 20, "callbacks run in the script's process, once per trial of their call"
    assert "driver" not in got["hosts"] and sum(got["hosts"].values()) == 40, got["hosts"]
    assert len(got["hosts"]) == len(worker_names()), f"trials ran on {got['hosts']}, not on every worker"
    back = status(study_name)  # the command line reads the same study back from MySQL
    assert back["finished"] == 40


def runner_put(path: str, text: str) -> bool:
    """A file on the driver that the runner account can read."""
    return on_driver("sh", "-c", f"umask 022 && cat > {path}", input=text).returncode == 0
