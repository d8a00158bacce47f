"""The studies users run, on real spark-submit: several objectives (a Pareto front in the summary,
`status` and `best`), each sampler, pruning of the XGBoost study round by round, user callbacks."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from optuna_spark.ledger import finished_trials

pytestmark = pytest.mark.spark

TWO_OBJECTIVES = """
def objective(trial):
    x = trial.suggest_float("x", 0, 5)
    y = trial.suggest_float("y", 0, 3)
    return 4 * x * x + 4 * y * y, (x - 5) ** 2 + (y - 5) ** 2
"""


def load(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}")


def test_two_objectives_give_a_pareto_front_in_the_summary_status_and_best(run_cli, tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(TWO_OBJECTIVES)
    proc = run_cli("tune", "--study", "mo", "--objective", "two:objective", "--direction", "minimize",
                   "--direction", "minimize", "--sampler", "nsga2", "--seed", "3", "--n-trials", "16",
                   "--n-jobs", "2", "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    study = load(tmp_path, "mo")
    assert summary["finished"] == 16 == len(study.trials) and summary["direction"] == ["minimize", "minimize"]
    expected = sorted(t.number for t in study.best_trials)
    assert [t["number"] for t in summary["pareto_front"]] == expected and summary["best"] is None
    assert "Pareto front" in proc.stderr  # the progress line

    status = run_cli("status", "--study", "mo")
    assert status.returncode == 0, status.stderr
    assert "study mo (minimize, minimize)" in status.stdout and f"Pareto front {len(expected)} trial(s)" in status.stdout
    best = run_cli("best", "--study", "mo", "--output", "json")
    assert best.returncode == 0, best.stderr
    assert [t["number"] for t in json.loads(best.stdout)["pareto_front"]] == expected
    text = run_cli("best", "--study", "mo")
    assert text.returncode == 0 and text.stdout.startswith(f"Pareto front of {len(expected)} trial(s)")
    # The same study with one direction is refused before anything runs.
    again = run_cli("tune", "--study", "mo", "--objective", "two:objective", "--n-trials", "20")
    assert again.returncode == 2
    assert again.stderr.strip().endswith("exists with direction minimize, minimize, not minimize: pick another "
                                         "--study or --direction")


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "nsga2", "qmc"])
def test_each_sampler_runs_the_study_to_its_budget(run_cli, tmp_path: Path, sampler: str) -> None:
    proc = run_cli("tune", "--study", sampler, "--sampler", sampler, "--seed", "7", "--n-trials", "10",
                   "--n-jobs", "2", "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(tmp_path, sampler).trials
    assert json.loads(proc.stdout)["finished"] == 10 == len(trials) == finished_trials(trials)
    points = {(t.params["x"], t.params["y"]) for t in trials}
    assert len(points) == 10  # two tasks with their own seeds (QMC: one sequence) never repeat a point


def test_the_xgboost_study_is_pruned_round_by_round(run_cli, tmp_path: Path) -> None:
    proc = run_cli("tune", "--study", "xp", "--objective", "xgboost-wine", "--pruner", "median", "--seed", "0",
                   "--n-trials", "9", "--n-jobs", "1", "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(tmp_path, "xp").trials
    assert json.loads(proc.stdout)["finished"] == 9 == len(trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert all(len(t.intermediate_values) == 1000 for t in complete)  # one report per boosting round
    assert pruned and all(len(t.intermediate_values) < 1000 for t in pruned)
    assert all(abs(t.intermediate_values[999] - t.value) < 1e-3 for t in complete)


def test_user_callbacks_run_after_each_trial_and_can_stop_the_study(run_cli, tmp_path: Path) -> None:
    log = tmp_path / "seen.txt"
    (tmp_path / "hooks.py").write_text(
        "def record(study, trial):\n"
        f"    with open({str(log)!r}, 'a') as fh:\n"
        "        fh.write(f'{trial.number} {trial.state.name}\\n')\n"
        "\n"
        "def stop_after_six(study, trial):\n"
        "    if len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]) >= 6:\n"
        "        study.stop()\n")
    proc = run_cli("tune", "--study", "cb", "--callback", "hooks:record", "--n-trials", "8", "--n-jobs", "2",
                   "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = sorted(log.read_text().splitlines(), key=lambda line: int(line.split()[0]))
    assert seen == [f"{n} COMPLETE" for n in range(8)]
    proc = run_cli("tune", "--study", "cb-stop", "--callback", "hooks.py:stop_after_six", "--n-trials", "40",
                   "--n-jobs", "1", "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(load(tmp_path, "cb-stop").trials) == 6
