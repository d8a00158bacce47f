"""BENCHMARKS.md and the plots, from bench/results/*.json (bench/run.py's and bench/lab.py's).

    .venv/bin/python bench/report.py [--results bench/results] [--out BENCHMARKS.md]

Tables are medians over the interleaved rounds of one run of bench/run.py, with ratios to the
workload's named baseline measured in that same run. Hand-written analysis lives in
bench/notes/*.md and is included where its name says (throughput.md under the throughput table,
...). PNGs go beside the JSON files: efficiency.png (every contender, every workload),
trials-over-time-WORKLOAD.png (completed trials since submit), scaling.png (the lab's storage
scaling curve, when bench/results/lab-storage.json exists).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = ("runner-shared", "runner-static", "optuna-threads", "hyperopt-sparktrials", "mlflow-spark-optuna",
         "ray-tune-optuna")
LABELS = {
    "runner-shared": "runner (shared budget)",
    "runner-static": "seed's way (runner --split static)",
    "optuna-threads": "Optuna threads (1 process)",
    "hyperopt-sparktrials": "Hyperopt SparkTrials",
    "mlflow-spark-optuna": "MLflow MlflowSparkStudy",
    "ray-tune-optuna": "Ray Tune + OptunaSearch",
}
LOCAL_ORDER = ("efficiency", "throughput", "throughput-10k", "throughput-peers", "heavy-tail", "startup")
# Results that carry their own table (title, command, started, table; machine_line optional):
# bench/library_memory.py's, bench/study_growth.py's.
TABLE_PREFIXES = ("library-", "cost-")


def load_results(folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and "workload" in data:
            out[path.stem] = data
    return out


def fmt(value: Any, digits: int = 1, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}f}"


def overlap_note(data: dict[str, Any]) -> str:
    runs = [r for c in data.get("contenders", {}).values() for r in c["runs"]]
    ci = sum(1 for r in runs if r.get("load_before", {}).get("ci_running") or r.get("load_after", {}).get("ci_running"))
    loads = [r["load_before"]["loadavg_1m"] for r in runs if "load_before" in r]
    text = (f"{len(runs)} runs; a CI run (`.ci/run`) was going during {ci} of them" if ci
            else f"{len(runs)} runs; no CI run during any of them")
    if loads:
        text += f"; 1-minute load average before a run: median {statistics.median(loads):.1f}, max {max(loads):.1f}"
    return text + " (this machine has " + str(data.get("machine", {}).get("nproc", "?")) + " cores)."


def run_label(data: dict[str, Any], name: str) -> str:
    """The contender's label, with the settings its runs reported (bench/peers.py's `config`);
    Hyperopt's runs from before peers.py set max_queue_len ran with fmin's default of 1."""
    label = LABELS.get(name, name)
    runs = data.get("contenders", {}).get(name, {}).get("runs", [])
    config = next((r["config"] for r in runs if r.get("config")), None)
    if name == "hyperopt-sparktrials":
        return label + f" (max_queue_len {config.get('max_queue_len', 1) if config else '1, fmin default'})"
    return label


def contender_rows(data: dict[str, Any]) -> list[str]:
    spec = data["spec"]
    base = spec["baseline"]
    meds = {n: c["median"] for n, c in data["contenders"].items()}
    base_wall = meds.get(base, {}).get("wall")
    base_in = meds.get(base, {}).get("in_study")
    lines = [
        f"| contender | finished | wall s (min-max over rounds) | efficiency | in-study s | efficiency in-study | "
        f"trials/s | gap p50 / p99 ms | wall / {base} | in-study / {base} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = [n for n in ORDER if n in meds or n in data.get("skipped", {})]
    for n in names:
        label = run_label(data, n)
        if n in data.get("skipped", {}):
            lines.append(f"| {label} | not run: {data['skipped'][n]} | | | | | | | | |")
            continue
        m = meds[n]
        if not m.get("wall"):
            err = next((r.get("error", "") for r in data["contenders"][n]["runs"] if "error" in r), "")
            last = err.strip().splitlines()[-1] if err.strip() else "?"
            lines.append(f"| {label} | failed: `{last[:200]}` | | | | | | | | |")
            continue
        gap = (f"{fmt(m.get('gap_p50'), 0, 1000)} / {fmt(m.get('gap_p99'), 0, 1000)}"
               if m.get("gap_p50") is not None else "-")
        walls = [r["wall"] for r in data["contenders"][n]["runs"] if r.get("wall") is not None and "error" not in r]
        wall = fmt(m["wall"]) + (f" ({min(walls):.1f}-{max(walls):.1f})" if len(walls) > 1 else "")
        ratio = fmt(m["wall"] / base_wall, 2) if base_wall else "-"
        ratio_in = fmt(m["in_study"] / base_in, 2) if base_in and m.get("in_study") else "-"
        failed = f" ({m['rounds_failed']} round(s) failed)" if m.get("rounds_failed") else ""
        lines.append(f"| {label} | {fmt(m.get('finished'), 0)}{failed} | {wall} | {fmt(m.get('efficiency'), 3)} | "
                     f"{fmt(m.get('in_study'))} | {fmt(m.get('efficiency_in_study'), 3)} | {fmt(m.get('trials_per_s'), 2)} | "
                     f"{gap} | {ratio} | {ratio_in} |")
    return lines


def startup_rows(data: dict[str, Any]) -> list[str]:
    meds = {n: c["median"] for n, c in data["contenders"].items()}
    lines = ["| contender | submit -> first trial s | last trial -> exit s | wall s |", "|---|---|---|---|"]
    for n in ORDER:
        m = meds.get(n)
        if m and m.get("wall"):
            lines.append(f"| {LABELS.get(n, n)} | {fmt(m.get('startup'), 2)} | {fmt(m.get('tail'), 2)} | {fmt(m['wall'], 2)} |")
    return lines


def share_rows(data: dict[str, Any]) -> list[str]:
    meds = {n: c["median"] for n, c in data["contenders"].items()}
    keys = ("objective", "startup", "tail", "per_trial_gaps", "idle_in_study")
    lines = ["| contender | objective | start-up | tail | per-trial gaps | idle in study |", "|---|---|---|---|---|---|"]
    for n in ORDER:
        m = meds.get(n)
        if m and m.get("share"):
            lines.append(f"| {LABELS.get(n, n)} | " + " | ".join(fmt(m['share'][k], 3) for k in keys) + " |")
    return lines


def phase_rows(data: dict[str, Any]) -> list[str]:
    meds = {n: c["median"] for n, c in data["contenders"].items()}
    lines = ["| contender | ask p50 / p99 ms | tell p50 / p99 ms | between p50 / p99 ms |", "|---|---|---|---|"]
    for n in ORDER:
        m = meds.get(n)
        if m and m.get("phases"):
            ph = m["phases"]
            lines.append(f"| {LABELS.get(n, n)} | " + " | ".join(
                f"{fmt(ph[p].get('p50'), 0, 1000)} / {fmt(ph[p].get('p99'), 0, 1000)}" for p in ("ask", "tell", "between"))
                + " |")
    return lines


def command_rows(data: dict[str, Any]) -> list[str]:
    lines = ["| contender | reproduce this row | what it runs |", "|---|---|---|"]
    for n in ORDER:
        c = data.get("commands", {}).get(n)
        if c:
            lines.append(f"| {LABELS.get(n, n)} | `{c['bench']}` | `{c['tool']}` |")
    return lines


def heavy_tail_rows(data: dict[str, Any]) -> list[str]:
    meds = {n: c["median"] for n, c in data["contenders"].items()}
    shared, static = meds.get("runner-shared", {}), meds.get("runner-static", {})
    if not shared.get("wall") or not static.get("wall"):
        return []
    lines = [
        "| | runner shared | seed's static split | shared / static |", "|---|---|---|---|",
        f"| wall s | {fmt(shared['wall'])} | {fmt(static['wall'])} | {fmt(shared['wall'] / static['wall'], 2)} |",
        f"| in-study s | {fmt(shared.get('in_study'))} | {fmt(static.get('in_study'))} | "
        f"{fmt(shared['in_study'] / static['in_study'], 2) if static.get('in_study') else '-'} |",
    ]
    ideal = [r for n in ("runner-shared", "runner-static") for r in data["contenders"][n]["runs"]
             if r.get("ideal_shared") and r.get("ideal_static")]
    if ideal:
        ratio = statistics.median(r["ideal_shared"] / r["ideal_static"] for r in ideal)
        lines.append(f"| no-overhead bound (same durations, list scheduling vs fixed shares) | "
                     f"{fmt(statistics.median(r['ideal_shared'] for r in ideal))} | "
                     f"{fmt(statistics.median(r['ideal_static'] for r in ideal))} | {fmt(ratio, 2)} |")
    return lines


def notes(name: str) -> list[str]:
    path = HERE / "notes" / f"{name}.md"
    if path.is_file():
        return ["", path.read_text(encoding="utf-8").rstrip(), ""]
    return []


# ---------------------------------------------------------------------------- plots

def plot_efficiency(results: dict[str, dict[str, Any]], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in LOCAL_ORDER if k in results]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(ORDER)
    for i, c in enumerate(ORDER):
        xs, ys = [], []
        for j, w in enumerate(names):
            m = results[w]["contenders"].get(c, {}).get("median", {})
            if m.get("efficiency") is not None:
                xs.append(j + (i - (len(ORDER) - 1) / 2) * width)
                ys.append(m["efficiency"])
        if xs:
            bars = ax.bar(xs, ys, width, label=LABELS[c])
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{w}\n{results[w]['spec']['trials']} trials, {results[w]['spec']['slots']} slots" for w in names],
                       fontsize=8)
    ax.set_ylabel("efficiency = objective time / (slots x wall)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_title("Parallel efficiency per contender (median of interleaved rounds)")
    fig.tight_layout()
    path = out / "efficiency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_over_time(name: str, data: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for c in ORDER:
        runs = [r for r in data["contenders"].get(c, {}).get("runs", []) if r.get("ends")]
        if not runs:
            continue
        # The run with the median wall time.
        run = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
        ends = run["ends"]
        step = max(1, len(ends) // 2000)
        xs = ends[::step] + [ends[-1]]
        ys = list(range(1, len(ends) + 1, step)) + [len(ends)]
        ax.plot(xs, ys, label=f"{LABELS[c]} (exit {run['wall']:.0f} s)")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    spec = data["spec"]
    slots = spec["slots"]
    if spec["kind"] in ("sleep_half", "sleep_one"):
        secs = 0.5 if spec["kind"] == "sleep_half" else 1.0
        ideal_end = spec["trials"] * secs / slots
        ax.plot([0, ideal_end], [0, spec["trials"]], "k:", label="ideal (no start-up, no overhead)")
    ax.set_xlabel("seconds since submit")
    ax.set_ylabel("trials finished")
    ax.set_title(f"{name}: trials over time ({spec['trials']} trials, {slots} slots)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / f"trials-over-time-{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(data: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = data.get("scaling") or {}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in series.items():
        pts = sorted((p["concurrency"], p["trials_per_s"]) for p in points if p.get("trials_per_s"))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent tasks")
    ax.set_ylabel("trials/s (near-zero objective)")
    ax.set_title("Storage-bound scaling on the lab")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- document

def machine_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    any_local = next((results[k] for k in LOCAL_ORDER if k in results), None)
    if any_local is None:
        return ["No local result yet: run `make bench`."]
    m = any_local["machine"]
    pk = m.get("packages", {})
    lines = [
        f"- {m.get('nproc')} cores ({m.get('cpu') or '?'}), {m.get('memory_gib')} GiB of memory, shared with other "
        "engineers' work and CI (see each workload's load line)",
        f"- {m.get('os')}, Linux {m.get('kernel')}, Python {m.get('python')}, {m.get('java')}",
        f"- project venv: optuna {pk.get('optuna')}, pyspark {pk.get('pyspark')}, joblibspark {pk.get('joblibspark')}, "
        f"SQLAlchemy {pk.get('SQLAlchemy')}, optuna-spark {pk.get('optuna-spark')}",
    ]
    if m.get("bench_venv"):
        lines.append("- bench/.venv (bench/requirements.txt): " + ", ".join(f"{k} {v}" for k, v in m["bench_venv"].items()))
    return lines


def workload_section(key: str, data: dict[str, Any], images: dict[str, str]) -> list[str]:
    spec = data["spec"]
    title = spec["title"]
    if key != data["workload"]:
        title += f" ({key})"
    out = [f"### {title}", ""]
    extra = ""
    if spec["kind"] == "lognormal":
        extra = f", log-normal median {spec.get('ln_median')} s, sigma {spec.get('ln_sigma')}"
    extra += f", {'random' if spec.get('sampler') == 'random' else 'TPE'} sampler for every contender"
    out.append(f"`{data['command']}`: {spec['trials']} trials, {spec['slots']} slots{extra}, Spark local mode, a fresh "
               f"SQLite file per run (MLflow: its SQLite tracking store; Hyperopt: in memory; Ray Tune: in memory, "
               f"results in the run's directory), median of "
               f"{data['rounds']} interleaved round(s), {data['started']}, {data['duration_s'] / 60:.0f} min. "
               f"Baseline: {LABELS.get(spec['baseline'], spec['baseline'])}.")
    out += ["", f"Load: {overlap_note(data)}", ""]
    out += contender_rows(data)
    if data["workload"] == "heavy-tail":
        rows = heavy_tail_rows(data)
        if rows:
            out += ["", "The shared budget against the seed's fixed split (target: shared wall <= 0.8 x static wall):", ""]
            out += rows
    out += ["", "Where the slot-seconds (slots x wall) go, as shares:", ""] + share_rows(data)
    ph = phase_rows(data)
    if len(ph) > 2:
        out += ["", "Per-trial phases from Optuna's own timestamps and the objective's trace (ask: trial created -> "
                    "objective starts; tell: objective ends -> trial told; between: told -> the lane's next trial "
                    "created):", ""] + ph
    out += ["", "Commands (each row alone; `WORK` is a fresh directory):", ""] + command_rows(data)
    if key in images:
        out += ["", f"![trials over time]({images[key]})"]
    out += notes(key)
    out.append("")
    return out


def lab_section(results: dict[str, dict[str, Any]], scaling: Path | None = None, scaling_ref: str = "") -> list[str]:
    lab = {k: v for k, v in results.items() if v.get("workload", "").startswith("lab-")}
    out = ["## On the lab (workload 4, the lab parts of 5)", ""]
    if not lab:
        out += ["Run by `make bench-lab` (`bench/lab.py`, against `INVENTORY`, default `inventory/lab`); "
                "**not measured in this run**. "
                "What it measures: the storage-bound scaling (a near-zero objective, 1 to 32 concurrent tasks, "
                "MySQL on the driver: trials/s, per-trial storage overhead p50/p99), submit -> first trial and "
                "last trial -> exit, `--runtime archive` against `installed`, and with `BENCH_LAB_ARGS=--converge` (on a fresh lab) a "
                "converge from scratch and the no-op re-run of 1 driver + 3 workers.", ""]
        return out + notes("lab")
    for key, data in sorted(lab.items()):
        out += [f"### {data.get('title', key)}", "", f"`{data.get('command', '')}`, {data.get('started', '')}", ""]
        out += data.get("table", [])
        out.append("")
    if scaling is not None and scaling.exists():
        out += [f"![scaling]({scaling_ref})", ""]
    return out + notes("lab")


def build(results_dir: Path, out_path: Path) -> str:
    results = load_results(results_dir)
    images: dict[str, str] = {}
    eff = plot_efficiency(results, results_dir)
    for key, data in results.items():
        if data["workload"].startswith(TABLE_PREFIXES):
            continue
        if not data["workload"].startswith("lab-"):
            p = plot_over_time(key, data, results_dir)
            if p:
                images[key] = os.path.relpath(p, out_path.parent)
        elif data.get("scaling"):
            plot_scaling(data, results_dir)
    lines = ["# Benchmarks", ""]
    lines += notes("intro")
    lines += ["## The machine", ""] + machine_lines(results) + [""]
    if eff:
        lines += [f"![efficiency per contender]({os.path.relpath(eff, out_path.parent)})", ""]
    lines += ["## Local workloads (Spark local mode, this machine)", ""]
    local = [k for k in LOCAL_ORDER if k in results] + sorted(
        k for k in results if k not in LOCAL_ORDER and not results[k]["workload"].startswith(("lab-", *TABLE_PREFIXES)))
    if not local:
        lines += ["Not measured yet: `make bench`.", ""]
    for key in local:
        lines += workload_section(key, results[key], images)
        if results[key]["workload"] == "startup":
            lines += ["Start-up and tail (medians):", ""] + startup_rows(results[key]) + [""]
    for key, data in sorted(results.items()):
        if data["workload"].startswith(TABLE_PREFIXES):  # a table of its own (library_memory.py, study_growth.py)
            lines += [f"## {data.get('title', key)}", "", f"`{data.get('command', '')}`, {data.get('started', '')}",
                      ""]
            if data.get("machine_line"):
                lines += [f"Machine: {data['machine_line']}.", ""]
            lines += data.get("table", []) + [""] + notes(data["workload"])
    scaling = results_dir / "scaling.png"
    lines += lab_section(results, scaling, os.path.relpath(scaling, out_path.parent))
    lines += notes("contenders")
    text = "\n".join(lines).rstrip() + "\n"
    out_path.write_text(text, encoding="utf-8")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    build(args.results, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
