"""What Spark's RPC and I/O encryption cost on the lab, measured side by side in one run.

    make lab-up converge                       # the hardened cluster
    .venv/bin/python bench/encryption.py [--inventory inventory/lab] [--rounds 3]

Each round runs the same two workloads through the runner on the cluster's driver, once as the
cluster is configured (RPC authentication + AES RPC encryption + I/O encryption; MySQL over TLS)
and once with Spark's encryption switched off for that application only
(`spark.network.crypto.enabled=false`, `spark.io.encryption.enabled=false`: authentication
stays, through Spark's SASL fallback; MySQL stays on TLS, which optuna_user requires). Rounds
are interleaved so that the machine's noise hits both alike; the table has medians and the ratio.

Workloads: `sleep` (0.5 s trials, the efficiency benchmark's load: 8 per slot) and `quadratic`
(instant trials: the runner's storage and RPC round trips dominate).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ["--conf", "spark.network.crypto.enabled=false", "--conf", "spark.io.encryption.enabled=false"]


def run(inventory: str, objective: str, trials: int, slots: int, extra: list[str]) -> dict[str, float]:
    study = f"bench-enc-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, str(ROOT / "bin" / "on-driver"), inventory, "--", "optuna-spark", "tune",
           "--study", study, "--objective", objective, "--n-trials", str(trials), "--n-jobs", str(slots),
           "--output", "json", *extra]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{objective} {'plain' if extra else 'encrypted'} failed: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    if summary["finished"] != trials:
        raise SystemExit(f"{objective}: finished {summary['finished']} of {trials}")
    return {"wall": wall, "study": float(summary.get("wall") or wall)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default=str(ROOT / "inventory" / "lab"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    loads = {"sleep": 8 * args.slots, "quadratic": 200}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for objective, trials in loads.items():
            order = [("encrypted", []), ("plain", PLAIN)]
            if r % 2:
                order.reverse()
            for mode, extra in order:
                res = run(args.inventory, objective, trials, args.slots, extra)
                results.setdefault((objective, mode), []).append(res)
                print(f"round {r + 1} {objective:9} {mode:9} wall {res['wall']:6.1f} s  runner {res['study']:6.1f} s",
                      file=sys.stderr, flush=True)
    print(f"`.venv/bin/python bench/encryption.py --rounds {args.rounds}` ({args.slots} tasks on the lab; median of "
          f"{args.rounds} interleaved rounds):\n")
    print("| workload | trials | encrypted wall s | plain wall s | encrypted / plain |")
    print("|---|---|---|---|---|")
    for objective, trials in loads.items():
        enc = statistics.median(x["wall"] for x in results[(objective, "encrypted")])
        plain = statistics.median(x["wall"] for x in results[(objective, "plain")])
        print(f"| {objective} | {trials} | {enc:.1f} | {plain:.1f} | {enc / plain:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
