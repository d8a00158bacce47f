"""How often two tasks take the same WAITING trial on one SQLite file: Optuna's read-then-write
`set_trial_state_values` against optuna_spark.ledger's conditional UPDATE, side by side.

    .venv/bin/python bench/waiting_race.py [--rounds 10] [--threads 8]

Each round enqueues threads/2 trials and releases all threads at once, each with its own storage.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from optuna_spark.ledger import Ledger


def ledger_take(storage: Any, study_id: int) -> int | None:
    """The runner's way (optuna_spark.ledger): a claim, then one conditional UPDATE bound to it."""
    import uuid

    url = storage.engine.url.render_as_string(hide_password=False)
    ledger = Ledger(url, {"connect_args": {"timeout": 60}}, study_id, storage)
    try:
        token = uuid.uuid4().hex
        ledger.claim(token, 2**31 - 1, 30)
        waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        return ledger.take_waiting(token, [t._trial_id for t in sorted(waiting, key=lambda t: t.number)])
    finally:
        ledger.dispose()


def optuna_take(storage: Any, study_id: int) -> int | None:
    """What Optuna's ask() does with WAITING trials (Study._pop_waiting_trial_id)."""
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return int(t._trial_id)
        except Exception:  # noqa: BLE001 - taken by another
            continue
    return None


def double_takes(take: Callable[[Any, int], int | None], rounds: int, threads: int) -> int:
    doubles = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            url = f"sqlite:///{Path(d) / 's.db'}"
            kwargs = {"engine_kwargs": {"connect_args": {"timeout": 60}}}
            study = optuna.create_study(study_name="s", storage=optuna.storages.RDBStorage(url, **kwargs))
            setup = Ledger(url, kwargs["engine_kwargs"], study._study_id, study._storage)
            setup.create()
            setup.reconcile()
            setup.dispose()
            for i in range(threads // 2):
                study.enqueue_trial({"x": float(i)})
            storages = [optuna.storages.RDBStorage(url, **kwargs) for _ in range(threads)]
            barrier, won = threading.Barrier(threads), []

            def run(i: int) -> None:
                barrier.wait()
                won.append(take(storages[i], study._study_id))

            ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            taken = [w for w in won if w is not None]
            doubles += len(taken) - len(set(taken))
            for s in storages:
                s.engine.dispose()
    return doubles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, take in (("optuna set_trial_state_values", optuna_take), ("optuna_spark.ledger (conditional UPDATE)", ledger_take)):
        print(f"{name:38s} double takes: {double_takes(take, args.rounds, args.threads)} "
              f"in {args.rounds} rounds of {args.threads} threads")


if __name__ == "__main__":
    main()
