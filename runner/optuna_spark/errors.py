"""The package's one error model: one base, under Optuna's own (`optuna.exceptions.OptunaError`),
and the exit status each kind of error means, for the command line (`optuna-spark`), the Spark
application it submits (`spark_app.py`, whose status the command line reads back) and the
library (`optimize` raises, it does not exit).

| status | meaning | raised as |
| --- | --- | --- |
| 0 | the run reached its end | |
| 1 | the run failed: the storage, Spark, Java, a task's error | `OptunaSparkError` (`exit_code` 1) |
| 2 | a refused input: an argument, a setting, a data file; nothing was run | `UsageError` |
| 3 | the Spark application only: tasks reported errors (the command line exits 1) | |
| 128 + signal | interrupted: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP | |

`StorageOutage` (optuna_spark.outage) is not an `OptunaSparkError` on purpose: it derives from
`BaseException` so that an objective's `except Exception` cannot swallow it.
"""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from optuna.exceptions import OptunaError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TASK_ERRORS = 3
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status_of_signal(signum: int) -> int:
    """The shell's status for a process ended by `signum` (130 for SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(signum)


SIGNAL_EXITS = tuple(exit_status_of_signal(s) for s in INTERRUPT_SIGNALS)


class OptunaSparkError(OptunaError):
    """Base of every exception optuna_spark raises; `exit_code`: the command line's status for it."""

    exit_code: ClassVar[int] = EXIT_FAILED


class UsageError(OptunaSparkError):
    """A refused input (an argument, a setting, a data file): nothing was run; status 2."""

    exit_code: ClassVar[int] = EXIT_USAGE


class ConfigError(UsageError, ValueError):
    """A bad setting (an argument, the config file, the environment): the command line reports it
    in one line and exits with status 2."""


class OptimizeError(OptunaSparkError):
    """`optuna_spark.optimize` could not run, or its run failed: a refused argument (raised
    before any Spark job starts), an unreachable storage, a Spark job that failed, or tasks that
    reported errors (an objective's exception that `catch` does not name among them).

    `summary`: the run's summary (an `OptimizeResult`) when the study was run at all, else None;
    `task_errors`: each failed task's index, host, error line and traceback text."""

    def __init__(self, message: str, summary: Any = None, task_errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.summary = summary
        self.task_errors = list(task_errors or [])
