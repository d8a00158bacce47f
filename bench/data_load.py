"""What loading a study's data once per task saves over loading it in every trial.

    .venv/bin/python bench/data_load.py [--trials 40] [--tasks 4] [--copies 40] [--rounds 1]

The wine table replicated `--copies` times (40: 64k rows, about 6 MiB in memory, a 1 MiB
Parquet file) and two studies of `--trials` cheap trials over `--tasks` tasks (local[tasks], a
fresh SQLite file each):

- once per task: `tune --data wine.parquet`; the runner reads the file on the driver, broadcasts it
  pickled, and each task unpickles it once (the `data_load_seconds` of each task);
- per trial: an `objective(trial)` that reads the same Parquet file itself in every trial
  (`pandas.read_parquet`, the seed's way with a file at the same path on every worker), its
  seconds recorded per trial.

Prints the data-loading seconds summed over the run for both, their ratio, and each run's wall
time. Both include pandas' first import in a Python worker (the first load of each pays it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from tune_cmd import timed_tune

ROOT = Path(__file__).resolve().parents[1]

ONCE = """
def objective(trial, data):
    x = trial.suggest_float("x", 0, 1)
    return x + 0 * len(data)
"""

PER_TRIAL = """
import time

def objective(trial):
    started = time.perf_counter()
    import pandas as pd
    data = pd.read_parquet({path!r})
    trial.set_user_attr("load_s", time.perf_counter() - started)
    x = trial.suggest_float("x", 0, 1)
    return x + 0 * len(data)
"""


def one_round(trials: int, tasks: int, copies: int) -> dict[str, float]:
    import optuna
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        table = pd.concat([pd.read_csv(ROOT / "runner" / "optuna_spark" / "data" / "winequality-red.csv", sep=";")] * copies,
                          ignore_index=True)
        path = d / "wine.parquet"
        table.to_parquet(path)
        (d / "once.py").write_text(ONCE)
        (d / "per_trial.py").write_text(PER_TRIAL.format(path=str(path)))
        once, once_wall = timed_tune(d, "once.py:objective", "once", trials, tasks, ["--work-dir", str(d / "work"), "--data", str(path)])
        per, per_wall = timed_tune(d, "per_trial.py:objective", "per", trials, tasks, ["--work-dir", str(d / "work")])
        once_load = sum(t.get("data_load_seconds", 0.0) for t in once["tasks"] if t.get("data_loads"))
        url = f"sqlite:///{d / 'work' / 'optuna.db'}"
        per_load = sum(t.user_attrs["load_s"] for t in optuna.load_study(study_name="per", storage=url).trials)
        return {"rows": len(table), "mib": table.memory_usage(deep=True).sum() / 2**20,
                "parquet_mib": path.stat().st_size / 2**20,
                "once_load": once_load, "per_load": per_load, "once_wall": once_wall, "per_wall": per_wall,
                "loads": sum(t.get("data_loads", 0) for t in once["tasks"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rounds = []
    for r in range(args.rounds):
        rounds.append(one_round(args.trials, args.tasks, args.copies))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in rounds[-1].items()), file=sys.stderr)

    def med(key: str) -> float:
        return statistics.median(x[key] for x in rounds)

    first = rounds[0]
    print(f"{first['rows']} rows ({med('mib'):.1f} MiB in memory, Parquet {med('parquet_mib'):.1f} MiB), "
          f"{args.trials} trials, {args.tasks} tasks, local[{args.tasks}], median of {args.rounds} round(s)\n")
    print("| load | loads | data-loading s (sum) | wall s |")
    print("|---|---|---|---|")
    print(f"| once per task (--data, broadcast) | {med('loads'):.0f} | {med('once_load'):.2f} | {med('once_wall'):.1f} |")
    print(f"| per trial (read_parquet in the objective) | {args.trials} | {med('per_load'):.2f} | {med('per_wall'):.1f} |")
    print(f"\nper-trial / once-per-task data-loading time: {med('per_load') / max(med('once_load'), 1e-9):.1f}x")


if __name__ == "__main__":
    main()
