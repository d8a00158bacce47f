"""Real spark-submit in local mode: both objectives, exact budgets, resume, failures, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from optuna_spark.ledger import finished_trials
from optuna_spark.tracking import trial_artifacts

pytestmark = pytest.mark.spark


def load(tmp_path: Path, name: str, url: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url or f"sqlite:///{tmp_path / 'work' / 'optuna.db'}")


def summary_of(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_quadratic_ends_with_exactly_its_budget_and_resumes(run_cli, tmp_path: Path) -> None:
    s = summary_of(run_cli("tune", "--study", "q", "--n-trials", "30", "--n-jobs", "3", "--seed", "1",
                           "--master", "local[3]", "--output", "json"))
    assert s["finished"] == 30 and s["states"] == {"COMPLETE": 30}
    assert len(load(tmp_path, "q").trials) == 30
    assert {t["index"] for t in s["tasks"]} == {0, 1, 2}
    assert sum(t["trials"] for t in s["tasks"]) == 30
    assert s["best"]["value"] < 10  # (x-2)^2 + (y-3)^2 over [-10, 10]^2 after 30 TPE trials

    # Same command again: the budget is already spent, nothing more runs.
    s = summary_of(run_cli("tune", "--study", "q", "--n-trials", "30", "--n-jobs", "3", "--output", "json"))
    assert s["finished"] == 30 and sum(t["trials"] for t in s["tasks"]) == 0
    # A larger budget continues the same study to the new total.
    s = summary_of(run_cli("tune", "--study", "q", "--n-trials", "45", "--n-jobs", "3", "--output", "json"))
    assert s["finished"] == 45 and len(load(tmp_path, "q").trials) == 45

    status = run_cli("status", "--study", "q", "--output", "json")
    assert json.loads(status.stdout)["finished"] == 45 and json.loads(status.stdout)["budget"] == 45
    best = run_cli("best", "--study", "q", "--output", "json")
    assert json.loads(best.stdout)["value"] == load(tmp_path, "q").best_value


def test_enqueued_trials_run_once_each_within_the_budget(run_cli, tmp_path: Path) -> None:
    """Trials the user enqueued (WAITING) are taken first, each by exactly one task, and count
    once against the budget (four tasks race for them on one SQLite file)."""
    (tmp_path / "work").mkdir()
    study = optuna.create_study(study_name="enq", storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}")
    points = [{"x": float(i), "y": 3.0} for i in range(6)]
    for p in points:
        study.enqueue_trial(p)
    s = summary_of(run_cli("tune", "--study", "enq", "--n-trials", "10", "--n-jobs", "4",
                           "--master", "local[4]", "--output", "json"))
    trials = load(tmp_path, "enq").trials
    assert s["finished"] == 10 == len(trials) == finished_trials(trials)
    assert [t.params for t in trials[:6]] == points  # each enqueued point ran once, as enqueued
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_text_output_streams_progress_and_prints_the_best_value(run_cli) -> None:
    proc = run_cli("tune", "--n-trials", "12")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "finished   12 of 12" in proc.stdout and "best value" in proc.stdout
    assert "Spark 4" in proc.stderr and "finished ·" in proc.stderr


def test_static_split_is_the_seeds_fixed_share_and_resumes_like_the_shared_one(run_cli, tmp_path: Path) -> None:
    def run(n: int) -> dict:
        return summary_of(run_cli("tune", "--study", "st", "--split", "static", "--n-trials", str(n),
                                  "--n-jobs", "2", "--output", "json"))

    s = run(10)
    assert sorted(t["trials"] for t in s["tasks"]) == [5, 5]
    assert len(load(tmp_path, "st").trials) == 10
    s = run(10)  # the same command again: the budget is spent, nothing runs ("finished 10 of 10")
    assert s["finished"] == 10 and [t["trials"] for t in s["tasks"]] == [0, 0]
    s = run(15)  # a larger budget: the 5 left, in fixed shares
    assert s["finished"] == 15 == len(load(tmp_path, "st").trials)
    assert sorted(t["trials"] for t in s["tasks"]) == [2, 3]


def test_timeout_budget(run_cli, tmp_path: Path) -> None:
    s = summary_of(run_cli("tune", "--study", "t", "--objective", "sleep", "--timeout", "3",
                           "--n-jobs", "2", "--output", "json"))
    n = len(load(tmp_path, "t").trials)
    # 2 tasks x 0.5 s trials for 3 s: a task starts no trial after the deadline (how many start
    # before it depends on how long the tasks took to start on this machine: no lower bound).
    assert n <= 2 * (3 / 0.5) + 2 and s["finished"] == n and s["budget"] is None


def test_failing_objective_stores_fail_trials_with_their_message(run_cli, tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(
        "def objective(trial):\n"
        "    x = trial.suggest_float('x', -10, 10)\n"
        "    if x < 0:\n"
        "        raise ValueError(f'negative x {x:.2f}')\n"
        "    return x\n")
    s = summary_of(run_cli("tune", "--study", "f", "--objective", "flaky.py:objective", "--n-trials", "20",
                           "--seed", "5", "--output", "json"))
    trials = load(tmp_path, "f").trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(trials) == 20 and failed and complete
    assert all(t.user_attrs["fail_reason"].startswith("ValueError: negative x") for t in failed)
    assert all(t.params["x"] < 0 for t in failed) and all(t.params["x"] >= 0 for t in complete)
    assert s["states"]["FAIL"] == len(failed)


def test_every_trial_failing_is_a_failed_run(run_cli, tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def objective(trial):\n    raise RuntimeError('boom')\n")
    proc = run_cli("tune", "--study", "b", "--objective", "bad.py:objective", "--n-trials", "4")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "optuna-spark: every trial failed; first reason: RuntimeError: boom"


def test_a_crashing_task_reports_its_real_message(run_cli, tmp_path: Path) -> None:
    (tmp_path / "crash.py").write_text(
        "from pyspark import TaskContext\n"
        "if TaskContext.get() is not None:\n"
        "    raise ImportError('libcuda.so.1: cannot open shared object file')\n"
        "def objective(trial):\n"
        "    return trial.suggest_float('x', 0, 1)\n")
    proc = run_cli("tune", "--study", "c", "--objective", "crash.py:objective", "--n-trials", "4")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "Spark task(s) failed" in last and "ImportError: libcuda.so.1: cannot open shared object file" in last
    assert "_ExceptionWithTraceback" not in proc.stderr + proc.stdout


def test_user_objective_as_module_function(run_cli, tmp_path: Path) -> None:
    (tmp_path / "myobj.py").write_text("def f(trial):\n    return trial.suggest_int('n', 1, 5) ** 2\n")
    s = summary_of(run_cli("tune", "--study", "m", "--objective", "myobj:f", "--n-trials", "6", "--output", "json"))
    assert s["finished"] == 6 and s["best"]["value"] >= 1


def test_a_claim_lost_mid_run_is_given_back_in_the_same_run(run_cli, tmp_path: Path) -> None:
    """A task that dies between claiming a slot and binding its trial leaves a claim with no
    trial; the run must still end at its budget. The objective leaves such a claim once (a claim
    row and the counter, as optuna_spark.ledger.claim writes them), as a killed executor would."""
    db = tmp_path / "work" / "optuna.db"
    (tmp_path / "leak.py").write_text(
        "import sqlite3\n"
        "def f(trial):\n"
        "    if trial.number == 2:\n"
        f"        with sqlite3.connect({str(db)!r}, timeout=60) as c:\n"
        "            c.execute('UPDATE optuna_spark_budget SET claimed = claimed + 1')\n"
        "            c.execute(\"INSERT INTO optuna_spark_claims (token, study_id, grace, claimed_at) \"\n"
        "                      \"VALUES ('lost', 1, 3, CURRENT_TIMESTAMP)\")\n"
        "    return trial.suggest_float('x', 0, 1)\n")
    s = summary_of(run_cli("tune", "--study", "leak", "--objective", "leak:f", "--n-trials", "8", "--n-jobs", "2",
                           "--grace-period", "3", "--heartbeat-interval", "1", "--output", "json"))
    trials = load(tmp_path, "leak").trials
    assert s["finished"] == 8 == len(trials) == finished_trials(trials)
    import sqlite3
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM optuna_spark_claims WHERE token = 'lost'").fetchone() == (0,)


def test_two_runs_of_one_study_at_once_share_its_budget(tmp_path: Path) -> None:
    """`make tune` started twice: the second run joins the first (it does not reset the claim
    counter under it), and the study ends at exactly its budget."""
    args = [str(Path(sys.executable).parent / "optuna-spark"), "tune", "--study", "two", "--objective", "sleep",
            "--n-trials", "80", "--n-jobs", "2", "--master", "local[2]", "--output", "json"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            if len(load(tmp_path, "two").trials) >= 4:
                break
        except Exception:
            pass
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "this run shares its budget" in second.stderr
    trials = load(tmp_path, "two").trials
    assert len(trials) == 80 == finished_trials(trials)
    ran = json.loads(out)["tasks"] + json.loads(second.stdout)["tasks"]
    assert sum(t["trials"] for t in ran) == 80
    assert all(t["trials"] > 0 for t in json.loads(second.stdout)["tasks"])  # the second run helped


def test_xgboost_wine(run_cli, tmp_path: Path) -> None:
    s = summary_of(run_cli("tune", "--study", "x", "--objective", "xgboost-wine", "--n-trials", "3",
                           "--n-jobs", "2", "--seed", "0", "--output", "json"))
    trials = load(tmp_path, "x").trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert {t.user_attrs["device"] for t in trials} == {"cpu"}
    assert set(trials[0].params) == {"learning_rate", "max_depth", "subsample", "colsample_bytree", "min_child_weight"}
    # RMSE of wine quality (3..8): a trained model sits well below predicting 0 or the range.
    assert 0.3 < s["best"]["value"] < 1.5
    # No --artifact-dir: no trial keeps its model, and nothing says so.
    assert not any(trial_artifacts(t) for t in trials) and "kept_files" not in s


@pytest.mark.parametrize("split", ["shared", "static"])
def test_killed_submit_resumes_to_exactly_its_budget(tmp_path: Path, split: str) -> None:
    """The driver's spark-submit is killed mid-study; the same command then ends at the budget.
    With the static split too: its shares include the killed run's trials that come back."""
    args = [str(Path(sys.executable).parent / "optuna-spark"), "tune", "--study", "k", "--objective", "sleep",
            "--n-trials", "24", "--n-jobs", "2", "--split", split, "--heartbeat-interval", "1",
            "--grace-period", "3", "--outage-timeout", "3", "--output", "json"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    db = tmp_path / "work" / "optuna.db"
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                if len(load(tmp_path, "k").trials) >= 6:
                    break
            except Exception:
                pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(["pkill", "-9", "-f", str(tmp_path / "work" / "runs")], check=False)
    before = load(tmp_path, "k").trials
    assert 6 <= len(before) < 24
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    s = summary_of(done)
    trials = load(tmp_path, "k").trials
    assert s["finished"] == 24 == finished_trials(trials)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    # The sleep objective never fails: every FAIL is a stale trial of the killed run, retried.
    assert s["states"].get("FAIL", 0) == s["retried_stale"]


def test_the_runs_files_are_private(run_cli, tmp_path: Path) -> None:
    """The SQLite file (one an earlier version left readable included), the run's directory, job
    file and log are this user's only."""
    import stat

    work = tmp_path / "work"
    work.mkdir()
    optuna.create_study(study_name="old", storage=f"sqlite:///{work / 'optuna.db'}")
    (work / "optuna.db").chmod(0o644)
    summary_of(run_cli("tune", "--study", "private", "--n-trials", "4", "--output", "json"))
    run_dir = next((work / "runs").iterdir())
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(work / "optuna.db") == 0o600
    assert mode(work / "runs") == mode(run_dir) == 0o700
    assert mode(run_dir / "job.json") == mode(run_dir / "spark.log") == 0o600
    for extra in ("optuna.db-wal", "optuna.db-shm"):
        if (work / extra).exists():
            assert mode(work / extra) == 0o600


def test_a_group_readable_work_dir_shares_the_run_logs_but_never_the_secrets(run_cli, tmp_path: Path) -> None:
    """The cluster's work directory (2750, the operators' group): its runs' folders, job files and
    logs are the group's to read; the SQLite file and the private folder are not."""
    import stat

    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o2750)
    summary_of(run_cli("tune", "--study", "shared", "--n-trials", "2", "--output", "json"))
    run_dir = next((work / "runs").iterdir())
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(work / "runs") & 0o777 == mode(run_dir) & 0o777 == 0o750
    assert mode(run_dir) & stat.S_ISGID  # inherited: new files keep the work directory's group
    assert mode(run_dir / "job.json") == mode(run_dir / "spark.log") == 0o640
    assert mode(work / "optuna.db") == 0o600
    assert not [p for p in run_dir.iterdir() if p.is_dir() and mode(p) & 0o077]  # a private folder stays 0700


def test_a_study_whose_trials_all_prune_is_a_successful_run(run_cli, tmp_path: Path) -> None:
    (tmp_path / "prunes.py").write_text("import optuna\n\ndef objective(trial):\n"
                                        "    trial.report(1.0, 0)\n    raise optuna.TrialPruned()\n")
    proc = run_cli("tune", "--study", "pruned", "--objective", "prunes:objective", "--n-trials", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "states     PRUNED 4" in proc.stdout and "best value none" in proc.stdout
