"""The Spark application that `optuna-spark tune` submits (driver side).

`spark-submit .../runner/spark_app.py JOB.json` runs this file as `__main__`. It creates or
loads the study, reconciles the trial budget, then starts `n_jobs` Spark tasks through
joblibspark, each a Spark job of one task that pulls trials from the shared study
(runner.task). A thread reports progress as event lines on stdout, which the command line that
started `spark-submit` reads; Spark's own logging goes to stderr.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

EVENT_PREFIX = "@optuna-spark "


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def spark_task(index: int, job_json: str, password: str | None, deadline: float | None,
               data: Any = None, data_id: int | None = None) -> dict[str, Any]:
    """Runs in an executor. Defined in __main__ so that cloudpickle ships it by value: an import
    error of the runtime itself then comes back as this dict instead of joblibspark 0.6's
    `'_ExceptionWithTraceback' object is not iterable`."""
    import socket
    import traceback

    try:
        from runner.task import run_task

        return run_task(job_json, password, index, deadline, data, data_id)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the driver
        message = str(exc) if type(exc).__name__ == "TaskFailed" else f"{type(exc).__name__}: {exc}"
        if password:
            message = message.replace(password, "***")
        tb = getattr(exc, "child_traceback", None) or traceback.format_exc()
        if password:
            tb = tb.replace(password, "***")
        return {"index": index, "host": socket.gethostname(), "trials": 0,
                "error": message.strip().splitlines()[0][:2000] if message.strip() else type(exc).__name__,
                "traceback": tb[-4000:], "seconds": None}


def first_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    text = str(getattr(cause, "orig", None) or cause).strip()
    return text.splitlines()[0][:300] if text else type(cause).__name__


class Monitor(threading.Thread):
    """Polls the study and emits `progress` when something changed."""

    def __init__(self, storage: Any, study_id: int, n_trials: int | None, interval: float) -> None:
        super().__init__(name="optuna-spark-progress", daemon=True)
        self.storage, self.study_id, self.n_trials, self.interval = storage, study_id, n_trials, interval
        self.stop_event = threading.Event()
        self.started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        from runner.report import study_counts

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
                    emit("warning", message=f"progress: the storage does not answer: {first_line(exc)}")
                continue
            if snap != last:
                emit("progress", elapsed=round(time.monotonic() - self.started, 1), **snap)
                last = snap


def main(argv: list[str]) -> int:
    import warnings
    from pathlib import Path

    import optuna

    from runner.config import Job
    from runner.storage import (StorageError, StorageTarget, describe_db_error, open_rdb_storage,
                                read_password_file)

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    job = Job.from_json(Path(argv[0]).read_text(encoding="utf-8"))
    settings = job.study
    # Never from the environment: spark-submit runs without the password in it.
    password = read_password_file(job.password_file) if job.password_file else None
    target = StorageTarget(settings.storage, password)
    started = time.monotonic()

    from sqlalchemy.exc import SQLAlchemyError

    from runner.outage import OutageGuard, StorageOutage, database_probe

    guard = OutageGuard(database_probe(target.connect_url(), target.engine_kwargs()), settings.outage_timeout)
    session: list[Any] = []

    def get_spark() -> Any:
        if not session:
            from pyspark.sql import SparkSession

            session.append(SparkSession.builder.appName(f"optuna-spark:{settings.name}").getOrCreate())
            session[0].sparkContext.setLogLevel("WARN")
        return session[0]

    payload: bytes | None = None
    if job.data is not None:
        # Read (a URL, through Spark) and checked before the study is created or loaded: a
        # refused data set leaves the storage as it was.
        from runner.dataset import DataError, driver_payload

        try:
            payload, info = driver_payload(get_spark, job.data)
        except DataError as exc:
            emit("error", message=str(exc))
            if session:
                session[0].stop()
            return 2
        emit("data", **info, pickled_bytes=len(payload))
    try:
        if target.backend == "sqlite":
            _sqlite_wal(target)
        # Another client opening the same new storage at this instant (a plain Optuna client, a
        # second run) may create Optuna's tables between SQLAlchemy's check and its CREATE: retried.
        storage = guard.call(lambda: open_rdb_storage(target), "opening the storage")
        study_id = guard.call(lambda: prepare_study(storage, target, job), "preparing the study")
    except WrongDirection as exc:
        emit("error", message=str(exc))
        return 2
    except StorageOutage as exc:
        emit("error", message=str(exc))
        return 1
    except (SQLAlchemyError, StorageError, optuna.exceptions.StorageInternalError) as exc:
        emit("error", message=describe_db_error(exc, target))
        return 1

    spark = get_spark()
    data_bc = None
    if payload is not None:
        # Pickled bytes, broadcast once: each task unpickles them once (runner.dataset.task_data).
        data_bc = spark.sparkContext.broadcast(payload)
        payload = None
    emit("started", study=settings.name, study_id=study_id, n_jobs=settings.n_jobs,
         budget=settings.n_trials, timeout=settings.timeout, split=settings.split,
         master=spark.sparkContext.master, app_id=spark.sparkContext.applicationId,
         spark_version=spark.version, **_driver_java(spark))

    # Optuna's cached storage reads only the trials that changed since its last read: a poll of
    # a 10,000-trial study costs milliseconds, not the second of CPU a full read takes.
    storage = optuna.storages.get_storage(storage)
    monitor = Monitor(storage, study_id, settings.n_trials, job.progress_interval)
    monitor.start()
    deadline = None if settings.timeout is None else time.time() + settings.timeout
    job_json = job.to_json()
    results: list[dict[str, Any]] = []
    crash: str | None = None
    try:
        from joblib import Parallel, delayed, parallel_backend
        from joblibspark import register_spark

        register_spark()
        with parallel_backend("spark", n_jobs=settings.n_jobs):
            results = Parallel(n_jobs=settings.n_jobs)(
                delayed(spark_task)(i, job_json, password, deadline, data_bc,
                                    None if data_bc is None else int(data_bc._jbroadcast.id()))
                for i in range(settings.n_jobs)
            )
    except Exception as exc:  # a Spark job failed outright (e.g. a lost executor in local mode)
        crash = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:2000]
    finally:
        monitor.stop_event.set()
        monitor.join(timeout=5)

    from runner.report import summarize

    try:
        trials = guard.call(lambda: storage.get_all_trials(study_id, deepcopy=False), "reading the trials")
    except StorageOutage as exc:
        emit("error", message=f"cannot read the study's trials for the summary: {exc}")
        spark.stop()
        return 1
    summary = summarize(settings.name, trials, settings.n_trials, list(settings.directions),
                        wall=time.monotonic() - started, tasks=results)
    errors = [r for r in results if r.get("error")]
    if crash:
        summary["errors"].append({"index": None, "host": None, "error": crash})
    for r in errors:
        summary["errors"].append({"index": r["index"], "host": r["host"], "error": r["error"]})
        sys.stderr.write(f"task {r['index']} on {r['host']} failed:\n{r.get('traceback', '')}\n")
    emit("summary", **summary)
    spark.stop()
    return 3 if summary["errors"] else 0


def _driver_java(spark: Any) -> dict[str, str]:
    """The driver JVM's Java version and home, as it reports them."""
    try:
        system = spark.sparkContext._jvm.java.lang.System
        return {"java_version": str(system.getProperty("java.version")),
                "java_home": str(system.getProperty("java.home"))}
    except Exception:  # noqa: BLE001 - only for the started line
        return {}


