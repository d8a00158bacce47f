"""Every trial an MLflow run, logged by the driver (`--mlflow-tracking-uri`, `optimize(mlflow_tracking_uri=...)`).

One parent run per run of a study (a `tune`, an `optimize` call) and one nested run per trial that
finished while it ran, whatever its end: COMPLETE, PRUNED, FAIL (an objective's exception, a trial
timeout, a trial whose task died, failed by the driver's sweep). Each trial run holds the trial's
parameters, its value(s), its intermediate values, its state, the host it ran on, its duration
and its fail reason.

Why the driver and not Optuna's callback (optuna-integration's `MLflowCallback`): a callback runs
in the process that ran the trial, an executor here, so every executor would need MLflow and a
route to the tracking server, and a trial whose task died (failed later by the driver's sweep)
would never be logged. The callback also sets MLflow's process-wide fluent state
(`mlflow.set_tracking_uri`, `set_experiment`, `start_run`) and logs once, at callback time. The
driver sees every trial end when it polls the study; this module logs them there with MLflow's
own client (`MlflowClient`: no global state), in a thread of its own, and retries what failed.

A tracking server that is down or slow delays nothing and loses nothing of the study: the trials
are in the Optuna storage whatever happens here; MLflow's HTTP calls have a short timeout and no
retries of their own (unless you set MLflow's variables yourself); what failed is tried again at
the next poll and once more at the end (for at most FINAL_FLUSH_SECONDS); what was still not
logged is in the run's summary (`summary["mlflow"]`, `OptimizeResult.mlflow`). A request the server
refuses (HTTP 4xx: a name it rejects, no permission) is not retried.

A trial's files (`--artifact-dir DIR`, `optimize(artifact_dir=...)`): a folder every task can write
and the operator can read, where the objective keeps files through Optuna's artifacts API
(`optuna.artifacts.upload_artifact(artifact_store=optuna_spark.artifact_store(trial), ...)`: the
study's `FileSystemArtifactStore`); with MLflow, each trial's files are also logged as its run's
artifacts (`optuna_artifacts/<file name>`).

`mlflow` is imported in the tracking thread only: the rest of the runner does not need it.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from optuna_spark.errors import ConfigError
from optuna_spark.optuna_internals import study_id as study_id_of
from optuna_spark.optuna_internals import study_storage
from optuna_spark.optuna_internals import trial_id as trial_id_of
from optuna_spark.outage import first_line

# MLflow's settings while a run logs, unless set in the environment: a down server costs one
# short failed call per poll, not MLflow's default of 7 retries with backoff and a 120 s timeout;
# no "View run ... at" line on stdout per run (the Spark application's stdout carries its events).
HTTP_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
FINAL_FLUSH_SECONDS = 30.0  # the most the end of a run waits for what is left to log
NOT_LOGGED_LISTED = 50      # trial numbers listed in the summary (the count is always exact)

# Optuna's end states as MLflow run statuses (the exact state is the run's `state` tag).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
FINISHED_STATES = tuple(RUN_STATUS)

# MLflow's limits (mlflow.utils.validation): a key's characters and length, a tag's and a
# param's value length, and what one log_batch call carries.
_KEY_BAD = re.compile(r"[^/\w.\- :]")
MAX_KEY = 250
MAX_TAG_VALUE = 8000
MAX_PARAM_VALUE = 6000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
ARTIFACT_DIR_ATTR = "optuna_spark:artifact_dir"  # a study system attribute: the study's artifact folder
ARTIFACT_PATH = "optuna_artifacts"                # where a trial's files go in its MLflow run
PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "optuna_spark.trial_number"
RUN_TOKEN_TAG = "optuna_spark.run_token"  # the parent run's: found again after a lost answer


class TrackingSettingsError(ConfigError):
    """A tracking URI or experiment name that is refused (a usage error: exit 2, OptimizeError)."""


# ---------------------------------------------------------------------------- pure parts

ABORT_FLUSH_SECONDS = 2.0  # what an interrupted run still logs before it lets go


def redact_uri(uri: str) -> str:
    """The URI as it may be printed: a password written into it hidden (`scheme://user:***@host`)."""
    from optuna_spark.storage import redact_url

    return redact_url(uri)


def check_tracking_uri(uri: str, where: str = "--mlflow-tracking-uri") -> str:
    """An MLflow tracking URI: `http(s)://host[:port][/path]`, `databricks[://profile]`, a
    database URL MLflow's own store takes (`sqlite:///mlflow.db`, `mysql://...`), or `file:///dir`
    where MLflow allows a file store (MLFLOW_ALLOW_FILE_STORE=true; a bare path is refused: a typo
    would become a folder of runs). No credentials in it, nor a token in its query: it
    would be in a command line, a job file and the tasks' settings. MLflow reads them from
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN in the
    environment."""
    from urllib.parse import parse_qsl, urlsplit

    if not isinstance(uri, str) or not uri.strip():
        raise TrackingSettingsError(f"{where} must be a URI (http://host:5000, databricks, sqlite:///mlflow.db)")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in uri):
        raise TrackingSettingsError(f"{where} must not contain spaces or control characters")
    if re.match(r"^[\w.\-]+:\d+(/|$)", uri):
        raise TrackingSettingsError(f"{where} needs its scheme: http://{uri}")
    if not _SCHEME.match(uri) and uri != "databricks":
        raise TrackingSettingsError(f"{where} must be a URI with a scheme (http://host:5000, databricks, "
                                    f"sqlite:///mlflow.db, file:///dir), got {redact_uri(uri)!r}")
    try:
        parts = urlsplit(uri)
        password, user = parts.password, parts.username
    except ValueError:
        raise TrackingSettingsError(f"{where} is not a valid URI") from None
    if password or (user and parts.scheme in ("http", "https")):
        raise TrackingSettingsError(
            f"{where} must not carry a user or password: MLflow reads them from MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise TrackingSettingsError(f"{where} has no host: {redact_uri(uri)!r}")
    try:
        port = parts.port
    except ValueError:
        raise TrackingSettingsError(f"{where} has a port that is not a number from 1 to 65535") from None
    if port == 0:
        raise TrackingSettingsError(f"{where} has a port that is not a number from 1 to 65535")
    secret_keys = sorted(k for k, _ in parse_qsl(parts.query, keep_blank_values=True)
                         if _SECRET_QUERY.search(k) and not k.lower().startswith("ssl"))
    if secret_keys:
        raise TrackingSettingsError(
            f"{where} must not carry a credential in its query ({', '.join(secret_keys)}): MLflow reads a token "
            "from MLFLOW_TRACKING_TOKEN in the environment")
    if parts.scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise TrackingSettingsError(
            f"{where}: MLflow refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true; "
            "use a tracking server (http://host:5000) or sqlite:///mlflow.db")
    return uri


_SECRET_QUERY = re.compile(r"token|secret|passw|key|sig|auth|credential", re.I)


def check_experiment(name: str, where: str = "--mlflow-experiment") -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 500:
        raise TrackingSettingsError(f"{where} must be a name of 1 to 500 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise TrackingSettingsError(f"{where} must not contain control characters")
    return name


def check_settings(uri: str | None, experiment: str | None) -> None:
    """The run's MLflow settings (optuna_spark.config.StudySettings.validate)."""
    if uri is None:
        if experiment is not None:
            raise TrackingSettingsError("--mlflow-experiment needs --mlflow-tracking-uri")
        return
    check_tracking_uri(uri)
    if experiment is not None:
        check_experiment(experiment)
    if not mlflow_available():
        raise TrackingSettingsError("--mlflow-tracking-uri needs MLflow's client on the driver: "
                                    "pip install 'optuna-spark[mlflow]' (mlflow-skinny)")


