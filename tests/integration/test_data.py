"""`tune --data` through a real spark-submit in local mode: CSV and Parquet reach the objective,
every trial sees every row, each task loads the data once; xgboost-wine on a user's table; every
refusal is one line, exit 2, and no study or trial is written."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from test_bad_input import one_line_error, studies_in

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
WINE_CSV = ROOT / "runner" / "optuna_spark" / "data" / "winequality-red.csv"

# Records what each trial saw: the rows, a checksum of the table, the Python worker's pid, how
# many times that process unpickled a data set; then changes its data in place, which no later
# trial may see (each trial gets its own copy-on-write copy of the task's frame).
OBJECTIVE = """
import os
from optuna_spark import dataset

def objective(trial, data):
    x = trial.suggest_float("x", 0, 1)
    trial.set_user_attr("rows", len(data))
    trial.set_user_attr("columns", list(map(str, data.columns)))
    trial.set_user_attr("checksum", float(data.select_dtypes("number").to_numpy().sum()))
    trial.set_user_attr("target", data.attrs.get("target"))
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("loads", dataset.load_count())
    data.iloc[0, 0] = 1e9
    data[data.columns[-1]] *= 2
    data["added_by_a_trial"] = 1
    data.drop(columns=[data.columns[0]], inplace=True)
    return x
