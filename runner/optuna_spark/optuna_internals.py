"""Every use of Optuna's private API, in one place.

The runner works inside Optuna's storage: its ledger writes Optuna's trial tables in its own
transactions, a task feeds Optuna's cached storage the trial it started, and it checks an
objective's values as `study.tell` would. None of that is Optuna's public API, and the pin is
`optuna>=5,<6`: an Optuna release may change any of it. So the package reaches Optuna's private
names only through this module, and tests/unit/test_optuna_internals.py pins the behaviour each
function relies on against the installed Optuna: an upgrade that changes one fails there first,
in one place, with the name of what changed.

What is used, and why:
- `study._study_id`, `study._storage`, `trial._trial_id`: a study's or trial's row id and
  storage (what every integration of Optuna's reads; no public accessor).
- `optuna.storages._rdb.models`: the RDB storage's tables (`trials`, `studies`, the attribute and
  heartbeat tables), which the ledger reads and writes in one transaction with its own tables.
- `RDBStorage._set_trial_attr_without_commit`, `_get_prepared_new_trial`,
  `_build_frozen_trial_from_trial_model`: Optuna's own writing of an attribute, of a new trial
  from a template (a retry's WAITING copy) and its reading of a trial row, inside a session the
  ledger holds.
- `_CachedStorage` (`_backend`, `_lock`, `_studies`, `_add_trials_to_cache`, `_StudyInfo`): the
  cache of the storage a study gets from an RDB URL; a task registers the trial it just started
  instead of re-reading the study.
- `study._stop_flag`, `study._thread_local.in_optimize_loop` and `.cached_all_trials`: what lets
  an objective or a callback call `study.stop()` inside the loop as in `study.optimize`, and the
  per-trial view of the study the samplers read, refreshed for each trial as `ask` does.
- `optuna.study._tell._check_values_are_feasible`: `study.tell`'s checks of an objective's values.
- `optuna.study._multi_objective._get_pareto_front_trials_by_trials`: the Pareto front of a list of
  trials (the report's; `study.best_trials` reads the study, not a list).

Imports of Optuna happen inside the functions: an executor's Python daemon preloads them, the
command line's start does not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any


def study_id(study: Any) -> int:
    """The study's row id in its storage."""
    return int(study._study_id)


def study_storage(study: Any) -> Any:
    """The storage the study reads and writes (a `_CachedStorage` around an `RDBStorage` for an
    RDB URL, or what the caller passed)."""
    return study._storage


def rdb_backend(storage: Any) -> Any:
    """The storage under Optuna's `_CachedStorage` (an `RDBStorage`); any other storage as it is."""
    from optuna.storages._cached_storage import _CachedStorage

    return storage._backend if isinstance(storage, _CachedStorage) else storage


def trial_id(trial: Any) -> int:
    """A trial's (FrozenTrial's or Trial's) row id in its storage."""
    return int(trial._trial_id)


def rdb_models() -> ModuleType:
    """Optuna's RDB tables (`models.TrialModel.__table__` and friends)."""
    from optuna.storages._rdb import models

    return models


def set_trial_attr_in(rdb: Any, session: Any, model: Any, trial: int, key: str, value: Any) -> None:
    """Set a trial's user or system attribute (`model`) in the caller's session, as Optuna does
    (the value stored as JSON), without committing."""
    rdb._set_trial_attr_without_commit(session, model, trial, key, value)


def new_trial_in(rdb: Any, study: int, template: Any, session: Any) -> Any:
    """A new trial of `study` in the caller's session, as `create_new_trial(study, template)`
    makes it (numbered after the study's trials; the template's params, values, attributes and
    state), without committing. Returns Optuna's TrialModel row."""
    return rdb._get_prepared_new_trial(study, template, session)


def frozen_trial_of(rdb: Any, row: Any) -> Any:
    """The FrozenTrial of a TrialModel row read in the caller's session."""
    return rdb._build_frozen_trial_from_trial_model(row)


def cache_started_trial(cached: Any, study: int, read: Callable[[], Any]) -> bool:
    """Put a trial this task just started into Optuna's `_CachedStorage` (`read()` gives its
    FrozenTrial), as the cache's own `create_new_trial` does, and mark it unfinished so that the
    cache reads it again until it ends (a WAITING trial taken may be older than the cache's last
    finished trial). False: not a cached storage of this Optuna's shape (the caller reads the
    study instead)."""
    try:
        from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
    except ImportError:
        return False
    if not isinstance(cached, _CachedStorage) or not hasattr(cached, "_add_trials_to_cache"):
        return False
    frozen = read()
    with cached._lock:
        info = cached._studies.setdefault(study, _StudyInfo())
        cached._add_trials_to_cache(study, [frozen])
        info.unfinished_trial_ids.add(trial_id(frozen))
    return True


@contextmanager
def optimize_loop(study: Any) -> Iterator[None]:
    """Inside, `study.stop()` is allowed (as inside `study.optimize`); `stop_requested` says
    whether it was called. The stop flag is cleared on the way in."""
    study._stop_flag = False
    study._thread_local.in_optimize_loop = True
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False


def stop_requested(study: Any) -> bool:
    """`study.stop()` was called inside `optimize_loop`."""
    return bool(study._stop_flag)


def clear_stop(study: Any) -> None:
    """Forget a `study.stop()` (the study's next optimize starts afresh)."""
    study._stop_flag = False


def refresh_trials_view(study: Any) -> None:
    """The samplers' per-trial view of the study is read afresh for the next trial, as Optuna's
    `ask` does (without it, TPE would keep seeing the study as it was)."""
    study._thread_local.cached_all_trials = None


def values_problem(study: Any, values: Sequence[Any]) -> str | None:
    """Why `study.tell(trial, values)` would fail the trial (a value count that is not the
    directions', a value that is not a finite float), or None."""
    from optuna.study._tell import _check_values_are_feasible

    problem: str | None = _check_values_are_feasible(study, list(values))
    return problem


def pareto_front_trials(trials: list[Any], directions: Sequence[Any]) -> list[Any]:
    """The trials of `trials` (COMPLETE ones) that no other dominates, for the StudyDirections."""
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    return list(_get_pareto_front_trials_by_trials(trials, list(directions)))