def mlflow_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def mlflow_key(name: str) -> str:
    """A name MLflow takes as a param, metric or tag key: characters it refuses become `_`, a
    key that would resolve to another path (`a//b`, `./a`, `/a`) is flattened, at most 250."""
    key = _KEY_BAD.sub("_", str(name)) or "_"
    if posixpath.normpath(key) != key or key.startswith(".") or key.startswith("/"):
        key = key.replace("/", "_")
        if key.startswith(".") or posixpath.normpath(key) != key:
            key = "_" + key.lstrip(".")
    return key[:MAX_KEY]


def unique_keys(names: list[str]) -> dict[str, str]:
    """Each name's MLflow key, distinct even when two names clean up to the same key."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        key = mlflow_key(name)
        base, n = key, 1
        while key in used:
            n += 1
            suffix = f"_{n}"
            key = base[:MAX_KEY - len(suffix)] + suffix
        used.add(key)
        out[name] = key
    return out


def value_keys(n_values: int, metric_names: list[str] | None) -> list[str]:
    """The metric keys of a trial's values: the study's metric names when it has them
    (`study.set_metric_names`), else `value` or `value_0`, `value_1`... (as MLflowCallback)."""
    if metric_names and len(metric_names) == n_values:
        return list(unique_keys(list(metric_names)).values())
    return ["value"] if n_values == 1 else [f"value_{i}" for i in range(n_values)]


def _clip(text: Any, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[:limit - 3] + "..."


def _ms(moment: Any, default: int) -> int:
    """Optuna's naive local datetimes as epoch milliseconds."""
    if moment is None:
        return default
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class TrialRecord:
    """What one trial's MLflow run holds. `metrics`: (key, value, timestamp ms, step)."""

    number: int
    trial_id: int
    state: str
    status: str
    run_name: str
    start_ms: int
    end_ms: int
    params: dict[str, str]
    metrics: list[tuple[str, float, int, int]]
    tags: dict[str, str]


