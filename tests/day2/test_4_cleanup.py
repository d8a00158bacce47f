"""Cleanup (playbooks/cleanup.yml, and the timers it runs now): run folders older than
optuna_runner_runs_max_age go, younger ones stay."""

from __future__ import annotations

from conftest import playbook
from cluster_lib import on_driver

RUNS = "/var/lib/optuna-spark/runs"


def test_old_run_folders_are_removed_and_new_ones_kept() -> None:
    setup = on_driver("sudo", "-u", "optuna-spark", "sh", "-c",
                      f"mkdir -p {RUNS}/old-run {RUNS}/new-run && echo log > {RUNS}/old-run/spark.log && "
                      f"echo log > {RUNS}/new-run/spark.log && "
                      f"touch -d '30 days ago' {RUNS}/old-run/spark.log {RUNS}/old-run")
    assert setup.returncode == 0, setup.stderr
    proc, _ = playbook("playbooks/cleanup.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    left = on_driver("sudo", "ls", RUNS).stdout.split()
    assert "old-run" not in left and "new-run" in left, left
