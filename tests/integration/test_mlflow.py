"""Every trial an MLflow run (optuna_spark.tracking), against a real MLflow tracking server that
this module starts (`mlflow server`, SQLite backend in a temporary folder, 127.0.0.1): studies
with COMPLETE, PRUNED and FAIL trials, run through the command line and through
`optuna_spark.optimize`, read back through MLflow's own client (one nested run per trial, every
state, params and values equal to the Optuna trials); and a server that stops mid-study: the
study ends exact, what was not logged is said, and what a server that comes back can take is
logged later, once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

import optuna_spark

pytestmark = pytest.mark.spark

VENV_BIN = Path(sys.executable).parent
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}

# The objective of every study here: trial.number decides its end (COMPLETE, FAIL, PRUNED).
OBJECTIVE = '''
import time
import optuna

def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    trial.suggest_categorical("kind", ["a", "b"])
    time.sleep(SLEEP)
    if trial.number % 3 == 1:
        raise ValueError(f"boom {trial.number}")
    trial.report(x * x + 1, 0)
    if trial.number % 3 == 2:
        raise optuna.TrialPruned()
    if KEEP:  # a complete trial keeps a file, through Optuna's artifacts API
        import os
        import tempfile

        import optuna_spark
        from optuna.artifacts import upload_artifact

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.txt")
            with open(path, "w") as out:
                out.write(f"trial {trial.number}: x={x!r}\\n")
            upload_artifact(artifact_store=optuna_spark.artifact_store(trial), file_path=path, study_or_trial=trial)
    return x * x
'''


def _objective(sleep: float = 0.0, keep: bool = False) -> Any:
    """The objective as a closure (shipped to the executors by value)."""
    scope: dict[str, Any] = {}
    exec(OBJECTIVE.replace("SLEEP", repr(sleep)).replace("KEEP", repr(keep)), scope)  # noqa: S102 - our source
    return scope["objective"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module", autouse=True)
def mlflow_process(tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` on 127.0.0.1, its runs in SQLite, started first: it boots (half a minute)
    while the Spark session starts."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = (folder / "server.log").open("w")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: starts sooner
    proc = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    yield proc, f"http://127.0.0.1:{port}", folder / "server.log"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def mlflow_server(mlflow_process) -> str:
    """The server's URL, once it answers."""
    import urllib.request

    proc, url, log = mlflow_process
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return str(url)
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.25)


class Relay:
    """A TCP relay to the tracking server that can be cut: open connections closed, new ones
    closed as soon as they are accepted (a server that stopped), and restored."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.down = True
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _client(url: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url)


def _trial_runs(url: str, parent_run_id: str) -> dict[int, Any]:
    client = _client(url)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              max_results=1000)
    numbers = [int(r.data.tags["number"]) for r in runs]
    assert len(numbers) == len(set(numbers)), f"a trial logged twice: {sorted(numbers)}"
    return {int(r.data.tags["number"]): r for r in runs}


def _check_runs_equal_trials(runs: dict[int, Any], trials: list[optuna.trial.FrozenTrial]) -> None:
    """Each trial's run holds what the Optuna trial holds."""
    assert sorted(runs) == sorted(t.number for t in trials)
    for trial in trials:
        run = runs[trial.number]
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["state"] == trial.state.name and run.info.status == STATUS[trial.state.name]
        assert params == {k: str(v) for k, v in trial.params.items()}
        assert float(params["x"]) == trial.params["x"]
        if trial.values:
            assert metrics["value"] == trial.value
        else:
            assert "value" not in metrics
        assert tags["host"] == trial.user_attrs["host"]
        if trial.state.name == "FAIL":
            assert tags["fail_reason"] == trial.user_attrs["fail_reason"]
            assert f"boom {trial.number}" in tags["fail_reason"]
        duration = (trial.datetime_complete - trial.datetime_start).total_seconds()
        assert metrics["duration_seconds"] == pytest.approx(duration)
        assert run.info.end_time - run.info.start_time == pytest.approx(duration * 1000, abs=2)
    assert {t.state.name for t in trials} == {"COMPLETE", "PRUNED", "FAIL"}


