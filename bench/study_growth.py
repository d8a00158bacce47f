"""The runner's own per-trial cost as the study grows (issue 26, item 3): no Spark, one task.

    .venv/bin/python bench/study_growth.py [--sizes 1000,10000,100000] [--samplers random,tpe]
                                           [--trials 100] [--tpe-trials 20] [--rounds 3]

For each study size, a SQLite study (WAL, as `optuna-spark tune` makes it) is filled once with
that many FINISHED trials as the runner leaves them (claim rows, the claim attribute, one value and
one param each), in bulk SQL, and kept under bench/.cache/study-growth/ (keyed by size and this
file's FILL_VERSION). Each measurement copies that file into a fresh directory and runs, in a
child process of its own, one `optuna_spark.task.TrialLoop` (the loop of a task) for a few warm-up
trials and then TRIALS more of an objective that suggests one float and returns at once. Timers
wrap the sampler's methods (its time, reads of the study included, is reported apart) and the
ledger's (the claim, the finish, the foreign count, the sweep); the rest is the loop itself and
Optuna's per-trial storage calls (the trial read, the param write). The runner's own overhead per
trial = loop wall / trials - the sampler's share. Rounds interleave every (size, sampler) point in
a rotated order; the table gives medians and the spread (min-max) over rounds, and each size's
ratio to the smallest size measured in the same run.

Writes bench/results/cost-study-growth.json (bench/report.py turns it into a BENCHMARKS.md table).
`--one SIZE SAMPLER` is the child's entry point (prints one JSON line).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache" / "study-growth"
FILL_VERSION = 1  # bump when the fill below changes: cached studies are rebuilt
WARMUP = 5
SAMPLER_METHODS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial",
                   "after_trial")
LEDGER_METHODS = ("claim_trial", "finish", "foreign_finished", "sweep", "state", "running")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def _job(url: str, n_trials: int, sampler: str) -> Any:
    from optuna_spark.config import Job, ObjectiveSpec, StudySettings

    settings = StudySettings(name="growth", storage=url, n_trials=n_trials, n_jobs=1, sampler_seed=1, sampler=sampler)
    return Job(study=settings, objective=ObjectiveSpec(name="x", module="study_growth", function="objective"))


def cached_study(size: int) -> Path:
    """The SQLite file of a study with `size` finished trials of this runner (built once)."""
    path = CACHE / f"v{FILL_VERSION}-{size}.db"
    if path.exists():
        return path
    import optuna
    import sqlalchemy as sa

    from optuna_spark.engine import prepare_study, sqlite_wal
    from optuna_spark.ledger import CLAIM_ATTR
    from optuna_spark.storage import StorageTarget, open_rdb_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    for leftover in CACHE.glob(partial.name + "*"):
        leftover.unlink()
    url = f"sqlite:///{partial}"
    target = StorageTarget(url)
    sqlite_wal(target)
    rdb = open_rdb_storage(target)
    prepare_study(rdb, target, _job(url, size, "random"))
    rdb.engine.dispose()
    dist = json.dumps({"name": "FloatDistribution",
                       "attributes": {"step": None, "low": -10.0, "high": 10.0, "log": False}})
    engine = sa.create_engine(target.connect_url())
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with engine.begin() as c:
        sid = int(c.execute(sa.text("SELECT study_id FROM studies")).scalar_one())
        base = int(c.execute(sa.text("SELECT coalesce(max(trial_id), 0) FROM trials")).scalar_one()) + 1
        ids = range(base, base + size)
        c.execute(sa.text("INSERT INTO trials(trial_id, number, study_id, state, datetime_start, datetime_complete) "
                          "VALUES (:i, :n, :s, 'COMPLETE', :t, :t)"),
                  [{"i": tid, "n": n, "s": sid, "t": now} for n, tid in enumerate(ids)])
        c.execute(sa.text("INSERT INTO trial_values(trial_id, objective, value, value_type) "
                          "VALUES (:i, 0, :v, 'FINITE')"),
                  [{"i": tid, "v": float(n % 97)} for n, tid in enumerate(ids)])
        c.execute(sa.text("INSERT INTO trial_params(trial_id, param_name, param_value, distribution_json) "
                          "VALUES (:i, 'x', :v, :d)"),
                  [{"i": tid, "v": (n % 200) / 10 - 10, "d": dist} for n, tid in enumerate(ids)])
        c.execute(sa.text("INSERT INTO trial_system_attributes(trial_id, key, value_json) VALUES (:i, :k, :v)"),
                  [{"i": tid, "k": CLAIM_ATTR, "v": json.dumps(f"t{n}")} for n, tid in enumerate(ids)])
        c.execute(sa.text("INSERT INTO optuna_spark_claims(token, study_id, trial_id, grace, claimed_at, "
                          "bound_at, finished) VALUES (:k, :s, :i, 30, :t, :t, 1)"),
                  [{"k": f"t{n}", "s": sid, "i": tid, "t": now} for n, tid in enumerate(ids)])
        c.execute(sa.text("UPDATE optuna_spark_budget SET claimed = :p"), {"p": size})
    with engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    for suffix in ("-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    partial.rename(path)
    return path


class Timer:
    """Seconds spent in the wrapped methods of one object, outermost calls only."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls: dict[str, int] = {}
        self.by_name: dict[str, float] = {}
        self._depth = 0

    def wrap(self, obj: Any, names: tuple[str, ...]) -> None:
        for name in names:
            if hasattr(obj, name):
                setattr(obj, name, self._timed(name, getattr(obj, name)))

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    spent = time.perf_counter() - started
                    self.seconds += spent
                    self.calls[name] = self.calls.get(name, 0) + 1
                    self.by_name[name] = self.by_name.get(name, 0.0) + spent
        return timed

    def reset(self) -> None:
        self.seconds, self.calls, self.by_name = 0.0, {}, {}


