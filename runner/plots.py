"""A study's report: an HTML page that opens with no network (plotly's script embedded once), the
same plots as PNG files (matplotlib, no browser needed), and `trials.csv` with every trial.

    optuna-spark report --study NAME --output-dir DIR      (`-` : a tar archive on stdout)

Plots: optimization history, parameter importances, parallel coordinates, slices, the Pareto
front (several objectives), and a timeline of trials per host (the `host` user attribute each
trial carries). A plot that the study cannot have (no finished trial, one parameter, ...) is left
out with the reason in the page. `rows()` and `timeline_spans()` are pure and unit-tested.
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

UNKNOWN_HOST = "?"


def _iso(value: datetime.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def rows(trials: Iterable[Any], n_objectives: int) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, one dict per trial): number, state, values, params, host, start, end, duration."""
    trials = sorted(trials, key=lambda t: t.number)
    params = sorted({name for t in trials for name in t.params})
    values = ["value"] if n_objectives == 1 else [f"value_{i}" for i in range(n_objectives)]
    columns = ["number", "state", *values, *(f"param_{p}" for p in params), "host", "datetime_start",
               "datetime_complete", "duration_s", "fail_reason"]
    out = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for i, name in enumerate(values):
            row[name] = t.values[i] if t.values is not None and i < len(t.values) else ""
        for p in params:
            row[f"param_{p}"] = t.params.get(p, "")
        row["host"] = t.user_attrs.get("host", "")
        row["datetime_start"] = _iso(t.datetime_start)
        row["datetime_complete"] = _iso(t.datetime_complete)
        row["duration_s"] = (round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
                             if t.datetime_start and t.datetime_complete else "")
        row["fail_reason"] = t.user_attrs.get("fail_reason", "")
        out.append(row)
    return columns, out


def write_csv(path: Path, columns: list[str], table: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)


def timeline_spans(trials: Iterable[Any], now: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """One span per started trial: host, number, state, start, end (a running trial ends now)."""
    spans = []
    for t in trials:
        if t.datetime_start is None:
            continue
        end = t.datetime_complete or now or t.datetime_start
        spans.append({"host": t.user_attrs.get("host") or UNKNOWN_HOST, "number": t.number,
                      "state": t.state.name, "start": t.datetime_start, "end": end})
    return sorted(spans, key=lambda s: (s["host"], s["start"]))


STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#2ca02c",
                "WAITING": "#7f7f7f"}


def timeline_plotly(spans: list[dict[str, Any]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for state in sorted({s["state"] for s in spans}):
        chosen = [s for s in spans if s["state"] == state]
        fig.add_trace(go.Bar(
            name=state, orientation="h", y=[s["host"] for s in chosen],
            x=[(s["end"] - s["start"]).total_seconds() * 1000 for s in chosen],
            base=[s["start"] for s in chosen], marker_color=STATE_COLORS.get(state, "#9467bd"),
            hovertext=[f"trial {s['number']}" for s in chosen]))
    fig.update_layout(title="Trials per host over time", barmode="overlay", xaxis={"type": "date"},
                      yaxis={"title": "host"}, legend_title="state")
    return fig


def timeline_matplotlib(spans: list[dict[str, Any]]) -> Any:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    hosts = sorted({s["host"] for s in spans})
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.6 * len(hosts)))
    for s in spans:
        start = mdates.date2num(s["start"])
        width = mdates.date2num(s["end"]) - start
        ax.broken_barh([(start, width)], (hosts.index(s["host"]) - 0.4, 0.8),
                       color=STATE_COLORS.get(s["state"], "#9467bd"))
    ax.set_yticks(range(len(hosts)), hosts)
    ax.xaxis_date()
    ax.set_title("Trials per host over time")
    ax.set_xlabel("time (UTC)")
    fig.tight_layout()
    return fig


