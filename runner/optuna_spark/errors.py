"""The library's exceptions: one base, under Optuna's own (`optuna.exceptions.OptunaError`)."""

from __future__ import annotations

from typing import Any

from optuna.exceptions import OptunaError


class OptunaSparkError(OptunaError):
    """Base of every exception optuna_spark raises."""


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