def trial_record(trial: Any, directions: list[str], metric_names: list[str] | None = None,
                 now_ms: int | None = None) -> TrialRecord:
    """A finished Optuna trial as an MLflow run: params (as Optuna holds them), its value(s) and
    intermediate values as metrics, `duration_seconds`, and tags: `number`, `state`, `host`,
    `fail_reason`, `direction`, each param's distribution and the trial's user attributes (as
    MLflowCallback tags them). Pure."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    state = trial.state.name
    end = _ms(trial.datetime_complete, now)
    start = _ms(trial.datetime_start, end)
    params = {unique_keys(list(trial.params))[k]: _clip(v, MAX_PARAM_VALUE) for k, v in trial.params.items()}
    metrics: list[tuple[str, float, int, int]] = []
    values = list(trial.values or ())
    for key, value in zip(value_keys(len(values), metric_names), values, strict=True):
        if value is not None and not math.isnan(float(value)):
            metrics.append((key, float(value), end, 0))
    for step, value in sorted((trial.intermediate_values or {}).items()):
        if value is not None and not math.isnan(float(value)):
            metrics.append(("intermediate_value", float(value), end, int(step)))
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        metrics.append(("duration_seconds", (trial.datetime_complete - trial.datetime_start).total_seconds(), end, 0))
    tags: dict[str, str] = {}
    user = dict(trial.user_attrs or {})
    for name, value in user.items():
        if name not in ("host", "fail_reason"):
            tags[f"user_attr.{name}"] = value
    for name, dist in (trial.distributions or {}).items():
        tags[f"{name}_distribution"] = str(dist)
    tags.update({
        "number": str(trial.number),
        "state": state,
        "direction": directions[0] if len(directions) == 1 else ",".join(directions),
    })
    if user.get("host"):
        tags["host"] = str(user["host"])
    if state == "FAIL":
        tags["fail_reason"] = str(user.get("fail_reason") or "no message stored")
    for meta in trial_artifacts(trial):
        tags[f"artifact.{meta['filename']}"] = meta["artifact_id"]
    keys = unique_keys(list(tags))
    clean = {keys[k]: _clip(v, MAX_TAG_VALUE) for k, v in tags.items()}
    return TrialRecord(number=int(trial.number), trial_id=trial_id_of(trial), state=state,
                       status=RUN_STATUS.get(state, "FINISHED"), run_name=f"trial {trial.number}",
                       start_ms=start, end_ms=max(start, end), params=params, metrics=metrics, tags=clean)


def trial_artifacts(trial: Any) -> list[dict[str, Any]]:
    """The files a trial kept through Optuna's artifacts API (`upload_artifact`): each one's
    `artifact_id`, `filename`, `mimetype`, `encoding`, as Optuna stores them (a system
    attribute `artifacts:<id>`), in the order of their names."""
    import json

    found = []
    for key, value in (trial.system_attrs or {}).items():
        if not key.startswith("artifacts:"):
            continue
        try:
            meta = json.loads(value) if isinstance(value, str) else dict(value)
        except (TypeError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("artifact_id") and meta.get("filename"):
            found.append(meta)
    return sorted(found, key=lambda m: (str(m["filename"]), str(m["artifact_id"])))


def artifact_names(metas: list[dict[str, Any]]) -> dict[str, str]:
    """Each artifact's file name in its MLflow run: its own, or `<id>-<name>` when two of the
    trial's files share a name."""
    counts: dict[str, int] = {}
    for meta in metas:
        name = os.path.basename(str(meta["filename"])) or "artifact"
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for meta in metas:
        name = os.path.basename(str(meta["filename"])) or "artifact"
        out[str(meta["artifact_id"])] = name if counts[name] == 1 else f"{meta['artifact_id']}-{name}"
    return out


