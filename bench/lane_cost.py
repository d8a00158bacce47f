"""One task's per-trial cost as the study grows: a TrialLoop alone, no Spark, no contention.

    .venv/bin/python bench/lane_cost.py [--finished 8000] [--trials 200] [--sampler random] [--profile]

Fills a fresh SQLite study (WAL, as `optuna-spark tune` makes it) with FINISHED trials as the
runner leaves them (claim rows, the claim attribute, a value and a param each, straight in SQL),
then runs one `optuna_spark.task.TrialLoop` for TRIALS more trials of an objective that suggests one
float and returns at once, and prints the milliseconds per trial: what a lane pays between two
trials at that study size. `--profile` adds cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=8000)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--sampler", choices=("tpe", "random"), default="random")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import optuna
    import sqlalchemy as sa

    from optuna_spark import task
    from optuna_spark.config import Job, ObjectiveSpec, StudySettings
    from optuna_spark.ledger import CLAIM_ATTR
    from optuna_spark.engine import prepare_study, sqlite_wal as _sqlite_wal
    from optuna_spark.storage import StorageTarget, open_rdb_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite:///{work}/optuna.db"
        target = StorageTarget(url)
        _sqlite_wal(target)
        settings = StudySettings(name="lane", storage=url, n_trials=args.finished + args.trials, n_jobs=1,
                                 sampler_seed=1, sampler=args.sampler)
        job = Job(study=settings, objective=ObjectiveSpec(name="x", module="lane_cost", function="objective"))
        prepare_study(open_rdb_storage(target), target, job)
        dist = json.dumps({"name": "FloatDistribution",
                           "attributes": {"step": None, "low": -10.0, "high": 10.0, "log": False}})
        engine = sa.create_engine(target.connect_url())
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        with engine.begin() as c:
            sid = c.execute(sa.text("SELECT study_id FROM studies")).scalar()
            for i in range(args.finished):
                tid = c.execute(sa.text("INSERT INTO trials(number, study_id, state, datetime_start, "
                                        "datetime_complete) VALUES (:n, :s, 'COMPLETE', :t, :t)"),
                                {"n": i, "s": sid, "t": now}).lastrowid
                c.execute(sa.text("INSERT INTO trial_values(trial_id, objective, value, value_type) "
                                  "VALUES (:t, 0, :v, 'FINITE')"), {"t": tid, "v": float(i % 97)})
                c.execute(sa.text("INSERT INTO trial_params(trial_id, param_name, param_value, distribution_json) "
                                  "VALUES (:t, 'x', :v, :d)"), {"t": tid, "v": (i % 200) / 10 - 10, "d": dist})
                c.execute(sa.text("INSERT INTO trial_system_attributes(trial_id, key, value_json) VALUES (:t, :k, :v)"),
                          {"t": tid, "k": CLAIM_ATTR, "v": json.dumps(f"t{i}")})
                c.execute(sa.text("INSERT INTO optuna_spark_claims(token, study_id, trial_id, grace, claimed_at, "
                                  "bound_at, finished) VALUES (:k, :s, :t, 30, :n, :n, 1)"),
                          {"k": f"t{i}", "s": sid, "t": tid, "n": now})
            c.execute(sa.text("UPDATE optuna_spark_budget SET claimed = :p"), {"p": args.finished})
        engine.dispose()
        parts = task.build_parts(job, None, 0)
        loop = task.TrialLoop(job, parts.study, parts.ledger, parts.guard, parts.objective, parts.host, None)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        if args.profile:
            profiler.enable()
        ran = loop.run()
        if args.profile:
            profiler.disable()
        elapsed = time.perf_counter() - started
        parts.close()
    print(f"{args.finished} finished trials, {args.sampler} sampler: {ran} trials, "
          f"{1000 * elapsed / ran:.1f} ms per trial")
    if args.profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def objective(trial) -> float:  # type: ignore[no-untyped-def]
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


if __name__ == "__main__":
    main()
