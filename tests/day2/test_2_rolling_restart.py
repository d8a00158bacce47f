"""A rolling restart of the workers (playbooks/rolling-restart.yml, serial: 1) while a study runs:
each worker's executors die in turn, their trials are retried, and the study still ends at
exactly its budget with nothing left RUNNING."""

from __future__ import annotations

import json

from conftest import playbook
from cluster_lib import FAST_FAULTS, runner_background, status, wait_alive, wait_for_trials, worker_names


def test_a_rolling_restart_under_a_running_study_keeps_its_budget(study_name: str) -> None:
    slots = 2 * len(worker_names())
    budget = 150 * slots  # 0.5 s each: about 75 s, longer than the restarts
    proc = runner_background("tune", "--study", study_name, "--objective", "sleep", "--n-trials", str(budget),
                             "--n-jobs", str(slots), "--output", "json", *FAST_FAULTS)
    try:
        wait_for_trials(study_name, 2 * slots)
        roll, recap = playbook("playbooks/rolling-restart.yml")
        assert roll.returncode == 0, roll.stdout[-4000:]
        assert proc.poll() is None, "the study ended before the rolling restart did: nothing was tested"
        assert all(recap[w]["changed"] >= 1 for w in worker_names()), recap  # every worker restarted
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    s = json.loads(out)
    assert s["finished"] == budget
    after = status(study_name)
    assert not {"RUNNING", "WAITING"} & set(after["states"]), after["states"]
    assert after["states"]["COMPLETE"] == budget and after["finished"] == budget
    wait_alive(len(worker_names()))
