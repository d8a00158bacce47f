"""Summaries of a study: counts by state, best trial, budget; as text or JSON. Pure functions."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from runner.ledger import finished_trials, retried_numbers


def _best(trials: list[Any], direction: str) -> Any | None:
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                and not math.isnan(t.value)]
    if not complete:
        return None
    pick = min if direction == "minimize" else max
    return pick(complete, key=lambda t: t.value)


def _direction_name(direction: Any) -> str:
    if isinstance(direction, (list, tuple)):
        direction = direction[0]
    return direction if isinstance(direction, str) else direction.name.lower()


def study_counts(trials: list[Any], budget: int | None, direction: Any) -> dict[str, Any]:
    """The live progress figures: finished / budget, running, best value so far."""
    states = Counter(t.state.name for t in trials)
    best = _best(trials, _direction_name(direction))
    return {
        "finished": finished_trials(trials),
        "budget": budget,
        "running": states.get("RUNNING", 0),
        "waiting": states.get("WAITING", 0),
        "failed": states.get("FAIL", 0),
        "best_value": None if best is None else best.value,
    }


def summarize(name: str, trials: list[Any], budget: int | None, direction: Any,
              wall: float | None = None, tasks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    direction = _direction_name(direction)
    states = Counter(t.state.name for t in trials)
    best = _best(trials, direction)
    retried = retried_numbers(trials)
    failures = [
        {"number": t.number, "reason": t.user_attrs.get("fail_reason", "no message stored"),
         "params": t.params}
        for t in trials if t.state.name == "FAIL" and t.number not in retried
    ]
    hosts = Counter(t.user_attrs.get("host") for t in trials if t.user_attrs.get("host"))
    return {
        "study": name,
        "direction": direction,
        "budget": budget,
        "finished": finished_trials(trials),
        "states": dict(sorted(states.items())),
        "retried_stale": len(retried),
        "best": None if best is None else {"number": best.number, "value": best.value,
                                            "params": best.params},
        "failures": failures[:20],
        "hosts": dict(sorted(hosts.items())),
        "tasks": [{k: v for k, v in t.items() if k != "traceback"} for t in (tasks or [])],
        "wall_seconds": None if wall is None else round(wall, 2),
        "errors": [],
    }


def format_progress(event: dict[str, Any]) -> str:
    budget = event.get("budget")
    done = f"{event['finished']}/{budget}" if budget else f"{event['finished']}"
    best = event.get("best_value")
    best_text = "-" if best is None else f"{best:.6g}"
    extra = f" · {event['failed']} failed" if event.get("failed") else ""
    return (f"[{event.get('elapsed', 0):7.1f}s] {done} finished · {event['running']} running"
            f"{extra} · best {best_text}")


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"study {summary['study']} ({summary['direction']})"]
    budget = summary.get("budget")
    lines.append(f"  finished   {summary['finished']}" + (f" of {budget}" if budget else ""))
    lines.append("  states     " + (", ".join(f"{k} {v}" for k, v in summary["states"].items()) or "no trial"))
    if summary.get("retried_stale"):
        lines.append(f"  retried    {summary['retried_stale']} stale trial(s) (their tasks died)")
    best = summary.get("best")
    if best:
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
    if summary.get("wall_seconds") is not None:
        lines.append(f"  wall time  {summary['wall_seconds']:.1f} s")
    for err in summary.get("errors", []):
        where = f"task {err['index']} on {err['host']}" if err.get("index") is not None else "spark job"
        lines.append(f"  error      {where}: {err['error']}")
    return "\n".join(lines)


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True, default=str)
