"""A study's report: an HTML page that opens with no network (plotly's script embedded once), the
same plots as PNG files (matplotlib, no browser needed), and `trials.csv` with every trial.

    optuna-spark report --study NAME --output-dir DIR      (`-` : a tar archive on stdout)

Plots: optimization history, parameter importances, parallel coordinates, slices, the Pareto
front (several objectives), and a timeline of trials per host (the `host` user attribute each
trial carries). A plot that the study cannot have (no finished trial, one parameter, ...) is left
out with the reason in the page. `rows()` and `timeline_spans()` are pure and unit-tested.

The files trials kept through Optuna's artifacts API (`--artifact-dir`: the models
`xgboost-wine` keeps) are listed in the page (file, trial, state, value, artifact id), each linked
to its file in the study's artifact folder: a relative link from the report's folder, or a
`file://` link when the report goes out as a tar (its folder is not known: the link is right on
the machine that made it). `artifact_rows()` is pure.
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

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
    """One span per started trial: host, lane, row, number, state, start, end (a running trial
    ends now). Trials that overlap on one host (its concurrent tasks) go to separate lanes, the
    first lane free at their start, so that none hides another; `row` is the host, with its lane
    number when the host has more than one."""
    spans = []
    for t in trials:
        if t.datetime_start is None:
            continue
        end = t.datetime_complete or now or t.datetime_start
        spans.append({"host": t.user_attrs.get("host") or UNKNOWN_HOST, "number": t.number,
                      "state": t.state.name, "start": t.datetime_start, "end": max(end, t.datetime_start)})
    spans.sort(key=lambda s: (s["host"], s["start"], s["number"]))
    lane_ends: dict[str, list[datetime.datetime]] = {}
    for s in spans:
        ends = lane_ends.setdefault(s["host"], [])
        lane = next((i for i, e in enumerate(ends) if e <= s["start"]), len(ends))
        if lane == len(ends):
            ends.append(s["end"])
        else:
            ends[lane] = s["end"]
        s["lane"] = lane
    for s in spans:
        s["row"] = s["host"] if len(lane_ends[s["host"]]) == 1 else f"{s['host']} #{s['lane'] + 1}"
    return spans


def timeline_rows(spans: list[dict[str, Any]]) -> list[str]:
    """The timeline's rows, top to bottom: hosts by name, each host's lanes in order."""
    return [row for _, _, row in sorted({(s["host"], s["lane"], s["row"]) for s in spans})]


STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#2ca02c",
                "WAITING": "#7f7f7f"}
TIMELINE_TITLE = "Trials per host over time (a host's concurrent trials on separate lanes)"


def timeline_plotly(spans: list[dict[str, Any]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for state in sorted({s["state"] for s in spans}):
        chosen = [s for s in spans if s["state"] == state]
        fig.add_trace(go.Bar(
            name=state, orientation="h", y=[s["row"] for s in chosen],
            x=[(s["end"] - s["start"]).total_seconds() * 1000 for s in chosen],
            base=[s["start"] for s in chosen], marker_color=STATE_COLORS.get(state, "#9467bd"),
            hovertext=[f"trial {s['number']}" for s in chosen]))
    rows = timeline_rows(spans)
    fig.update_layout(title=TIMELINE_TITLE, barmode="overlay", xaxis={"type": "date"},
                      yaxis={"title": "host", "categoryorder": "array", "categoryarray": rows[::-1]},
                      legend_title="state", height=max(350, 120 + 40 * len(rows)))
    return fig


def timeline_matplotlib(spans: list[dict[str, Any]]) -> Any:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = timeline_rows(spans)[::-1]  # the first row on top
    fig, ax = plt.subplots(figsize=(10, max(3.0, 1.4 + 0.5 * len(rows))))
    for s in spans:
        start = mdates.date2num(s["start"])  # type: ignore[no-untyped-call]
        width = mdates.date2num(s["end"]) - start  # type: ignore[no-untyped-call]
        ax.broken_barh([(start, width)], (rows.index(s["row"]) - 0.4, 0.8),
                       color=STATE_COLORS.get(s["state"], "#9467bd"))
    ax.set_yticks(range(len(rows)), rows)
    ax.xaxis_date()
    ax.set_title(TIMELINE_TITLE, fontsize=11)
    # Optuna stores each trial's start and end in the local time of the host that wrote them.
    ax.set_xlabel("time")
    states = sorted({s["state"] for s in spans})
    ax.legend(handles=[Patch(color=STATE_COLORS.get(state, "#9467bd"), label=state) for state in states],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), title="state")
    fig.tight_layout()
    return fig


def _maker(plot: Callable[..., Any], study: Any, kwargs: dict[str, Any]) -> Callable[[], Any]:
    return lambda: plot(study, **kwargs)


def _plots(study: Any) -> list[tuple[str, str, Callable[[], Any], Callable[[], Any]]]:
    """(file stem, title, plotly maker, matplotlib maker) of every plot the study can have."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm
    from optuna.study import StudyDirection

    directions = study.directions
    multi = len(directions) > 1
    out: list[tuple[str, str, Callable[[], Any], Callable[[], Any]]] = []
    targets = ([(None, "objective")] if not multi else
               [(i, f"objective {i}") for i in range(len(directions))])
    for index, label in targets:
        kw: dict[str, Any] = {} if index is None else {"target": (lambda t, i=index: t.values[i]),
                                                       "target_name": label}
        # With a target, importance evaluators look for low values: a maximized objective is negated.
        imp: dict[str, Any] = kw if index is None or directions[index] == StudyDirection.MINIMIZE else {
            "target": (lambda t, i=index: -t.values[i]), "target_name": f"{label} (maximized)"}
        suffix = "" if index is None else f"-{index}"
        for stem, title, name, args in (("history", "Optimization history", "plot_optimization_history", kw),
                                        ("importances", "Parameter importances", "plot_param_importances", imp),
                                        ("parallel", "Parallel coordinates", "plot_parallel_coordinate", kw),
                                        ("slice", "Slices", "plot_slice", kw)):
            out.append((f"{stem}{suffix}", f"{title} ({label})", _maker(getattr(pv, name), study, args),
                        _maker(getattr(pm, name), study, args)))
    if multi:
        out.append(("pareto-front", "Pareto front", _maker(pv.plot_pareto_front, study, {}),
                    _maker(pm.plot_pareto_front, study, {})))
    return out


