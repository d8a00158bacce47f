"""Summaries of a study: counts by state, best trial, budget; as text or JSON. Pure functions."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from optuna_spark.ledger import finished_trials, retried_numbers


def _names(directions: Any) -> list[str]:
    """Direction names from strings or Optuna's StudyDirection, one or a list."""
    if isinstance(directions, (str,)) or not isinstance(directions, (list, tuple)):
        directions = [directions]
    return [d if isinstance(d, str) else d.name.lower() for d in directions]


def _complete(trials: list[Any]) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
            and not any(math.isnan(v) for v in t.values)]


def _best(trials: list[Any], direction: str) -> Any | None:
    complete = _complete(trials)
    if not complete:
        return None
    pick = min if direction == "minimize" else max
    return pick(complete, key=lambda t: t.values[0])


def pareto_front(trials: list[Any], directions: list[str]) -> list[Any]:
    """The trials no other completed trial dominates (better or equal in every objective, better
    in one), by trial number. Optuna's own computation, on frozen trials."""
    from optuna.study import StudyDirection

    from optuna_spark.optuna_internals import pareto_front_trials

    complete = _complete(trials)
    if not complete:
        return []
    front = pareto_front_trials(complete, [StudyDirection[d.upper()] for d in directions])
    return sorted(front, key=lambda t: t.number)


def study_counts(trials: list[Any], budget: int | None, directions: Any) -> dict[str, Any]:
    """The live progress figures: finished / budget, running, best value (or Pareto front) so far."""
    names = _names(directions)
    states = Counter(t.state.name for t in trials)
    out = {
        "finished": finished_trials(trials),
        "budget": budget,
        "running": states.get("RUNNING", 0),
        "waiting": states.get("WAITING", 0),
        "failed": states.get("FAIL", 0),
    }
    if len(names) == 1:
        best = _best(trials, names[0])
        out["best_value"] = None if best is None else best.value
    else:
        out["pareto"] = len(pareto_front(trials, names))
    return out


def summarize(name: str, trials: list[Any], budget: int | None, directions: Any,
              wall: float | None = None, tasks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    names = _names(directions)
    states = Counter(t.state.name for t in trials)
    retried = retried_numbers(trials)
    failures = [
        {"number": t.number, "reason": t.user_attrs.get("fail_reason", "no message stored"),
         "params": t.params}
        for t in trials if t.state.name == "FAIL" and t.number not in retried
    ]
    hosts = Counter(t.user_attrs.get("host") for t in trials if t.user_attrs.get("host"))
    out: dict[str, Any] = {
        "study": name,
        "direction": names[0] if len(names) == 1 else names,
        "budget": budget,
        "finished": finished_trials(trials),
        "states": dict(sorted(states.items())),
        "retried_stale": len(retried),
        "best": None,
        "failures": failures[:20],
        "hosts": dict(sorted(hosts.items())),
        "tasks": [{k: v for k, v in t.items() if k != "traceback"} for t in (tasks or [])],
        "wall_seconds": None if wall is None else round(wall, 2),
        "errors": [],
    }
    kept = kept_files(trials)
    if kept:
        out["kept_files"] = kept
    if len(names) == 1:
        best = _best(trials, names[0])
        out["best"] = None if best is None else {"number": best.number, "value": best.value, "params": best.params}
    else:
        out["pareto_front"] = [{"number": t.number, "values": t.values, "params": t.params}
                               for t in pareto_front(trials, names)]
    return out


def kept_files(trials: list[Any]) -> dict[str, Any] | None:
    """The files trials kept through Optuna's artifacts API (models of `xgboost-wine` with
    --artifact-dir): how many, and the trials that kept them (the first 20 by number); None
    when there are none."""
    from optuna_spark.tracking import trial_artifacts

    counts = {t.number: len(trial_artifacts(t)) for t in trials}
    numbers = sorted(n for n, c in counts.items() if c)
    if not numbers:
        return None
    return {"count": sum(counts.values()), "trials": numbers[:20], "n_trials": len(numbers)}


def format_progress(event: dict[str, Any]) -> str:
    budget = event.get("budget")
    done = f"{event['finished']}/{budget}" if budget else f"{event['finished']}"
    extra = f" · {event['failed']} failed" if event.get("failed") else ""
    if "pareto" in event:
        tail = f"Pareto front {event['pareto']}"
    else:
        best = event.get("best_value")
        tail = "best " + ("-" if best is None else f"{best:.6g}")
    return f"[{event.get('elapsed', 0):7.1f}s] {done} finished · {event['running']} running{extra} · {tail}"


def format_duration(seconds: float) -> str:
    """0:07, 12:34, 1:02:03."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_rate(event: dict[str, Any]) -> float | None:
    """Trials finished per second by this run (trials of earlier runs, `previous`, left out)."""
    done = event["finished"] - int(event.get("previous") or 0)
    elapsed = float(event.get("elapsed") or 0)
    return done / elapsed if done > 0 and elapsed > 0 else None


RATE_SMOOTHING = 0.3  # weight of the latest interval in the smoothed rate (tqdm's default)


def smoothed_rate(rate: float | None, last: dict[str, Any] | None, event: dict[str, Any],
                  alpha: float = RATE_SMOOTHING) -> float | None:
    """The rate after `event`, an exponential average of the rates between successive progress
    events. Intervals before the run's first trial started (Spark's start-up) are left out: the
    run's average rate would count them and promise too long a wait."""
    if last is None:
        return rate
    began = last.get("running", 0) > 0 or last["finished"] > int(last.get("previous") or 0)
    span = float(event.get("elapsed") or 0) - float(last.get("elapsed") or 0)
    if not began or span <= 0:
        return rate
    latest = float(max(0, event["finished"] - last["finished"]) / span)
    return latest if rate is None else float(alpha * latest + (1 - alpha) * rate)


