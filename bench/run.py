"""The local benchmarks: the runner against its peers, side by side, in interleaved rounds.

    .venv/bin/python bench/run.py WORKLOAD [--trials N] [--slots K] [--rounds R]
                                  [--contenders a,b,...] [--out bench/results]

WORKLOAD (each on Spark local mode and a fresh SQLite file per run, on this machine):
- efficiency:  160 trials x 0.5 s over 4 slots (the README's table).
- throughput:  N trials x 1 s with 16 concurrent tasks (Ray Tune's scalability shape: 10,000 x 1 s
               on 16 CPUs; default 1,600 here, `--trials 10000` for the full size).
- heavy-tail:  seeded log-normal durations (median 1 s, sigma 1) over 8 slots: the shared budget
               against the seed's fixed split.
- startup:     16 trials x 0.5 s over 4 slots: submit -> first trial, last trial -> exit.

Contenders: runner-shared (`optuna-spark tune`, the exact shared budget), runner-static (the
seed's way: joblibspark tasks each running study.optimize(n_trials=share), which is the runner's
`--split static`), optuna-threads (study.optimize(n_jobs=K) in one process), hyperopt-sparktrials
(max_queue_len at the parallelism), mlflow-spark-optuna and ray-tune-optuna (Ray Tune with
OptunaSearch) (bench/.venv: `make bench-venv`; bench/peers.py says how each is configured). The
runner is called only through its command line and its results read back from the storage with
Optuna's API, so this works on any version of the runner with `tune --output json`.

Every objective (bench/bench_objectives.py) appends its own start and end to a trace file, so
each contender's trials are timed the same way: start-up = first trial's start - submit, tail =
exit - last trial's end, in-study = first start -> last end, per-trial overhead = the gap between
two trials of one lane (a task's process, or a thread). Each round runs every contender once, in
a rotated order; the tables are medians over rounds and ratios to a named baseline in the same
run. Results: bench/results/WORKLOAD.json (then `bench/report.py` writes BENCHMARKS.md and plots).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
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
BENCH_PYTHON = HERE / ".venv" / "bin" / "python"
OBJECTIVES = HERE / "bench_objectives.py"
TRACE_ENV = "OPTUNA_SPARK_BENCH_TRACE"

RUNNER = ("runner-shared", "runner-static")
PEERS_MAIN = ("optuna-threads",)  # run with the project's own venv (the runner's Optuna)
PEERS_BENCH = ("hyperopt-sparktrials", "mlflow-spark-optuna", "ray-tune-optuna")  # bench/.venv
ALL = (*RUNNER, *PEERS_MAIN, *PEERS_BENCH)

WORKLOADS: dict[str, dict[str, Any]] = {
    "efficiency": {"kind": "sleep_half", "trials": 160, "slots": 4, "baseline": "optuna-threads",
                   "title": "Efficiency: 160 trials x 0.5 s over 4 slots"},
    # Ray Tune's test samples at random (its default search): so does this workload, by default.
    "throughput": {"kind": "sleep_one", "trials": 1600, "slots": 16, "baseline": "optuna-threads", "sampler": "random",
                   "title": "Throughput: N trials x 1 s, 16 concurrent tasks (Ray Tune's shape)"},
    "heavy-tail": {"kind": "lognormal", "trials": 160, "slots": 8, "baseline": "runner-static",
                   "title": "Heavy-tailed trial times: log-normal durations, shared budget vs the seed's split"},
    "startup": {"kind": "sleep_half", "trials": 16, "slots": 4, "baseline": "optuna-threads",
                "title": "Start-up and tail: 16 trials x 0.5 s over 4 slots"},
}


# ---------------------------------------------------------------------------- commands

def contender_command(name: str, kind: str, trials: int, slots: int, work: Path, seed: int | None,
                      extra: list[str], sampler: str = "tpe") -> list[str]:
    if name in RUNNER:
        cmd = [str(BIN / "optuna-spark"), "tune", "--objective", f"{OBJECTIVES}:{kind}", "--study", "bench",
               "--n-trials", str(trials), "--n-jobs", str(slots), "--master", f"local[{slots}]",
               "--split", "shared" if name == "runner-shared" else "static",
               "--storage", f"sqlite:///{work / 'optuna.db'}", "--work-dir", str(work), "--output", "json"]
        if sampler != "tpe":
            cmd += ["--sampler", sampler]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        return cmd + extra
    python = sys.executable if name in PEERS_MAIN else str(BENCH_PYTHON)
    cmd = [python, str(HERE / "peers.py"), name, "--kind", kind, "--trials", str(trials),
           "--slots", str(slots), "--work", str(work)]
    if sampler != "tpe":
        cmd += ["--sampler", sampler]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return cmd


def available(name: str) -> str | None:
    """None when the contender can run here, else why not."""
    if name in PEERS_BENCH and not BENCH_PYTHON.exists():
        return "bench/.venv is missing: run `make bench-venv`"
    if name in RUNNER and not (BIN / "optuna-spark").exists():
        return "optuna-spark is not installed in this venv: run `make venv`"
    return None


def display_command(cmd: list[str]) -> str:
    """The command with this checkout's paths made relative (a row's reproduction)."""
    out = []
    for part in cmd:
        for prefix, repl in ((str(ROOT) + "/", ""), ):
            part = part.replace(prefix, repl)
        out.append(part)
    return " ".join(shlex.quote(p) for p in out)


# ---------------------------------------------------------------------------- measuring

def other_load() -> dict[str, Any]:
    ci = subprocess.run(["pgrep", "-f", "ci/run"], capture_output=True, text=True).stdout.split()
    return {"loadavg_1m": round(os.getloadavg()[0], 2), "ci_running": bool(ci)}


def read_traces(trace_dir: Path) -> list[tuple[str, int, float, float]]:
    rows = []
    for path in trace_dir.glob("*.trace"):
        for line in path.read_text(encoding="ascii").splitlines():
            lane, number, start, end = line.split()
            rows.append((lane, int(number), float(start), float(end)))
    rows.sort(key=lambda r: r[2])
    return rows


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _utc_timestamp(dt: datetime.datetime) -> float:
    # Optuna's RDB storage keeps naive datetimes; which clock they are on is checked in
    # storage_phases against the objective's own trace.
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp() if dt.tzinfo is None else dt.timestamp()


def storage_trials(url: str) -> list[Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="bench", storage=url).get_trials(deepcopy=False)


def storage_phases(trials: list[Any], traces: list[tuple[str, int, float, float]]) -> dict[str, Any] | None:
    """Where a trial's time goes besides the objective, from Optuna's own timestamps (trial
    created, trial told) and the objective's trace (sleep start and end), per lane:
    ask = created -> objective starts (sampling, parameter and attribute writes, first heartbeat),
    tell = objective ends -> told, between = told -> the lane's next trial created (budget claim,
    stale check, waiting check, trial creation). Medians and p99 in seconds."""
    by_number = {t.number: t for t in trials if t.datetime_start and t.datetime_complete}
    if not by_number or not traces:
        return None
    # Naive datetimes: UTC (Optuna 5) or local time (older); pick the one that fits the trace.
    offsets = []
    for lane, number, start, end in traces[:50]:
        t = by_number.get(number)
        if t is not None:
            offsets.append(start - _utc_timestamp(t.datetime_start))
    if not offsets:
        return None
    skew = statistics.median(offsets)
    shift = 0.0 if abs(skew) < 1800 else round(skew / 900) * 900  # a whole time zone's offset
    ask, tell, between = [], [], []
    lanes: dict[str, list[tuple[float, float]]] = {}
    for lane, number, start, end in traces:
        t = by_number.get(number)
        if t is None:
            continue
        created = _utc_timestamp(t.datetime_start) + shift
        told = _utc_timestamp(t.datetime_complete) + shift
        ask.append(start - created)
        tell.append(told - end)
        lanes.setdefault(lane, []).append((created, told))
    for spans in lanes.values():
        spans.sort()
        between += [b[0] - a[1] for a, b in zip(spans, spans[1:])]

    def stats(xs: list[float]) -> dict[str, float | None]:
        return {"p50": percentile(xs, 0.5), "p99": percentile(xs, 0.99),
                "mean": statistics.fmean(xs) if xs else None}

    return {"ask": stats(ask), "tell": stats(tell), "between": stats(between), "clock_shift": shift}


def analyse(traces: list[tuple[str, int, float, float]], submitted: float, exited: float,
            slots: int) -> dict[str, Any]:
    wall = exited - submitted
    if not traces:
        return {"wall": wall, "trials_traced": 0}
    first = min(r[2] for r in traces)
    last = max(r[3] for r in traces)
    objective = sum(r[3] - r[2] for r in traces)
    lanes: dict[str, list[tuple[float, float]]] = {}
    for lane, _n, start, end in traces:
        lanes.setdefault(lane, []).append((start, end))
    gaps = []
    for spans in lanes.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    in_study = last - first
    # Slot-seconds of the run: objective + per-trial gaps + start-up + tail + the rest (slots idle
    # inside the study: tasks starting late or ending early, fewer lanes than slots).
    slot_seconds = slots * wall
    startup, tail = first - submitted, exited - last
    idle = slots * in_study - objective - sum(gaps)
    return {
        "wall": wall, "trials_traced": len(traces), "lanes": len(lanes),
        "startup": startup, "tail": tail, "in_study": in_study,
        "objective_seconds": objective,
        "efficiency": objective / slot_seconds,
        "efficiency_in_study": objective / (slots * in_study) if in_study > 0 else None,
        "trials_per_s": len(traces) / wall,
        "trials_per_s_in_study": len(traces) / in_study if in_study > 0 else None,
        "gap_p50": percentile(gaps, 0.5), "gap_p99": percentile(gaps, 0.99),
        "gap_mean": statistics.fmean(gaps) if gaps else None,
        # Shares of slots x wall (they add up to 1).
        "share": {"objective": objective / slot_seconds,
                  "startup": slots * startup / slot_seconds,
                  "tail": slots * tail / slot_seconds,
                  "per_trial_gaps": sum(gaps) / slot_seconds,
                  "idle_in_study": idle / slot_seconds},
        # Completions over time since submit (for the plots), 10 ms resolution.
        "ends": [round(r[3] - submitted, 2) for r in sorted(traces, key=lambda r: r[3])],
    }


def list_schedule(durations: list[float], slots: int) -> float:
    """The in-study makespan of a perfect dynamic scheduler (no overhead) over these durations
    in this order: what a shared budget could reach at best."""
    import heapq

    free = [0.0] * slots
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def static_schedule(durations: list[float], slots: int) -> float:
    """The same for fixed shares (the seed's split): a task takes the next trial only while its
    share lasts."""
    import heapq

    n = len(durations)
    share = [n // slots + (1 if i < n % slots else 0) for i in range(slots)]
    heap = [(0.0, i) for i in range(slots)]
    ends = [0.0] * slots
    for d in durations:
        while True:
            t, i = heapq.heappop(heap)
            if share[i] > 0:
                break
        share[i] -= 1
        ends[i] = t + d
        heapq.heappush(heap, (t + d, i))
    return max(ends)


def run_once(name: str, spec: dict[str, Any], work: Path, seed: int | None, extra: list[str],
             env_extra: dict[str, str]) -> dict[str, Any]:
    work.mkdir(parents=True)
    trace_dir = work / "trace"
    trace_dir.mkdir()
    cmd = contender_command(name, spec["kind"], spec["trials"], spec["slots"], work, seed, extra,
                            spec.get("sampler", "tpe"))
    env = {**os.environ, TRACE_ENV: str(trace_dir), **env_extra}
    load_before = other_load()
    submitted = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, stdin=subprocess.DEVNULL)
    exited = time.time()
    load_after = other_load()
    result: dict[str, Any] = {"load_before": load_before, "load_after": load_after, "returncode": proc.returncode}
    if proc.returncode != 0:
        err = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        result["error"] = "\n".join(err[-12:])[-3000:]
        (work.parent / f"{work.name}.stderr").write_text(proc.stderr)
        return result
    traces = read_traces(trace_dir)
    result.update(analyse(traces, submitted, exited, spec["slots"]))
    if name in RUNNER or name == "optuna-threads":
        trials = storage_trials(f"sqlite:///{work / 'optuna.db'}")
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        result["states"] = states
        result["phases"] = storage_phases(trials, traces)
    else:
        lines = [line for line in proc.stdout.splitlines() if line.startswith("@bench ")]
        told = json.loads(lines[-1][len("@bench "):]) if lines else {}
        result["states"] = told.get("states", {})
        if told.get("config"):
            result["config"] = told["config"]
    result["finished"] = sum(v for k, v in result["states"].items() if k in ("COMPLETE", "PRUNED", "FAIL"))
    if spec["kind"] == "lognormal" and traces:
        # This run's own durations, in the order its trials started: the best a dynamic and a
        # fixed split could do with them (no overhead at all).
        durations = [r[3] - r[2] for r in traces]
        result["ideal_shared"] = list_schedule(durations, spec["slots"])
        result["ideal_static"] = static_schedule(durations, spec["slots"])
    return result


# ---------------------------------------------------------------------------- summary

SUMMARY_KEYS = ("wall", "startup", "tail", "in_study", "objective_seconds", "efficiency", "efficiency_in_study",
                "trials_per_s", "trials_per_s_in_study", "gap_p50", "gap_p99", "gap_mean", "finished",
                "ideal_shared", "ideal_static")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {"rounds_ok": len(ok), "rounds_failed": len(runs) - len(ok)}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    shares = [r["share"] for r in ok if "share" in r]
    if shares:
        out["share"] = {k: statistics.median(s[k] for s in shares) for k in shares[0]}
    phases = [r["phases"] for r in ok if r.get("phases")]
    if phases:
        out["phases"] = {p: {s: statistics.median(x[p][s] for x in phases if x[p][s] is not None)
                             for s in ("p50", "p99", "mean") if any(x[p][s] is not None for x in phases)}
                         for p in ("ask", "tell", "between")}
    states = [r["states"] for r in ok if "states" in r]
    if states:
        out["states_first_round"] = states[0]
    return out


def machine() -> dict[str, Any]:
    def version(cmd: list[str]) -> str | None:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (proc.stdout + proc.stderr).strip().splitlines()
        return text[0] if text else None

    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import importlib.metadata as md

    def pkg(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    bench_pkgs = None
    if BENCH_PYTHON.exists():
        code = ("import importlib.metadata as m, json\nout = {}\n"
                "for n in ('hyperopt', 'mlflow', 'mlflow-skinny', 'optuna', 'pyspark', 'py-spy', 'pandas', 'pyarrow',\n"
                "          'ray'):\n"
                "    try:\n        out[n] = m.version(n)\n    except m.PackageNotFoundError:\n        pass\n"
                "print(json.dumps(out))")
        proc = subprocess.run([str(BENCH_PYTHON), "-c", code], capture_output=True, text=True)
        bench_pkgs = json.loads(proc.stdout) if proc.returncode == 0 else None
    return {
        "nproc": os.cpu_count(), "memory_gib": mem_gib, "cpu": cpu,
        "os": version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "kernel": platform.release(), "python": platform.python_version(),
        "java": version(["java", "-version"]),
        "packages": {n: pkg(n) for n in ("optuna", "pyspark", "joblibspark", "SQLAlchemy", "optuna-spark")},
        "bench_venv": bench_pkgs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--trials", type=int)
    parser.add_argument("--slots", type=int)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--contenders", default=",".join(ALL),
                        help=f"comma-separated, from {', '.join(ALL)} (default: all)")
    parser.add_argument("--sampler", choices=("tpe", "random"),
                        help="every contender's sampler (default: the workload's: random for throughput, "
                             "as Ray Tune's test; TPE elsewhere)")
    parser.add_argument("--seed", type=int, default=13, help="sampler seed of round 1 (round r: seed + r - 1)")
    parser.add_argument("--ln-median", type=float, default=1.0, help="heavy-tail: median trial seconds")
    parser.add_argument("--ln-sigma", type=float, default=1.0, help="heavy-tail: log-normal shape")
    parser.add_argument("--runner-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for `optuna-spark tune` (repeatable; write --runner-arg=--x)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", help="result file name (default: the workload's)")
    parser.add_argument("--keep", action="store_true", help="keep the runs' work directories (and print where)")
    args = parser.parse_args(argv)

    spec = dict(WORKLOADS[args.workload])
    spec["trials"] = args.trials or spec["trials"]
    spec["slots"] = args.slots or spec["slots"]
    spec["sampler"] = args.sampler or spec.get("sampler", "tpe")
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}: pick from {', '.join(ALL)}")
    env_extra = {}
    if spec["kind"] == "lognormal":
        env_extra = {"BENCH_LN_MEDIAN": str(args.ln_median), "BENCH_LN_SIGMA": str(args.ln_sigma)}
        spec["ln_median"], spec["ln_sigma"] = args.ln_median, args.ln_sigma

    skipped = {n: why for n in names if (why := available(n))}
    runnable = [n for n in names if n not in skipped]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in runnable}
    base = Path(tempfile.mkdtemp(prefix=f"optuna-spark-bench-{args.workload}-"))
    started = time.time()
    try:
        for r in range(args.rounds):
            k = r % max(1, len(runnable))
            order = runnable[k:] + runnable[:k]
            for name in order:
                res = run_once(name, spec, base / f"{name}-{r + 1}", args.seed + r, args.runner_arg, env_extra)
                runs[name].append(res)
                brief = {k: round(v, 3) for k, v in res.items() if isinstance(v, float)}
                print(f"round {r + 1} {name}: " + (f"FAILED: {res['error'].splitlines()[-1]}" if "error" in res
                                                   else json.dumps(brief)), file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"work directories kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)

    commands = {}
    for n in names:
        commands[n] = {
            "bench": display_command([".venv/bin/python", "bench/run.py", args.workload, "--trials", str(spec["trials"]),
                                      "--slots", str(spec["slots"]), "--rounds", str(args.rounds),
                                      "--contenders", n, "--seed", str(args.seed), "--out", "/tmp/bench-row"]
                                     + [f"--runner-arg={a}" for a in args.runner_arg]
                                     + ([f"--ln-median={args.ln_median}", f"--ln-sigma={args.ln_sigma}"]
                                        if spec["kind"] == "lognormal" else [])),
            "tool": display_command(contender_command(n, spec["kind"], spec["trials"], spec["slots"],
                                                      Path("WORK"), args.seed, args.runner_arg, spec["sampler"])),
        }
    result = {
        "workload": args.workload, "spec": spec, "rounds": args.rounds, "seed": args.seed,
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "command": display_command([".venv/bin/python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "contenders": {n: {"runs": runs[n], "median": summarize(runs[n])} for n in runnable},
        "skipped": skipped, "commands": commands,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name or args.workload}.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr)
    base_name = spec["baseline"]
    base_wall = result["contenders"].get(base_name, {}).get("median", {}).get("wall")
    print(f"\n{spec['title']}: {spec['trials']} trials, {spec['slots']} slots, median of {args.rounds} round(s)")
    print("| contender | finished | wall s | efficiency | trials/s | start-up s | tail s | gap p50 ms | "
          f"wall / {base_name} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        if n in skipped:
            print(f"| {n} | not run: {skipped[n]} |||||||| ")
            continue
        m = result["contenders"][n]["median"]
        if not m.get("wall"):
            err = next((r.get("error", "") for r in runs[n] if "error" in r), "")
            print(f"| {n} | failed: {err.splitlines()[-1] if err else '?'} ||||||||")
            continue
        ratio = f"{m['wall'] / base_wall:.2f}" if base_wall else "-"
        gap = f"{m['gap_p50'] * 1000:.0f}" if m.get("gap_p50") is not None else "-"
        print(f"| {n} | {m.get('finished', 0):.0f} | {m['wall']:.1f} | {m.get('efficiency', 0):.3f} | "
              f"{m.get('trials_per_s', 0):.2f} | {m.get('startup', 0):.1f} | {m.get('tail', 0):.1f} | {gap} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
