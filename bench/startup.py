"""Where a short study's wall time goes, and what the driver's JVM options and the preloading
Python daemon change, side by side.

    .venv/bin/python bench/startup.py [--trials 16] [--tasks 4] [--rounds 3]

Runs `optuna-spark tune --objective sleep` (0.5 s trials, TASKS tasks on local[TASKS], a fresh
SQLite file each) as it is by default, with no driver JVM options (`--driver-java-options=`), and
with Spark's own Python daemon instead of the runner's preloading one (`--conf
spark.python.daemon.module=pyspark.daemon`: each Python worker imports Optuna and SQLAlchemy
itself), interleaved round by round. Reports medians of: the command's wall time, when the first
trial started, when the last one ended, and the tail from there to the command's exit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tune_cmd import timed_tune
VARIANTS = {
    "default (-XX:TieredStopAtLevel=1, optuna_spark.daemon)": [],
    "no driver JVM options": ["--driver-java-options="],
    "Spark's own Python daemon (no preloading)": ["--conf", "spark.python.daemon.module=pyspark.daemon"],
}


def one_run(trials: int, tasks: int, extra: list[str]) -> dict[str, float]:
    import optuna

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{Path(d) / 'optuna.db'}"
        t0 = time.time()
        _summary, wall = timed_tune(Path(d), "sleep", "s", trials, tasks, ["--storage", url, "--work-dir", d, *extra])
        done = optuna.load_study(study_name="s", storage=url).trials
        first = min(t.datetime_start for t in done).timestamp() - t0
        last = max(t.datetime_complete for t in done).timestamp() - t0
        return {"wall": wall, "first trial": first, "last trial": last, "tail": wall - last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name, extra in VARIANTS.items():
            results[name].append(one_run(args.trials, args.tasks, extra))
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[name][-1].items()),
                  file=sys.stderr)
    print(f"{args.trials} trials x 0.5 s, {args.tasks} tasks, local[{args.tasks}], SQLite; "
          f"median of {args.rounds} rounds (s)\n")
    keys = ["wall", "first trial", "last trial", "tail"]
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, runs in results.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(r[k] for r in runs):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
