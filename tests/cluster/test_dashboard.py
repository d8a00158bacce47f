"""The dashboard as an operator sees it: through an ssh tunnel via the driver (the firewall lets
only the cluster's hosts reach it), in a real headless Chromium, listing both studies."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from browser import dom, png_size, screenshot
from cluster_lib import INVENTORY, ROOT

PORT = 8090


def driver_hostvars() -> dict:
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", INVENTORY, "--list"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    return data["_meta"]["hostvars"][data["driver"]["hosts"][0]]


@pytest.fixture(scope="module")
def tunnel():
    hv = driver_hostvars()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    argv = ["ssh", "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", *hv["ansible_ssh_common_args"].split(),
            "-i", hv["ansible_ssh_private_key_file"], "-l", hv["ansible_user"],
            "-L", f"127.0.0.1:{local}:{hv['cluster_address']}:{PORT}", hv["ansible_host"]]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", local), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, f"ssh -L failed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the tunnel to the dashboard did not open"
            time.sleep(0.3)
    yield f"http://127.0.0.1:{local}"
    proc.terminate()
    proc.wait(timeout=10)


def test_the_dashboard_lists_both_studies_in_chromium(tunnel: str, tmp_path: Path) -> None:
    # Each study is a card headed "<study id>. <name>". The page fills its list from /api/studies
    # after a 2 MB bundle; on a loaded machine that can outlast one virtual-time budget, so it is
    # looked at up to three times.
    def listed(page: str, study: str) -> bool:
        return re.search(rf">(\d+\. )?{re.escape(study)}<", page) is not None

    for attempt in range(3):
        page = dom(f"{tunnel}/dashboard", tmp_path / f"profile{attempt}")
        if all(listed(page, study) for study in ("optuna-spark", "optuna-spark-xgboost")):
            break
    for study in ("optuna-spark", "optuna-spark-xgboost"):
        assert listed(page, study), f"the dashboard's page does not list {study}: {page[:3000]}"
    shot = screenshot(f"{tunnel}/dashboard", tmp_path / "profile-shot", "dashboard.png")
    width, height = png_size(shot)
    assert (width, height) == (1400, 900) and shot.stat().st_size > 20_000, (width, height, shot.stat().st_size)