def _plots(study: Any) -> list[tuple[str, str, Callable[[], Any], Callable[[], Any]]]:
    """(file stem, title, plotly maker, matplotlib maker) of every plot the study can have."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    directions = study.directions
    multi = len(directions) > 1
    out = []
    targets = ([(None, "objective")] if not multi else
               [(i, f"objective {i}") for i in range(len(directions))])
    for index, label in targets:
        kw: dict[str, Any] = {} if index is None else {"target": (lambda t, i=index: t.values[i]),
                                                       "target_name": label}
        suffix = "" if index is None else f"-{index}"
        out.append((f"history{suffix}", f"Optimization history ({label})",
                    lambda kw=kw: pv.plot_optimization_history(study, **kw),
                    lambda kw=kw: pm.plot_optimization_history(study, **kw)))
        out.append((f"importances{suffix}", f"Parameter importances ({label})",
                    lambda kw=kw: pv.plot_param_importances(study, **kw),
                    lambda kw=kw: pm.plot_param_importances(study, **kw)))
        out.append((f"parallel{suffix}", f"Parallel coordinates ({label})",
                    lambda kw=kw: pv.plot_parallel_coordinate(study, **kw),
                    lambda kw=kw: pm.plot_parallel_coordinate(study, **kw)))
        out.append((f"slice{suffix}", f"Slices ({label})",
                    lambda kw=kw: pv.plot_slice(study, **kw), lambda kw=kw: pm.plot_slice(study, **kw)))
    if multi and len(directions) in (2, 3):
        out.append(("pareto-front", "Pareto front", lambda: pv.plot_pareto_front(study),
                    lambda: pm.plot_pareto_front(study)))
    return out


def _figure_of(made: Any) -> Any:
    """matplotlib makers return Axes (or an array of them); the figure is what gets saved."""
    import numpy as np

    if isinstance(made, np.ndarray):
        made = made.flat[0]
    return made.figure if hasattr(made, "figure") and not hasattr(made, "savefig") else made


def write(study: Any, out_dir: Path, *, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Write report.html, one PNG per plot and trials.csv into `out_dir`; return what was made."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    columns, table = rows(trials, len(study.directions))
    write_csv(out_dir / "trials.csv", columns, table)
    made: list[str] = []
    skipped: dict[str, str] = {}
    sections: list[str] = []
    first = True

    def add(stem: str, title: str, plotly_fig: Any, mpl: Callable[[], Any]) -> None:
        nonlocal first
        sections.append(f"<section id='{stem}'><h2>{html.escape(title)}</h2>"
                        + plotly_fig.to_html(full_html=False, include_plotlyjs="inline" if first else False,
                                             div_id=f"plot-{stem}", config={"displaylogo": False})
                        + "</section>")
        first = False
        figure = _figure_of(mpl())
        figure.savefig(out_dir / f"{stem}.png", dpi=100)
        plt.close(figure)
        made.append(stem)

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    for stem, title, make_plotly, make_mpl in _plots(study):
        if not complete:
            skipped[stem] = "no completed trial yet"
            continue
        try:
            add(stem, title, make_plotly(), make_mpl)
        except Exception as exc:  # the study cannot have this plot (no finished trial, one parameter, ...)
            skipped[stem] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            plt.close("all")
    spans = timeline_spans(trials, now or datetime.datetime.now())
    if spans:
        add("timeline-hosts", "Trials per host over time", timeline_plotly(spans), lambda: timeline_matplotlib(spans))
    else:
        skipped["timeline-hosts"] = "no trial has started"
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    head = (f"<h1>Study {html.escape(study.study_name)}</h1><p>{len(trials)} trials: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + f"; directions {', '.join(d.name.lower() for d in study.directions)}."
            + " Every trial is in <a href='trials.csv'>trials.csv</a>.</p>")
    notes = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in sorted(skipped.items()))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>optuna-spark report: {html.escape(study.study_name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}section{margin-bottom:2em}</style>"
            "</head><body>" + head + "".join(sections)
            + (f"<h2>Not drawn</h2><ul id='skipped'>{notes}</ul>" if notes else "") + "</body></html>")
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    summary = {"study": study.study_name, "trials": len(trials), "plots": made, "skipped": skipped,
               "files": ["report.html", "trials.csv", *(f"{m}.png" for m in made)]}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def tar_of(directory: Path) -> bytes:
    """The report folder as an uncompressed tar (for `--output-dir -`: sent on stdout)."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return buf.getvalue()