def publish_artifact_dir(storage: Any, study_id: int, artifact_dir: str) -> None:
    """Makes the folder and records it on the study, where `artifact_store(trial)` finds it in
    the tasks."""
    os.makedirs(artifact_dir, exist_ok=True)
    storage.set_study_system_attr(study_id, ARTIFACT_DIR_ATTR, artifact_dir)


def artifact_store(trial_or_study: Any) -> Any:
    """The study's artifact store (`optuna.artifacts.FileSystemArtifactStore` on the folder given
    as `--artifact-dir` / `optimize(artifact_dir=...)`), for Optuna's artifacts API in an
    objective: `upload_artifact(artifact_store=optuna_spark.artifact_store(trial),
    file_path="model.json", study_or_trial=trial)`. Raises OptunaSparkError when the study's runs
    named no folder."""
    from optuna_spark.errors import OptunaSparkError

    store = artifact_store_or_none(trial_or_study)
    if store is None:
        study = getattr(trial_or_study, "study", trial_or_study)
        raise OptunaSparkError(f"study {study.study_name!r} has no artifact folder: run it with --artifact-dir DIR "
                               "(optimize(..., artifact_dir=DIR))")
    return store


def study_artifact_dir(trial_or_study: Any) -> str | None:
    """The study's artifact folder (recorded by a run with --artifact-dir), or None."""
    study = getattr(trial_or_study, "study", trial_or_study)
    path = study_storage(study).get_study_system_attrs(study_id_of(study)).get(ARTIFACT_DIR_ATTR)
    return str(path) if path else None


def artifact_store_or_none(trial_or_study: Any) -> Any:
    """`artifact_store(trial)`, or None when the study's runs named no folder: for an objective
    that keeps files only when there is somewhere to keep them."""
    from optuna.artifacts import FileSystemArtifactStore

    path = study_artifact_dir(trial_or_study)
    return None if path is None else FileSystemArtifactStore(path)


def refused(exc: BaseException) -> bool:
    """A request the server answered and refused (HTTP 4xx): sending it again changes nothing.
    Anything else (no answer, a timeout, a 5xx) may pass later."""
    if type(exc).__name__ != "RestException":
        return False
    status = getattr(exc, "get_http_status_code", lambda: 500)()
    return isinstance(status, int) and 400 <= status < 500


_REQUEST_FAILED = re.compile(r"API request to (\S+) failed with (timeout )?exception")


def error_line(exc: BaseException) -> str:
    """One short line: MLflow's own words for a server that did not answer are a page long."""
    text = first_line(exc)
    failed = _REQUEST_FAILED.search(text)
    if failed:
        low = str(exc).lower()
        why = ("timed out" if failed.group(2) or "timed out" in low or "timeout" in low else
               "connection refused" if "refused" in low else
               "name not resolved" if "resolve" in low or "name or service" in low else "no answer")
        text = f"{failed.group(1).split('?')[0]}: {why}"
    return redact_uri(text)


