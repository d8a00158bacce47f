"""Fault injection only ever on the lab: against an inventory the lab did not generate (a copy of
this one without the lab's marker and lab_name, i.e. what a real cluster's inventory looks like),
`make verify` does not collect the fault test and `make verify-fault` refuses, and no service of
the cluster is stopped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from infra_lib import BIN, ROOT, Cluster, Node


def non_lab_copy(cluster: Cluster, tmp_path: Path) -> Path:
    copy = tmp_path / "prod"
    shutil.copytree(cluster.inventory, copy, ignore=shutil.ignore_patterns(".generated-by-lab"))
    for vars_file in (copy / "group_vars").rglob("*.yml"):
        text = "".join(line for line in vars_file.read_text().splitlines(keepends=True)
                       if not line.startswith("lab_"))
        vars_file.write_text(text)
    return copy


def test_the_fault_test_never_runs_against_a_non_lab_inventory(cluster: Cluster, the_driver: Node,
                                                             tmp_path: Path) -> None:
    # On the lab, a copy without the lab's marks stands for a real cluster's inventory; on a real
    # cluster's inventory, the inventory itself.
    copy = non_lab_copy(cluster, tmp_path) if cluster.is_lab else cluster.inventory
    pytest_cmd = [str(BIN / "pytest"), "-p", "no:cacheprovider", "tests/infra", f"--ansible-inventory={copy}"]
    listed = subprocess.run([*pytest_cmd, "--collect-only", "-q"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    assert "test_verify_detects_faults" not in listed.stdout
    assert "test_second_converge_changes_nothing" in listed.stdout  # the rest is collected
    asked = subprocess.run([*pytest_cmd, "-m", "fault", "-q"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert asked.returncode == 4, asked.stdout[-2000:] + asked.stderr[-2000:]
    assert "fault injection only ever runs on the lab" in asked.stderr
    for worker in cluster.workers:
        assert cluster.host(worker).service("spark-worker").is_running, f"{worker}: spark-worker stopped"
