"""The driver side of a run, one code path for the command line and the library.

`run(...)` creates or loads the study, reconciles the trial budget (optuna_spark.ledger), starts
`n_jobs` Spark tasks that pull trials from the shared study (optuna_spark.task), reports progress
through an `on_event(kind, **fields)` callback while they run, and returns the run's summary.

The command line's Spark application (optuna_spark.spark_app, started by `spark-submit`) calls it
with the objective named in its Job and turns the events into lines on stdout; the library
(`optuna_spark.optimize`) calls it on the user's own session with the objective as a callable.

How the tasks are started depends on the session:

- a classic session (a `SparkContext` in this process: local mode, a standalone, YARN or
  Kubernetes cluster, a Databricks cluster in single-user mode): one Spark job of one task per
  lane, through joblibspark; a lost task fails its own job only, and the others carry on. A data
  set is broadcast once (pickled), and unpickled once per Python worker.
- a Spark Connect session (`SparkSession.builder.remote(...)`; Databricks' shared and serverless
  compute): no `SparkContext` there, so the tasks are the partitions of one DataFrame
  (`spark.range(n_jobs).mapInPandas(...)`), as MLflow's Spark study does. A Spark DataFrame given
  as the data reaches each task through Spark itself: the lanes cross-joined with the data set
  broadcast (each executor's JVM holds it once), so each partition carries one full copy, as
  Arrow batches that the task concatenates into one pandas DataFrame.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from optuna_spark.config import Job
from optuna_spark.errors import EXIT_FAILED, EXIT_OK, EXIT_TASK_ERRORS, EXIT_USAGE, UsageError
from optuna_spark.optuna_internals import study_id as study_id_of
from optuna_spark.outage import first_line
from optuna_spark.task import TaskInputs, safe_task

# A run's outcome: the Spark application's exit status (optuna_spark.errors' table).
RUN_OK, RUN_FAILED, RUN_USAGE, RUN_TASK_ERRORS = EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TASK_ERRORS

EventSink = Callable[..., None]  # on_event(kind, **fields)


class WrongDirection(UsageError, ValueError):
    """The study exists with other directions than the run asks for: status 2."""


@dataclass
class RunOutcome:
    """`code`: RUN_OK, RUN_FAILED (the storage, Spark), RUN_USAGE (a refused input), or
    RUN_TASK_ERRORS (tasks reported errors: in `summary["errors"]`). `message`: why, when no
    summary could be made."""

    code: int
    summary: dict[str, Any] | None = None
    message: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)


def is_connect(spark: Any) -> bool:
    """A Spark Connect session (no SparkContext in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def is_local_master(master: str | None) -> bool:
    return master is None or master.startswith("local")


def session_master(spark: Any) -> str | None:
    if not is_connect(spark):
        return str(spark.sparkContext.master)
    try:
        return str(spark.conf.get("spark.master"))
    except Exception:  # noqa: BLE001 - a server that hides it
        return None


def free_task_slots(spark: Any) -> int:
    """How many tasks the session runs at once: Spark's default parallelism (the executors'
    cores over `spark.task.cpus`; `local[N]`'s N)."""
    if not is_connect(spark):
        cpus = int(spark.sparkContext.getConf().get("spark.task.cpus", "1") or 1)
        return max(1, int(spark.sparkContext.defaultParallelism) // max(1, cpus))
    import re

    for key in ("spark.default.parallelism",):
        try:
            value = spark.conf.get(key)
            if value:
                return max(1, int(value))
        except Exception:  # noqa: BLE001 - not set on this server
            pass
    master = session_master(spark) or ""
    match = re.match(r"^local\[(\d+)", master)
    if match:
        return max(1, int(match.group(1)))
    if master.startswith("local[*]"):
        import os

        return max(1, os.cpu_count() or 1)
    return 2


class Monitor(threading.Thread):
    """Polls the study and reports `progress` when something changed."""

    def __init__(self, storage: Any, study_id: int, n_trials: int | None, interval: float,
                 on_event: EventSink, after_poll: Callable[[Any, int], None] | None = None) -> None:
        super().__init__(name="optuna-spark-progress", daemon=True)
        self.storage, self.study_id, self.n_trials, self.interval = storage, study_id, n_trials, interval
        self.on_event = on_event
        self.after_poll = after_poll
        self.stop_event = threading.Event()
        self.started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        from optuna_spark.report import study_counts

        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        return study_counts(trials, self.n_trials, self.storage.get_study_directions(self.study_id))

    def run(self) -> None:
        last: dict[str, Any] | None = None
        failures = 0
        # Trials finished before this run's tasks start: the run's own rate leaves them out.
        try:
            previous: int | None = self.snapshot()["finished"]
        except Exception:  # noqa: BLE001 - the rate then counts every trial
            previous = None
        while not self.stop_event.wait(self.interval):
            try:
                snap = self.snapshot()
                if previous is not None:
                    snap["previous"] = previous
                failures = 0
            except Exception as exc:  # a storage hiccup must not end the run
                failures += 1
                if failures == 3:  # said once per outage, not at every poll
                    self.on_event("warning", message=f"progress: the storage does not answer: {first_line(exc)}")
                continue
            if snap != last:
                self.on_event("progress", elapsed=round(time.monotonic() - self.started, 1), **snap)
                last = snap
            if self.after_poll is not None:
                self.after_poll(self.storage, self.study_id)


def prepare_study(storage: Any, target: Any, job: Any, on_event: EventSink = lambda *a, **k: None) -> int:
    """Create or load the study, its budget tables and, for the static split, each task's share;
    with the call's budget scope, where this call's claims start (`claim_base`). Idempotent: an
    outage's retry may run it twice."""
    import optuna

    from optuna_spark.config import static_shares
    from optuna_spark.ledger import Ledger

    settings = job.study
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))  # not "Using an existing study"
    try:
        study = optuna.create_study(study_name=settings.name, storage=storage,
                                    directions=list(settings.directions), load_if_exists=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    existing = [d.name.lower() for d in study.directions]
    if existing != list(settings.directions):
        raise WrongDirection(f"study {settings.name!r} exists with direction {', '.join(existing)}, "
                             f"not {', '.join(settings.directions)}")
    if settings.budget_scope == "study" and settings.n_trials is not None \
            and study.user_attrs.get("optuna_spark_budget") != settings.n_trials:
        study.set_user_attr("optuna_spark_budget", settings.n_trials)
    ledger = Ledger(target.connect_url(), target.engine_kwargs(), study_id_of(study), storage)
    try:
        ledger.create()
        ledger.ensure()
        now, running = ledger.running()
        live = [r for r in running if now is None or not r.is_dead(now)]
        if live:
            # Another run of this study is under way: its claims in flight are real, and
            # reconciling would give them back.
            on_event("warning", message=f"{len(live)} trial(s) of study {settings.name!r} have a recent "
                                        "heartbeat (another run under way, or one stopped too recently for them to "
                                        "be taken for dead): this run shares its budget")
        else:
            ledger.reconcile()
        # Claims still in flight (trials RUNNING, claims not yet bound: an interrupted run's,
        # which a sweep will give back and re-enqueue) are not spent.
        _, unbound = ledger.state()
        spent = ledger.claimed() - len(running) - unbound
        if settings.budget_scope == "call":
            # This call's n_trials takes them up when they come back: it runs exactly n_trials claims.
            job.extra["claim_base"] = spent
        if settings.split == "static" and settings.n_trials is not None:
            # The seed's fixed shares, of what is left of the budget: a second run of the same
            # command continues toward the same total, as the shared split does. The shares cover
            # the claims in flight too (a killed run's trials, retried here once a sweep gives
            # them back); where a live run finishes them instead, the claims, not the shares,
            # stop this run's tasks at the budget.
            left = settings.n_trials if settings.budget_scope == "call" else \
                settings.n_trials - ledger.foreign_finished() - spent
            job.extra["shares"] = static_shares(max(0, left), settings.n_jobs)
    finally:
        ledger.dispose()
    return study_id_of(study)


def sqlite_wal(target: Any) -> None:
    """WAL lets the progress reader and the executors' writers work at once on one file."""
    from sqlalchemy import create_engine, text

    from optuna_spark.storage import ensure_sqlite_parent

    ensure_sqlite_parent(target.url)
    engine = create_engine(target.connect_url())
    with engine.connect() as conn:
        conn.execute(text("PRAGMA journal_mode=WAL"))
    engine.dispose()


def driver_java(spark: Any) -> dict[str, str]:
    """The driver JVM's Java version and home, as it reports them (a classic session only)."""
    try:
        system = spark.sparkContext._jvm.java.lang.System
        return {"java_version": str(system.getProperty("java.version")),
                "java_home": str(system.getProperty("java.home"))}
    except Exception:  # noqa: BLE001 - only for the started line
        return {}


@dataclass
class RunData:
    """The data set of a run, in one of the forms it can take on the driver."""

    payload: bytes | None = None  # a pickled pandas DataFrame (broadcast, or shipped by value)
    spark_frame: Any = None  # a Spark DataFrame (the library's data=)
    info: dict[str, Any] = field(default_factory=dict)


def run(job: Job, password: str | None, get_spark: Callable[[], Any], *, on_event: EventSink,
        inputs: TaskInputs | None = None, data: RunData | None = None,
        task_fn: Callable[..., dict[str, Any]] = safe_task,
        after_poll: Callable[[Any, int], None] | None = None) -> RunOutcome:
    """One run of a study: see the module's docstring. `get_spark()` gives the session (made
    on first use: a refused data set or storage starts none).
    `after_poll(storage, study_id)` runs in the progress thread after each poll of the study, and
    once more when the tasks have ended (the library's callbacks). Never raises for what a user
    can get wrong: the outcome says it. The storage it opens is closed when it returns: no
    connection of the run outlives it."""
    opened: list[Any] = []
    try:
        return _run(job, password, get_spark, on_event=on_event, inputs=inputs, data=data, task_fn=task_fn,
                    after_poll=after_poll, opened=opened)
    finally:
        for storage in opened:
            storage.engine.dispose()


def _run(job: Job, password: str | None, get_spark: Callable[[], Any], *, on_event: EventSink,
         inputs: TaskInputs | None, data: RunData | None, task_fn: Callable[..., dict[str, Any]],
         after_poll: Callable[[Any, int], None] | None, opened: list[Any]) -> RunOutcome:
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from optuna_spark.outage import OutageGuard, StorageOutage, database_probe
    from optuna_spark.storage import (
        SCHEMA_CHECKED_BY,
        StorageError,
        StorageTarget,
        describe_db_error,
        open_rdb_storage,
    )

    settings = job.study
    target = StorageTarget(settings.storage, password)
    started = time.monotonic()
    guard = OutageGuard(database_probe(target.connect_url(), target.engine_kwargs()), settings.outage_timeout)
    data = data or RunData()

    if job.data is not None:
        # Read (a URL, through Spark) and checked before the study is created or loaded: a
        # refused data set leaves the storage as it was.
        from optuna_spark.dataset import DataError, driver_payload

        try:
            payload, info = driver_payload(get_spark, job.data)
        except DataError as exc:
            return RunOutcome(exc.exit_code, message=str(exc))
        data = RunData(payload=payload, info=info)
        on_event("data", **info, pickled_bytes=len(payload))
    try:
        if target.backend == "sqlite":
            sqlite_wal(target)
        # Another client opening the same new storage at this instant (a plain Optuna client, a
        # second run) may create Optuna's tables between SQLAlchemy's check and its CREATE: retried.
        storage = guard.call(lambda: open_rdb_storage(target), "opening the storage")
        opened.append(storage)
        job.extra[SCHEMA_CHECKED_BY] = optuna.__version__
        study_id = guard.call(lambda: prepare_study(storage, target, job, on_event), "preparing the study")
    except WrongDirection as exc:
        return RunOutcome(exc.exit_code, message=str(exc))
    except StorageOutage as exc:
        return RunOutcome(RUN_FAILED, message=str(exc))
    except (SQLAlchemyError, StorageError, optuna.exceptions.StorageInternalError) as exc:
        return RunOutcome(RUN_FAILED, message=describe_db_error(exc, target))

    spark = get_spark()
    # --timeout: a moment of the database's clock, which every task reads too (task.TrialLoop):
    # no host's own clock is compared with another's.
    try:
        deadline = None if settings.timeout is None else \
            settings.timeout + guard.call(lambda: _database_time(storage), "reading the database's clock")
    except StorageOutage as exc:
        return RunOutcome(RUN_FAILED, message=str(exc))
    connect = is_connect(spark)
    broadcast, data_id, frame = None, None, None
    if data.payload is not None:
        if connect:  # no broadcast on Spark Connect: the frame travels with the tasks' function
            import pickle

            frame = pickle.loads(data.payload)
        else:
            # Pickled bytes, broadcast once: each task unpickles them once (optuna_spark.dataset.task_data).
            broadcast = spark.sparkContext.broadcast(data.payload)
            data_id = int(broadcast._jbroadcast.id())
        data.payload = None
    master = session_master(spark)
    on_event("started", study=settings.name, study_id=study_id, n_jobs=settings.n_jobs,
             budget=settings.n_trials, timeout=settings.timeout, split=settings.split,
             master=master, app_id=_app_id(spark), spark_version=spark.version,
             connect=connect, **({} if connect else driver_java(spark)))

    # Optuna's cached storage reads only the trials that changed since its last read: a poll of
    # a 10,000-trial study costs milliseconds, not the second of CPU a full read takes.
    storage = optuna.storages.get_storage(storage)
    monitor = Monitor(storage, study_id, settings.n_trials if settings.budget_scope == "study" else None,
                      job.progress_interval, on_event, after_poll)
    monitor.start()
    from optuna_spark import tracking

    # --mlflow-tracking-uri: every trial an MLflow run, logged from here in a thread of its own.
    tracker = tracking.start(settings, storage, study_id, job.progress_interval, warn=on_event)
    job_json = job.to_json()
    results: list[dict[str, Any]] = []
    crash: str | None = None
    try:
        if connect:
            results = _dataframe_tasks(spark, settings.n_jobs, task_fn, job_json, password, deadline, inputs,
                                       frame, data.spark_frame)
        else:
            results = _joblib_tasks(settings.n_jobs, task_fn, job_json, password, deadline, inputs,
                                    broadcast, data_id)
    except Exception as exc:  # a Spark job failed outright (e.g. a lost executor in local mode)
        crash = spark_failure_line(exc)
        if password:
            crash = crash.replace(password, "***")
    except BaseException:  # Ctrl-C, a signal: the tracker's thread must not outlive the run
        if tracker is not None:
            tracker.abort()
        raise
    finally:
        monitor.stop_event.set()
        monitor.join(timeout=5)
        if broadcast is not None:  # the library's session lives on: its blocks are freed now
            try:
                broadcast.destroy()
            except Exception:  # noqa: BLE001 - a stopped session freed them already
                pass

    from optuna_spark.report import summarize

    if after_poll is not None:
        after_poll(storage, study_id)
    try:
        trials = guard.call(lambda: storage.get_all_trials(study_id, deepcopy=False), "reading the trials")
    except StorageOutage as exc:
        if tracker is not None:
            tracker.finish(None)
        return RunOutcome(RUN_FAILED, message=f"cannot read the study's trials for the summary: {exc}",
                          tasks=results)
    summary = summarize(settings.name, trials, settings.n_trials if settings.budget_scope == "study" else None,
                        list(settings.directions), wall=time.monotonic() - started, tasks=results)
    if crash:
        summary["errors"].append({"index": None, "host": None, "error": crash, "traceback": ""})
    for r in results:
        if r.get("error"):
            summary["errors"].append({"index": r["index"], "host": r["host"], "error": r["error"]})
    if tracker is not None:
        summary["mlflow"] = tracker.finish(trials, summary)
    return RunOutcome(RUN_TASK_ERRORS if summary["errors"] else RUN_OK, summary=summary, tasks=results)


def _database_time(storage: Any) -> float:
    from optuna_spark.ledger import database_time

    with storage.engine.connect() as conn:
        return database_time(conn)


def spark_failure_line(exc: BaseException) -> str:
    """One line for a Spark job that failed: the Python error inside Spark's exception (its last
    `SomethingError: ...` line) when there is one, else the exception's first line."""
    import re

    text = f"{type(exc).__name__}: {exc}".strip()
    errors = re.findall(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b: .+)$", text, re.M)
    line = errors[-1].strip() if errors else text.splitlines()[0]
    return line[:2000]


def _app_id(spark: Any) -> str | None:
    try:
        if is_connect(spark):
            return str(spark.conf.get("spark.app.id"))
        return str(spark.sparkContext.applicationId)
    except Exception:  # noqa: BLE001 - only for the started line
        return None


JOBLIB_BACKEND = "optuna-spark"


def register_joblib_backend() -> None:
    """joblibspark's Spark backend, whose tasks run in the application's default resource profile:
    they get `spark.task.cpus` and `spark.task.resource.gpu.amount` as Spark itself resolved them
    (a fraction such as 0.5 included: Spark puts 1/amount tasks on one GPU). joblibspark 0.6
    would copy them into a stage-level profile of its own, through `int()`, which fails on a
    fraction off a local master. (Its private `_create_resource_profile`: pinned by
    tests/unit/test_gpu.py.)"""
    from joblib import register_parallel_backend
    from joblibspark.backend import SparkDistributedBackend

    class DefaultProfileBackend(SparkDistributedBackend):  # type: ignore[misc]
        def _create_resource_profile(self, num_cpus_per_spark_task: Any, num_gpus_per_spark_task: Any) -> None:
            return None

    register_parallel_backend(JOBLIB_BACKEND, DefaultProfileBackend)


def _joblib_tasks(n_jobs: int, task_fn: Callable[..., dict[str, Any]], job_json: str, password: str | None,
                  deadline: float | None, inputs: TaskInputs | None, broadcast: Any,
                  data_id: int | None) -> list[dict[str, Any]]:
    """A classic session: one Spark job of one task per lane (joblibspark)."""
    from joblib import Parallel, delayed, parallel_backend

    register_joblib_backend()
    # joblib runs a Parallel of one job in this very process: at least two, so that even one
    # lane is a Spark task on an executor.
    lanes = max(2, n_jobs)
    with parallel_backend(JOBLIB_BACKEND, n_jobs=lanes):
        out = Parallel(n_jobs=lanes)(
            delayed(task_fn)(i, job_json, password, deadline, broadcast, data_id, inputs) for i in range(n_jobs))
    return list(out)


RESULT_SCHEMA = "result string"
LANE_COLUMN = "__optuna_spark_lane"


def _dataframe_tasks(spark: Any, n_jobs: int, task_fn: Callable[..., dict[str, Any]], job_json: str,
                     password: str | None, deadline: float | None, inputs: TaskInputs | None, frame: Any,
                     spark_frame: Any) -> list[dict[str, Any]]:
    """A Spark Connect session: the tasks are the partitions of one DataFrame (mapInPandas)."""
    if spark_frame is None:
        lanes = spark.range(0, n_jobs, 1, n_jobs)

        def by_index(batches: Iterator[Any]) -> Iterator[Any]:
            import pandas as pd

            for batch in batches:
                for index in batch["id"]:
                    result = task_fn(int(index), job_json, password, deadline, frame, None, inputs)
                    yield pd.DataFrame({"result": [json.dumps(result, default=str)]})

        rows = _collect_interruptibly(spark, lanes.mapInPandas(by_index, RESULT_SCHEMA))
    else:
        from pyspark.sql import functions as F

        # Each lane a partition, the data set broadcast beside it: partition i holds lane i with
        # one full copy of the rows. (A union of coalesced copies would not do: Spark 4 zips the
        # partitions of children that share one partitioning, so all copies land in one task.)
        lanes = spark.range(0, n_jobs, 1, n_jobs).withColumnRenamed("id", LANE_COLUMN)
        copies = lanes.crossJoin(F.broadcast(spark_frame))
        columns = list(spark_frame.columns)

        def with_copy(batches: Iterator[Any]) -> Iterator[Any]:
            import pandas as pd

            parts = list(batches)
            if not parts:
                return
            whole = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
            del parts
            index = int(whole[LANE_COLUMN].iloc[0])
            whole = whole[columns]
            result = task_fn(index, job_json, password, deadline, whole, None, inputs)
            yield pd.DataFrame({"result": [json.dumps(result, default=str)]})

        rows = _collect_interruptibly(spark, copies.mapInPandas(with_copy, RESULT_SCHEMA))
    results = [json.loads(row["result"]) for row in rows]
    seen = {r.get("index") for r in results}
    for index in range(n_jobs):
        if index not in seen:  # a lane whose partition was empty: an empty data set
            results.append({"index": index, "host": None, "trials": 0, "seconds": None, "traceback": "",
                            "error": "the task received no rows of the data set (is the DataFrame empty?)"})
    return sorted(results, key=lambda r: r.get("index", 0))


def _collect_interruptibly(spark: Any, frame: Any) -> list[Any]:
    """`collect()`; Ctrl-C in the client interrupts the session's operations on the server (the
    tasks stop; their running trials are failed and retried by the next run's sweep)."""
    try:
        return list(frame.collect())
    except KeyboardInterrupt:
        try:
            spark.interruptAll()
        finally:
            raise
