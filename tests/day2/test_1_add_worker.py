"""Add a worker: the lab grows by one host, a converge limited to it (`--limit`) makes it a
worker: the master shows it ALIVE, its runtime is the driver's archive, and trials run on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import BIN, playbook
from cluster_lib import INVENTORY, ROOT, alive_workers, on_driver, runner, wait_alive, worker_names


def cat_on(pattern: str, path: str) -> dict[str, str]:
    """host -> the content of `path` there (ansible ad-hoc, one line per host)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible"), "-i", INVENTORY, pattern, "-o", "-m", "ansible.builtin.command",
                           "-a", f"cat {path}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = {}
    for line in proc.stdout.splitlines():
        host, _, rest = line.partition(" | ")
        out[host] = rest.split("(stdout)", 1)[-1].strip() if "rc=0" in rest else f"FAILED {rest}"
    return out


def test_a_new_worker_joins_with_a_limited_converge(study_name: str) -> None:
    before = worker_names()
    env = dict(os.environ, LAB_WORKERS=str(len(before) + 1))
    up = subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), "up"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stderr[-2000:]
    new = sorted(set(worker_names()) - set(before))
    assert len(new) == 1, f"lab-up did not add exactly one worker: {worker_names()}"
    proc, recap = playbook("site.yml", "--limit", new[0])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert set(recap) <= {new[0], "localhost"} and recap[new[0]]["failed"] == 0, recap
    wait_alive(len(before) + 1)
    assert len(alive_workers()) == len(before) + 1

    # Its runtime is the driver's archive, like every other worker's.
    markers = cat_on("workers", "/opt/optuna-spark/env/.optuna-env.sha256")
    archive = on_driver("sha256sum", "/opt/optuna-spark/optuna-env.tar.gz").stdout.split()[0]
    assert set(markers) == set(worker_names()) and set(markers.values()) == {archive}, markers

    # And trials run there.
    slots = 2 * (len(before) + 1)
    s = runner("tune", "--study", study_name, "--objective", "sleep", "--n-trials", str(3 * slots),
               "--n-jobs", str(slots), "--output", "json")
    assert s.returncode == 0, s.stderr[-3000:]
    hosts = json.loads(s.stdout)["hosts"]
    assert new[0].rsplit("-", 1)[-1] in hosts, f"no trial ran on {new[0]}: {hosts}"