"""


def wine() -> pd.DataFrame:
    return pd.read_csv(WINE_CSV, sep=";")


def tune(run_cli, *args: str) -> dict:
    proc = run_cli("tune", "--objective", "seen.py:objective", "--n-trials", "16", "--n-jobs", "2",
                   "--master", "local[2]", "--output", "json", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout) | {"stderr": proc.stderr}


def trials(tmp_path: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}").trials


@pytest.fixture
def seen(tmp_path: Path) -> Path:
    (tmp_path / "seen.py").write_text(OBJECTIVE)
    return tmp_path / "seen.py"


def test_csv_and_parquet_reach_every_trial_loaded_once_per_task(run_cli, tmp_path: Path, seen: Path) -> None:
    table = wine()
    checksum = float(table.to_numpy().sum())
    table.to_parquet(tmp_path / "wine.parquet")
    table.to_csv(tmp_path / "wine.tsv", sep="\t", index=False, header=False)
    (tmp_path / "shared").mkdir()
    table.to_parquet(tmp_path / "shared" / "wine.parquet")
    runs = {
        # A file of the driver: read by the command line, shipped through a broadcast.
        "csv": ["--data", str(WINE_CSV), "--data-sep", ";", "--target", "quality"],
        "parquet": ["--data", "wine.parquet"],
        "tsv-no-header": ["--data", "wine.tsv", "--data-sep", "\\t", "--data-header", "false",
                          "--target", "_c11"],
        # A URL: read by spark.read in the Spark application (here the local file system).
        "spark-read": ["--data", (tmp_path / "shared" / "wine.parquet").as_uri(), "--target", "quality"],
    }
    for name, args in runs.items():
        s = tune(run_cli, "--study", name, *args)
        assert s["finished"] == 16 and s["states"] == {"COMPLETE": 16}, (name, s)
        assert "optuna-spark: data " in s["stderr"] and "1599 rows × 12 columns" in s["stderr"], s["stderr"]
        where = "read by spark.read" if name == "spark-read" else "read on the driver"
        assert f"in memory, {where}, broadcast to the tasks" in s["stderr"]
        done = trials(tmp_path, name)
        assert len(done) == 16
        for t in done:  # every trial saw every row, the whole table
            assert t.user_attrs["rows"] == 1599 and len(t.user_attrs["columns"]) == 12, (name, t.user_attrs)
            assert t.user_attrs["checksum"] == pytest.approx(checksum, rel=1e-9), name
        if name == "tsv-no-header":
            assert done[0].user_attrs["columns"][-1] == "_c11" and done[0].user_attrs["target"] == "_c11"
        elif name != "parquet":
            assert done[0].user_attrs["target"] == "quality"
        # Loaded once per task, not per trial: in each Python worker, one load for all its trials
        # (and, above, no trial saw what the trials before it did to their data).
        by_pid: dict[int, list] = {}
        for t in done:
            by_pid.setdefault(t.user_attrs["pid"], []).append(t)
        assert 1 <= len(by_pid) <= 2, (name, by_pid.keys())
        for pid, ts in by_pid.items():
            assert {t.user_attrs["loads"] for t in ts} == {1}, (name, pid, [t.user_attrs["loads"] for t in ts])
        # At most one load per task, at least one per process that ran trials: a task that started
        # after the budget was spent (one task may run all 16) may load and run nothing.
        loads = [t.get("data_loads", 0) for t in s["tasks"]]
        assert all(n <= 1 for n in loads), (name, loads)
        assert len(by_pid) <= sum(loads) <= len(s["tasks"]) <= 2 < 16, (name, loads, sorted(by_pid))


def test_xgboost_wine_on_the_users_table(run_cli, tmp_path: Path) -> None:
    # The wine table with its label renamed and the rows shuffled: the study runs on this table,
    # not on the copy inside the runner.
    table = wine().rename(columns={"quality": "score"}).sample(frac=1.0, random_state=3)
    table.to_parquet(tmp_path / "mine.parquet")
    proc = run_cli("tune", "--study", "xw", "--objective", "xgboost-wine", "--data", "mine.parquet",
                   "--target", "score", "--n-trials", "4", "--n-jobs", "2", "--master", "local[2]",
                   "--output", "json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout)
    assert s["finished"] == 4 and s["states"] == {"COMPLETE": 4}
    assert 0.3 < s["best"]["value"] < 1.5  # RMSE of wine quality (3 to 8)
    # And the bundled CSV given as --data, the seed's label by default.
    proc = run_cli("tune", "--study", "xw2", "--objective", "xgboost-wine", "--data", str(WINE_CSV),
                   "--data-sep", ";", "--n-trials", "2", "--n-jobs", "2", "--master", "local[2]",
                   "--output", "json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["states"] == {"COMPLETE": 2}


def test_refusals_are_one_line_exit_2_and_write_nothing(run_cli, tmp_path: Path, seen: Path) -> None:
    db = tmp_path / "work" / "optuna.db"
    (tmp_path / "notes.parquet").write_text("not a parquet file\n" * 100)
    big = pd.concat([wine()] * 20, ignore_index=True)  # 32k rows, about 2.9 MiB in memory
    big.to_csv(tmp_path / "big.csv", index=False)
    cases = [
        (["--data", "missing.parquet"], "--data missing.parquet does not exist"),
        (["--data", "notes.parquet"], "is not readable as Parquet"),
        (["--data", str(WINE_CSV), "--data-sep", ";", "--target", "label"],
         "has no column 'label' (--target); its columns: fixed acidity"),
        (["--data", str(WINE_CSV), "--target", "quality"], "(check --data-sep)"),
        # A quarter of an 8m executor is 2 MiB: the table is too large for this run's executors.
        (["--data", "big.csv", "--executor-memory", "8m"], "more than this run allows (2.0 MiB: a quarter of "
                                                           "spark.executor.memory 8m)"),
        (["--objective", "quadratic", "--data", "big.csv"], "takes only (trial)"),
        (["--data-format", "csv"], "--data-format needs --data"),
    ]
    for args, fragment in cases:
        argv = ["tune", "--study", "refused", "--n-trials", "4", *args]
        if "--objective" not in args:
            argv[1:1] = ["--objective", "seen.py:objective"]
        line = one_line_error(run_cli(*argv), 2, fragment)
        assert line.startswith("optuna-spark: error: "), line
        assert studies_in(db) == [], args
    assert not (tmp_path / "work" / "runs").exists() or not any((tmp_path / "work" / "runs").iterdir())


def test_a_url_spark_cannot_read_is_refused_before_the_study(run_cli, tmp_path: Path, seen: Path) -> None:
    """A URL is read by the Spark application: the refusal comes after Spark's start, still before
    the study is created, in one error line (after the two lines that say where the run goes)."""
    db = tmp_path / "work" / "optuna.db"
    for url, fragment in [((tmp_path / "nowhere.parquet").as_uri(), "does not exist"),
                          ((tmp_path / "notes.parquet").as_uri(), "is not readable as Parquet")]:
        (tmp_path / "notes.parquet").write_text("not a parquet file\n" * 100)
        proc = run_cli("tune", "--study", "u", "--objective", "seen.py:objective", "--n-trials", "4",
                       "--master", "local[1]", "--data", url)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("optuna-spark: error: data file://"), proc.stderr
        assert fragment in errors[0]
        assert studies_in(db) == []


def test_a_url_too_large_in_memory_is_refused_before_it_is_collected(run_cli, tmp_path: Path, seen: Path) -> None:
    """A Parquet table small on storage (one repeated text, dictionary-encoded) but large once in
    pandas: refused from Spark's estimate (its rows, its text's length) before the driver collects
    it, in one line; and a collect over spark.driver.maxResultSize is a size refusal too, not
    "not readable as Parquet"."""
    import numpy as np

    db = tmp_path / "work" / "optuna.db"
    (tmp_path / "shared").mkdir()
    wide = tmp_path / "shared" / "wide.parquet"
    pd.DataFrame({"id": range(30000), "text": ["a" * 100] * 30000}).to_parquet(wide)
    assert wide.stat().st_size < 256 << 10  # far under 2 MiB on storage: that check lets it through
    # Spark starts with no less than 450 MiB of executor memory: the small limit comes from the
    # Python workers' memory (half of it), which the refusal's Spark job (no Python) never uses.
    proc = run_cli("tune", "--study", "wide", "--objective", "seen.py:objective", "--n-trials", "4",
                   "--master", "local[1]", "--conf", "spark.executor.pyspark.memory=4m", "--data", wide.as_uri())
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"optuna-spark: error: data {wide.as_uri()} takes "), proc.stderr
    assert "in memory (estimated before collecting it: 30000 rows of about 165 B)" in errors[0], errors[0]
    assert "more than this run allows (2.0 MiB: half of spark.executor.pyspark.memory 4m)" in errors[0], errors[0]
    assert studies_in(db) == []

    dense = tmp_path / "shared" / "dense.parquet"  # about 8 MiB of random numbers: over a 1m maxResultSize
    pd.DataFrame(np.random.default_rng(1).random((200_000, 5)), columns=list("abcde")).to_parquet(dense)
    proc = run_cli("tune", "--study", "dense", "--objective", "seen.py:objective", "--n-trials", "4",
                   "--master", "local[2]", "--conf", "spark.driver.maxResultSize=1m", "--data", dense.as_uri())
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "does not fit in the driver's memory when collected" in errors[0], proc.stderr
    assert "is bigger than spark.driver.maxResultSize (1024.0 KiB)): raise --driver-memory" in errors[0], errors[0]
    assert "not readable" not in errors[0]
    assert studies_in(db) == []
