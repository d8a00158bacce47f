"""The XGBoost study keeps its best trials' models (--artifact-dir) through Optuna's artifacts API,
and the report links them. Real spark-submit in local mode, real XGBoost."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import TrialState

from optuna_spark.objectives.xgboost_wine import KEEP_BEST, load_split
from optuna_spark.tracking import trial_artifacts

pytestmark = pytest.mark.spark

N_TRIALS = 5


def _better(trial: optuna.trial.FrozenTrial, others: list[optuna.trial.FrozenTrial], before) -> int:
    """How many COMPLETE trials that ended before `before` have a strictly lower RMSE."""
    return sum(1 for o in others if o.number != trial.number and o.datetime_complete < before
               and o.value < trial.value)


def test_the_best_trials_keep_their_models_and_the_report_links_them(run_cli, tmp_path: Path) -> None:
    import xgboost
    from sklearn.metrics import root_mean_squared_error

    art = tmp_path / "models"
    proc = run_cli("tune", "--study", "m", "--objective", "xgboost-wine", "--n-trials", str(N_TRIALS),
                   "--n-jobs", "2", "--seed", "0", "--artifact-dir", str(art), "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    study = optuna.load_study(study_name="m", storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}")
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == N_TRIALS and len(complete) == N_TRIALS

    kept = {t.number: trial_artifacts(t) for t in trials if trial_artifacts(t)}
    files = sorted(p.name for p in art.iterdir())
    # One model per keeping trial, nothing else in the folder; at least the first K trials keep one.
    assert all(len(metas) == 1 for metas in kept.values())
    assert sorted(m[0]["artifact_id"] for m in kept.values()) == files
    assert KEEP_BEST <= len(files) <= N_TRIALS
    assert study.best_trial.number in kept
    assert summary["kept_files"]["count"] == len(files)
    for t in complete:
        # Among the best K at its end: what had ended before it started was all seen (an upper
        # bound on what beat it then); what had ended before it ended, at most (a lower bound).
        if t.number in kept:
            assert _better(t, complete, t.datetime_start) < KEEP_BEST, t.number
        if _better(t, complete, t.datetime_complete) < KEEP_BEST:
            assert t.number in kept, f"trial {t.number} was among the best {KEEP_BEST} and kept no model"

    _, x_valid, _, y_valid = load_split()
    store = FileSystemArtifactStore(str(art))
    for number, (meta,) in kept.items():
        assert meta["filename"] == f"model-trial-{number}.json"
        path = tmp_path / f"fetched-{number}.json"
        download_artifact(artifact_store=store, artifact_id=meta["artifact_id"], file_path=str(path))
        model = xgboost.XGBRegressor()
        model.load_model(str(path))
        rmse = root_mean_squared_error(y_valid, model.predict(x_valid))
        assert rmse == pytest.approx(study.trials[number].value, rel=1e-5)  # the very model the trial scored

    report = tmp_path / "report"
    proc = run_cli("report", "--study", "m", "--output-dir", str(report), "--output", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = json.loads(proc.stdout)["artifacts"]
    assert sorted(r["artifact_id"] for r in listed) == files
    page = (report / "report.html").read_text()
    for r in listed:
        assert f"href='{r['href']}'" in page and r["filename"] in page
        assert not r["href"].startswith(("/", "file:"))  # relative: the report folder and the models move together
        assert (report / unquote(r["href"])).resolve() == (art / r["artifact_id"]).resolve()
        assert r["number"] in kept and r["value"] == pytest.approx(study.trials[r["number"]].value)
