"""The lab's benchmarks (workload 4 and the lab parts of 5), through the driver like an operator.

    make bench-lab [INVENTORY=inventory/lab]          # after `make lab-up converge`
    .venv/bin/python bench/lab.py [--inventory inventory/lab] [--concurrency 1,2,4,8,16,32]
                                  [--placement cluster,driver-local] [--rounds 2] [--startup-rounds 3]
                                  [--converge] [--out bench/results]

Everything runs as `optuna-spark` on the inventory's driver (bin/on-driver: ssh as the login
user, the runner through its sudo rule, MySQL from /etc/optuna-spark/runner.toml), with the
objectives of bench/bench_objectives.py copied to the driver's /tmp and shipped by the runner.
Results are read back from MySQL with Optuna's own command line (`optuna-spark optuna -- trials`).

1. Storage-bound scaling (bench/results/lab-storage.json, scaling.png): the `zero` objective
   (no sleep: every trial is sampling and storage round trips), `--n-jobs C` for C in
   --concurrency, TRIALS-PER-TASK x C trials, interleaved rounds. Placements: `cluster` (the
   cluster's master: C tasks on the workers, as many at once as they have free cores; the
   concurrency reached is measured, not assumed) and `driver-local` (`--master local[C]` on the
   driver: C tasks against MySQL whatever the workers' cores). Per point: trials/s, the lanes
   (task processes) seen, and the per-trial storage overhead = the time between two trials' starts
   on one lane (p50, p99), from the objective's own start times packed in its value (microseconds,
   whatever MySQL's datetime precision). Where the curve flattens, MySQL (or the 2 cores the
   whole lab shares on a small host) saturates: the table shows the point and `SHOW GLOBAL STATUS`
   deltas (threads running, row lock waits) are not readable by the login user, so the curve and
   the overhead percentiles are the evidence.
2. Start-up (bench/results/lab-startup.json): 16 trials x 0.5 s on 4 tasks, `--runtime installed`
   against `--runtime archive` (the packed runtime in runner.toml), interleaved: submit -> first
   trial, last trial -> exit, from the controller's clock (the lab's containers share it) minus
   the ssh round trip measured alone.
3. With --converge (bench/results/lab-converge.json), first of all: `make converge` timed twice on
   INVENTORY, the second run being the no-op re-run. For "from scratch" give a fresh lab:
   `make lab-down && make lab-up LAB_WORKERS=3` (1 driver + 3 workers), then this.

Not measured: Optuna's gRPC storage proxy. The runner's exact budget is SQL transactions on the
storage's own tables (optuna_spark.ledger), which a gRPC proxy does not carry, so the runner cannot use
it; whether it would help plain Optuna clients was not measured here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "lab"))

from bench_objectives import decode_pid_time  # noqa: E402
from optuna_lab.client import ClusterClient  # noqa: E402
from run import percentile  # noqa: E402

REMOTE_OBJECTIVES = "/tmp/bench_objectives.py"


class Lab(ClusterClient):
    """The lab's client (lab/optuna_lab/client.py), with the benchmarks' longer timeouts."""

    def on_driver(self, *command: str, input: str | None = None,
                  timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return super().on_driver(*command, input=input, timeout=timeout)

    def runner(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return super().runner(*args, timeout=timeout)

    def trials(self, study: str) -> list[dict[str, Any]]:
        proc = self.runner("optuna", "--", "trials", "--study-name", study, "-f", "json", timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"reading study {study}: {proc.stderr.strip()[-500:]}")
        return json.loads(proc.stdout)


def _ts(text: Any) -> float | None:
    """A datetime from Optuna's command line (naive, the database's UTC) as Unix seconds."""
    if not text:
        return None
    dt = datetime.datetime.fromisoformat(str(text))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def _host(t: dict[str, Any]) -> str:
    for key in ("user_attrs_host", "user_attrs"):
        v = t.get(key)
        if isinstance(v, dict):
            return str(v.get("host", "?"))
        if v is not None and key == "user_attrs_host":
            return str(v)
    return "?"


def analyse_zero(trials: list[dict[str, Any]], objective_seconds: float = 0.0) -> dict[str, Any]:
    """Lanes and per-trial cycle times from `zero`-style values (pid + start packed)."""
    lanes: dict[tuple[str, int], list[float]] = {}
    stored = []
    for t in trials:
        if t.get("state") != "COMPLETE" or t.get("value") is None:
            continue
        start_db = _ts(t.get("datetime_start"))
        if start_db is None:
            continue
        pid, start = decode_pid_time(float(t["value"]), start_db)
        lanes.setdefault((_host(t), pid), []).append(start)
        end_db = _ts(t.get("datetime_complete"))
        if end_db is not None:
            stored.append((start_db, end_db))
    cycles = []
    for starts in lanes.values():
        starts.sort()
        cycles += [b - a - objective_seconds for a, b in zip(starts, starts[1:])]
    starts_all = [s for v in lanes.values() for s in v]
    n = len(starts_all)
    span = (max(starts_all) - min(starts_all)) if n > 1 else None
    return {"trials": n, "lanes": len(lanes), "hosts": sorted({h for h, _ in lanes}),
            "first_start": min(starts_all) if n else None, "last_start": max(starts_all) if n else None,
            "last_complete": max((e for _, e in stored), default=None),
            "trials_per_s": (n - 1) / span if span else None,
            "overhead_p50": percentile(cycles, 0.5), "overhead_p99": percentile(cycles, 0.99),
            "overhead_mean": statistics.fmean(cycles) if cycles else None}


def ssh_round_trip(lab: Lab) -> float:
    times = []
    for _ in range(3):
        t0 = time.time()
        lab.on_driver("true", timeout=120)
        times.append(time.time() - t0)
    return statistics.median(times)


def scaling(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    points: dict[str, list[dict[str, Any]]] = {p: [] for p in args.placement}
    order = [(p, c) for c in args.concurrency for p in args.placement]
    for r in range(args.rounds):
        for placement, c in (order if r % 2 == 0 else list(reversed(order))):
            study = f"bench-scale-{uuid.uuid4().hex[:8]}-{placement}-{c}"
            n = args.trials_per_task * c
            extra = ["--master", f"local[{c}]"] if placement == "driver-local" else []
            t0 = time.time()
            proc = lab.runner("tune", "--objective", f"{REMOTE_OBJECTIVES}:zero", "--study", study,
                              "--n-trials", str(n), "--n-jobs", str(c), "--output", "json", *extra)
            wall = time.time() - t0
            point: dict[str, Any] = {"placement": placement, "concurrency": c, "round": r + 1, "study": study,
                                     "n_trials": n, "wall": wall, "returncode": proc.returncode}
            if proc.returncode != 0:
                point["error"] = proc.stderr.strip()[-1000:]
            else:
                point.update(analyse_zero(lab.trials(study)))
            points[placement].append(point)
            print(f"round {r + 1} {placement} C={c}: " + json.dumps(
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in point.items()
                 if k in ("wall", "trials", "lanes", "trials_per_s", "overhead_p50", "overhead_p99", "error")}),
                file=sys.stderr, flush=True)
    medians: dict[str, list[dict[str, Any]]] = {}
    table = ["| placement | concurrent tasks | lanes seen | trials | trials/s | per-trial overhead p50 ms | p99 ms | "
             "wall s |", "|---|---|---|---|---|---|---|---|"]
    for placement, pts in points.items():
        medians[placement] = []
        for c in args.concurrency:
            ok = [p for p in pts if p["concurrency"] == c and "error" not in p and p.get("trials_per_s")]
            if not ok:
                errs = [p.get("error", "") for p in pts if p["concurrency"] == c]
                table.append(f"| {placement} | {c} | failed: `{(errs[0].splitlines() or ['?'])[-1][:150] if errs else '?'}` "
                             "| | | | | |")
                continue
            m = {k: statistics.median(p[k] for p in ok if p.get(k) is not None)
                 for k in ("lanes", "trials", "trials_per_s", "overhead_p50", "overhead_p99", "wall")
                 if any(p.get(k) is not None for p in ok)}
            m["concurrency"] = c
            medians[placement].append(m)
            table.append(f"| {placement} | {c} | {m.get('lanes', 0):.0f} | {m.get('trials', 0):.0f} | "
                         f"{m.get('trials_per_s', 0):.1f} | {m.get('overhead_p50', 0) * 1000:.0f} | "
                         f"{m.get('overhead_p99', 0) * 1000:.0f} | {m.get('wall', 0):.1f} |")
    return {"workload": "lab-storage", "title": "Storage-bound scaling on the lab (MySQL on the driver)",
            "points": points, "scaling": medians, "table": table}


def startup(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    rtt = ssh_round_trip(lab)
    runs: dict[str, list[dict[str, Any]]] = {"installed": [], "archive": []}
    for r in range(args.startup_rounds):
        for runtime in (("installed", "archive") if r % 2 == 0 else ("archive", "installed")):
            study = f"bench-start-{uuid.uuid4().hex[:8]}-{runtime}"
            t0 = time.time()
            proc = lab.runner("tune", "--objective", f"{REMOTE_OBJECTIVES}:zero_sleep_half", "--study", study,
                              "--n-trials", "16", "--n-jobs", "4", "--runtime", runtime, "--output", "json")
            t1 = time.time()
            res: dict[str, Any] = {"round": r + 1, "wall": t1 - t0 - rtt, "returncode": proc.returncode}
            if proc.returncode != 0:
                res["error"] = proc.stderr.strip()[-1000:]
            else:
                a = analyse_zero(lab.trials(study), objective_seconds=0.5)
                res["first_trial"] = a["first_start"] - t0 - rtt / 2 if a["first_start"] else None
                res["tail"] = t1 - rtt / 2 - (a["last_start"] + 0.5) if a["last_start"] else None
            runs[runtime].append(res)
            print(f"round {r + 1} {runtime}: {json.dumps(res)[:300]}", file=sys.stderr, flush=True)
    table = ["| runtime | submit -> first trial s | last trial -> exit s | wall s (ssh excluded) |", "|---|---|---|---|"]
    for runtime, rs in runs.items():
        ok = [x for x in rs if "error" not in x and x.get("first_trial") is not None]
        if not ok:
            err = next((x["error"] for x in rs if "error" in x), "?")
            table.append(f"| {runtime} | failed: `{err.splitlines()[-1][:150] if err else '?'}` | | |")
            continue
        table.append(f"| {runtime} | {statistics.median(x['first_trial'] for x in ok):.2f} | "
                     f"{statistics.median(x['tail'] for x in ok):.2f} | {statistics.median(x['wall'] for x in ok):.2f} |")
    return {"workload": "lab-startup", "title": "Start-up on the lab: --runtime installed against archive "
                                                "(16 trials x 0.5 s, 4 tasks)",
            "ssh_round_trip": rtt, "runs": runs, "table": table}


def converge(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for label in ("first converge", "no-op re-run"):
        t0 = time.time()
        proc = subprocess.run(["make", "-C", str(ROOT), "converge", f"INVENTORY={args.inventory}"],
                              capture_output=True, text=True)
        wall = time.time() - t0
        changed = [line for line in proc.stdout.splitlines() if " changed=" in line and ": ok=" in line]
        runs.append({"run": label, "wall": wall, "returncode": proc.returncode, "recap": changed})
        print(f"{label}: {wall:.0f} s, exit {proc.returncode}", file=sys.stderr, flush=True)
    table = ["| run | wall s | exit | recap |", "|---|---|---|---|"]
    for r in runs:
        table.append(f"| {r['run']} | {r['wall']:.0f} | {r['returncode']} | {'; '.join(x.strip() for x in r['recap'])[:300]} |")
    return {"workload": "lab-converge", "title": f"Converge of {args.inventory} and its no-op re-run",
            "runs": runs, "table": table}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", default="inventory/lab")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--placement", default="cluster,driver-local")
    parser.add_argument("--trials-per-task", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--startup-rounds", type=int, default=3)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--converge", action="store_true", help="also time `make converge` twice (see above)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.placement = [p.strip() for p in args.placement.split(",") if p.strip()]
    if not Path(args.inventory).exists():
        parser.error(f"no inventory at {args.inventory}: `make lab-up converge` first")
    lab = Lab(args.inventory)
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    common = {"command": " ".join([".venv/bin/python", "bench/lab.py", *map(shlex.quote, sys.argv[1:])]), "started": started,
              "argv": sys.argv[1:]}

    def save(result: dict[str, Any]) -> None:
        result = {**result, **common}
        path = args.out / f"{result['workload']}.json"
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print("\n".join(result["table"]))
        print(f"wrote {path}", file=sys.stderr)

    if args.converge:  # first: "from scratch" means before anything below installs or runs
        save(converge(args))
    if not (args.skip_scaling and args.skip_startup):
        check_driver(lab)
    if not args.skip_scaling:
        save(scaling(lab, args))
    if not args.skip_startup:
        save(startup(lab, args))
    return 0


def check_driver(lab: Lab) -> None:
    up = lab.on_driver("sh", "-c", f"cat > {REMOTE_OBJECTIVES} && command -v optuna-spark",
                       input=(HERE / "bench_objectives.py").read_text(encoding="utf-8"), timeout=120)
    if up.returncode != 0:
        raise SystemExit(f"cannot reach the driver or the runner is not installed: {up.stderr.strip()[-500:]}")


if __name__ == "__main__":
    sys.exit(main())
