from __future__ import annotations

import json

import optuna

from optuna_spark.report import format_progress, format_summary, study_counts, summarize


def make_study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_int("x", 0, 9)
        trial.set_user_attr("host", "worker1" if x % 2 else "worker2")
        if x == 0:
            trial.set_user_attr("fail_reason", "ValueError: zero")
            raise ValueError("zero")
        return float(x)

    for x in (3, 0, 7):
        study.enqueue_trial({"x": x})
    study.optimize(objective, n_trials=3, catch=(ValueError,))
    return study


def test_summary_counts_best_failures_and_hosts() -> None:
    study = make_study()
    s = summarize("s", study.trials, 3, study.direction, wall=1.234)
    assert s["finished"] == 3 and s["budget"] == 3
    assert s["states"] == {"COMPLETE": 2, "FAIL": 1}
    assert s["best"] == {"number": 2, "value": 7.0, "params": {"x": 7}}
    assert s["failures"] == [{"number": 1, "reason": "ValueError: zero", "params": {"x": 0}}]
    assert s["hosts"] == {"worker1": 2, "worker2": 1}
    json.dumps(s)
    text = format_summary(s)
    assert "finished   3 of 3" in text and "best value 7 (trial 2)" in text and "#1: ValueError: zero" in text


def test_progress_line() -> None:
    study = make_study()
    counts = study_counts(study.trials, 10, "maximize")
    assert counts == {"finished": 3, "budget": 10, "running": 0, "waiting": 0, "failed": 1, "best_value": 7.0}
    assert format_progress({**counts, "elapsed": 2.0}) == "[    2.0s] 3/10 finished · 0 running · 1 failed · best 7"


def test_two_objectives_are_summarized_by_their_pareto_front() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["minimize", "maximize"])
    for x, y in ((1, 1), (2, 3), (3, 2), (0, 0)):  # (3, 2) is dominated by (2, 3)
        study.enqueue_trial({"x": x, "y": y})
    study.optimize(lambda t: (t.suggest_int("x", 0, 9), t.suggest_int("y", 0, 9)), n_trials=4)
    s = summarize("mo", study.trials, 4, study.directions)
    assert s["direction"] == ["minimize", "maximize"] and s["best"] is None
    assert [t["number"] for t in s["pareto_front"]] == [0, 1, 3]
    assert s["pareto_front"][1] == {"number": 1, "values": [2.0, 3.0], "params": {"x": 2, "y": 3}}
    text = format_summary(s)
    assert "study mo (minimize, maximize)" in text and "Pareto front 3 trial(s)" in text and "#1: (2, 3) x=2, y=3" in text
    counts = study_counts(study.trials, 4, study.directions)
    assert counts["pareto"] == 3 and "best_value" not in counts
    assert format_progress({**counts, "elapsed": 1.0}).endswith("· Pareto front 3")


# ---------------------------------------------------------------- the progress bar of a terminal

import pytest  # noqa: E402

from optuna_spark.report import format_duration, format_progress_bar, progress_rate, time_left  # noqa: E402


def test_durations_read_as_a_clock() -> None:
    assert [format_duration(s) for s in (0, 7.4, 59.6, 754, 3723)] == ["0:00", "0:07", "1:00", "12:34", "1:02:03"]


def test_the_rate_counts_only_this_runs_trials() -> None:
    event = {"finished": 50, "previous": 30, "elapsed": 10.0, "budget": 100}
    assert progress_rate(event) == 2.0
    assert time_left(event) == 25.0  # 50 left at 2 per second
    assert progress_rate({"finished": 30, "previous": 30, "elapsed": 10.0}) is None  # nothing done yet
    assert time_left({"finished": 30, "previous": 30, "elapsed": 10.0, "budget": 100}) is None
    assert time_left({"finished": 100, "elapsed": 10.0, "budget": 100}) == 0.0
    # A time budget: what is left of it, or the trial budget's end if that comes first.
    assert time_left({"finished": 5, "elapsed": 10.0, "budget": None}, timeout=60) == 50.0
    assert time_left({"finished": 50, "elapsed": 10.0, "budget": 60}, timeout=60) == 2.0


def test_the_bar_shows_finished_of_budget_rate_time_left_and_best() -> None:
    event = {"finished": 50, "previous": 0, "budget": 200, "running": 4, "failed": 2, "elapsed": 25.0,
             "best_value": 0.123456789}
    line = format_progress_bar(event, 140)
    assert line == ("0:25 50/200 [##########..............................]  25% · 4 running · 2 failed"
                    " · 2 trials/s · 1:15 left · best 0.123457")
    shorter = format_progress_bar(event, 120)
    assert shorter.startswith("0:25 50/200 [#########...........................]  25% · 4 running")
    assert len(shorter) == 119  # the bar fills the line but never its last column: the terminal would wrap


def test_the_bar_shrinks_then_goes_in_a_narrow_terminal_and_never_wraps() -> None:
    event = {"finished": 1, "budget": 4, "running": 2, "elapsed": 3.0, "best_value": None}
    wide, narrow, tiny = (format_progress_bar(event, w) for w in (200, 80, 30))
    assert "[##########.............................." in wide and "]  25%" in wide
    assert "[" in narrow and len(narrow) <= 79 and narrow.endswith("best -")
    assert "[" not in tiny and len(tiny) <= 29 and tiny.startswith("0:03 1/4  25%")


