"""Spark's Python daemon with the trial loop's imports done once, before it forks the workers.

Spark starts one daemon per executor (`python -m pyspark.daemon`) and forks a Python worker from
it for each task. Each worker of the runner then imports Optuna, SQLAlchemy and NumPy on its own:
16 tasks on a 2-core machine spend seconds of start-up doing the same imports. With
`spark.python.daemon.module=optuna_spark.daemon` (set by `optuna-spark tune` where the executors run
this very interpreter: optuna_spark.submit), the daemon imports them first and the forked workers find
them loaded: PySpark's worker, joblib, Optuna with the Alembic modules its RDB storage loads,
SQLAlchemy, the MySQL drivers, the runner. Spark imports the worker module after the fork so that
no thread runs in the daemon when it forks: none of these starts one, native threads included,
in the environment Spark gives the daemon (OMP_NUM_THREADS set to the task's cores: with one,
NumPy's OpenBLAS starts no pool; with more, OpenBLAS's own fork handler resets it;
tests/unit/test_submit.py checks the one-core case), and none opens a connection. A failed import
only leaves the import to the worker, as without this module.
"""

from __future__ import annotations

PRELOAD = (
    "pyspark.worker", "joblib", "joblibspark", "joblibspark.backend",
    "numpy", "sqlalchemy", "sqlalchemy.orm", "optuna", "optuna.storages._rdb.models",
    "alembic.command", "alembic.config", "alembic.migration", "alembic.script",  # RDBStorage()
    "MySQLdb", "pymysql",  # whichever MySQL driver is installed
    "optuna_spark.spark_app", "optuna_spark.task", "optuna_spark.ledger", "optuna_spark.outage", "optuna_spark.storage",
)


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import `modules`; the names that could not be imported (the worker will say why)."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the worker's own import reports it
            missing.append(name)
    return missing


def settle() -> None:
    """What every worker would otherwise do again after the fork: SQLAlchemy's mappers (Optuna's
    models) configured, and everything loaded so far moved out of the garbage collector's sight
    (`gc.freeze`, as Python's documentation advises before forking workers): a worker's
    collections then neither walk nor touch the preloaded objects, whose pages stay shared with
    the daemon instead of being copied into each of 16 workers on their first collection."""
    import gc

    try:
        from sqlalchemy.orm import configure_mappers

        configure_mappers()
    except Exception:  # noqa: BLE001 - the worker configures them itself, as without this module
        pass
    gc.collect()
    gc.freeze()


def main() -> None:
    preload()
    settle()
    from pyspark.daemon import manager

    manager()


if __name__ == "__main__":
    main()
