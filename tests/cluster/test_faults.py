"""Faults on the lab cluster while a study runs: a killed worker, a MySQL restart, a killed
driver-side spark-submit, and a storage that refuses or is down before the start."""

from __future__ import annotations

import json
import time

from cluster_lib import (FAST_FAULTS, kill_runs, lab, on_driver, runner, runner_background, status, wait_alive,
                      wait_for_trials, worker_names)


def finish(proc, timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def no_trial_left_running(study: str) -> dict:
    s = status(study)
    assert not {"RUNNING", "WAITING"} & set(s["states"]), s["states"]
    return s


def test_a_worker_killed_mid_study(study_name: str) -> None:
    workers = worker_names()
    victim = workers[-1].rsplit("-", 1)[-1]  # lab host name: worker2
    proc = runner_background("tune", "--study", study_name, "--objective", "sleep", "--n-trials", "60",
                             "--n-jobs", "4", "--output", "json", *FAST_FAULTS)
    try:
        wait_for_trials(study_name, 12)
        lab("kill", victim)
        s = finish(proc)
    finally:
        lab("start", victim)
    assert s["finished"] == 60
    after = no_trial_left_running(study_name)
    assert after["finished"] == 60
    # Every stale trial (killed with its worker) was failed and retried; the rest completed.
    assert after["states"]["COMPLETE"] == 60 and after["states"].get("FAIL", 0) == after["retried_stale"]
    wait_alive(len(workers))


def test_mysql_restarts_mid_study(study_name: str) -> None:
    proc = runner_background("tune", "--study", study_name, "--objective", "sleep", "--n-trials", "40",
                             "--n-jobs", "4", "--output", "json", *FAST_FAULTS)
    wait_for_trials(study_name, 8)
    restart = on_driver("sudo", "systemctl", "restart", "mariadb")
    assert restart.returncode == 0, restart.stderr
    s = finish(proc)
    assert s["finished"] == 40 and s["states"] == {"COMPLETE": 40}
    no_trial_left_running(study_name)


def test_killed_driver_then_the_same_command_resumes(study_name: str) -> None:
    args = ("tune", "--study", study_name, "--objective", "sleep", "--n-trials", "40", "--n-jobs", "4",
            "--output", "json", *FAST_FAULTS)
    proc = runner_background(*args)
    before = wait_for_trials(study_name, 10)
    kill_runs()
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    partial = sum(status(study_name)["states"].values())
    assert before <= partial < 40
    time.sleep(2)
    again = runner(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    s = json.loads(again.stdout)
    assert s["finished"] == 40
    after = no_trial_left_running(study_name)
    assert after["states"]["COMPLETE"] == 40


def test_wrong_password_fails_cleanly_and_creates_nothing(study_name: str) -> None:
    # Readable by the runner account only, as a real password file would be.
    assert on_driver("sh", "-c", "echo not-the-password | sudo install -o optuna-spark -g optuna-spark -m 0600 "
                                 "/dev/stdin /tmp/wrong-pw").returncode == 0
    proc = runner("tune", "--study", study_name, "--n-trials", "5", "--password-file", "/tmp/wrong-pw")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("optuna-spark: storage refused user 'optuna_user'")
    assert "Traceback" not in proc.stderr and "not-the-password" not in proc.stderr
    studies = json.loads(runner("status", "--output", "json").stdout)["studies"]
    assert study_name not in studies


def test_mysql_down_before_the_start(study_name: str) -> None:
    assert on_driver("sudo", "systemctl", "stop", "mariadb").returncode == 0
    try:
        proc = runner("tune", "--study", study_name, "--n-trials", "5")
    finally:
        assert on_driver("sudo", "systemctl", "start", "mariadb").returncode == 0
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("optuna-spark: storage unreachable at "), last
    assert "Traceback" not in proc.stderr
    studies = json.loads(runner("status", "--output", "json").stdout)["studies"]
    assert study_name not in studies