def test_the_bar_of_a_time_budget_and_of_a_pareto_front() -> None:
    line = format_progress_bar({"finished": 7, "budget": None, "running": 1, "elapsed": 30.0, "pareto": 3},
                               120, timeout=120)
    assert line.startswith("0:30 7 [##########..............................]  25%")
    assert line.endswith("0.233 trials/s · 1:30 left · Pareto front 3")
    unbounded = format_progress_bar({"finished": 0, "budget": None, "running": 0, "elapsed": 1.0}, 120)
    assert unbounded == "0:01 0 · 0 running · - trials/s · ? left · best -"


def test_a_terminal_gets_one_redrawn_line_a_pipe_plain_lines() -> None:
    import io

    from optuna_spark.cli import ProgressView, progress_bar_wanted

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    event = {"finished": 1, "budget": 4, "running": 2, "failed": 0, "elapsed": 3.0, "best_value": 2.5}
    screen = Terminal()
    view = ProgressView(screen, bar=True)
    view.progress(event)
    view.line("optuna-spark: warning: slow")
    view.progress({**event, "finished": 2, "elapsed": 4.0})
    view.close()
    text = screen.getvalue()
    assert text.startswith("\r0:03 1/4 [") and text.endswith("\n") and text.count("\n") == 2
    assert "\r\x1b[Koptuna-spark: warning: slow\n0:03 1/4 [" in text and "\r0:04 2/4 [" in text

    pipe = io.StringIO()
    plain = ProgressView(pipe, bar=False)
    plain.progress(event)
    plain.line("optuna-spark: warning: slow")
    plain.close()
    assert pipe.getvalue() == ("[    3.0s] 1/4 finished · 2 running · best 2.5\n"
                               "optuna-spark: warning: slow\n")
    assert progress_bar_wanted(Terminal(), {"TERM": "xterm"}, verbose=False)
    assert not progress_bar_wanted(Terminal(), {"TERM": "dumb"}, verbose=False)
    assert not progress_bar_wanted(Terminal(), {"TERM": "xterm"}, verbose=True)  # Spark's log shares stderr
    assert not progress_bar_wanted(io.StringIO(), {"TERM": "xterm"}, verbose=False)


def test_the_rate_is_smoothed_over_the_intervals_since_the_first_trial_started() -> None:
    from optuna_spark.report import smoothed_rate

    start = {"finished": 10, "previous": 10, "running": 0, "elapsed": 1.0}     # Spark starting
    began = {"finished": 10, "previous": 10, "running": 2, "elapsed": 4.0}     # trials running
    four = {"finished": 14, "previous": 10, "running": 2, "elapsed": 5.0}
    six = {"finished": 16, "previous": 10, "running": 2, "elapsed": 6.0}
    assert smoothed_rate(None, None, start) is None
    assert smoothed_rate(None, start, began) is None  # start-up does not count
    rate = smoothed_rate(None, began, four)
    assert rate == 4.0
    assert smoothed_rate(rate, four, six) == pytest.approx(0.3 * 2.0 + 0.7 * 4.0)
    assert smoothed_rate(rate, four, {**four}) == rate  # no time passed
    line = format_progress_bar({**four, "budget": 30, "best_value": 1.0}, 140, rate=rate)
    assert " · 4 trials/s · 0:04 left · " in line  # 16 left at 4 per second


def test_the_summary_counts_the_files_trials_kept() -> None:
    from optuna.trial import TrialState, create_trial

    from optuna_spark.report import kept_files

    study = make_study()
    assert "kept_files" not in summarize("s", study.trials, 3, study.direction)
    trials = [create_trial(state=TrialState.COMPLETE, value=float(i),
                           system_attrs={f"artifacts:id-{i}": json.dumps({"artifact_id": f"id-{i}",
                                                                           "filename": f"model-trial-{i}.json"})}
                           if i % 2 else {}) for i in range(5)]
    for i, t in enumerate(trials):
        t.number = i
    assert kept_files(trials) == {"count": 2, "trials": [1, 3], "n_trials": 2}
    s = summarize("s", trials, 5, "minimize")
    assert s["kept_files"]["count"] == 2
    assert "kept files 2 (trials #1, #3;" in format_summary(s)


def test_a_trial_keeps_its_model_when_among_the_best_k() -> None:
    from optuna_spark.objectives.xgboost_wine import KEEP_BEST, among_best

    assert KEEP_BEST == 3
    assert among_best(0.9, [])                                  # the first trials always keep
    assert among_best(0.5, [0.1, 0.2, 0.6, 0.7])                # third best
    assert not among_best(0.5, [0.1, 0.2, 0.3])                 # fourth
    assert among_best(0.3, [0.1, 0.2, 0.3])                     # a tie keeps
    assert among_best(0.5, [0.1, 0.9], k=2) and not among_best(0.5, [0.1, 0.2], k=2)
    assert among_best(5.0, [9.0, 8.0, 1.0], maximize=True) and not among_best(5.0, [9.0, 8.0, 7.0], maximize=True)
    assert not among_best(float("nan"), []) and not among_best(0.1, [], k=0)
