"""optuna-spark: run an Optuna study's trials as Spark tasks that share its storage.

From Python (a notebook, a script, on the session you already have)::

    import optuna, optuna_spark

    study = optuna.create_study(storage="sqlite:///study.db", study_name="demo")
    result = optuna_spark.optimize(study, objective, n_trials=100)

The command line (`optuna-spark tune ...`, `python -m optuna_spark`) runs the same code through
`spark-submit`. Everything not in `__all__` is private.
"""

from optuna_spark.api import OptimizeResult, optimize, rdb_storage
from optuna_spark.errors import OptimizeError, OptunaSparkError
from optuna_spark.tracking import artifact_store
from optuna_spark.version import __version__

__all__ = ["OptimizeError", "OptimizeResult", "OptunaSparkError", "__version__", "artifact_store",
           "optimize", "rdb_storage"]
