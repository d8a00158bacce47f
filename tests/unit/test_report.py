from __future__ import annotations

import json

import optuna

from runner.report import format_progress, format_summary, study_counts, summarize


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
