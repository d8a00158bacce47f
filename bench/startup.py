"""Start-up and tail of one `optuna-spark tune` command on local[16], and what each start-up
measure is worth, side by side in interleaved rounds.

    .venv/bin/python bench/startup.py [--trials 32] [--tasks 16] [--rounds 3] [--before REV]

Runs `optuna-spark tune --objective sleep` (0.5 s trials, TASKS tasks on local[TASKS], a fresh
SQLite file each) as it is by default, and with one start-up measure taken away at a time:
no class-data archive of the driver's JVM (`--class-archive false`), no driver JVM options at
all (`--driver-java-options=`: neither the C1-only JIT nor the archive), and Spark's own Python
daemon instead of the runner's preloading one (`--conf
spark.python.daemon.module=pyspark.daemon`); with `--before REV`, also the runner of that git
revision (its package first on PYTHONPATH, in a worktree under /tmp). Start-up = the command's
start to the first trial's start; tail = the last trial's end to the command's exit (trial times
from Optuna's storage, this machine's clock). Medians and min-max over the rounds; results in
bench/results/cost-startup.json (`make bench-report` puts its table in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "no class-data archive (`--class-archive false`)": ["--class-archive", "false"],
    "no driver JVM options (`--driver-java-options=`)": ["--driver-java-options="],
    "Spark's own Python daemon (`--conf spark.python.daemon.module=pyspark.daemon`)":
        ["--conf", "spark.python.daemon.module=pyspark.daemon"],
}
KEYS = ("start-up", "16th trial", "tail", "wall")
TARGETS = {"start-up": 5.0, "tail": 0.5}


def one_run(trials: int, tasks: int, extra: list[str], pythonpath: str | None = None) -> dict[str, float]:
    import optuna

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{Path(d) / 'optuna.db'}"
        env = {**os.environ}
        env.pop("OPTUNA_SPARK_CONFIG", None)
        cmd = [str(BIN / "optuna-spark"), "tune"]
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
            cmd = [sys.executable, "-m", "optuna_spark", "tune"]
        cmd += ["--objective", "sleep", "--study", "s", "--n-trials", str(trials), "--n-jobs", str(tasks),
                "--master", f"local[{tasks}]", "--storage", url, "--work-dir", d, "--output", "json", *extra]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=d, env=env, stdin=subprocess.DEVNULL)
        wall = time.time() - t0
        if proc.returncode != 0:
            raise SystemExit(f"run failed: {proc.stderr[-2000:]}")
        done = optuna.load_study(study_name="s", storage=url).trials
        starts = sorted(t.datetime_start.timestamp() - t0 for t in done if t.datetime_start)
        last = max(t.datetime_complete.timestamp() for t in done if t.datetime_complete) - t0
        return {"start-up": starts[0], "16th trial": starts[min(15, len(starts) - 1)], "tail": wall - last,
                "wall": wall}


def worktree(rev: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"optuna-spark-startup-{rev}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also the runner of this git revision")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cost-startup.json")
    args = parser.parse_args()
    variants: dict[str, tuple[list[str], str | None]] = {name: (extra, None) for name, extra in VARIANTS.items()}
    if args.before:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before], check=True,
                             capture_output=True, text=True).stdout.strip()
        variants[f"the runner before (`{rev}`)"] = ([], str(worktree(rev) / "runner"))
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    started = datetime.datetime.now(datetime.UTC)
    # The default run first writes the archive if this machine has none yet (not timed).
    one_run(2, 2, [])
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    loads: list[float] = []
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotated order
            loads.append(os.getloadavg()[0])
            extra, pythonpath = variants[name]
            results[name].append(one_run(args.trials, args.tasks, extra, pythonpath))
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[name][-1].items()),
                  file=sys.stderr)
    table = ["| variant | " + " | ".join(f"{k} (s)" for k in KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    medians: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        medians[name] = {k: statistics.median(run[k] for run in runs) for k in KEYS}
        cells = [f"{medians[name][k]:.2f} ({min(run[k] for run in runs):.2f}-{max(run[k] for run in runs):.2f})"
                 for k in KEYS]
        table.append(f"| {name} | " + " | ".join(cells) + " |")
    command = (f".venv/bin/python bench/startup.py --trials {args.trials} --tasks {args.tasks} --rounds {args.rounds}"
               + (f" --before {args.before}" if args.before else ""))
    data: dict[str, Any] = {
        "workload": "cost-startup",
        "title": f"Start-up and tail of one command: {args.trials} trials x 0.5 s, {args.tasks} tasks on "
                 f"local[{args.tasks}]",
        "command": command, "started": started.strftime("%Y-%m-%d %H:%M UTC"), "commit": head,
        "rounds": args.rounds,
        "machine_line": f"{os.cpu_count()} cores, shared; 1-minute load average before a run: median "
                        f"{statistics.median(loads):.1f}, max {max(loads):.1f}",
        "targets": TARGETS, "medians": medians, "runs": results,
        "table": table + ["", f"Medians of {args.rounds} interleaved rounds (min-max in brackets); targets: start-up "
                              f"<= {TARGETS['start-up']:g} s, tail <= {TARGETS['tail']:g} s."],
    }
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print("\n".join(data["table"]))


if __name__ == "__main__":
    main()
