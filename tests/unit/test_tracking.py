"""optuna_spark.tracking's pure parts (URIs, keys, a trial as an MLflow run, the summary's line)
and the tracker's retries against a fake MLflow client: a failed call is tried again at a later
poll without a second run, a refused one is not, and what was not logged is reported."""

from __future__ import annotations

import datetime
import re
import threading
import time
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_spark.config import ConfigError, StudySettings
from optuna_spark.tracking import (
    HTTP_DEFAULTS,
    ParentRun,
    Tracker,
    check_tracking_uri,
    error_line,
    format_tracking,
    http_defaults,
    mlflow_key,
    redact_uri,
    refused,
    trial_record,
    unique_keys,
    value_keys,
)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.org/prefix", "databricks",
                                 "databricks://profile", "sqlite:///mlflow.db",
                                 "mysql+pymysql://mlflow@db/mlflow?ssl_key=/etc/k.pem"])
def test_tracking_uris_taken(uri: str) -> None:
    assert check_tracking_uri(uri) == uri


@pytest.mark.parametrize("uri, says", [
    ("", "must be a URI"),
    ("localhost:5000", "http://localhost:5000"),
    ("mlruns", "with a scheme"),
    ("/", "with a scheme"),
    ("http://host:5000/a b", "spaces"),
    ("http:///path", "no host"),
    ("https://user:secret@host", "MLFLOW_TRACKING_USERNAME"),
    ("https://token@host", "must not carry a user or password"),
    ("mysql://mlflow:secret@db/mlflow", "must not carry"),
    ("http://host:99999", "port"),
    ("http://host:abc", "port"),
    ("https://host/?token=secret", "MLFLOW_TRACKING_TOKEN"),
    ("https://host/x?Access_Key=secret&a=1", "Access_Key"),
    ("file:///tmp/mlruns", "MLFLOW_ALLOW_FILE_STORE"),
])
def test_tracking_uris_refused_in_one_line_without_the_secret(uri: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_tracking_uri(uri)
    assert says in str(err.value) and "secret" not in str(err.value).replace("MLFLOW_", "")


def test_study_settings_check_the_mlflow_settings() -> None:
    base = {"name": "s", "storage": "sqlite:///x.db", "n_trials": 1}
    StudySettings(**base, mlflow_tracking_uri="http://127.0.0.1:5000", mlflow_experiment="e").validate()
    with pytest.raises(ConfigError, match="needs --mlflow-tracking-uri"):
        StudySettings(**base, mlflow_experiment="e").validate()
    with pytest.raises(ConfigError, match="1 to 500"):
        StudySettings(**base, mlflow_tracking_uri="http://h:5000", mlflow_experiment=" ").validate()


def test_redacted_uri_hides_a_password() -> None:
    assert redact_uri("https://user:secret@host/x") == "https://user:***@host/x"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_keys_mlflow_takes() -> None:
    assert mlflow_key("lr") == "lr"
    assert mlflow_key("layers[0].units") == "layers_0_.units"
    assert mlflow_key("a//b") == "a__b"
    assert mlflow_key("../x") == "__x"
    assert mlflow_key("/abs") == "_abs"
    assert mlflow_key("x" * 300) == "x" * 250
    assert unique_keys(["x[0]", "x(0)", "x_0_"]) == {"x[0]": "x_0_", "x(0)": "x_0__2", "x_0_": "x_0__3"}
    assert value_keys(1, None) == ["value"]
    assert value_keys(2, None) == ["value_0", "value_1"]
    assert value_keys(2, ["loss", "latency (ms)"]) == ["loss", "latency _ms_"]
    assert value_keys(2, ["only one"]) == ["value_0", "value_1"]


def _trial(number: int, state: TrialState, **kwargs: Any) -> optuna.trial.FrozenTrial:
    start = datetime.datetime(2026, 1, 2, 3, 4, 5)
    trial = create_trial(state=state, params={"x": 1.5, "layers[0]": 3.0},
                         distributions={"x": FloatDistribution(0, 2), "layers[0]": FloatDistribution(0, 4)},
                         **kwargs)
    trial.number, trial._trial_id = number, 100 + number
    trial.datetime_start, trial.datetime_complete = start, start + datetime.timedelta(seconds=2.5)
    return trial


def test_a_complete_trial_as_a_run() -> None:
    trial = _trial(7, TrialState.COMPLETE, value=0.25, intermediate_values={0: 1.0, 1: 0.5},
                   user_attrs={"host": "worker-1", "note": "n"})
    record = trial_record(trial, ["minimize"])
    end = int(trial.datetime_complete.timestamp() * 1000)
    assert (record.number, record.trial_id, record.state, record.status) == (7, 107, "COMPLETE", "FINISHED")
    assert record.run_name == "trial 7" and record.end_ms - record.start_ms == 2500
    assert record.params == {"x": "1.5", "layers_0_": "3.0"}
    assert ("value", 0.25, end, 0) in record.metrics
    assert [m for m in record.metrics if m[0] == "intermediate_value"] == [
        ("intermediate_value", 1.0, end, 0), ("intermediate_value", 0.5, end, 1)]
    assert ("duration_seconds", 2.5, end, 0) in record.metrics
    assert record.tags["number"] == "7" and record.tags["state"] == "COMPLETE"
    assert record.tags["host"] == "worker-1" and record.tags["user_attr.note"] == "n"
    assert record.tags["direction"] == "minimize" and "x_distribution" in record.tags
    assert "fail_reason" not in record.tags


def test_pruned_and_failed_trials_as_runs() -> None:
    pruned = trial_record(_trial(1, TrialState.PRUNED, intermediate_values={3: 2.0}), ["maximize"])
    assert (pruned.state, pruned.status) == ("PRUNED", "KILLED")
    assert not any(m[0] == "value" for m in pruned.metrics)
    failed = trial_record(_trial(2, TrialState.FAIL, user_attrs={"fail_reason": "ValueError: boom", "host": "h"}),
                          ["minimize"])
    assert (failed.status, failed.tags["fail_reason"], failed.tags["host"]) == ("FAILED", "ValueError: boom", "h")
    no_reason = trial_record(_trial(3, TrialState.FAIL), ["minimize"])
    assert no_reason.tags["fail_reason"] == "no message stored"
    multi = trial_record(_trial(4, TrialState.COMPLETE, values=[1.0, 2.0]), ["minimize", "maximize"])
    assert {m[0]: m[1] for m in multi.metrics if m[0].startswith("value")} == {"value_0": 1.0, "value_1": 2.0}
    assert multi.tags["direction"] == "minimize,maximize"


def test_long_values_are_clipped_to_mlflows_limits() -> None:
    trial = _trial(5, TrialState.FAIL, user_attrs={"fail_reason": "x" * 20000})
    assert len(trial_record(trial, ["minimize"]).tags["fail_reason"]) == 8000


class RestException(Exception):  # named as MLflow's: refused() reads the name and the status
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status

    def get_http_status_code(self) -> int:
        return self.status


def test_refused_and_error_lines() -> None:
    assert refused(RestException(400)) and refused(RestException(403))
    assert not refused(RestException(503)) and not refused(ConnectionError("refused"))
    down = Exception("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/create failed with exception "
                     "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded (Caused by "
                     "NewConnectionError(... [Errno 111] Connection refused))")
    assert error_line(down) == "http://127.0.0.1:9/api/2.0/mlflow/runs/create: connection refused"
    slow = Exception("API request to http://h/api/2.0/mlflow/runs/create?x=1 failed with timeout exception Read "
                     "timed out")
    assert error_line(slow) == "http://h/api/2.0/mlflow/runs/create: timed out"


def test_the_summary_line() -> None:
    report = {"tracking_uri": "http://h:5000", "experiment": "e", "parent_run_id": "abc", "logged": 3,
              "n_not_logged": 12, "not_logged": list(range(12)), "error": "trial 11: http://h:5000/x: timed out"}
    line = format_tracking(report)
    assert line.startswith("3 trial run(s) logged to experiment 'e' at http://h:5000, parent run abc")
    assert "NOT logged: 12 trial(s) (#0, #1" in line and "#9, 2 more)" in line and "timed out" in line
    assert "NOT" not in format_tracking({**report, "n_not_logged": 0, "not_logged": [], "error": None})


def test_http_defaults_apply_for_the_run_only_and_keep_the_users() -> None:
    env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    with http_defaults(env):
        assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"
        assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert env == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


# ---------------------------------------------------------------------------- the tracker, faked


class FakeClient:
    """MlflowClient's calls the tracker makes; `down` makes every call fail as a server that
    does not answer; `lose_create_answers` makes that many create_run calls create and then fail."""

    def __init__(self) -> None:
        self.down = False
        self.lose_create_answers = 0
        self.refuse_trial: int | None = None
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("API request to http://h/api failed with exception Connection refused")

    def get_experiment_by_name(self, name: str) -> Any:
        self._check()
        eid = self.experiments.get(name)
        return None if eid is None else SimpleNamespace(experiment_id=eid, lifecycle_stage="active")

    def create_experiment(self, name: str) -> str:
        self._check()
        self.experiments[name] = str(len(self.experiments) + 1)
        return self.experiments[name]

    def create_run(self, experiment_id: str, start_time: int, tags: dict[str, str], run_name: str) -> Any:
        self._check()
        with self.lock:
            run_id = f"run{len(self.runs)}"
            self.runs[run_id] = {"name": run_name, "tags": dict(tags), "params": {}, "metrics": [], "status": None}
        if self.lose_create_answers:
            self.lose_create_answers -= 1
            raise ConnectionError("API request to http://h/api failed with timeout exception Read timed out")
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    def log_batch(self, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        self._check()
        run = self.runs[run_id]
        if self.refuse_trial is not None and run["tags"].get("optuna_spark.trial_number") == str(self.refuse_trial):
            raise RestException(400)
        run["params"].update({p.key: p.value for p in params})
        run["tags"].update({t.key: t.value for t in tags})
        run["metrics"] += [(m.key, m.value, m.step) for m in metrics]

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._check()
        self.runs[run_id]["status"] = status

    def search_runs(self, experiment_ids: list[str], filter_string: str, max_results: int) -> list[Any]:
        self._check()
        wanted = re.findall(r"tags\.`([^`]+)` = '([^']*)'", filter_string)
        found = [rid for rid, run in self.runs.items() if all(run["tags"].get(k) == v for k, v in wanted)]
        return [SimpleNamespace(info=SimpleNamespace(run_id=rid)) for rid in found[:max_results]]

    def trial_runs(self) -> dict[str, dict[str, Any]]:
        return {r["tags"]["number"]: r for r in self.runs.values() if "mlflow.parentRunId" in r["tags"]
                and "number" in r["tags"]}


class FakeStorage:
    def __init__(self, trials: list[Any]) -> None:
        self.trials = trials

    def get_all_trials(self, study_id: int, deepcopy: bool = False) -> list[Any]:
        return list(self.trials)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return {}


def _running(number: int) -> Any:
    trial = _trial(number, TrialState.COMPLETE, value=float(number))
    trial.state = TrialState.RUNNING
    return trial


def _tracker(client: FakeClient, **kwargs: Any) -> Tracker:
    return Tracker("http://h:5000", "exp", ["minimize"], ParentRun("study", {"n_trials": "4"}, {"k": "v"}),
                   interval=0.01, client_factory=lambda uri: client, **kwargs)


def _wait(condition: Any, seconds: float = 60.0) -> None:  # the first log imports mlflow: seconds on a busy machine
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_a_server_that_comes_back_gets_every_trial_once() -> None:
    old = _trial(0, TrialState.COMPLETE, value=9.0)  # finished before the run: not its own
    trials = [old, _running(1), _running(2)]
    storage, client = FakeStorage(trials), FakeClient()
    warnings: list[str] = []
    tracker = _tracker(client, warn=lambda kind, message: warnings.append(message))
    client.down = True
    tracker.start(storage, 1)
    for t in trials[1:]:
        t.state = TrialState.COMPLETE
    _wait(lambda: tracker.error is not None)
    assert client.runs == {} and len(warnings) == 1 and "retried" in warnings[0]
    client.down = False
    client.lose_create_answers = 2  # the parent's and trial 1's runs made, their answers lost: found again
    _wait(lambda: len(tracker.logged) == 2)
    report = tracker.finish(trials, {"errors": [], "best": {"value": 1.0}, "finished": 3})
    runs = client.trial_runs()
    assert sorted(runs) == ["1", "2"] and len(client.runs) == 3  # the parent and two trials
    assert all(r["status"] == "FINISHED" and r["params"]["x"] == "1.5" for r in runs.values())
    parent = next(r for r in client.runs.values() if "mlflow.parentRunId" not in r["tags"])
    assert parent["status"] == "FINISHED" and parent["params"] == {"n_trials": "4"}
    assert ("best_value", 1.0, 0) in parent["metrics"] and ("trials_logged", 2.0, 0) in parent["metrics"]
    assert report["logged"] == 2 and report["n_not_logged"] == 0 and report["parent_run_id"] == "run0"


def test_a_server_down_to_the_end_loses_nothing_of_the_study_and_says_what_was_not_logged() -> None:
    trials = [_running(n) for n in range(3)]
    client = FakeClient()
    tracker = _tracker(client, flush_seconds=0.5)
    tracker.start(FakeStorage(trials), 1)
    _wait(lambda: tracker.parent_run_id is not None)  # the parent run made while the server answered
    client.down = True
    for t in trials:
        t.state = TrialState.COMPLETE
    started = time.monotonic()
    report = tracker.finish(trials, {"errors": ["a task failed"], "finished": 3})
    assert time.monotonic() - started < 2
    assert report["logged"] == 0 and report["n_not_logged"] == 3 and report["not_logged"] == [0, 1, 2]
    assert "connection refused" in report["error"].lower()


def test_a_refused_trial_is_not_retried_and_the_others_are_logged() -> None:
    trials = [_running(n) for n in range(3)]
    client = FakeClient()
    client.refuse_trial = 1
    tracker = _tracker(client)
    tracker.start(FakeStorage(trials), 1)
    for t in trials:
        t.state = TrialState.COMPLETE
    report = tracker.finish(trials, {"errors": [], "finished": 3})
    assert report["logged"] == 2 and report["not_logged"] == [1] and "HTTP 400" in report["error"]
    assert len([r for r in client.runs.values() if r["tags"].get("optuna_spark.trial_number") == "1"]) == 1


def test_without_mlflow_nothing_is_logged_and_the_summary_says_why() -> None:
    def no_client(uri: str) -> Any:
        raise ImportError("No module named 'mlflow'")

    trials = [_running(0)]
    tracker = Tracker("http://h:5000", "exp", ["minimize"], ParentRun("s"), interval=0.01, client_factory=no_client)
    tracker.start(FakeStorage(trials), 1)
    trials[0].state = TrialState.FAIL
    report = tracker.finish(trials, None)
    assert report["n_not_logged"] == 1 and "No module named 'mlflow'" in report["error"]


def test_a_trials_files_found_in_optuna_s_attributes_and_named_in_its_run() -> None:
    from optuna_spark.tracking import artifact_names, trial_artifacts

    trial = _trial(6, TrialState.COMPLETE, value=1.0, system_attrs={
        "artifacts:b": '{"artifact_id": "b", "filename": "model.json", "mimetype": "application/json", '
                       '"encoding": null}',
        "artifacts:a": '{"artifact_id": "a", "filename": "plot.png", "mimetype": "image/png", "encoding": null}',
        "artifacts:c": '{"artifact_id": "c", "filename": "sub/model.json", "mimetype": null, "encoding": null}',
        "artifacts:bad": "not json", "other": "x"})
    assert [m["artifact_id"] for m in trial_artifacts(trial)] == ["b", "a", "c"]
    assert artifact_names(trial_artifacts(trial)) == {"b": "b-model.json", "a": "plot.png", "c": "c-model.json"}
    tags = trial_record(trial, ["minimize"]).tags
    assert tags["artifact.plot.png"] == "a" and tags["artifact.model.json"] == "b"
    assert tags["artifact.sub/model.json"] == "c"


def test_the_studys_artifact_folder_for_the_objective(tmp_path) -> None:
    from optuna.artifacts import FileSystemArtifactStore

    from optuna_spark import OptunaSparkError, artifact_store
    from optuna_spark.tracking import publish_artifact_dir

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="files")
    with pytest.raises(OptunaSparkError, match="--artifact-dir"):
        artifact_store(study)
    publish_artifact_dir(study._storage, study._study_id, str(tmp_path / "kept"))
    store = artifact_store(study.ask())
    assert isinstance(store, FileSystemArtifactStore) and (tmp_path / "kept").is_dir()
    assert store._base_path == tmp_path / "kept"


def test_the_command_line_and_the_config_file_set_them_and_the_job_carries_them(tmp_path) -> None:
    from pathlib import Path

    from optuna_spark.cli import build_parser
    from optuna_spark.config import Job, ObjectiveSpec, build_settings

    conf = tmp_path / "runner.toml"
    conf.write_text('mlflow_tracking_uri = "http://127.0.0.1:5000"\nartifact_dir = "~/kept"\n')
    args = build_parser().parse_args(["tune", "--config", str(conf), "--work-dir", str(tmp_path / "w"),
                                      "--mlflow-experiment", "e"])
    study = build_settings("tune", vars(args), {"HOME": str(tmp_path)}).study
    assert study is not None
    assert (study.mlflow_tracking_uri, study.mlflow_experiment) == ("http://127.0.0.1:5000", "e")
    assert study.artifact_dir == str((Path("~").expanduser() / "kept").resolve())
    job = Job.from_json(Job(study=study, objective=ObjectiveSpec("q", "m", "f")).to_json())
    assert job.study == study
    args = build_parser().parse_args(["tune", "--config", str(conf), "--work-dir", str(tmp_path / "w"),
                                      "--mlflow-tracking-uri", "https://u:secret@h"])
    with pytest.raises(ConfigError, match="must not carry a user or password"):
        build_settings("tune", vars(args), {})


def test_a_file_store_is_taken_where_mlflow_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert check_tracking_uri("file:///tmp/mlruns") == "file:///tmp/mlruns"


def test_an_artifact_dir_that_cannot_be_a_folder_is_refused_before_anything_runs(tmp_path) -> None:
    from optuna_spark.config import check_artifact_dir

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad, says in ((str(a_file), "is not a directory"), (str(a_file / "below"), "is not a directory"),
                      ("relative/dir", "absolute path"), ("/" + "x" * 300, "at most 255")):
        with pytest.raises(ConfigError, match=says):
            check_artifact_dir(bad)
        with pytest.raises(ConfigError, match=says):
            StudySettings(name="s", storage="sqlite:///x.db", n_trials=1, artifact_dir=bad).validate()
    check_artifact_dir(str(tmp_path / "new" / "deeper"))  # made when the run starts
    assert not (tmp_path / "new").exists()


def test_an_interrupted_run_stops_its_tracker_ends_the_parent_killed_and_restores_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    trials = [_running(n) for n in range(2)]
    client = FakeClient()
    tracker = _tracker(client)
    tracker.start(FakeStorage(trials), 1)
    _wait(lambda: tracker.parent_run_id is not None)
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" in os.environ  # the run's own HTTP settings, while it runs
    trials[0].state = TrialState.COMPLETE
    started = time.monotonic()
    tracker.abort()
    assert time.monotonic() - started < 10
    assert tracker.thread is not None and not tracker.thread.is_alive()
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    parent = next(r for r in client.runs.values() if "mlflow.parentRunId" not in r["tags"])
    assert parent["status"] == "KILLED"


def test_a_file_that_cannot_be_read_skips_that_file_not_the_other_trials(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    class ArtifactClient(FakeClient):
        def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
            self._check()
            self.runs[run_id].setdefault("artifacts", []).append(os.path.basename(path))

    import os

    (tmp_path / "a").write_text("model")
    meta = '{"artifact_id": "a", "filename": "model.json", "mimetype": null, "encoding": null}'
    trials = [_running(0), _running(1)]
    trials[0].system_attrs["artifacts:a"] = meta
    real = shutil.copyfile

    def copyfile(src: str, dst: str, **kwargs: Any) -> Any:
        if src.endswith(os.sep + "a"):
            raise PermissionError(13, "Permission denied", src)
        return real(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copyfile)
    client = ArtifactClient()
    tracker = _tracker(client, artifact_dir=str(tmp_path))
    tracker.start(FakeStorage(trials), 1)
    for t in trials:
        t.state = TrialState.COMPLETE
    report = tracker.finish(trials, {"errors": [], "finished": 2})
    assert report["logged"] == 2 and report["n_not_logged"] == 0, report
    assert sorted(client.trial_runs()) == ["0", "1"]
