"""`tune --data` on the lab: a Parquet file that exists only on the driver reaches the trials that
run on the workers (read by the runner on the driver, broadcast by Spark), each trial sees every
row, and each task loads it once."""

from __future__ import annotations

import json

from cluster_lib import on_driver, runner, worker_names

RUNTIME_PYTHON = "/opt/optuna-spark/env/bin/python"

# Written with the runtime's pandas and pyarrow, on the driver only (its /tmp: no worker has it).
MAKE_PARQUET = """
import sys
from importlib import resources
import pandas as pd
with resources.files("optuna_spark.data").joinpath("winequality-red.csv").open("rb") as fh:
    table = pd.read_csv(fh, sep=";")
table.to_parquet(sys.argv[1])
print(len(table), float(table.to_numpy().sum()))
"""

OBJECTIVE = """
import os
import socket
from optuna_spark import dataset

PATH = {path!r}

def objective(trial, data):
    x = trial.suggest_float("x", 0, 1)
    trial.set_user_attr("rows", len(data))
    trial.set_user_attr("checksum", float(data.to_numpy().sum()))
    trial.set_user_attr("file_here", os.path.exists(PATH))
    trial.set_user_attr("process", f"{{socket.gethostname()}}:{{os.getpid()}}")
    trial.set_user_attr("loads", dataset.load_count())
    return (x - 0.5) ** 2
"""


def summary(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_a_parquet_file_of_the_driver_reaches_every_trial_on_the_workers(study_name: str) -> None:
    path = f"/tmp/{study_name}.parquet"
    made = on_driver(RUNTIME_PYTHON, "-c", MAKE_PARQUET, path)
    assert made.returncode == 0, made.stderr[-2000:]
    rows, checksum = int(made.stdout.split()[0]), float(made.stdout.split()[1])
    # The runner runs as its own account: the file and the objective must be readable by it.
    assert on_driver("chmod", "644", path).returncode == 0
    obj = f"/tmp/{study_name.replace('-', '_')}_obj.py"  # a module name: no dash
    assert on_driver("sh", "-c", f"cat > {obj}", input=OBJECTIVE.format(path=path)).returncode == 0
    try:
        proc = runner("tune", "--study", study_name, "--objective", f"{obj}:objective", "--data", path,
                      "--target", "quality", "--n-trials", "24", "--n-jobs", "4", "--output", "json")
        s = summary(proc)
        assert s["finished"] == 24 and s["states"] == {"COMPLETE": 24}
        assert f"{rows} rows × 12 columns" in proc.stderr and "read on the driver" in proc.stderr, proc.stderr
        # The trials ran on the workers, where the file does not exist.
        assert len(s["hosts"]) == len(worker_names()), s["hosts"]
        assert "driver" not in s["hosts"]
        listed = runner("optuna", "--", "trials", "--study-name", study_name, "-f", "json")
        assert listed.returncode == 0, listed.stderr[-2000:]
        trials = json.loads(listed.stdout)
        assert len(trials) == 24
        for t in trials:
            attrs = t["user_attrs"]
            assert attrs["rows"] == rows and abs(attrs["checksum"] - checksum) < 1e-6 * abs(checksum), attrs
            assert attrs["file_here"] is False, attrs
            assert attrs["loads"] == 1, attrs  # one load in each Python worker, for all its trials
        processes = {t["user_attrs"]["process"] for t in trials}
        assert len(processes) <= 4 < 24
        # At most one load per task; every process that ran trials loaded once (above). A task
        # that started after the budget was spent may have loaded and run nothing.
        loads = [task.get("data_loads", 0) for task in s["tasks"]]
        assert all(n <= 1 for n in loads), loads
        assert len(processes) <= sum(loads) <= len(s["tasks"]), (loads, sorted(processes))
    finally:
        on_driver("rm", "-f", path, obj)


def test_xgboost_wine_on_a_table_of_the_driver(study_name: str) -> None:
    path = f"/tmp/{study_name}.parquet"
    assert on_driver(RUNTIME_PYTHON, "-c", MAKE_PARQUET, path).returncode == 0
    assert on_driver("chmod", "644", path).returncode == 0
    try:
        s = summary(runner("tune", "--study", study_name, "--objective", "xgboost-wine", "--data", path,
                           "--n-trials", "4", "--n-jobs", "2", "--output", "json", timeout=900))
        assert s["finished"] == 4 and s["states"] == {"COMPLETE": 4}
        assert 0.3 < s["best"]["value"] < 1.5
    finally:
        on_driver("rm", "-f", path)
