"""The one error model (optuna_spark.errors): every exception the package raises derives from
OptunaSparkError and says its exit status; the statuses are the documented ones; exceptions that
cross a process boundary pickle whole."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import signal

import optuna
import pytest

import optuna_spark
from optuna_spark import errors
from optuna_spark.outage import StorageOutage


def _package_exceptions() -> list[type[BaseException]]:
    out = []
    for info in pkgutil.walk_packages(optuna_spark.__path__, "optuna_spark."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        out += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__]
    return out


def test_every_exception_of_the_package_derives_from_the_one_base() -> None:
    found = _package_exceptions()
    assert len(found) >= 10
    # Not errors: a storage outage must escape an objective's `except Exception`, and a signal
    # ends the command line through every `finally`.
    control_flow = {StorageOutage.__name__, "Terminated"}
    strays = [c.__qualname__ for c in found if c.__name__ not in control_flow
              and not issubclass(c, errors.OptunaSparkError)]
    assert not strays, strays
    assert issubclass(errors.OptunaSparkError, optuna.exceptions.OptunaError)


def test_exit_statuses() -> None:
    from optuna_spark.config import ConfigError
    from optuna_spark.dataset import DataError
    from optuna_spark.storage import StorageError

    assert (errors.EXIT_OK, errors.EXIT_FAILED, errors.EXIT_USAGE) == (0, 1, 2)
    assert ConfigError("x").exit_code == DataError("x").exit_code == errors.EXIT_USAGE
    assert StorageError("x").exit_code == errors.OptimizeError("x").exit_code == errors.EXIT_FAILED
    assert isinstance(ConfigError("x"), ValueError) and isinstance(StorageError("x"), RuntimeError)
    assert errors.SIGNAL_EXITS == (130, 143, 129)
    assert errors.exit_status_of_signal(signal.SIGTERM) == 143


@pytest.mark.parametrize("name", ["ObjectiveRaised", "TaskFailed"])
def test_exceptions_with_a_childs_traceback_pickle_whole(name: str) -> None:
    from optuna_spark import task

    exc = getattr(task, name)("the message", "Traceback ...")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == "the message" and back.child_traceback == "Traceback ..."