def _figure_of(made: Any) -> Any:
    """matplotlib makers return Axes (or an array of them); the figure is what gets saved."""
    import numpy as np

    if isinstance(made, np.ndarray):
        made = made.flat[0]
    return made.figure if hasattr(made, "figure") and not hasattr(made, "savefig") else made


def artifact_rows(trials: Iterable[Any], artifact_dir: str | None, link_from: Path | None) -> list[dict[str, Any]]:
    """One row per file a trial kept (Optuna's artifacts API), by trial number then file name:
    number, state, value, filename, artifact_id, href (the file in `artifact_dir`, relative to
    `link_from`, or a file:// URI when `link_from` is None; None when the folder is not known). Pure."""
    import os
    from urllib.parse import quote

    from optuna_spark.tracking import trial_artifacts

    out = []
    for t in sorted(trials, key=lambda t: t.number):
        for meta in trial_artifacts(t):
            artifact_id = str(meta["artifact_id"])
            href = None
            if artifact_dir and os.path.basename(artifact_id) == artifact_id:
                target = os.path.join(artifact_dir, artifact_id)
                if link_from is None:
                    href = Path(os.path.abspath(target)).as_uri()
                else:
                    href = quote(Path(os.path.relpath(target, os.path.abspath(link_from))).as_posix())
            out.append({"number": t.number, "state": t.state.name,
                        "value": t.values[0] if t.values and len(t.values) == 1 else t.values,
                        "filename": str(meta["filename"]), "artifact_id": artifact_id, "href": href})
    return out


def artifact_section(table: list[dict[str, Any]], artifact_dir: str | None) -> str:
    """The page's list of kept files (empty when no trial kept one)."""
    if not table:
        return ""
    items = []
    for r in table:
        name = html.escape(r["filename"])
        link = (f"<a href='{html.escape(r['href'], quote=True)}' download='{html.escape(r['filename'], quote=True)}'>"
                f"{name}</a>" if r["href"] else name)
        value = r["value"]
        shown = f"{value:.6g}" if isinstance(value, float) else html.escape(str(value if value is not None else ""))
        items.append(f"<tr><td>{link}</td><td>{r['number']}</td><td>{html.escape(r['state'])}</td>"
                     f"<td>{shown}</td><td><code>{html.escape(r['artifact_id'])}</code></td></tr>")
    where = (f" in <code>{html.escape(artifact_dir)}</code>" if artifact_dir else
             " (the study's artifact folder is not recorded: fetch them by artifact id)")
    return (f"<section id='artifacts'><h2>Kept files</h2><p>{len(table)} file(s) kept by trials{where}.</p>"
            "<table><tr><th>file</th><th>trial</th><th>state</th><th>value</th><th>artifact id</th></tr>"
            + "".join(items) + "</table></section>")


