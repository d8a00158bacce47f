"""Parallel efficiency of the ways to spread trials, measured side by side in one run.

    .venv/bin/python bench/efficiency.py [--trials 160] [--slots 4] [--rounds 2]

Every mode runs the `sleep` objective (0.5 s a trial) with the same budget over the same number
of slots, on the same storage kind (a fresh SQLite file per run), interleaved round by round so
that the machine's noise hits each mode alike. Efficiency = objective time / (slots x wall):
`wall` is the whole command (JVM and Python start-up included), `in-study` runs from the first
trial's start to the last trial's end. Prints a Markdown table; ratios are to Optuna's threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SLEEP = 0.5

THREADS_SCRIPT = """
import sys, time, optuna
from optuna_spark.objectives.sleep import objective
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, n, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
study = optuna.create_study(study_name="bench", storage=url)
study.optimize(objective, n_trials=n, n_jobs=slots)
"""


def in_study_wall(url: str) -> tuple[int, float]:
    import optuna

    trials = optuna.load_study(study_name="bench", storage=url).trials
    done = [t for t in trials if t.datetime_complete is not None]
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    return len(done), (end - start).total_seconds()


def run_mode(mode: str, trials: int, slots: int, work: Path) -> dict[str, float]:
    work.mkdir(parents=True)
    url = f"sqlite:///{work / 'optuna.db'}"
    if mode == "optuna-threads":
        cmd = [sys.executable, "-c", THREADS_SCRIPT, url, str(trials), str(slots)]
    else:
        split = "shared" if mode == "runner-shared" else "static"
        cmd = [str(BIN / "optuna-spark"), "tune", "--objective", "sleep", "--study", "bench",
               "--n-trials", str(trials), "--n-jobs", str(slots), "--master", f"local[{slots}]",
               "--split", split, "--storage", url, "--work-dir", str(work), "--output", "json"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed: {proc.stderr[-2000:]}")
    n, study_wall = in_study_wall(url)
    ideal = n * SLEEP / slots
    return {"trials": n, "wall": wall, "in_study": study_wall,
            "eff_wall": ideal / wall, "eff_in_study": ideal / study_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=160)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = ["optuna-threads", "runner-shared", "runner-static"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="optuna-spark-bench-") as tmp:
        for r in range(args.rounds):
            for m in modes:
                res = run_mode(m, args.trials, args.slots, Path(tmp) / f"{m}-{r}")
                results[m].append(res)
                print(f"round {r + 1} {m}: {json.dumps({k: round(v, 3) for k, v in res.items()})}",
                      file=sys.stderr)
    med = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in results.items()}
    if args.json:
        print(json.dumps(med, indent=2))
        return
    base = med["optuna-threads"]["wall"]
    print(f"{args.trials} trials x {SLEEP} s over {args.slots} slots, SQLite, median of {args.rounds} round(s)\n")
    print("| mode | trials | wall s | efficiency (wall) | in-study s | efficiency (in-study) | wall / threads' wall |")
    print("|---|---|---|---|---|---|---|")
    for m in modes:
        x = med[m]
        print(f"| {m} | {x['trials']:.0f} | {x['wall']:.1f} | {x['eff_wall']:.2f} | {x['in_study']:.1f} | "
              f"{x['eff_in_study']:.2f} | {x['wall'] / base:.2f} |")


if __name__ == "__main__":
    main()
