"""`optuna_spark.optimize`: Optuna's `study.optimize`, its trials run by Spark tasks.

The study's storage is shared by the tasks; each task pulls trials from it until the call's
budget is spent (exactly `n_trials`, however many tasks, optuna_spark.ledger). The driver-side
path is the command line's (optuna_spark.engine): this module turns Optuna's arguments into its
settings and checks them, before any Spark job starts.
"""

from __future__ import annotations

import copy
import datetime
import math
import numbers
import os
import pickle
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from optuna_spark.errors import OptimizeError
from optuna_spark.optuna_internals import clear_stop, optimize_loop, rdb_backend, stop_requested, study_storage
from optuna_spark.optuna_internals import study_id as study_id_of
from optuna_spark.optuna_internals import trial_id as trial_id_of

ObjectiveFuncType = Callable[..., Any]
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


@dataclass(frozen=True)
class OptimizeResult:
    """What `optimize` returns once every task has ended.

    Counts are the study's (every trial it holds, this call's and earlier ones); `n_trials_run`
    is what this call's tasks ran. `best_value`/`best_params`/`best_trial_number` are set for a
    single-objective study with a complete trial; `best_trials` is the Pareto front of a
    multi-objective one (number, values, params)."""

    study_name: str
    n_trials: int | None
    n_trials_run: int
    n_finished: int
    states: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any] | None
    best_trial_number: int | None
    best_trials: list[dict[str, Any]]
    trials_per_host: dict[str, int]
    wall_seconds: float
    task_errors: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    n_jobs: int = 0
    # With mlflow_tracking_uri: the experiment, the parent run, how many trial runs were logged,
    # which trials were not (their numbers) and the last error (optuna_spark.tracking).
    mlflow: dict[str, Any] | None = None

    @classmethod
    def from_summary(cls, summary: dict[str, Any], n_trials: int | None, n_jobs: int,
                     tasks: Sequence[dict[str, Any]]) -> OptimizeResult:
        best = summary.get("best") or {}
        return cls(
            study_name=summary["study"], n_trials=n_trials,
            n_trials_run=sum(int(t.get("trials") or 0) for t in tasks),
            n_finished=int(summary["finished"]), states=dict(summary["states"]),
            best_value=best.get("value"), best_params=best.get("params"), best_trial_number=best.get("number"),
            best_trials=list(summary.get("pareto_front") or []), trials_per_host=dict(summary["hosts"]),
            wall_seconds=float(summary.get("wall_seconds") or 0.0), task_errors=list(summary["errors"]),
            failures=list(summary["failures"]), n_jobs=n_jobs, mlflow=summary.get("mlflow"))

    def __str__(self) -> str:
        lines = [f"study {self.study_name!r}: {self.n_trials_run} trial(s) run by {self.n_jobs} task(s) "
                 f"in {self.wall_seconds:.1f} s; the study holds {self.n_finished} finished "
                 f"({', '.join(f'{k} {v}' for k, v in self.states.items()) or 'none'})"]
        if self.best_value is not None:
            lines.append(f"best value {self.best_value:g} (trial {self.best_trial_number}): {self.best_params}")
        elif self.best_trials:
            lines.append(f"Pareto front: {len(self.best_trials)} trial(s)")
        if self.trials_per_host:
            lines.append("trials per host: " + ", ".join(f"{h} {n}" for h, n in self.trials_per_host.items()))
        for error in self.task_errors:
            lines.append(f"task {error.get('index')} on {error.get('host')} failed: {error.get('error')}")
        if self.mlflow:
            from optuna_spark.tracking import format_tracking

            lines.append(f"mlflow: {format_tracking(self.mlflow)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """Jupyter shows the summary as a table."""
        from html import escape

        rows = [("study", self.study_name), ("trials run (this call)", self.n_trials_run),
                ("tasks", self.n_jobs), ("wall time", f"{self.wall_seconds:.1f} s"),
                ("finished in the study", self.n_finished),
                ("states", ", ".join(f"{k} {v}" for k, v in self.states.items()))]
        if self.best_value is not None:
            rows += [("best value", f"{self.best_value:g} (trial {self.best_trial_number})"),
                     ("best params", self.best_params)]
        elif self.best_trials:
            rows.append(("Pareto front", f"{len(self.best_trials)} trial(s)"))
        rows.append(("trials per host", ", ".join(f"{h} {n}" for h, n in self.trials_per_host.items())))
        rows += [(f"task {e.get('index')} error", e.get("error")) for e in self.task_errors]
        body = "".join(f"<tr><th style='text-align:left'>{escape(str(k))}</th><td style='text-align:left'>"
                       f"{escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table class='optuna-spark-result'>{body}</table>"


def optimize(
    study: optuna.Study,
    objective: ObjectiveFuncType,
    n_trials: int | None = None,
    timeout: float | None = None,
    *,
    n_jobs: int | None = None,
    spark: Any = None,
    data: Any = None,
    catch: Iterable[type[Exception]] | type[Exception] = (),
    callbacks: Iterable[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
    gc_after_trial: bool = False,
    trial_timeout: float | None = None,
    show_progress_bar: bool = False,
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment: str | None = None,
    artifact_dir: str | os.PathLike[str] | None = None,
) -> OptimizeResult:
    """Optimize `study` with `objective`, its trials run by Spark tasks. Blocks until done.

    The arguments Optuna's `Study.optimize` has mean what they mean there:

    - `study`: an Optuna study on an RDB storage that the executors reach (a URL: SQLite for a
      local session, MySQL or PostgreSQL for a cluster). An in-memory or journal storage is
      refused: the tasks are other processes, on other hosts.
    - `objective`: `objective(trial)`, or `objective(trial, data)` with `data=`. Any callable,
      defined in the notebook or script itself: it is shipped to the executors by value
      (cloudpickle), closures included.
    - `n_trials`: how many trials this call runs, exactly, shared by all the tasks (two calls of
      20 leave 40 more finished trials). `timeout`: seconds after which no new trial starts.
      One of the two is required (a run with neither would never end by itself).
    - `catch`: exceptions of the objective that fail their trial and let the run go on. Another
      exception fails its trial, ends the task that ran it, and `optimize` raises
      `OptimizeError` naming it once the other tasks have ended.
    - `callbacks`: `callback(study, frozen_trial)` after each trial of this call, here in the
      calling process with `study` itself, in the order the trials finish (a second or so after
      each, as the driver polls the study). `study.stop()` from a callback (or from the
      objective) stops the call: no task starts another trial.
    - `gc_after_trial`: `gc.collect()` after each trial, in the task that ran it.
    - `show_progress_bar`: a progress bar (tqdm; a live widget in Jupyter).
    - `n_jobs`: how many Spark tasks pull trials at once; None or -1: the session's task slots
      (its default parallelism over `spark.task.cpus`).

    Beyond Optuna's:

    - `spark`: the SparkSession (classic or Spark Connect); default the active one, else a new
      local one (`local[*]`, or the master in $OPTUNA_SPARK_MASTER).
    - `data`: a data set each task loads once and passes to every trial (a shallow copy per
      trial): a pandas DataFrame, a path (Parquet or CSV, read on the driver, as `--data`), or a
      Spark DataFrame (collected and broadcast on a classic session; on Spark Connect, each task
      receives one full copy through Spark).
    - `trial_timeout`: seconds a trial's objective may run; a trial past it is failed and its
      process replaced (it does not count as an error of the run).
    - `mlflow_tracking_uri`: log the call to MLflow, from this process: a parent run, and a nested
      run per trial that finishes (params, value(s), state, host, duration, fail reason), in
      experiment `mlflow_experiment` (default: the study's name). Needs `mlflow-skinny`
      (`optuna-spark[mlflow]`); credentials come from MLflow's own variables
      (MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_TOKEN), never in the URI. A server
      that does not answer fails nothing: what was not logged is in `OptimizeResult.mlflow`.
    - `artifact_dir`: a folder every task can write (local: any folder), where the objective keeps
      a trial's files with Optuna's artifacts API: `upload_artifact(artifact_store=
      optuna_spark.artifact_store(trial), file_path=..., study_or_trial=trial)`; with MLflow, they
      are also logged as the trial's run's artifacts.

    The study's sampler and pruner are used by every task (each task's copy of the sampler draws
    its own random state when tasks run side by side, as Optuna's `n_jobs` threads do).

    Returns an `OptimizeResult`. Raises `OptimizeError` for a refused argument (before any Spark
    job starts), a storage that cannot be reached, or a run whose tasks failed."""
    from optuna_spark import engine
    from optuna_spark.task import TaskInputs

    plan = _plan(study, objective, n_trials, timeout, n_jobs=n_jobs, catch=catch, callbacks=callbacks,
                 trial_timeout=trial_timeout, data=data)
    run_data = None if _is_spark_frame(data) else _run_data(data, None)  # read and checked before Spark
    session = _session(spark)
    if n_jobs is None or n_jobs == -1:
        n_jobs = engine.free_task_slots(session)
    master = engine.session_master(session)
    if not engine.is_connect(session) and not hasattr(session, "sparkContext"):
        raise OptimizeError(f"spark must be a SparkSession (classic or Spark Connect), got {type(session).__name__}")
    # A task never creates an empty SQLite file where the study's is not visible (a cluster, a
    # Spark Connect server on another host): it refuses, whatever the master says.
    job = _job(plan, n_trials, timeout, n_jobs, trial_timeout, sqlite_must_exist=True,
               tracking={"mlflow_tracking_uri": mlflow_tracking_uri, "mlflow_experiment": mlflow_experiment,
                         "artifact_dir": None if artifact_dir is None else
                         str(Path(artifact_dir).expanduser().resolve())})
    del master
    if _is_spark_frame(data):
        run_data = _run_data(data, session)
    inputs = TaskInputs(objective=plan.objective, callbacks=(), sampler=study.sampler,
                        pruner=study.pruner, catch=plan.catch, gc_after_trial=bool(gc_after_trial))
    _check_shippable(inputs)

    bar = _ProgressBar(n_trials) if show_progress_bar else None
    warned: list[str] = []

    def on_event(kind: str, **fields: Any) -> None:
        if kind == "progress" and bar is not None:
            bar.update(int(fields.get("finished", 0)) - int(fields.get("previous", 0) or 0))
        elif kind == "warning":
            warned.append(str(fields.get("message")))
            optuna.logging.get_logger("optuna_spark").warning(fields.get("message"))

    stop_key = f"optuna_spark_stop:{uuid.uuid4().hex}"
    job.extra["stop_key"] = stop_key
    driver = _DriverCallbacks(study, plan.callbacks, stop_key)
    try:
        with warnings_of_spark_silenced():
            outcome = engine.run(job, plan.password, lambda: session, on_event=on_event, inputs=inputs,
                                 data=run_data, after_poll=driver.after_poll)
        if bar is not None:
            bar.update(sum(int(t.get("trials") or 0) for t in outcome.tasks))
    finally:
        if bar is not None:
            bar.close()
        driver.forget(study)
    if outcome.summary is None:
        raise OptimizeError(outcome.message or "the run ended without a summary")
    if driver.error is not None:  # as Optuna's optimize: a callback's exception is raised
        raise driver.error
    result = OptimizeResult.from_summary(outcome.summary, n_trials, n_jobs, outcome.tasks)
    failed = [t for t in outcome.tasks if t.get("error")]
    if result.task_errors:
        raised = [t for t in failed if t.get("objective_raised")]
        first = (raised or failed or [{"error": result.task_errors[0]["error"]}])[0]["error"]
        if "_ExceptionWithTraceback" in first:  # joblibspark 0.6 lost an error of the task's start
            first = ("a Spark task failed outside the trial loop (Spark's log has why: a Python worker that "
                     "died, or executors whose Python lacks a package the driver has)")
        what = "the objective raised an exception that catch does not name" if raised else \
            f"{len(result.task_errors)} Spark task(s) failed"
        raise OptimizeError(f"{what}: {first}", summary=result, task_errors=failed or result.task_errors)
    return result


class _DriverCallbacks:
    """The user's callbacks, here with the user's study, for each trial of the call once it has
    finished (after each poll of the study, and once at the end), in the order they finished.
    `study.stop()` in one of them (or in the objective) sets the call's stop key, which every
    task reads before it claims another trial."""

    def __init__(self, study: optuna.Study, callbacks: tuple[Callable[..., None], ...], stop_key: str) -> None:
        self.study, self.callbacks, self.stop_key = study, callbacks, stop_key
        # What was finished before the call is not its own.
        self.seen: set[int] = {trial_id_of(t) for t in study.get_trials(deepcopy=False, states=FINISHED)}
        self.error: BaseException | None = None
        self.stopped = False
        self.lock = threading.Lock()
        clear_stop(study)

    def after_poll(self, storage: Any, study_id: int) -> None:
        with self.lock:
            try:
                self._poll(storage, study_id)
            except BaseException as exc:  # noqa: BLE001 - raised by optimize once the tasks have ended
                if self.error is None:
                    self.error = exc
                self._stop(storage, study_id)

    def _poll(self, storage: Any, study_id: int) -> None:
        trials = storage.get_all_trials(study_id, deepcopy=False, states=FINISHED)
        new = sorted((t for t in trials if trial_id_of(t) not in self.seen),
                     key=lambda t: (t.datetime_complete or datetime.datetime.max, t.number))
        if self.error is not None or self.stopped:
            self.seen.update(trial_id_of(t) for t in new)
            return
        with optimize_loop(self.study):  # study.stop() is allowed here, as in Optuna
            for trial in new:
                self.seen.add(trial_id_of(trial))
                for callback in self.callbacks:
                    callback(self.study, copy.deepcopy(trial))
                if stop_requested(self.study):
                    self._stop(storage, study_id)
                    return

    def _stop(self, storage: Any, study_id: int) -> None:
        if not self.stopped:
            self.stopped = True
            storage.set_study_system_attr(study_id, self.stop_key, True)

    def forget(self, study: optuna.Study) -> None:
        """The stop key is the call's alone: removed from the study once it has ended."""
        clear_stop(study)
        try:
            study_storage(study).set_study_system_attr(study_id_of(study), self.stop_key, None)
        except Exception:  # noqa: BLE001 - a key left behind stops nothing (its call is over)
            pass


@dataclass(frozen=True)
class _Plan:
    """The checked arguments, in the form the engine takes."""

    name: str
    storage_url: str  # without its password
    password: str | None = field(repr=False)
    directions: tuple[str, ...]
    objective: Callable[..., Any]
    takes_data: str
    callbacks: tuple[Callable[[Any, Any], None], ...]
    catch: tuple[type[BaseException], ...]
    heartbeat: tuple[int, int] | None = None  # the study's RDBStorage(heartbeat_interval, grace_period)


def _plan(study: Any, objective: Any, n_trials: Any, timeout: Any, *, n_jobs: Any, catch: Any, callbacks: Any,
          trial_timeout: Any, data: Any) -> _Plan:
    from optuna_spark.config import ConfigError
    from optuna_spark.objectives import data_parameter

    if not isinstance(study, optuna.Study):
        raise OptimizeError(f"study must be an optuna.Study, got {type(study).__name__}")
    if not callable(objective):
        raise OptimizeError(f"objective must be callable, got {type(objective).__name__}")
    _check_count("n_trials", n_trials)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not math.isfinite(timeout) \
                or timeout <= 0:
            raise OptimizeError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if n_trials is None and timeout is None:
        raise OptimizeError("give a budget: n_trials and/or timeout (a run with neither never ends by itself)")
    if n_jobs is not None and n_jobs != -1:
        _check_count("n_jobs", n_jobs)
        if n_jobs > 100_000:
            raise OptimizeError(f"n_jobs must be at most 100000, got {n_jobs}")
    if trial_timeout is not None:
        if isinstance(trial_timeout, bool) or not isinstance(trial_timeout, numbers.Real) \
                or not math.isfinite(trial_timeout) or trial_timeout <= 0:
            raise OptimizeError(f"trial_timeout must be a positive number of seconds, got {trial_timeout!r}")
    caught = _catch_tuple(catch)
    chosen = tuple(callbacks or ())
    for callback in chosen:
        if not callable(callback):
            raise OptimizeError(f"each callback must be callable, got {type(callback).__name__}")
    try:
        takes_data = data_parameter(objective)
    except ConfigError as exc:
        raise OptimizeError(str(exc)) from None
    if data is None and takes_data == "required":
        raise OptimizeError(f"objective {_name(objective)!r} takes (trial, data): give data=")
    if data is not None and takes_data == "no":
        raise OptimizeError(f"data= given, but objective {_name(objective)!r} takes only (trial): define it as "
                            "objective(trial, data) to receive the data set")
    url, password = _storage_of(study)
    return _Plan(name=study.study_name, storage_url=url, password=password,
                 directions=tuple(d.name.lower() for d in study.directions), objective=objective,
                 takes_data=takes_data, callbacks=chosen, catch=caught, heartbeat=_heartbeat_of(study))


def _heartbeat_of(study: Any) -> tuple[int, int] | None:
    """(interval, grace period) when the study's RDBStorage was made with a heartbeat, as Optuna
    means it (`RDBStorage(url, heartbeat_interval=60, grace_period=120)`; no grace period: twice
    the interval, as Optuna's default): the tasks' heartbeats and the stale-trial sweep use them.
    None: the runner's defaults."""
    rdb = rdb_backend(study_storage(study))
    interval = getattr(rdb, "heartbeat_interval", None)
    if not interval:
        return None
    grace = getattr(rdb, "grace_period", None) or 2 * int(interval)
    return int(interval), int(grace)


def _check_count(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # NumPy's integers too
        raise OptimizeError(f"{name} must be a positive integer, got {value!r}")
    if int(value) < 1:
        raise OptimizeError(f"{name} must be a positive integer, got {value}")
    if int(value) > 2**31 - 2:
        raise OptimizeError(f"{name} must be below 2**31 - 1, got {value}")


def _catch_tuple(catch: Any) -> tuple[type[BaseException], ...]:
    items = (catch,) if isinstance(catch, type) else tuple(catch or ())
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise OptimizeError(f"catch must hold exception classes, got {item!r}")
    return items


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__)


_TARGET_ATTR = "_optuna_spark_target"


def rdb_storage(url: str | None = None, *, password_file: str | os.PathLike[str] | None = None) -> Any:
    """An `optuna.storages.RDBStorage` on the storage the runner is set up for, for
    `optuna.create_study(storage=...)` / `optuna.load_study(storage=...)` in a script or notebook.

    - `url`: an SQLAlchemy URL without its password. Default: $OPTUNA_SPARK_STORAGE (set by
      `optuna-spark submit`), else the `storage` of the runner's config file ($OPTUNA_SPARK_CONFIG
      or /etc/optuna-spark/runner.toml, as the command line reads it), else the command line's
      default, `sqlite:///work/optuna.db` under the current directory.
    - `password_file`: a file (mode 0600 or 0640) holding the password. Default:
      $OPTUNA_SPARK_PASSWORD_FILE (set by `submit`), else the config file's `password_file`, else
      the password in $OPTUNA_SPARK_STORAGE_PASSWORD. The password is never part of a command line.

    The connections are the runner's own (UTC sessions, read and write timeouts, TLS files from
    the URL's query); Optuna's tables are created if the database has none. Raises `OptimizeError`
    for a refused URL, an unreadable password file or a storage that cannot be reached."""
    from optuna_spark.config import ConfigError, build_settings
    from optuna_spark.storage import (
        StorageError,
        StorageTarget,
        check_connection,
        make_sqlite_private,
        open_rdb_storage,
        resolve_password,
        validate_url,
    )

    try:
        environ = dict(os.environ)
        given_file = password_file if password_file is not None else environ.get("OPTUNA_SPARK_PASSWORD_FILE")
        cli: dict[str, Any] = {"storage": url or environ.get("OPTUNA_SPARK_STORAGE"),
                               "password_file": None if given_file is None else str(given_file)}
        if url is not None:  # the caller's storage: its password from the file given, or the environment
            target: Any = StorageTarget(validate_url(url), resolve_password(cli["password_file"], environ))
        else:
            target = build_settings("status", cli, environ).storage
        # An SQLite file (and a folder) made here is this user's only, as the command line's (umask 077).
        previous_mask = os.umask(0o077)
        try:
            check_connection(target)
            storage = open_rdb_storage(target)
        finally:
            os.umask(previous_mask)
        make_sqlite_private(target.url)
    except ConfigError as exc:
        raise OptimizeError(str(exc)) from None
    except StorageError as exc:
        raise OptimizeError(f"the storage cannot be reached: {exc}") from None
    setattr(storage, _TARGET_ATTR, target)
    return storage


def _storage_of(study: Any) -> tuple[str, str | None]:
    """The study's RDB URL without its password, and the password. Refused: storages the
    executors cannot share."""
    from sqlalchemy.engine import URL, make_url

    from optuna_spark.storage import StorageError, StorageTarget, check_connection, sqlite_path, validate_url

    rdb = rdb_backend(study_storage(study))  # an RDB URL's study: Optuna's cache around the RDBStorage
    if not isinstance(rdb, optuna.storages.RDBStorage):
        raise OptimizeError(
            f"study {study.study_name!r} is on a {type(rdb).__name__}, which the Spark tasks cannot share: "
            "create it on an RDB storage they reach, e.g. optuna.create_study(storage='sqlite:///study.db') on a "
            "local session, or a mysql:// or postgresql:// URL on a cluster")
    own = getattr(rdb, _TARGET_ATTR, None)
    if own is not None:  # made by rdb_storage(): its URL and password as the runner's settings give them
        try:
            check_connection(own)
        except StorageError as exc:
            raise OptimizeError(f"the study's storage cannot be reached: {exc}") from None
        return own.url, own.password
    url = make_url(rdb.url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise OptimizeError("an in-memory SQLite storage cannot be shared with the Spark tasks: use a file "
                            "(sqlite:///study.db) on a local session, MySQL or PostgreSQL on a cluster")
    connect_args = (rdb.engine_kwargs or {}).get("connect_args") or {}
    if connect_args and url.get_backend_name() != "sqlite":
        raise OptimizeError("the study's storage has engine_kwargs['connect_args'], which cannot be shipped to the "
                            "tasks: put TLS options in the URL's query (ssl_ca=..., ssl_cert=..., ssl_key=...)")
    password = url.password
    bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                      url.query).render_as_string(hide_password=False)
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(bare)
        if path is not None:
            bare = f"sqlite:///{Path(path).resolve()}"
    try:
        bare = validate_url(bare)
    except Exception as exc:  # noqa: BLE001 - a ConfigError, said in one line
        raise OptimizeError(f"the study's storage URL is refused: {exc}") from None
    try:
        check_connection(StorageTarget(bare, None if password is None else str(password)))
    except StorageError as exc:
        raise OptimizeError(f"the study's storage cannot be reached: {exc}") from None
    return bare, None if password is None else str(password)


def _session(spark: Any) -> Any:
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    import sys

    # A local session of our own: its Python workers run this interpreter (the one that has
    # optuna_spark), not whatever `python3` is first on the PATH (PySpark reads the variable
    # when the SparkContext starts).
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Started by spark-submit (`optuna-spark submit`, a cluster's own launcher): its master,
        # Python and settings are in the conf already; a master given here would override them.
        return SparkSession.builder.getOrCreate()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return SparkSession.builder.master(os.environ.get("OPTUNA_SPARK_MASTER", "local[*]")) \
        .appName("optuna-spark").getOrCreate()


def _job(plan: _Plan, n_trials: int | None, timeout: float | None, n_jobs: int, trial_timeout: float | None,
         sqlite_must_exist: bool, tracking: dict[str, Any] | None = None) -> Any:
    from dataclasses import replace

    from optuna_spark.config import ConfigError, Job, ObjectiveSpec, StudySettings

    heartbeat: dict[str, Any] = {} if plan.heartbeat is None else {
        "heartbeat_interval": plan.heartbeat[0], "grace_period": plan.heartbeat[1]}
    settings = StudySettings(name=plan.name, storage=plan.storage_url, directions=plan.directions,
                             n_trials=None if n_trials is None else int(n_trials),
                             timeout=None if timeout is None else float(timeout), n_jobs=int(n_jobs),
                             trial_timeout=None if trial_timeout is None else float(trial_timeout),
                             budget_scope="call", sqlite_must_exist=sqlite_must_exist, **heartbeat)
    settings = replace(settings, **(tracking or {}))  # mlflow_tracking_uri, mlflow_experiment, artifact_dir
    try:
        settings.validate()
    except ConfigError as exc:
        message = str(exc).replace("--mlflow-tracking-uri", "mlflow_tracking_uri")
        raise OptimizeError(message.replace("--mlflow-experiment", "mlflow_experiment").replace("--", "")) from None
    spec = ObjectiveSpec(name=_name(plan.objective), module="", function="", takes_data=plan.takes_data)
    return Job(study=settings, objective=spec)


def _run_data(data: Any, spark: Any) -> Any:
    """The data set in the form the engine takes (optuna_spark.engine.RunData)."""
    from optuna_spark.engine import RunData, is_connect

    if data is None:
        return None
    if _is_spark_frame(data):
        if is_connect(spark):
            return RunData(spark_frame=data)
        from optuna_spark.dataset import collect_with_arrow

        try:
            frame = collect_with_arrow(spark, data)
        except Exception as exc:  # noqa: BLE001 - Spark's error, in one line
            raise OptimizeError(f"data: the Spark DataFrame cannot be collected: {_error_line(exc)}") from None
        return RunData(payload=pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))
    if isinstance(data, (str, os.PathLike)):
        frame = _read_path(os.fspath(data))
        return RunData(payload=pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return RunData(payload=pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    raise OptimizeError(f"data must be a pandas DataFrame, a Spark DataFrame or a path, got {type(data).__name__}")


def _error_line(exc: BaseException) -> str:
    """`Type: message`, its first line (an error of Spark or of pickling, in ours)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:300]


def _is_spark_frame(data: Any) -> bool:
    return type(data).__module__.startswith("pyspark.sql") and hasattr(data, "mapInPandas")


def _read_path(path: str) -> Any:
    """A Parquet or CSV file of this machine, read as the command line's --data reads it."""
    from optuna_spark.dataset import DataError, DataSpec, MemoryLimit, infer_format, is_url, read_driver_file

    if is_url(path):
        raise OptimizeError(f"data {path!r}: a URL is read by Spark: pass spark.read.parquet(...) (a Spark DataFrame)")
    local = Path(path).expanduser().resolve()
    if not local.is_file():
        raise OptimizeError(f"data {path} is not a file of this machine")
    fmt = infer_format(str(local))
    spec = DataSpec(path=str(local), format=fmt, sep=";" if fmt == "csv" and _semicolons(local) else ",")
    try:
        return read_driver_file(spec, MemoryLimit(bytes=2**62, why="no limit"))
    except DataError as exc:
        raise OptimizeError(str(exc)) from None


def _semicolons(path: Path) -> bool:
    """A CSV whose header line has semicolons and no commas (the wine data's own format)."""
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        head = fh.readline()
    return ";" in head and "," not in head


def _user_modules(*functions: Any) -> list[Any]:
    """The modules of the user's own files (not installed packages, not the standard library)
    that these functions use: a helper module beside the script or notebook. cloudpickle ships
    functions of an importable module by reference, and an executor, whose working directory and
    sys.path are not the script's, could not import it."""
    import inspect
    import sys
    import sysconfig
    import types

    installed = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    found: dict[str, Any] = {}

    def consider(value: Any) -> None:
        name = getattr(value, "__module__", "") or ""
        module = value if isinstance(value, types.ModuleType) else sys.modules.get(name)
        if module is None or module.__name__ in ("__main__", "builtins") or module.__name__ in found:
            return
        if module.__name__.split(".")[0] in ("optuna_spark", "optuna", "pyspark"):
            return
        path = getattr(module, "__file__", None)
        if not path or any(os.path.abspath(path).startswith(os.path.abspath(p) + os.sep) for p in installed if p):
            return
        if "site-packages" in path or "dist-packages" in path:
            return
        found[module.__name__] = module

    for fn in functions:
        fn = getattr(fn, "__func__", fn)
        if not inspect.isfunction(fn):
            consider(type(fn))
            continue
        for name in fn.__code__.co_names:
            if name in fn.__globals__:
                consider(fn.__globals__[name])
        for cell in fn.__closure__ or ():
            try:
                consider(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
    return list(found.values())


def _check_shippable(inputs: Any) -> None:
    """The objective, callbacks, sampler and pruner must survive cloudpickle, now rather than in
    a task; the user's own modules they use travel by value."""
    import importlib

    import cloudpickle

    # PySpark and joblib carry cloudpickles of their own: the one that ships the tasks' function
    # must know too.
    picklers = [cloudpickle]
    for vendored in ("pyspark.cloudpickle", "joblib.externals.cloudpickle"):
        try:
            picklers.append(importlib.import_module(vendored))
        except ImportError:
            pass
    for module in _user_modules(inputs.objective, *(inputs.callbacks or ())):
        for pickler in picklers:
            register = getattr(pickler, "register_pickle_by_value", None)
            if register is not None:
                register(module)

    for what, value in (("objective", inputs.objective), ("callbacks", inputs.callbacks),
                        ("the study's sampler", inputs.sampler), ("the study's pruner", inputs.pruner)):
        try:
            cloudpickle.dumps(value)
        except Exception as exc:  # noqa: BLE001 - any pickling error
            raise OptimizeError(f"{what} cannot be shipped to the Spark tasks (cloudpickle): "
                                f"{_error_line(exc)}") from None


@contextmanager
def warnings_of_spark_silenced() -> Iterator[None]:
    """joblibspark's and PySpark's warnings that say nothing to an optimize() caller (every call
    would print them): local mode's stage-level scheduling, job tags not inherited."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*stage-level scheduling.*")
        warnings.filterwarnings("ignore", message=".*Tags will not be inherited.*")
        warnings.filterwarnings("ignore", message=".*is greater than the max number of concurrent tasks.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="joblib")
        yield


class _ProgressBar:
    """tqdm's bar (its widget in Jupyter, with ipywidgets), as Optuna's own `show_progress_bar`;
    without `n_trials` (a timeout alone), a count with no total."""

    def __init__(self, n_trials: int | None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=n_trials, unit="trial", desc="optuna-spark")
        self._done = 0

    def update(self, done: int) -> None:
        if done > self._done:
            self._bar.update(done - self._done)
            self._done = done

    def close(self) -> None:
        self._bar.close()