def write(study: Any, out_dir: Path, *, now: datetime.datetime | None = None,
          relative_links: bool = True) -> dict[str, Any]:
    """Write report.html, one PNG per plot and trials.csv into `out_dir`; return what was made.
    Kept files are linked relative to `out_dir`, or with file:// links (`relative_links=False`:
    the report is moved elsewhere, a tar)."""
    import warnings

    import matplotlib

    from optuna_spark.tracking import study_artifact_dir

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna's importance evaluators warn about their own defaults (handled in _plots).
    warnings.filterwarnings("ignore", category=UserWarning, module=r"optuna\.importance")
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    columns, table = rows(trials, len(study.directions))
    write_csv(out_dir / "trials.csv", columns, table)
    made: list[str] = []
    skipped: dict[str, str] = {}
    sections: list[str] = []
    first = True

    def add(stem: str, title: str, make_plotly: Callable[[], Any], make_mpl: Callable[[], Any]) -> None:
        """Both renderings of one plot, or neither: the study cannot have this plot (too few
        trials, one parameter, ...) and the page says why."""
        nonlocal first
        try:
            fragment = make_plotly().to_html(full_html=False, include_plotlyjs=first, div_id=f"plot-{stem}",
                                             config={"displaylogo": False})
            figure = _figure_of(make_mpl())
            figure.savefig(out_dir / f"{stem}.png", dpi=100)
        except OSError:
            raise  # the folder, not the plot: the report cannot be written
        except Exception as exc:
            skipped[stem] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            (out_dir / f"{stem}.png").unlink(missing_ok=True)
            return
        finally:
            plt.close("all")
        sections.append(f"<section id='{stem}'><h2>{html.escape(title)}</h2>{fragment}</section>")
        first = False  # plotly's script goes once, with the first plot
        made.append(stem)

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    for stem, title, make_plotly, make_mpl in _plots(study):
        if not complete:
            skipped[stem] = "no completed trial yet"
        elif stem == "pareto-front" and len(study.directions) > 3:
            skipped[stem] = f"a Pareto front is drawn for 2 or 3 objectives, this study has {len(study.directions)}"
        else:
            add(stem, title, make_plotly, make_mpl)
    spans = timeline_spans(trials, now or datetime.datetime.now())
    if spans:
        add("timeline-hosts", "Trials per host over time", lambda: timeline_plotly(spans),
            lambda: timeline_matplotlib(spans))
    else:
        skipped["timeline-hosts"] = "no trial has started"
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    head = (f"<h1>Study {html.escape(study.study_name)}</h1><p>{len(trials)} trials: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + f"; directions {', '.join(d.name.lower() for d in study.directions)}."
            + " Every trial is in <a href='trials.csv'>trials.csv</a>.</p>")
    artifact_dir = study_artifact_dir(study)
    kept = artifact_rows(trials, artifact_dir, out_dir if relative_links else None)
    sections.append(artifact_section(kept, artifact_dir))
    notes = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in sorted(skipped.items()))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>optuna-spark report: {html.escape(study.study_name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}section{margin-bottom:2em}"
            "td,th{padding:0 1em 0 0;text-align:left}</style>"
            "</head><body>" + head + "".join(sections)
            + (f"<h2>Not drawn</h2><ul id='skipped'>{notes}</ul>" if notes else "") + "</body></html>")
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    summary = {"study": study.study_name, "trials": len(trials), "plots": made, "skipped": skipped,
               "files": ["report.html", "trials.csv", *(f"{m}.png" for m in made)],
               "artifact_dir": artifact_dir, "artifacts": kept}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def write_tar(directory: Path, fileobj: IO[bytes]) -> None:
    """The report folder's files as an uncompressed tar stream, names without a folder (for
    `--output-dir -`: `... | tar -x -C DIR` puts them in DIR)."""
    import tarfile

    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.iterdir()):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)


def tar_of(directory: Path) -> bytes:
    """The report folder as an uncompressed tar, in memory."""
    buf = io.BytesIO()
    write_tar(directory, buf)
    return buf.getvalue()