def measure_one(size: int, sampler: str, trials: int) -> dict[str, Any]:
    import optuna

    from optuna_spark import task

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as work:
        db = Path(work) / "optuna.db"
        shutil.copyfile(cached_study(size), db)
        job = _job(f"sqlite:///{db}", size + WARMUP + trials, sampler)
        parts = task.build_parts(job, None, 0)
        loop = task.TrialLoop(job, parts.study, parts.ledger, parts.guard, parts.objective, parts.host, None)
        samp, ledg = Timer(), Timer()
        samp.wrap(parts.study.sampler, SAMPLER_METHODS)
        ledg.wrap(parts.ledger, LEDGER_METHODS)
        loop.share = WARMUP  # the cache's first read of the whole study, imports, the first sweep
        loop.run()
        samp.reset()
        ledg.reset()
        loop.share = WARMUP + trials
        started = time.perf_counter()
        ran = loop.run() - WARMUP
        wall = time.perf_counter() - started
        parts.close()
    per = 1000 / ran
    return {"size": size, "sampler": sampler, "trials": ran, "wall_s": round(wall, 4),
            "total_ms": round(wall * per, 3), "sampler_ms": round(samp.seconds * per, 3),
            "ledger_ms": round(ledg.seconds * per, 3), "runner_ms": round((wall - samp.seconds) * per, 3),
            "loop_other_ms": round((wall - samp.seconds - ledg.seconds) * per, 3),
            "ledger_calls": ledg.calls,
            "ledger_ms_by_call": {k: round(v * per, 3) for k, v in sorted(ledg.by_name.items())}}


def objective(trial: Any) -> float:
    x = trial.suggest_float("x", -10, 10)
    return float((x - 2) ** 2)


def summarize(runs: list[dict[str, Any]], sizes: list[int], samplers: list[str]) -> list[dict[str, Any]]:
    points = []
    for sampler in samplers:
        base = None
        for size in sizes:
            rs = [r for r in runs if r["size"] == size and r["sampler"] == sampler]
            if not rs:
                continue
            point: dict[str, Any] = {"size": size, "sampler": sampler, "rounds": len(rs)}
            for key in ("total_ms", "sampler_ms", "ledger_ms", "loop_other_ms", "runner_ms"):
                vals = [r[key] for r in rs]
                point[key] = {"median": round(statistics.median(vals), 3), "min": min(vals), "max": max(vals)}
            calls = sorted({k for r in rs for k in r.get("ledger_ms_by_call", {})})
            point["ledger_ms_by_call"] = {k: round(statistics.median(r.get("ledger_ms_by_call", {}).get(k, 0.0)
                                                                     for r in rs), 3) for k in calls}
            if base is None:
                base = point["runner_ms"]["median"]
            point["runner_ratio_to_smallest"] = round(point["runner_ms"]["median"] / base, 3) if base else None
            points.append(point)
    return points