def format_tracking(report: Mapping[str, Any]) -> str:
    """The summary's line about MLflow."""
    where = f"experiment {report.get('experiment')!r} at {report.get('tracking_uri')}"
    run = f", parent run {report['parent_run_id']}" if report.get("parent_run_id") else ""
    text = f"{report.get('logged', 0)} trial run(s) logged to {where}{run}"
    missing = int(report.get("n_not_logged") or 0)
    if missing:
        numbers = ", ".join(f"#{n}" for n in report.get("not_logged", [])[:10])
        more = f", {missing - 10} more" if missing > 10 else ""
        text += f"; NOT logged: {missing} trial(s) ({numbers}{more}), still in the Optuna storage"
    if report.get("error"):
        text += f"; last error: {report['error']}"
    return text


# ---------------------------------------------------------------------------- the environment

@contextmanager
def http_defaults(environ: Any = None) -> Iterator[None]:
    """MLflow's HTTP timeout and retries (HTTP_DEFAULTS) where the environment does not set
    them, for the duration of a run; the environment is as it was after."""
    env = os.environ if environ is None else environ
    added = [k for k in HTTP_DEFAULTS if k not in env]
    for key in added:
        env[key] = HTTP_DEFAULTS[key]
    try:
        yield
    finally:
        for key in added:
            env.pop(key, None)


# ---------------------------------------------------------------------------- the tracker

@dataclass
class _TrialRun:
    run_id: str | None = None
    maybe_created: bool = False  # a create_run whose answer was lost: look before creating again
    batch_done: bool = False
    artifacts_done: set[str] = field(default_factory=set)