def test_optimize_logs_one_nested_run_per_trial_with_its_files(spark, mlflow_server: str, tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="lib-mlflow")
    result = optuna_spark.optimize(study, _objective(keep=True), n_trials=9, n_jobs=2, spark=spark,
                                   catch=(ValueError,), mlflow_tracking_uri=mlflow_server,
                                   artifact_dir=tmp_path / "artifacts")
    assert result.mlflow is not None
    assert (result.mlflow["logged"], result.mlflow["n_not_logged"], result.mlflow["error"]) == (9, 0, None)
    assert result.mlflow["experiment"] == "lib-mlflow" and "mlflow: 9 trial run(s) logged" in str(result)
    _check_runs_equal_trials(_trial_runs(mlflow_server, result.mlflow["parent_run_id"]), study.trials)
    parent = _client(mlflow_server).get_run(result.mlflow["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.info.run_name == "lib-mlflow"
    assert parent.data.params["n_trials"] == "9" and parent.data.tags["optuna_spark.study"] == "lib-mlflow"
    assert parent.data.metrics["best_value"] == study.best_value
    assert _client(mlflow_server).get_experiment(parent.info.experiment_id).name == "lib-mlflow"

    # The complete trials' files: in the study's artifact folder (Optuna's artifacts API) and in
    # their MLflow runs.
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

    runs = _trial_runs(mlflow_server, result.mlflow["parent_run_id"])
    for trial in study.trials:
        metas = get_all_artifact_meta(trial, storage=study._storage)
        if trial.state.name != "COMPLETE":
            assert not metas and "artifact.model.txt" not in runs[trial.number].data.tags
            continue
        expected = f"trial {trial.number}: x={trial.params['x']!r}\n"
        (meta,) = metas
        kept = tmp_path / f"kept-{trial.number}.txt"
        download_artifact(artifact_store=FileSystemArtifactStore(tmp_path / "artifacts"),
                          artifact_id=meta.artifact_id, file_path=str(kept))
        assert kept.read_text() == expected
        run = runs[trial.number]
        assert run.data.tags["artifact.model.txt"] == meta.artifact_id
        fetched = _client(mlflow_server).download_artifacts(run.info.run_id, "optuna_artifacts/model.txt",
                                                            str(tmp_path))
        assert Path(fetched).read_text() == expected


def test_tune_logs_one_nested_run_per_trial_and_says_what_a_closed_port_did_not_take(
        mlflow_server: str, run_cli, tmp_path: Path) -> None:
    (tmp_path / "mixed.py").write_text(OBJECTIVE.replace("SLEEP", "0.0").replace("KEEP", "False"))
    common = ("tune", "--objective", "mixed.py:objective", "--n-trials", "9", "--n-jobs", "2", "--master", "local[2]")
    proc = run_cli(*common, "--study", "cli-mlflow", "--mlflow-tracking-uri", mlflow_server,
                   "--mlflow-experiment", "cli-experiment", "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert (summary["mlflow"]["logged"], summary["mlflow"]["n_not_logged"]) == (9, 0)
    assert summary["mlflow"]["experiment"] == "cli-experiment"
    study = optuna.load_study(study_name="cli-mlflow", storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}")
    _check_runs_equal_trials(_trial_runs(mlflow_server, summary["mlflow"]["parent_run_id"]), study.trials)

    closed = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    proc = run_cli(*common, "--study", "cli-no-server", "--mlflow-tracking-uri", closed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 90
    assert f"mlflow     0 trial run(s) logged to experiment 'cli-no-server' at {closed}" in proc.stdout
    assert "NOT logged: 9 trial(s) (#0, #1, #2" in proc.stdout and "connection refused" in proc.stdout
    assert "finished   9 of 9" in proc.stdout
    assert "MLflow" in proc.stderr and "the study goes on" in proc.stderr  # said once, while it ran


def test_a_server_stopped_mid_study_loses_nothing_of_the_study(spark, mlflow_server: str, tmp_path: Path) -> None:
    relay = Relay(int(mlflow_server.rsplit(":", 1)[1]))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="outage-mlflow")
    seen: list[int] = []

    def cut_then_restore(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seen.append(trial.number)
        if len(seen) == 3:
            relay.cut()
        if len(seen) == 8:
            relay.restore()

    try:
        # Stopped after the third trial, back after the eighth: every trial logged, once.
        first = optuna_spark.optimize(study, _objective(0.2), n_trials=12, n_jobs=2, spark=spark,
                                      catch=(ValueError,), callbacks=[cut_then_restore],
                                      mlflow_tracking_uri=relay.url)
        assert first.n_finished == 12 and len(study.trials) == 12
        assert (first.mlflow["logged"], first.mlflow["n_not_logged"], first.mlflow["error"]) == (12, 0, None)
        _check_runs_equal_trials(_trial_runs(mlflow_server, first.mlflow["parent_run_id"]), study.trials)

        # Stopped after this call's second trial, for good: the study still ends exact, and the
        # summary names the trials MLflow did not get.
        seen.clear()

        def cut(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            seen.append(trial.number)
            if len(seen) == 2:
                relay.cut()

        started = time.monotonic()
        second = optuna_spark.optimize(study, _objective(0.5), n_trials=6, n_jobs=2, spark=spark,
                                       catch=(ValueError,), callbacks=[cut], mlflow_tracking_uri=relay.url)
        assert time.monotonic() - started < 60
        assert second.n_finished == 18 and len(study.trials) == 18 and second.n_trials_run == 6
        report = second.mlflow
        assert report["n_not_logged"] >= 3 and report["logged"] + report["n_not_logged"] == 6
        assert report["error"] and str(relay.port) in report["error"]
        logged = _trial_runs(mlflow_server, report["parent_run_id"])
        this_call = sorted(t.number for t in study.trials[12:])
        assert sorted(set(logged) | set(report["not_logged"])) == this_call
        assert not set(logged) & set(report["not_logged"])
        assert f"NOT logged: {report['n_not_logged']} trial(s)" in str(second)
        # The parent run could not be ended: MLflow still shows it running.
        assert _client(mlflow_server).get_run(report["parent_run_id"]).info.status == "RUNNING"
    finally:
        relay.close()