def table(points: list[dict[str, Any]], target_ms: float, flat: float) -> list[str]:
    def cell(p: dict[str, Any], key: str) -> str:
        v = p[key]
        return f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"

    def by_call(p: dict[str, Any], key: str) -> str:
        return f"{p.get('ledger_ms_by_call', {}).get(key, 0.0):.2f}"

    rows = ["| sampler | trials in the study | runner's own ms/trial | of which ledger | ledger: claim_trial / "
            "finish / foreign_finished / sweep | of which loop + Optuna storage calls | sampler ms/trial | "
            "runner vs smallest |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in points:
        calls = " / ".join(by_call(p, k) for k in ("claim_trial", "finish", "foreign_finished", "sweep"))
        rows.append(f"| {p['sampler']} | {p['size']:,} | {cell(p, 'runner_ms')} | {cell(p, 'ledger_ms')} | {calls} | "
                    f"{cell(p, 'loop_other_ms')} | {cell(p, 'sampler_ms')} | {p['runner_ratio_to_smallest']:.2f} |")
    verdicts = []
    for sampler in sorted({p["sampler"] for p in points}):
        ps = [p for p in points if p["sampler"] == sampler]
        worst = max(p["runner_ms"]["median"] for p in ps)
        ratio = max(p["runner_ratio_to_smallest"] or 0 for p in ps)
        fast, level = worst <= target_ms, ratio <= 1 + flat
        verdicts.append(f"{sampler}: worst median {worst:.2f} ms/trial ({'meets' if fast else 'misses'} "
                        f"<= {target_ms:g} ms), at most {ratio:.2f}x the smallest study "
                        f"({'flat' if level else 'not flat'} within {flat:.0%})")
    return rows + ["", "Medians over rounds, (min-max) the spread. Target (issue 26): " + "; ".join(verdicts) + "."]


# The per-claim queries that read the study, alone (SQLite's plan, and the median of 5 runs on the
# cached file, stdlib sqlite3, no SQLAlchemy): the first sweep's (whole-study reads, before the
# ledger kept what it had seen) and today's (the window of trials that may have changed: here the
# 16 newest, as 16 tasks in flight leave them).
_FOREIGN = ("FROM trials t WHERE t.study_id = 1 AND t.state IN ('COMPLETE', 'PRUNED', 'FAIL') AND NOT EXISTS "
            "(SELECT a.trial_id FROM trial_system_attributes a WHERE a.trial_id = t.trial_id AND a.key = "
            "'optuna_spark_claim')")
_FRONTIER = "(SELECT max(trial_id) - 15 FROM trials)"
QUERIES = {
    "before: foreign_finished, count of the whole study": "SELECT count(*) " + _FOREIGN,
    "before: foreign_finished, FAIL numbers": "SELECT number " + _FOREIGN + " AND t.state = 'FAIL'",
    "before: claim_trial, WAITING trials": (
        "SELECT trial_id FROM trials WHERE study_id = 1 AND state = 'WAITING' ORDER BY number"),
    "before: the new trial's number (Optuna's count_past_trials)": (
        "SELECT count(trial_id) FROM trials WHERE study_id = 1 AND trial_id < 1000000000"),
    "now: foreign_finished, the trials in the window": (
        "SELECT t.trial_id, t.number, t.state, EXISTS (SELECT a.trial_id FROM trial_system_attributes a WHERE "
        "a.trial_id = t.trial_id AND a.key = 'optuna_spark_claim') FROM trials t WHERE t.study_id = 1 AND "
        f"t.trial_id >= {_FRONTIER} ORDER BY t.trial_id"),
    "now: foreign_finished, retry_history of the new trials": (
        "SELECT a.trial_id, a.value_json FROM trial_system_attributes a JOIN trials t ON t.trial_id = a.trial_id "
        f"WHERE t.study_id = 1 AND t.trial_id >= {_FRONTIER} AND a.key = 'retry_history'"),
    "now: claim_trial, WAITING trials in the window": (
        f"SELECT trial_id FROM trials WHERE study_id = 1 AND trial_id >= {_FRONTIER} AND state = 'WAITING' "
        "ORDER BY number"),
    "now: the new trial's number (the newest trial's + 1)": (
        "SELECT number FROM trials WHERE study_id = 1 ORDER BY trial_id DESC LIMIT 1"),
}


def query_costs(size: int) -> dict[str, dict[str, Any]]:
    """Each query's median time and plan on the cached study."""
    import sqlite3

    def timed(conn: Any, sql: str) -> tuple[float, str]:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            conn.execute(sql).fetchall()
            times.append(time.perf_counter() - started)
        plan = "; ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
        return round(1000 * statistics.median(times), 2), plan

    out: dict[str, dict[str, Any]] = {}
    conn = sqlite3.connect(f"file:{cached_study(size)}?mode=ro", uri=True)
    try:
        for name, sql in QUERIES.items():
            ms, plan = timed(conn, sql)
            out[name] = {"ms": ms, "plan": plan}
    finally:
        conn.close()
    return out


def query_heading(measured: str) -> str:
    return (f"Where it grew, and what each claim reads now: the per-claim queries that read the study, alone "
            f"(stdlib sqlite3 on the cached study file, median of 5, {measured}):")


def query_table(queries: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    sizes = sorted(queries, key=int)
    rows = ["| query (per claim) | " + " | ".join(f"ms at {int(s):,}" for s in sizes) + " | SQLite's plan |",
            "| --- | " + " | ".join("---:" for _ in sizes) + " | --- |"]
    for name in QUERIES:
        if not all(name in queries[s] for s in sizes):
            continue  # a result file written before this query was measured
        rows.append(f"| {name} | " + " | ".join(f"{queries[s][name]['ms']:.2f}" for s in sizes)
                    + f" | {queries[sizes[-1]][name]['plan']} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--samplers", default="random,tpe")
    parser.add_argument("--trials", type=int, default=100, help="timed trials per point (random sampler)")
    parser.add_argument("--tpe-trials", type=int, default=20, help="timed trials per point, TPE (slower per trial)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cost-study-growth.json")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "SAMPLER"), help=argparse.SUPPRESS)
    parser.add_argument("--resummarize", action="store_true",
                        help="re-derive the tables of --out from its kept runs (no new measurement)")
    args = parser.parse_args()
    if args.resummarize:
        kept = json.loads(args.out.read_text(encoding="utf-8"))
        kept_sizes = sorted({r["size"] for r in kept["runs"]})
        kept_samplers = list(dict.fromkeys(r["sampler"] for r in kept["runs"]))
        kept["points"] = summarize(kept["runs"], kept_sizes, kept_samplers)
        kept["queries"] = {str(size): query_costs(size) for size in kept_sizes}
        kept["queries_measured"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        kept["table"] = table(kept["points"], 10.0, 0.10) + ["", query_heading(kept["queries_measured"]), ""] \
            + query_table(kept["queries"])
        args.out.write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")
        print("\n".join(kept["table"]))
        return 0
    if args.one:
        size, sampler = int(args.one[0]), args.one[1]
        print(json.dumps(measure_one(size, sampler, args.tpe_trials if sampler == "tpe" else args.trials)))
        return 0

    from run import machine, other_load

    sizes = [int(s) for s in args.sizes.split(",")]
    samplers = args.samplers.split(",")
    for size in sizes:
        t0 = time.perf_counter()
        cached_study(size)
        print(f"study of {size:,} trials: {time.perf_counter() - t0:.1f} s", flush=True)
    points = [(size, sampler) for sampler in samplers for size in sizes]
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = points[r % len(points):] + points[:r % len(points)]
        for size, sampler in order:
            load = other_load()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(size), sampler,
                   "--trials", str(args.trials), "--tpe-trials", str(args.tpe_trials)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            if proc.returncode != 0:
                raise SystemExit(f"{size} {sampler}: {proc.stderr[-2000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run.update(round=r, load_before=load)
            runs.append(run)
            print(f"round {r}: {size:>7,} {sampler:6} runner {run['runner_ms']:7.2f} ms/trial "
                  f"(ledger {run['ledger_ms']:.2f}), sampler {run['sampler_ms']:.2f}", flush=True)
    summary = summarize(runs, sizes, samplers)
    m = machine()
    command = (f".venv/bin/python bench/study_growth.py --sizes {args.sizes} --samplers {args.samplers} "
               f"--trials {args.trials} --tpe-trials {args.tpe_trials} --rounds {args.rounds}")
    loads = [r["load_before"]["loadavg_1m"] for r in runs]
    ci = sum(1 for r in runs if r["load_before"]["ci_running"])
    out = {
        "workload": "cost-study-growth",
        "title": "Cost as the study grows: the runner's own per-trial overhead, one task, SQLite (no Spark)",
        "command": command,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "rounds": args.rounds,
        "machine": m,
        "machine_line": f"{m.get('nproc')} cores ({m.get('cpu') or '?'}), shared; 1-minute load average before a "
                        f"point: median {statistics.median(loads):.1f}, max {max(loads):.1f}; a CI run during "
                        f"{ci} of {len(runs)} points",
        "points": summary,
        "runs": runs,
        "queries": {str(size): query_costs(size) for size in sizes},
        "queries_measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    out["table"] = table(summary, 10.0, 0.10) + ["", query_heading(out["queries_measured"]), ""] \
        + query_table(out["queries"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print("\n".join(out["table"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
