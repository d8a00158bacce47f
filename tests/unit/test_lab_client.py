"""The lab's cluster client (lab/optuna_lab/client.py), shared by tests/cluster and bench/lab.py:
the commands it builds (pure), and a real bin/on-driver refusing an inventory that is not one."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lab"))

from optuna_lab.client import ON_DRIVER, ClusterClient  # noqa: E402


def test_commands_go_through_on_driver_with_the_inventory() -> None:
    client = ClusterClient("inventory/x", python="/usr/bin/python3")
    assert client.on_driver_argv("id", "-u") == ["/usr/bin/python3", str(ON_DRIVER), "inventory/x", "--", "id", "-u"]
    line = client.runner_line("status", "--study", "it's mine")
    assert line[:2] == ["sh", "-c"] and shlex.split(line[2]) == ["cd", "/tmp", "&&", "exec", "optuna-spark", "status",
                                                                 "--study", "it's mine"]


def test_an_inventory_that_does_not_exist_is_one_clear_error(tmp_path: Path) -> None:
    proc = ClusterClient(str(tmp_path / "nowhere")).on_driver("true", timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.startswith("on-driver: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    state = ClusterClient(str(tmp_path / "nowhere")).master_state()
    assert state == {"alive": [], "cores_used": None, "active_apps": None}
