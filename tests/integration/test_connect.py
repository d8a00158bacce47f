"""optuna_spark.optimize on a Spark Connect session (no SparkContext: the tasks are started
through the DataFrame API), against the Spark Connect server that pyspark's own distribution
ships, started here on 127.0.0.1 with a local[2] master."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

import optuna_spark
from optuna_spark import OptimizeError

pytestmark = pytest.mark.spark

WINE = Path(__file__).resolve().parents[2] / "runner" / "optuna_spark" / "data" / "winequality-red.csv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def connect(tmp_path_factory: pytest.TempPathFactory):
    """A Spark Connect server (pyspark's sbin/start-connect-server.sh --wait) and a client session."""
    import pyspark
    from pyspark.sql import SparkSession

    home = Path(pyspark.__file__).parent
    logs = tmp_path_factory.mktemp("connect")
    port = _free_port()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOG_DIR": str(logs), "SPARK_PID_DIR": str(logs),
           "PYSPARK_PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("SPARK_CONF_DIR", None)
    log = (logs / "server.log").open("w")
    server = subprocess.Popen(
        [str(home / "sbin" / "start-connect-server.sh"), "--wait", "--master", "local[2]",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
         "--conf", "spark.ui.enabled=false"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the Spark Connect server exited: {(logs / 'server.log').read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail("the Spark Connect server did not listen within 120 s")
    before = dict(os.environ)  # the Connect client marks the process (SPARK_CONNECT_MODE_ENABLED)
    session = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    yield session
    session.stop()
    os.environ.clear()
    os.environ.update(before)
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    log.close()


def _study(tmp_path: Path, name: str = "connect") -> optuna.Study:
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name=name)


def test_it_is_a_connect_session_without_a_spark_context(connect) -> None:
    from optuna_spark.engine import is_connect

    assert is_connect(connect)
    with pytest.raises(Exception):
        connect.sparkContext  # noqa: B018 - Spark Connect has none


def test_two_calls_of_ten_leave_twenty_finished_trials(connect, tmp_path: Path) -> None:
    centre = 3.0

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        return (x - centre) ** 2

    study = _study(tmp_path)
    first = optuna_spark.optimize(study, objective, n_trials=10, spark=connect)
    assert first.n_jobs == 2 and first.n_trials_run == 10
    second = optuna_spark.optimize(study, objective, n_trials=10, n_jobs=3, spark=connect)
    assert second.n_trials_run == 10 and second.n_finished == 20
    assert len(study.trials) == 20 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_spark_dataframe_reaches_each_task_through_spark(connect, tmp_path: Path) -> None:
    frame = pd.read_csv(WINE, sep=";")
    data = connect.read.csv(str(WINE), sep=";", header=True, inferSchema=True)

    def objective(trial: optuna.Trial, data: pd.DataFrame) -> float:
        trial.set_user_attr("rows", int(len(data)))
        trial.set_user_attr("quality_sum", int(data["quality"].sum()))
        return trial.suggest_float("x", 0, 1)

    study = _study(tmp_path)
    optuna_spark.optimize(study, objective, n_trials=6, n_jobs=3, spark=connect, data=data)
    assert {t.user_attrs["rows"] for t in study.trials} == {len(frame)}
    assert {t.user_attrs["quality_sum"] for t in study.trials} == {int(frame["quality"].sum())}


def test_a_pandas_dataframe_travels_with_the_tasks(connect, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": range(50)})
    study = _study(tmp_path)
    optuna_spark.optimize(study, lambda t, data: float(data["a"].sum()) + t.suggest_float("x", 0, 1),
                          n_trials=4, n_jobs=2, spark=connect, data=frame)
    assert all(1225 <= t.value <= 1226 for t in study.trials)


def test_an_objective_error_comes_back_whole(connect, tmp_path: Path) -> None:
    def objective(trial: optuna.Trial) -> float:
        raise RuntimeError("no luck here")

    study = _study(tmp_path)
    with pytest.raises(OptimizeError, match="RuntimeError: no luck here") as caught:
        optuna_spark.optimize(study, objective, n_trials=5, n_jobs=2, spark=connect)
    # each task stops at its first failure: at most one failed trial per task
    assert 1 <= len(study.trials) <= 2
    assert all("no luck here" in t.user_attrs["fail_reason"] for t in study.trials)
    assert "no luck here" in caught.value.task_errors[0]["traceback"]
