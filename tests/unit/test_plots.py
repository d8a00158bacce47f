"""The report's pure parts: the trials table and the per-host timeline spans."""

from __future__ import annotations

import datetime

from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_spark.plots import UNKNOWN_HOST, rows, timeline_spans

T0 = datetime.datetime(2026, 11, 29, 10, 0, 0)


def trial(number: int, state: TrialState, value=None, host: str | None = "worker1", start=0.0, end=1.5, **params):
    t = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                     params=params, distributions={k: FloatDistribution(-10, 10) for k in params},
                     user_attrs={"host": host} if host else {})
    t.number = number
    t.datetime_start = T0 + datetime.timedelta(seconds=start) if start is not None else None
    t.datetime_complete = (T0 + datetime.timedelta(seconds=end)) if end is not None and state.is_finished() else None
    return t


def test_rows_have_one_line_per_trial_with_every_parameter_and_the_host() -> None:
    trials = [trial(1, TrialState.COMPLETE, 2.5, x=1.0), trial(0, TrialState.FAIL, host="worker2", y=3.0)]
    trials[1].user_attrs["fail_reason"] = "ValueError: boom"
    columns, table = rows(trials, 1)
    assert columns == ["number", "state", "value", "param_x", "param_y", "host", "datetime_start",
                       "datetime_complete", "duration_s", "fail_reason"]
    assert [r["number"] for r in table] == [0, 1]
    assert table[0] == {"number": 0, "state": "FAIL", "value": "", "param_x": "", "param_y": 3.0, "host": "worker2",
                             "datetime_start": "2026-11-29T10:00:00", "datetime_complete": "2026-11-29T10:00:01",
                             "duration_s": 1.5, "fail_reason": "ValueError: boom"}
    assert table[1]["value"] == 2.5 and table[1]["param_x"] == 1.0


def test_rows_of_a_multi_objective_study_have_a_column_per_objective() -> None:
    t = create_trial(state=TrialState.COMPLETE, values=[1.0, 2.0], params={}, distributions={})
    t.number = 0
    columns, table = rows([t], 2)
    assert "value_0" in columns and "value_1" in columns and "value" not in columns
    assert (table[0]["value_0"], table[0]["value_1"]) == (1.0, 2.0)


def test_timeline_spans_per_host_running_trials_end_now_waiting_ones_are_left_out() -> None:
    now = T0 + datetime.timedelta(seconds=30)
    running = trial(2, TrialState.RUNNING, start=10, end=None)
    waiting = trial(3, TrialState.WAITING, start=None, end=None)
    no_host = trial(4, TrialState.COMPLETE, 1.0, host=None, start=5, end=6)
    spans = timeline_spans([trial(1, TrialState.COMPLETE, 1.0, host="worker2"), running, waiting, no_host], now)
    assert [(s["host"], s["number"]) for s in spans] == [(UNKNOWN_HOST, 4), ("worker1", 2), ("worker2", 1)]
    assert spans[1]["end"] == now and spans[1]["state"] == "RUNNING"



def test_overlapping_trials_of_one_host_go_to_separate_lanes() -> None:
    """Two tasks on one host: their trials overlap in time and would hide each other on one row."""
    from optuna_spark.plots import timeline_rows

    trials = [trial(0, TrialState.COMPLETE, 1.0, start=0, end=4), trial(1, TrialState.COMPLETE, 1.0, start=1, end=2),
              trial(2, TrialState.COMPLETE, 1.0, start=2, end=3), trial(3, TrialState.COMPLETE, 1.0, start=2.5, end=5),
              trial(4, TrialState.COMPLETE, 1.0, host="worker2", start=0, end=9)]
    spans = timeline_spans(trials)
    lanes = {s["number"]: (s["lane"], s["row"]) for s in spans}
    assert lanes == {0: (0, "worker1 #1"), 1: (1, "worker1 #2"), 2: (1, "worker1 #2"), 3: (2, "worker1 #3"),
                     4: (0, "worker2")}
    assert timeline_rows(spans) == ["worker1 #1", "worker1 #2", "worker1 #3", "worker2"]


def kept(t, artifact_id: str, filename: str):
    import json

    t._system_attrs[f"artifacts:{artifact_id}"] = json.dumps(
        {"artifact_id": artifact_id, "filename": filename, "mimetype": "application/json", "encoding": None})
    return t


def test_artifact_rows_link_each_kept_file_relative_to_the_report_or_as_a_file_uri(tmp_path) -> None:
    from optuna_spark.plots import artifact_rows, artifact_section

    trials = [kept(trial(3, TrialState.COMPLETE, 0.5, x=1.0), "id-3", "model-trial-3.json"),
              trial(2, TrialState.COMPLETE, 0.4, x=2.0),
              kept(trial(1, TrialState.COMPLETE, 0.6, x=3.0), "id-1", "model-trial-1.json")]
    models, report = tmp_path / "work" / "artifacts", tmp_path / "reports" / "s"
    table = artifact_rows(trials, str(models), report)
    assert [(r["number"], r["filename"], r["artifact_id"], r["value"]) for r in table] == [
        (1, "model-trial-1.json", "id-1", 0.6), (3, "model-trial-3.json", "id-3", 0.5)]
    assert table[0]["href"] == "../../work/artifacts/id-1" and (report / table[0]["href"]).resolve() == models / "id-1"
    assert artifact_rows(trials, str(models), None)[0]["href"] == (models / "id-1").as_uri()
    # The folder not known: listed by artifact id, no link.
    assert [r["href"] for r in artifact_rows(trials, None, report)] == [None, None]
    page = artifact_section(table, str(models))
    assert "<a href='../../work/artifacts/id-1' download='model-trial-1.json'>model-trial-1.json</a>" in page
    assert "<code>id-3</code>" in page and "0.5" in page
    assert "href" not in artifact_section(artifact_rows(trials, None, report), None)
    assert artifact_section([], str(models)) == ""


def test_an_artifact_id_that_is_a_path_gets_no_link(tmp_path) -> None:
    from optuna_spark.plots import artifact_rows

    table = artifact_rows([kept(trial(0, TrialState.COMPLETE, 1.0, x=1.0), "../../etc/passwd", "x")],
                          str(tmp_path), tmp_path)
    assert table[0]["href"] is None