@dataclass
class ParentRun:
    """The parent run's name, params and tags (the run's settings)."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class Tracker:
    """Logs a run's trials to MLflow from the driver, in a thread of its own (see the module's
    docstring). `start(storage, study_id)` notes the trials already finished (not this run's),
    `finish(trials, summary)` logs what is left and returns the summary's `mlflow` entry."""

    def __init__(self, uri: str, experiment: str, directions: list[str], parent: ParentRun, *,
                 interval: float = 1.0, client_factory: Callable[[str], Any] | None = None,
                 flush_seconds: float = FINAL_FLUSH_SECONDS, warn: Callable[..., None] | None = None,
                 artifact_dir: str | None = None) -> None:
        self.uri, self.experiment, self.directions, self.parent = uri, experiment, directions, parent
        self.interval, self.flush_seconds = interval, flush_seconds
        self.client_factory = client_factory
        self.artifact_dir = artifact_dir
        self.warn = warn
        self.warned = False  # once per outage: set by a failure, cleared by a success
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.storage: Any = None
        self.study_id = 0
        self.before: set[int] | None = None
        self.final_trials: list[Any] | None = None
        self.final_status = "FINISHED"
        self.final_metrics: dict[str, float] = {}
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.parent_maybe_created = False
        self.run_token = uuid.uuid4().hex
        self.parent_ended = False
        self.metric_names: list[str] | None = None
        self.runs: dict[int, _TrialRun] = {}
        self.logged: dict[int, int] = {}       # trial id -> number
        self.pending: dict[int, int] = {}      # finished, not logged yet
        self.refused: dict[int, int] = {}      # the server refused it: not tried again
        self.error: str | None = None
        self.fatal: str | None = None          # nothing can be logged (no mlflow, experiment refused)
        self.started_ms = int(time.time() * 1000)
        self._trials: dict[int, Any] = {}
        self._env = http_defaults()
        self.aborted = False

    def abort(self) -> None:
        """The run was interrupted (Ctrl-C, a signal): the thread logs what it can within a
        couple of seconds and stops, the parent run ends KILLED, and MLflow's HTTP settings go
        back to what they were. A later call of the same session starts a tracker of its own."""
        self.aborted = True
        self.flush_seconds = min(self.flush_seconds, ABORT_FLUSH_SECONDS)
        self.finish(None)

    # -- life cycle

    def start(self, storage: Any, study_id: int) -> None:
        self.storage, self.study_id = storage, study_id
        try:
            self.before = {trial_id_of(t) for t in storage.get_all_trials(study_id, deepcopy=False)
                           if t.state.name in FINISHED_STATES}
            self.metric_names = storage.get_study_system_attrs(study_id).get("study:metric_names")
        except Exception:  # noqa: BLE001 - the first poll notes them instead
            self.before = None
        self._env.__enter__()
        self.thread = threading.Thread(target=self._run, name="optuna-spark-mlflow", daemon=True)
        self.thread.start()

    def finish(self, trials: list[Any] | None, summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Logs the trials not yet logged (at most `flush_seconds`), ends the parent run
        (FAILED when the run had errors or no summary) and returns what was and was not logged."""
        self.final_trials = trials
        if summary is None or summary.get("errors"):
            self.final_status = "KILLED" if self.aborted else "FAILED"
        if summary is not None:
            best = summary.get("best") or {}
            if best.get("value") is not None:
                self.final_metrics["best_value"] = float(best["value"])
            self.final_metrics["finished_trials"] = float(summary.get("finished") or 0)
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(self.flush_seconds + float(HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]) + 2)
        try:
            self._env.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - never entered (start not called)
            pass
        return self.report()

    def report(self) -> dict[str, Any]:
        with self.lock:
            missing = sorted(set(self.pending.values()) | set(self.refused.values()))
            return {
                "tracking_uri": redact_uri(self.uri),
                "experiment": self.experiment,
                "experiment_id": self.experiment_id,
                "parent_run_id": self.parent_run_id,
                "logged": len(self.logged),
                "n_not_logged": len(missing),
                "not_logged": missing[:NOT_LOGGED_LISTED],
                "error": self.fatal or self.error,
            }

    # -- the thread

    def _run(self) -> None:
        try:
            self.client = self._make_client()
        except Exception as exc:  # noqa: BLE001 - mlflow missing or broken: said in the summary
            self.fatal = f"cannot load MLflow's client: {error_line(exc)}"
        final = False  # the first pass at once: the parent run is there when the first trials end
        while True:
            trials = self.final_trials if final else self._read()
            if trials is not None:
                self._note(trials)
            if self.client is not None and self.fatal is None:
                deadline = time.monotonic() + self.flush_seconds if final else None
                self._log_pending(deadline)
                if final:
                    self._end_parent(deadline)
            if final:
                return
            final = self.stop_event.wait(self.interval)

    def _make_client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory(self.uri)
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def _read(self) -> list[Any] | None:
        try:
            return list(self.storage.get_all_trials(self.study_id, deepcopy=False))
        except Exception:  # noqa: BLE001 - a storage hiccup: the next poll reads them
            return None

    def _note(self, trials: list[Any]) -> None:
        with self.lock:
            if self.before is None:
                self.before = {trial_id_of(t) for t in trials if t.state.name in FINISHED_STATES}
                return
            for t in trials:
                tid = trial_id_of(t)
                if (t.state.name in FINISHED_STATES and tid not in self.before and tid not in self.logged
                        and tid not in self.refused):
                    self.pending[tid] = t.number
        self._trials = {trial_id_of(t): t for t in trials}

    def _log_pending(self, deadline: float | None) -> None:
        if not self._ensure_parent():
            return
        with self.lock:
            todo = sorted(self.pending.items(), key=lambda item: item[1])
        for tid, number in todo:
            if deadline is None and self.stop_event.is_set():
                return  # the final pass takes over
            if deadline is not None and time.monotonic() > deadline:
                self.error = self.error or f"gave up after {self.flush_seconds:g} s at the end of the run"
                return
            trial = self._trials.get(tid)
            if trial is None:
                continue
            try:
                self._log_trial(trial)
            except Exception as exc:  # noqa: BLE001 - any failure of MLflow: the study goes on
                line = error_line(exc)
                with self.lock:
                    self.error = f"trial {number}: {line}"
                    if refused(exc):
                        self.refused[tid] = self.pending.pop(tid)
                if tid in self.refused:
                    self._say(f"MLflow refused trial {number}'s run (not retried): {line}")
                    continue
                self._say(f"MLflow does not take trial runs ({line}): retried at each poll, the study goes on")
                return  # the server does not answer: the next poll tries again
            with self.lock:
                self.logged[tid] = self.pending.pop(tid)
                if not self.refused:  # the error of an outage that is over is no longer news
                    self.error = None
            self.warned = False

    def _ensure_parent(self) -> bool:
        if self.parent_run_id is not None:
            return True
        try:
            if self.experiment_id is None:
                self.experiment_id = self._experiment_id()
            run_id = self._find_run(f"tags.`{RUN_TOKEN_TAG}` = '{self.run_token}'") \
                if self.parent_maybe_created else None
            if run_id is None:
                self.parent_maybe_created = True
                run = self.client.create_run(self.experiment_id, start_time=self.started_ms,
                                             tags={**self.parent.tags, RUN_TOKEN_TAG: self.run_token},
                                             run_name=self.parent.name)
                run_id = str(run.info.run_id)
            self._batch(run_id, params=self.parent.params, tags={})
            self.parent_run_id = run_id
            return True
        except Exception as exc:  # noqa: BLE001 - retried at the next poll, unless refused
            line = error_line(exc)
            if refused(exc):
                self.fatal = f"the parent run was refused: {line}"
            else:
                self.error = f"the parent run: {line}"
            self._say(f"MLflow: {self.fatal or self.error}" + ("" if self.fatal else
                      " (retried at each poll, the study goes on)"))
            return False

    def _say(self, message: str) -> None:
        if self.warn is not None and not self.warned:
            self.warned = True
            try:
                self.warn("warning", message=message)
            except Exception:  # noqa: BLE001 - a warning that cannot be shown changes nothing
                pass

    def _experiment_id(self) -> str:
        client = self.client
        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return str(client.create_experiment(self.experiment))
            except Exception:  # another run created it at the same instant
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if getattr(found, "lifecycle_stage", "active") != "active":
            self.fatal = (f"experiment {self.experiment!r} is deleted in MLflow: restore it, or name another "
                          "(--mlflow-experiment)")
            raise RuntimeError(self.fatal)
        return str(found.experiment_id)

    def _log_trial(self, trial: Any) -> None:
        record = trial_record(trial, self.directions, self.metric_names)
        run = self.runs.setdefault(record.trial_id, _TrialRun())
        if run.run_id is None:
            if run.maybe_created:
                run.run_id = self._find_run(f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and "
                                            f"tags.`{TRIAL_TAG}` = '{record.number}'")
            if run.run_id is None:
                run.maybe_created = True
                created = self.client.create_run(
                    self.experiment_id, start_time=record.start_ms, run_name=record.run_name,
                    tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: str(record.number)})
                run.run_id = str(created.info.run_id)
        if not run.batch_done:
            self._batch(run.run_id, params=record.params, tags=record.tags, metrics=record.metrics)
            run.batch_done = True
        if self.artifact_dir:
            self._log_artifacts(run, trial)
        self.client.set_terminated(run.run_id, status=record.status, end_time=record.end_ms)

    def _log_artifacts(self, run: _TrialRun, trial: Any) -> None:
        """The trial's files (Optuna's artifacts in the study's folder) as its run's artifacts,
        each once. A file that is not there (deleted, another folder) is skipped."""
        import shutil
        import tempfile

        metas = trial_artifacts(trial)
        names = artifact_names(metas)
        for meta in metas:
            artifact_id = str(meta["artifact_id"])
            source = os.path.join(str(self.artifact_dir), artifact_id)
            if artifact_id in run.artifacts_done or os.path.basename(artifact_id) != artifact_id \
                    or not os.path.isfile(source):
                continue
            with tempfile.TemporaryDirectory(prefix="optuna-spark-artifact-") as folder:
                copy = os.path.join(folder, names[artifact_id])
                try:
                    shutil.copyfile(source, copy)
                except OSError as exc:  # this file cannot be read here: skipped, the trial's run goes on
                    self.error = f"trial {trial.number}: file {names[artifact_id]} not logged: {error_line(exc)}"
                    run.artifacts_done.add(artifact_id)
                    continue
                self.client.log_artifact(run.run_id, copy, artifact_path=ARTIFACT_PATH)
            run.artifacts_done.add(artifact_id)

    def _find_run(self, filter_string: str) -> str | None:
        """The run a create_run made although its answer was lost, if it made one."""
        found = self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=1)
        return str(found[0].info.run_id) if found else None

    def _batch(self, run_id: str, params: Mapping[str, str], tags: Mapping[str, str],
               metrics: list[tuple[str, float, int, int]] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        param_items = [Param(k, v) for k, v in params.items()]
        tag_items = [RunTag(k, v) for k, v in tags.items()]
        metric_items = [Metric(k, v, ts, step) for k, v, ts, step in metrics or ()]
        while param_items or tag_items or metric_items:
            p, param_items = param_items[:MAX_PARAMS_TAGS_PER_BATCH], param_items[MAX_PARAMS_TAGS_PER_BATCH:]
            room = MAX_PARAMS_TAGS_PER_BATCH - len(p)
            t, tag_items = tag_items[:room], tag_items[room:]
            room = MAX_METRICS_PER_BATCH - len(p) - len(t)
            m, metric_items = metric_items[:room], metric_items[room:]
            self.client.log_batch(run_id, metrics=m, params=p, tags=t)

    def _end_parent(self, deadline: float | None) -> None:
        if self.parent_run_id is None or self.parent_ended:
            return
        with self.lock:
            missing = len(self.pending) + len(self.refused)
        metrics = dict(self.final_metrics, trials_logged=float(len(self.logged)), trials_not_logged=float(missing))
        now = int(time.time() * 1000)
        try:
            self._batch(self.parent_run_id, params={}, tags={},
                        metrics=[(mlflow_key(k), v, now, 0) for k, v in metrics.items()])
            self.client.set_terminated(self.parent_run_id, status=self.final_status, end_time=now)
            self.parent_ended = True
        except Exception as exc:  # noqa: BLE001 - the parent run stays RUNNING in MLflow: said
            self.error = f"the parent run was not ended: {error_line(exc)}"


def parent_run(settings: Any, study_id: int) -> ParentRun:
    """The parent run of a run of the study: its settings as params, the study as tags."""
    from optuna_spark.version import __version__

    params = {
        "n_trials": settings.n_trials, "timeout": settings.timeout, "n_jobs": settings.n_jobs,
        "split": settings.split, "sampler": settings.sampler, "pruner": settings.pruner,
        "seed": settings.sampler_seed, "direction": ",".join(settings.directions),
        "budget_scope": settings.budget_scope, "trial_timeout": settings.trial_timeout,
    }
    tags = {"optuna_spark.study": settings.name, "optuna_spark.study_id": str(study_id),
            "optuna_spark.storage": redact_uri(settings.storage), "optuna_spark.version": __version__}
    return ParentRun(name=f"{settings.name}",
                     params={k: _clip(v, MAX_PARAM_VALUE) for k, v in params.items() if v is not None},
                     tags={k: _clip(v, MAX_TAG_VALUE) for k, v in tags.items()})


def start(settings: Any, storage: Any, study_id: int, interval: float = 1.0,
          warn: Callable[..., None] | None = None) -> Tracker | None:
    """A started Tracker for the run when its settings name a tracking URI, else None; the
    study's artifact folder (--artifact-dir) recorded on the study in either case."""
    artifact_dir = getattr(settings, "artifact_dir", None)
    if artifact_dir:
        try:
            publish_artifact_dir(storage, study_id, artifact_dir)
        except Exception as exc:  # noqa: BLE001 - the objective's artifact_store() says it then
            if warn is not None:
                warn("warning", message=f"artifact folder {artifact_dir}: {first_line(exc)}")
    uri = getattr(settings, "mlflow_tracking_uri", None)
    if not uri:
        return None
    tracker = Tracker(uri, getattr(settings, "mlflow_experiment", None) or settings.name,
                      list(settings.directions), parent_run(settings, study_id), interval=interval, warn=warn,
                      artifact_dir=artifact_dir)
    tracker.start(storage, study_id)
    return tracker
