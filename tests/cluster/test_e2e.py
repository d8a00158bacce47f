"""Both studies through spark-submit on the lab cluster: trials on every worker, stored in MySQL."""

from __future__ import annotations

import json

from cluster_lib import FAST_FAULTS, on_driver, runner, status, worker_names

FLAKY = """
def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    if x < 0:
        raise ValueError(f"negative x {x:.3f}")
    return (x - 2) ** 2
"""

WHERE = """
import socket, sys
def objective(trial):
    trial.set_user_attr("python", sys.executable)
    return trial.suggest_float("x", 0, 1)
"""


def summary(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_quadratic_spreads_over_every_worker_and_lands_in_mysql(study_name: str) -> None:
    s = summary(runner("tune", "--study", study_name, "--n-trials", "40", "--n-jobs", "4", "--seed", "7",
                       "--output", "json"))
    assert s["finished"] == 40 and s["states"] == {"COMPLETE": 40}
    assert len(s["hosts"]) == len(worker_names()), f"trials ran on {s['hosts']}, not on every worker"
    assert "driver" not in s["hosts"]
    back = status(study_name)  # read back from MySQL by a separate process
    assert back["finished"] == 40 and back["best"] == s["best"]


def test_the_optuna_command_line_reads_the_same_study(study_name: str) -> None:
    summary(runner("tune", "--study", study_name, "--n-trials", "8", "--output", "json"))
    proc = runner("optuna", "--", "trials", "--study-name", study_name, "-f", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = json.loads(proc.stdout)
    assert len(trials) == 8 and {t["state"] for t in trials} == {"COMPLETE"}
    best = json.loads(runner("optuna", "--", "best-trial", "--study-name", study_name, "-f", "json").stdout)
    assert best["value"] == min(t["value"] for t in trials)


def test_xgboost_study_on_the_cluster(study_name: str) -> None:
    s = summary(runner("tune", "--study", study_name, "--objective", "xgboost-wine", "--n-trials", "4",
                       "--n-jobs", "2", "--output", "json", timeout=900))
    assert s["finished"] == 4 and s["states"] == {"COMPLETE": 4}
    assert 0.3 < s["best"]["value"] < 1.5


def test_the_seeds_archive_flow(study_name: str) -> None:
    """--archives optuna-env.tar.gz#environment with ./environment/bin/python on the executors."""
    assert on_driver("sh", "-c", "cat > /tmp/where_obj.py", input=WHERE).returncode == 0
    s = summary(runner("tune", "--study", study_name, "--runtime", "archive", "--objective",
                       "/tmp/where_obj.py:objective", "--n-trials", "8", "--n-jobs", "2", "--output", "json"))
    assert s["finished"] == 8
    proc = runner("optuna", "--", "trials", "--study-name", study_name, "-f", "json")
    pythons = {t["user_attrs"]["python"] for t in json.loads(proc.stdout)}
    # Spark unpacks the archive in the executor's work dir and links it as ./environment.
    assert all("/environment/bin/python" in p or p.endswith("environment/bin/python") for p in pythons), pythons
    assert not any(p.startswith("/opt/optuna-spark/env") for p in pythons), pythons


def test_failing_objective_on_the_cluster(study_name: str) -> None:
    assert on_driver("sh", "-c", "cat > /tmp/flaky_obj.py", input=FLAKY).returncode == 0
    s = summary(runner("tune", "--study", study_name, "--objective", "/tmp/flaky_obj.py:objective",
                       "--n-trials", "24", "--n-jobs", "4", "--seed", "1", "--output", "json", *FAST_FAULTS))
    assert s["finished"] == 24
    assert s["states"].get("FAIL", 0) >= 1 and s["states"].get("COMPLETE", 0) >= 1
    assert s["states"]["FAIL"] + s["states"]["COMPLETE"] == 24
    assert all(f["reason"].startswith("ValueError: negative x") and f["params"]["x"] < 0 for f in s["failures"])
    text = runner("status", "--study", study_name)
    assert "failed trials" in text.stdout and "ValueError: negative x" in text.stdout
