"""optuna_spark.optimize from a plain Python process, on a real local Spark session (one for the
module) and real storages (SQLite files, the test session's MariaDB): Optuna's `study.optimize`
meanings (n_trials per call, catch, callbacks, the study's sampler), the data forms, and every bad
argument refused before any Spark job starts."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

import optuna_spark
from optuna_spark import OptimizeError, OptimizeResult

pytestmark = pytest.mark.spark

WINE = Path(__file__).resolve().parents[2] / "runner" / "optuna_spark" / "data" / "winequality-red.csv"


def _study(tmp_path: Path, name: str = "lib", **kwargs) -> optuna.Study:
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name=name, **kwargs)


def _finished(study: optuna.Study) -> int:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=done))


def test_two_calls_of_twenty_leave_forty_finished_trials(spark, tmp_path: Path) -> None:
    offset = 2.0  # a closure: shipped by value with the objective

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        return (x - offset) ** 2

    study = _study(tmp_path)
    first = optuna_spark.optimize(study, objective, n_trials=20, n_jobs=3, spark=spark)
    assert isinstance(first, OptimizeResult)
    assert (first.n_trials_run, first.n_finished, first.n_jobs) == (20, 20, 3)
    second = optuna_spark.optimize(study, objective, n_trials=20, n_jobs=2, spark=spark)
    assert (second.n_trials_run, second.n_finished) == (20, 40)
    assert _finished(study) == 40 and len(study.trials) == 40
    assert second.states == {"COMPLETE": 40}
    assert second.best_value == pytest.approx(study.best_value)
    assert second.best_params == study.best_params and second.best_trial_number == study.best_trial.number
    assert sum(second.trials_per_host.values()) == 40
    assert second.wall_seconds > 0 and not second.task_errors
    assert "40 finished" in str(second) and "optuna-spark-result" in second._repr_html_()


def test_the_default_session_and_n_jobs_from_its_slots(spark, tmp_path: Path) -> None:
    study = _study(tmp_path)
    result = optuna_spark.optimize(study, lambda t: t.suggest_int("n", 0, 9), n_trials=6)
    assert result.n_jobs == 2  # the active session, local[2]
    assert _finished(study) == 6


def test_timeout_alone_ends_the_run(spark, tmp_path: Path) -> None:
    import time

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.2)
        return trial.suggest_float("x", 0, 1)

    study = _study(tmp_path)
    started = time.monotonic()
    result = optuna_spark.optimize(study, objective, timeout=3, n_jobs=2, spark=spark)
    assert result.n_trials is None and result.n_trials_run >= 2
    assert time.monotonic() - started < 60
    assert _finished(study) == result.n_trials_run


def test_an_exception_not_in_catch_fails_its_trial_and_raises(spark, tmp_path: Path) -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 2:
            raise ValueError("bad point")
        return x

    study = _study(tmp_path)
    with pytest.raises(OptimizeError, match="ValueError: bad point") as caught:
        optuna_spark.optimize(study, objective, n_trials=8, n_jobs=1, spark=spark)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert [t.number for t in failed] == [2]
    assert "ValueError: bad point" in failed[0].user_attrs["fail_reason"]
    assert caught.value.summary is not None and caught.value.summary.n_finished == 3
    assert "bad point" in caught.value.task_errors[0]["traceback"]
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


def test_an_exception_in_catch_fails_its_trial_and_the_run_goes_on(spark, tmp_path: Path) -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number % 3 == 0:
            raise KeyError("sometimes")
        return x

    study = _study(tmp_path)
    result = optuna_spark.optimize(study, objective, n_trials=9, n_jobs=2, spark=spark, catch=(KeyError,))
    assert _finished(study) == 9
    assert result.states["FAIL"] == 3 and result.states["COMPLETE"] == 6
    # a single class is accepted as Optuna accepts it
    optuna_spark.optimize(study, objective, n_trials=3, n_jobs=1, spark=spark, catch=KeyError)
    assert _finished(study) == 12


def test_callbacks_run_after_each_trial_with_the_study(spark, tmp_path: Path) -> None:
    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0, 1)

    def mark(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study.set_user_attr(f"seen-{trial.number}", trial.state.name)

    study = _study(tmp_path)
    optuna_spark.optimize(study, objective, n_trials=7, n_jobs=2, spark=spark, callbacks=[mark])
    marks = {k: v for k, v in optuna.load_study(study_name="lib", storage=study._storage).user_attrs.items()
             if k.startswith("seen-")}
    assert marks == {f"seen-{n}": "COMPLETE" for n in range(7)}


def test_the_studys_sampler_is_used_and_reseeded_per_task(spark, tmp_path: Path) -> None:
    study = _study(tmp_path, sampler=optuna.samplers.RandomSampler(seed=7))
    optuna_spark.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=8, n_jobs=2, spark=spark)
    xs = [t.params["x"] for t in study.trials]
    assert len(set(xs)) == 8  # two tasks with one seed would propose the same points
    # One task: the sampler keeps its seed, as a single-threaded study.optimize does.
    alone = _study(tmp_path, name="alone", sampler=optuna.samplers.RandomSampler(seed=7))
    optuna_spark.optimize(alone, lambda t: t.suggest_float("x", 0, 1), n_trials=3, n_jobs=1, spark=spark)
    local = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    local.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert [t.params["x"] for t in alone.trials] == [t.params["x"] for t in local.trials]


def test_multi_objective_reports_the_pareto_front(spark, tmp_path: Path) -> None:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        return x, 1 - x

    study = _study(tmp_path, directions=["minimize", "minimize"])
    result = optuna_spark.optimize(study, objective, n_trials=6, n_jobs=2, spark=spark)
    assert result.best_value is None and len(result.best_trials) == 6


@pytest.mark.parametrize("form", ["pandas", "csv", "spark"])
def test_data_reaches_every_trial(spark, tmp_path: Path, form: str) -> None:
    frame = pd.read_csv(WINE, sep=";")
    data = {"pandas": frame, "csv": str(WINE),
            "spark": spark.read.csv(str(WINE), sep=";", header=True, inferSchema=True)}[form]

    def objective(trial: optuna.Trial, data: pd.DataFrame) -> float:
        trial.set_user_attr("shape", list(data.shape))
        data["quality"] = 0  # a trial's change never reaches the next trial
        return float(trial.suggest_float("x", 0, 1))

    study = _study(tmp_path)
    optuna_spark.optimize(study, objective, n_trials=6, n_jobs=2, spark=spark, data=data)
    assert [t.user_attrs["shape"] for t in study.trials] == [list(frame.shape)] * 6
    assert (frame["quality"] != 0).any()


def test_a_trial_past_trial_timeout_is_failed_and_the_run_goes_on(spark, tmp_path: Path) -> None:
    import time

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 0:
            time.sleep(120)
        return trial.suggest_float("x", 0, 1)

    study = _study(tmp_path)
    result = optuna_spark.optimize(study, objective, n_trials=4, n_jobs=1, spark=spark, trial_timeout=2)
    assert _finished(study) == 4 and result.states == {"COMPLETE": 3, "FAIL": 1}
    assert "trial timeout" in study.trials[0].user_attrs["fail_reason"]


def test_on_mariadb_the_budget_is_exact_across_four_tasks(spark, mariadb) -> None:
    url = mariadb.url().replace("optuna_user@", f"optuna_user:{mariadb.password}@")
    study = optuna.create_study(storage=url, study_name="library-mysql", load_if_exists=True)
    before = _finished(study)
    result = optuna_spark.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=25, n_jobs=4, spark=spark)
    assert _finished(study) - before == 25 == result.n_trials_run


class _Untouchable:
    """A stand-in session: any use of it (a Spark job) fails the test with AttributeError."""

    def __getattr__(self, name: str):
        raise AttributeError(f"the session was used ({name}) before the arguments were checked")


@pytest.mark.parametrize("kwargs, message", [
    ({"objective": 3}, "objective must be callable"),
    ({"n_trials": 0}, "n_trials must be a positive integer"),
    ({"n_trials": -5}, "n_trials must be a positive integer"),
    ({"n_trials": 2.5}, "n_trials must be a positive integer"),
    ({"n_trials": True}, "n_trials must be a positive integer"),
    ({"n_trials": 2**31}, "below 2\\*\\*31"),
    ({"n_trials": None}, "give a budget"),
    ({"timeout": 0}, "timeout must be a positive number"),
    ({"timeout": float("nan")}, "timeout must be a positive number"),
    ({"n_jobs": 0}, "n_jobs must be a positive integer"),
    ({"n_jobs": -2}, "n_jobs must be a positive integer"),
    ({"trial_timeout": -1}, "trial_timeout must be a positive number"),
    ({"catch": (ValueError, "oops")}, "catch must hold exception classes"),
    ({"callbacks": [None]}, "each callback must be callable"),
    ({"data": pd.DataFrame({"a": [1]})}, "takes only \\(trial\\)"),
    ({"objective": lambda t, data: 0.0}, "takes \\(trial, data\\): give data="),
    ({"objective": lambda t, data, more: 0.0}, "more"),
    ({"data": 42, "objective": lambda t, data: 0.0}, "data must be a pandas DataFrame"),
    ({"data": "/no/such/file.parquet", "objective": lambda t, data: 0.0}, "not a file"),
])
def test_bad_arguments_are_refused_before_any_spark_job(tmp_path: Path, kwargs: dict, message: str) -> None:
    study = _study(tmp_path)
    args = {"objective": lambda t: t.suggest_float("x", 0, 1), "n_trials": 3, **kwargs}
    with pytest.raises(OptimizeError, match=message):
        optuna_spark.optimize(study, args.pop("objective"), args.pop("n_trials"), spark=_Untouchable(), **args)
    assert len(study.trials) == 0


@pytest.mark.parametrize("storage, message", [
    (None, "InMemoryStorage, which the Spark tasks cannot share"),
    ("sqlite:///:memory:", "in-memory SQLite"),
])
def test_storages_the_tasks_cannot_share_are_refused(storage, message: str) -> None:
    study = optuna.create_study(storage=storage)
    with pytest.raises(OptimizeError, match=message) as caught:
        optuna_spark.optimize(study, lambda t: 0.0, n_trials=3, spark=_Untouchable())
    assert "sqlite:///" in str(caught.value)  # says what to use


def test_a_journal_storage_is_refused(tmp_path: Path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(tmp_path / "j.log"))))
    with pytest.raises(OptimizeError, match="JournalStorage"):
        optuna_spark.optimize(study, lambda t: 0.0, n_trials=3, spark=_Untouchable())


def test_an_unreachable_storage_is_refused_before_any_spark_job(mariadb) -> None:
    url = mariadb.url().replace("optuna_user@", f"optuna_user:{mariadb.password}@")
    study = optuna.create_study(storage=url, study_name="unreachable", load_if_exists=True)
    mariadb.stop()
    try:
        with pytest.raises(OptimizeError, match="cannot be reached") as caught:
            optuna_spark.optimize(study, lambda t: 0.0, n_trials=3, spark=_Untouchable())
        assert mariadb.password not in str(caught.value)
    finally:
        mariadb.start()


def test_a_study_that_is_not_a_study_is_refused() -> None:
    with pytest.raises(OptimizeError, match="optuna.Study"):
        optuna_spark.optimize("sqlite:///x.db", lambda t: 0.0, n_trials=3, spark=_Untouchable())  # type: ignore[arg-type]


def test_the_public_api_is_small_and_typed() -> None:
    assert sorted(optuna_spark.__all__) == ["OptimizeError", "OptimizeResult", "OptunaSparkError", "__version__",
                                            "artifact_store", "optimize", "rdb_storage"]
    assert issubclass(OptimizeError, optuna.exceptions.OptunaError)
    assert (Path(optuna_spark.__file__).parent / "py.typed").is_file()


def test_one_task_runs_on_an_executor_not_in_the_callers_process(spark, tmp_path: Path) -> None:
    import os

    study = _study(tmp_path)

    def objective(trial: optuna.Trial) -> float:
        import os

        trial.set_user_attr("pid", os.getpid())
        return trial.suggest_float("x", 0, 1)

    optuna_spark.optimize(study, objective, n_trials=3, n_jobs=1, spark=spark)
    assert {t.user_attrs["pid"] for t in study.trials} - {os.getpid()} == {t.user_attrs["pid"] for t in study.trials}


def test_callbacks_run_here_with_the_callers_study_for_each_trial_in_order(spark, tmp_path: Path) -> None:
    seen: list[tuple[int, str]] = []
    study = _study(tmp_path)
    optuna_spark.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=9, n_jobs=2, spark=spark,
                          callbacks=[lambda s, t: seen.append((t.number, t.state.name)) if s is study else None])
    assert sorted(seen) == [(n, "COMPLETE") for n in range(9)]


def test_study_stop_in_a_callback_stops_every_task(spark, tmp_path: Path) -> None:
    import time

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.2)
        return trial.suggest_float("x", 0, 1)

    def stop_at_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study.stop()

    study = _study(tmp_path)
    result = optuna_spark.optimize(study, objective, n_trials=200, n_jobs=2, spark=spark, callbacks=[stop_at_once])
    assert 1 <= result.n_trials_run < 40 and len(study.trials) == result.n_trials_run
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    # the stop was this call's: the next call runs its whole budget
    again = optuna_spark.optimize(study, objective, n_trials=4, n_jobs=2, spark=spark)
    assert again.n_trials_run == 4


def test_an_exception_not_in_catch_stops_the_other_tasks_too(spark, tmp_path: Path) -> None:
    import time

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.2)
        if trial.number == 1:
            raise ValueError("stop here")
        return trial.suggest_float("x", 0, 1)

    study = _study(tmp_path)
    with pytest.raises(OptimizeError, match="stop here"):
        optuna_spark.optimize(study, objective, n_trials=200, n_jobs=2, spark=spark)
    assert len(study.trials) < 40


def test_optunas_other_arguments_and_numpy_counts(spark, tmp_path: Path) -> None:
    import numpy as np

    study = _study(tmp_path)
    result = optuna_spark.optimize(study, lambda t: t.suggest_float("x", 0, 1), np.int64(4), np.float64(600),
                                   n_jobs=np.int32(2), spark=spark, gc_after_trial=True, show_progress_bar=True)
    assert result.n_trials_run == 4 and _finished(study) == 4


def test_a_helper_module_beside_the_script_reaches_the_executors(tmp_path: Path) -> None:
    """`python proj/run.py` from another folder, its objective using proj/helper.py: the executors
    cannot import it (their sys.path is not the script's), so it travels by value."""
    import subprocess

    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    elsewhere.mkdir()
    (proj / "helper.py").write_text("def shift(x):\n    return (x - 3.0) ** 2\n")
    (proj / "run.py").write_text(
        "import os, sys\nos.environ['PYSPARK_PYTHON'] = sys.executable\n"
        "import optuna, optuna_spark\nfrom helper import shift\n\n"
        "def objective(trial):\n    return shift(trial.suggest_float('x', 0, 5))\n\n"
        "study = optuna.create_study(storage='sqlite:///s.db', study_name='h')\n"
        "result = optuna_spark.optimize(study, objective, n_trials=4, n_jobs=2)\n"
        "print('RUN', result.n_trials_run, len(study.trials))\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    done = subprocess.run([sys.executable, str(proj / "run.py")], cwd=elsewhere, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN 4 4" in done.stdout


def test_a_callbacks_exception_stops_the_call_and_is_raised(spark, tmp_path: Path) -> None:
    import time

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.1)
        return trial.suggest_float("x", 0, 1)

    def broken(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        raise LookupError("callback broke")

    study = _study(tmp_path)
    with pytest.raises(LookupError, match="callback broke"):
        optuna_spark.optimize(study, objective, n_trials=200, n_jobs=2, spark=spark, callbacks=[broken])
    assert len(study.trials) < 60
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


# ---------------------------------------------------------------------------- rdb_storage, submit

def test_rdb_storage_on_mariadb_takes_the_password_from_a_file_and_works_with_optimize(
        spark, mariadb, password_file: Path) -> None:
    storage = optuna_spark.rdb_storage(mariadb.url(), password_file=password_file)
    assert isinstance(storage, optuna.storages.RDBStorage)
    study = optuna.create_study(storage=storage, study_name="rdb-storage-mysql", load_if_exists=True)
    before = _finished(study)
    result = optuna_spark.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=6, n_jobs=2, spark=spark)
    assert result.n_trials_run == 6 and _finished(study) - before == 6
    with optuna.storages.RDBStorage(storage.url).engine.connect() as conn:  # the session is in UTC
        from sqlalchemy import text

        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert mariadb.password not in repr(getattr(storage, "_optuna_spark_target"))


def test_rdb_storage_refuses_what_it_cannot_use(mariadb, tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.write_text(mariadb.password + "\n")
    loose.chmod(0o644)
    with pytest.raises(OptimizeError, match="open to other users"):
        optuna_spark.rdb_storage(mariadb.url(), password_file=loose)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    with pytest.raises(OptimizeError, match="cannot be reached") as caught:
        optuna_spark.rdb_storage(mariadb.url(), password_file=wrong)
    assert "not-the-password" not in str(caught.value)
    with pytest.raises(OptimizeError, match="sqlite|SQLite|storage"):
        optuna_spark.rdb_storage("sqlite://")


def test_rdb_storage_defaults_to_the_command_lines_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPTUNA_SPARK_STORAGE", "OPTUNA_SPARK_PASSWORD_FILE", "OPTUNA_SPARK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    storage = optuna_spark.rdb_storage()
    assert storage.url == f"sqlite:///{tmp_path / 'work' / 'optuna.db'}"
    import stat

    # this user's only, as the command line makes them
    assert stat.S_IMODE((tmp_path / "work").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "work" / "optuna.db").stat().st_mode) == 0o600
    config = tmp_path / "runner.toml"
    config.write_text(f'storage = "sqlite:///{tmp_path / "from-config.db"}"\n')
    monkeypatch.setenv("OPTUNA_SPARK_CONFIG", str(config))
    assert optuna_spark.rdb_storage().url.endswith("from-config.db")
    monkeypatch.setenv("OPTUNA_SPARK_STORAGE", f"sqlite:///{tmp_path / 'from-env.db'}")
    assert optuna_spark.rdb_storage().url.endswith("from-env.db")


SUBMITTED = r'''
import json, sys

import optuna
import optuna_spark

name, n_trials = sys.argv[1], int(sys.argv[2])
study = optuna.create_study(storage=optuna_spark.rdb_storage(), study_name=name, load_if_exists=True)
offset = 3.0
runs = [optuna_spark.optimize(study, lambda t: (t.suggest_float("x", -5, 5) - offset) ** 2,
                              n_trials=n_trials).n_trials_run for _ in range(2)]
from pyspark.sql import SparkSession

print("RESULT " + json.dumps({"runs": runs, "trials": len(study.trials),
                              "master": SparkSession.getActiveSession().sparkContext.master}))
if len(sys.argv) > 3:
    raise SystemExit(int(sys.argv[3]))
'''


def _submit(tmp_path: Path, *args: str, env: dict | None = None):
    import os
    import subprocess

    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPTUNA_SPARK_")}
    return subprocess.run([sys.executable, "-m", "optuna_spark", "submit", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={**environ, **(env or {})})


def test_submit_runs_a_users_script_with_the_runners_spark_and_storage(tmp_path: Path) -> None:
    import json

    script = tmp_path / "tune_it.py"
    script.write_text(SUBMITTED)
    proc = _submit(tmp_path, "--master", "local[2]", str(script), "--", "by-submit", "10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert got == {"runs": [10, 10], "trials": 20, "master": "local[2]"}
    # the command line's default storage, read back by the command line
    status = subprocess_json(tmp_path, "status", "--study", "by-submit")
    assert status["finished"] == 20
    # Spark's INFO lines do not bury the script's output
    assert " INFO " not in proc.stdout + proc.stderr.split("Setting Spark log level", 1)[-1]


def test_submit_ends_with_the_scripts_exit_status_and_refuses_bad_scripts(tmp_path: Path) -> None:
    script = tmp_path / "fails.py"
    script.write_text("import sys\nsys.exit(7)\n")
    proc = _submit(tmp_path, "--master", "local[1]", str(script))
    assert proc.returncode == 7, proc.stderr[-2000:]
    for bad, message in ((tmp_path / "missing.py", "does not exist"), (tmp_path, "is not a file"),
                         (tmp_path / "notes.txt", "is not a Python file")):
        if bad.name == "notes.txt":
            bad.write_text("x")
        clean = tmp_path / "clean"
        clean.mkdir(exist_ok=True)
        proc = _submit(clean, str(bad))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not list(clean.iterdir()), "a refused submit creates nothing"
    proc = _submit(tmp_path / "clean")
    assert proc.returncode == 2 and "give the Python script" in proc.stderr, proc.stderr


def subprocess_json(cwd: Path, *args: str) -> dict:
    import json
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "optuna_spark", *args, "--output", "json"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("kwargs, expected", [
    ({"heartbeat_interval": 3, "grace_period": 9}, (3, 9)),
    ({"heartbeat_interval": 4}, (4, 8)),   # Optuna's default grace: twice the interval
    ({}, (10, 30)),                        # no heartbeat asked: the runner's defaults
])
def test_the_studys_heartbeat_settings_drive_the_tasks_heartbeats(tmp_path: Path, kwargs: dict, expected) -> None:
    from optuna_spark import api

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'hb.db'}", **kwargs)
    study = optuna.create_study(storage=storage)
    plan = api._plan(study, lambda t: 0.0, 3, None, n_jobs=1, catch=(), callbacks=None, trial_timeout=None,
                     data=None)
    job = api._job(plan, 3, None, 1, None, False)
    assert (job.study.heartbeat_interval, job.study.grace_period) == expected
