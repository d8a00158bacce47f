"""The Spark application that `optuna-spark tune` submits (driver side).

`spark-submit .../runner/spark_app.py JOB.json` runs this file as `__main__`. It creates or
loads the study, reconciles the trial budget, then starts `n_jobs` Spark tasks through
joblibspark, each a Spark job of one task that pulls trials from the shared study
(optuna_spark.task): the same driver-side path as the library's `optimize` (optuna_spark.engine).
Its events (progress, data, warnings, the summary) become lines on stdout, which the command line
that started `spark-submit` reads; Spark's own logging goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

EVENT_PREFIX = "@optuna-spark "


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def spark_task(index: int, job_json: str, password: str | None, deadline: float | None,
               data: Any = None, data_id: int | None = None, inputs: Any = None) -> dict[str, Any]:
    """Runs in an executor. Defined in __main__ so that cloudpickle ships it by value: an import
    error of the runtime itself then comes back as this dict instead of joblibspark 0.6's
    `'_ExceptionWithTraceback' object is not iterable`."""
    import socket
    import traceback

    try:
        from optuna_spark.task import safe_task
    except BaseException as exc:  # noqa: BLE001 - everything must reach the driver
        return {"index": index, "host": socket.gethostname(), "trials": 0,
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:2000],
                "traceback": traceback.format_exc()[-4000:], "seconds": None}
    return safe_task(index, job_json, password, deadline, data, data_id, inputs)


def main(argv: list[str]) -> int:
    import warnings
    from pathlib import Path

    import optuna

    from optuna_spark import engine
    from optuna_spark.config import Job
    from optuna_spark.storage import read_password_file

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    job = Job.from_json(Path(argv[0]).read_text(encoding="utf-8"))
    # Never from the environment: spark-submit runs without the password in it.
    password = read_password_file(job.password_file) if job.password_file else None
    session: list[Any] = []

    def get_spark() -> Any:
        if not session:
            from pyspark.sql import SparkSession

            session.append(SparkSession.builder.appName(f"optuna-spark:{job.study.name}").getOrCreate())
            session[0].sparkContext.setLogLevel("WARN")
        return session[0]

    # No SparkSession.stop() at the end: its wait for PySpark's accumulator server (which polls
    # its connection once a second) added up to a second to every run. spark-submit's JVM stops
    # the SparkContext itself once this process has ended (its shutdown hook), as after any
    # PySpark application.
    outcome = engine.run(job, password, get_spark, on_event=emit, task_fn=spark_task)
    if outcome.summary is None:
        emit("error", message=outcome.message or "the run ended without a summary")
        return outcome.code
    for r in outcome.tasks:
        if r.get("error"):
            sys.stderr.write(f"task {r['index']} on {r['host']} failed:\n{r.get('traceback', '')}\n")
    emit("summary", **outcome.summary)
    return outcome.code


def exit_now(code: int) -> None:
    """Ends the driver once its summary is out: Python's exit handlers run (logging's flush
    among them) and the streams are flushed, then the process exits without the interpreter's
    own teardown of every module and object, about a third of a second on 2 cores at the end
    of every run. Nothing is left to it: the run's storage connections are closed
    (optuna_spark.engine.run), its threads have ended, Spark stops its context itself."""
    import atexit
    import os

    atexit._run_exitfuncs()  # CPython's own exit-handler runner (what interpreter exit calls)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
