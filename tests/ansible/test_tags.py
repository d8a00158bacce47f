"""Tags reach every task: `site.yml --tags runtime` runs the preflight checks and all of the
runtime role (its tasks are imported, not included: an include's tags stay on the include)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def listed(*tags: str) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "inventory/example", "site.yml", "--list-tasks",
                           "--tags", ",".join(tags)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("task", [
    "preflight : Exactly one driver", "preflight : Supported operating system",
    "preflight : Executors fit the workers (cores and memory)",
    "optuna_runtime : Hash of the runner's sources", "optuna_runtime : Decide whether to rebuild",
    "optuna_runtime : Build the runner's wheel", "optuna_runtime : Create the venv (the node's python3)",
    "optuna_runtime : Install the pinned packages and the runner (mysqlclient compiles here)",
    "optuna_runtime : Pack the env", "optuna_runtime : Unpack it at the env path and make it runnable there",
    "optuna_runtime : The runtime imports its packages on this node",
])
def test_tags_runtime_runs_the_preflight_and_every_runtime_task(task: str) -> None:
    assert f"      {task}\t" in listed("runtime")


def test_tags_runtime_runs_nothing_of_the_other_roles() -> None:
    out = listed("runtime")
    for other in ("spark : Systemd units", "mysql : Server options", "optuna_studies : Create the missing studies",
                  "optuna_runner : Runner configuration"):
        assert other not in out, f"--tags runtime would run {other!r}"
    assert "spark : Systemd units" in listed("spark")