class WrongDirection(ValueError):
    pass


def prepare_study(storage: Any, target: Any, job: Any) -> int:
    """Create or load the study, its budget tables and, for the static split, each task's share.
    Idempotent: an outage's retry may run it twice."""
    import optuna

    from runner.config import static_shares
    from runner.ledger import Ledger

    settings = job.study
    study = optuna.create_study(study_name=settings.name, storage=storage, directions=list(settings.directions),
                                load_if_exists=True)
    existing = [d.name.lower() for d in study.directions]
    if existing != list(settings.directions):
        raise WrongDirection(f"study {settings.name!r} exists with direction {', '.join(existing)}, "
                             f"not {', '.join(settings.directions)}")
    if settings.n_trials is not None and study.user_attrs.get("optuna_spark_budget") != settings.n_trials:
        study.set_user_attr("optuna_spark_budget", settings.n_trials)
    ledger = Ledger(target.connect_url(), target.engine_kwargs(), study._study_id, storage)
    try:
        ledger.create()
        ledger.ensure()
        now, running = ledger.running()
        live = [r for r in running if now is None or not r.is_dead(now)]
        if live:
            # Another run of this study is under way: its claims in flight are real, and
            # reconciling would give them back.
            emit("warning", message=f"{len(live)} trial(s) of study {settings.name!r} have a recent "
                                    "heartbeat (another run under way, or one stopped less than the grace "
                                    "period ago): this run shares its budget")
        else:
            ledger.reconcile()
        if settings.split == "static" and settings.n_trials is not None:
            # The seed's fixed shares, of what is left of the budget: a second run of the same
            # command continues toward the same total, as the shared split does.
            left = settings.n_trials - ledger.foreign_finished() - ledger.claimed()
            job.extra["shares"] = static_shares(max(0, left), settings.n_jobs)
    finally:
        ledger.dispose()
    return int(study._study_id)


def _sqlite_wal(target: Any) -> None:
    """WAL lets the progress reader and the executors' writers work at once on one file."""
    from sqlalchemy import create_engine, text

    from runner.storage import ensure_sqlite_parent

    ensure_sqlite_parent(target.url)
    engine = create_engine(target.connect_url())
    with engine.connect() as conn:
        conn.execute(text("PRAGMA journal_mode=WAL"))
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
