"""What `optuna_spark.optimize(..., data=...)` costs in memory, by the data's form (issue 22).

Each form runs in a fresh Python process (its own local[2] session): a pandas DataFrame of
`--rows` rows x 8 float64 columns passed as a pandas DataFrame, as a Parquet path, or read by
Spark and passed as a Spark DataFrame, and no data at all for the baseline. The objective records
its Python worker's peak resident set (`ru_maxrss`); the driver records its own before and after.
Writes bench/results/library-memory.json (a table BENCHMARKS.md shows).

    .venv/bin/python bench/library_memory.py --rows 2000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMS = ("none", "pandas", "path", "spark")

CHILD = r'''
import json, os, resource, sys, time
os.environ["PYSPARK_PYTHON"] = sys.executable
import numpy as np, optuna, pandas as pd, psutil
from pyspark.sql import SparkSession
import optuna_spark

form, rows, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spark = SparkSession.builder.master("local[2]").config("spark.driver.memory", "2g").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
parquet = os.path.join(folder, "data.parquet")
frame_bytes = None
if form != "none":
    frame = pd.DataFrame(np.random.default_rng(0).random((rows, 8)), columns=[f"c{i}" for i in range(8)])
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    frame.to_parquet(parquet)
    data = {"pandas": frame, "path": parquet, "spark": spark.read.parquet(parquet)}[form]
    if form != "pandas":
        del frame
else:
    data = None

def objective(trial, data=None):
    import resource
    trial.set_user_attr("worker_peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return trial.suggest_float("x", 0, 1) + (0.0 if data is None else float(len(data)) * 0)

study = optuna.create_study(storage=f"sqlite:///{folder}/s.db", study_name="m")
before = psutil.Process().memory_info().rss
started = time.perf_counter()
optuna_spark.optimize(study, objective, n_trials=4, n_jobs=2, spark=spark, data=data)
wall = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
workers = [t.user_attrs["worker_peak_kb"] * 1024 for t in study.trials]
print(json.dumps({"form": form, "frame_bytes": frame_bytes, "driver_rss_before": before, "driver_peak": peak,
                  "worker_peak": max(workers), "wall_seconds": round(wall, 2)}))
spark.stop()
'''


def run_form(form: str, rows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="lib-mem-") as folder:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        done = subprocess.run([sys.executable, "-c", CHILD, form, str(rows), folder], capture_output=True, text=True,
                              timeout=900, env=env, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"{form}: exit {done.returncode}\n{done.stderr[-3000:]}")
        return dict(json.loads(lines[-1]))


def mb(value: object) -> str:
    return "–" if value is None else f"{int(value) / 2**20:,.0f}"  # type: ignore[call-overload]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "library-memory.json")
    args = parser.parse_args()
    results = [run_form(form, args.rows) for form in FORMS]
    base = results[0]
    table = ["| data= | frame in memory (MB) | driver peak RSS (MB) | over no data | Python worker peak RSS (MB) | "
             "over no data | wall (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        table.append(f"| {r['form']} | {mb(r['frame_bytes'])} | {mb(r['driver_peak'])} | "
                     f"{mb(int(r['driver_peak']) - int(base['driver_peak']))} | {mb(r['worker_peak'])} | "  # type: ignore[call-overload]
                     f"{mb(int(r['worker_peak']) - int(base['worker_peak']))} | {r['wall_seconds']} |")  # type: ignore[call-overload]
    out = {"workload": "library-memory", "title": "Memory of optimize(data=...) by the data's form "
           f"({args.rows:,} rows x 8 float64 columns, local[2], 2 tasks)",
           "command": f".venv/bin/python bench/library_memory.py --rows {args.rows}",
           "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": results, "table": table}
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