def time_left(event: dict[str, Any], timeout: float | None = None, rate: float | None = None) -> float | None:
    """Seconds until the budget is spent at `rate` (default: this run's average), or until
    `timeout`, whichever is first."""
    left: list[float] = []
    budget = event.get("budget")
    rate = progress_rate(event) if rate is None else rate
    if budget:
        remaining = max(0, budget - event["finished"])
        if remaining == 0:
            left.append(0.0)
        elif rate:
            left.append(remaining / rate)
    if timeout:
        left.append(max(0.0, timeout - float(event.get("elapsed") or 0)))
    return min(left) if left else None


def format_progress_bar(event: dict[str, Any], width: int, timeout: float | None = None,
                        rate: float | None = None) -> str:
    """The progress of a run as one line of at most `width - 1` characters, for a terminal that
    redraws it in place: a bar, finished/budget, trials/s (`rate`, default this run's average),
    time left, the best value so far."""
    budget, finished = event.get("budget"), event["finished"]
    elapsed = float(event.get("elapsed") or 0)
    if budget:
        fraction = min(1.0, finished / budget)
        count = f"{finished}/{budget}"
    elif timeout:
        fraction = min(1.0, elapsed / timeout)
        count = f"{finished}"
    else:
        fraction, count = None, f"{finished}"
    rate = progress_rate(event) if rate is None else rate
    left = time_left(event, timeout, rate)
    parts = [f"{event.get('running', 0)} running"]
    if event.get("failed"):
        parts.append(f"{event['failed']} failed")
    parts.append("- trials/s" if not rate else f"{rate:.3g} trials/s")
    parts.append(f"{'?' if left is None else format_duration(left)} left")
    if "pareto" in event:
        parts.append(f"Pareto front {event['pareto']}")
    else:
        best = event.get("best_value")
        parts.append("best " + ("-" if best is None else f"{best:.6g}"))
    head = f"{format_duration(elapsed)} {count}"
    percent = "" if fraction is None else f" {fraction * 100:3.0f}%"
    tail = " · " + " · ".join(parts)
    room = width - 1 - len(head) - len(percent) - len(tail) - 3  # the brackets and a space
    bar_width = max(0, min(40, room))
    if fraction is not None and bar_width >= 10:
        filled = int(fraction * bar_width)
        line = f"{head} [{'#' * filled}{'.' * (bar_width - filled)}]{percent}{tail}"
    else:
        line = f"{head}{percent}{tail}"
    return line[:max(1, width - 1)]


def format_summary(summary: dict[str, Any]) -> str:
    direction = summary["direction"]
    lines = [f"study {summary['study']} ({direction if isinstance(direction, str) else ', '.join(direction)})"]
    budget = summary.get("budget")
    lines.append(f"  finished   {summary['finished']}" + (f" of {budget}" if budget else ""))
    lines.append("  states     " + (", ".join(f"{k} {v}" for k, v in summary["states"].items()) or "no trial"))
    if summary.get("retried_stale"):
        lines.append(f"  retried    {summary['retried_stale']} stale trial(s) (their tasks died)")
    best = summary.get("best")
    if "pareto_front" in summary:
        front = summary["pareto_front"]
        if front:
            lines.append(f"  Pareto front {len(front)} trial(s)")
            for t in front[:10]:
                values = ", ".join(f"{v:.6g}" for v in t["values"])
                lines.append(f"    #{t['number']}: ({values}) " + format_params(t["params"]))
            if len(front) > 10:
                lines.append(f"    ... {len(front) - 10} more (--output json)")
        else:
            lines.append("  Pareto front none (no trial completed)")
    elif best:
        lines.append(f"  best value {best['value']:.6g} (trial {best['number']})")
        for key, value in sorted(best["params"].items()):
            lines.append(f"    {key} = {value:.6g}" if isinstance(value, float) else f"    {key} = {value}")
    else:
        lines.append("  best value none (no trial completed)")
    if summary.get("failures"):
        lines.append(f"  failed trials (first {len(summary['failures'])}):")
        for f in summary["failures"][:5]:
            lines.append(f"    #{f['number']}: {f['reason']}")
    if summary.get("hosts"):
        lines.append("  hosts      " + ", ".join(f"{h} {n}" for h, n in summary["hosts"].items()))
    kept = summary.get("kept_files")
    if kept:
        more = f", {kept['n_trials'] - len(kept['trials'])} more" if kept["n_trials"] > len(kept["trials"]) else ""
        lines.append(f"  kept files {kept['count']} (trials " + ", ".join(f"#{n}" for n in kept["trials"])
                     + f"{more}; optuna-spark report lists them)")
    if summary.get("mlflow"):
        from optuna_spark.tracking import format_tracking

        lines.append(f"  mlflow     {format_tracking(summary['mlflow'])}")
    if summary.get("wall_seconds") is not None:
        lines.append(f"  wall time  {summary['wall_seconds']:.1f} s")
    for err in summary.get("errors", []):
        where = f"task {err['index']} on {err['host']}" if err.get("index") is not None else "spark job"
        lines.append(f"  error      {where}: {err['error']}")
    return "\n".join(lines)


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True, default=str)
