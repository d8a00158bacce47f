"""Day-2 operations on a converged lab, in order: grow it by a worker (a --limit converge), a
rolling restart under a running study, backup and restore, cleanup, and last uninstall (which
leaves the lab without the bundle: run `make lab-down` after). `make test-day2`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

from cluster_lib import INVENTORY, ROOT, converged_cluster, study_name  # noqa: E402,F401

BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                   r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.M)


def playbook(path: str, *args: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess[str], dict]:
    """ansible-playbook PATH against the lab, as `make converge` runs it; returns the recap too."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", INVENTORY, path, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout
    recap = {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
             for m in RECAP.finditer(out[out.rfind("PLAY RECAP"):])} if "PLAY RECAP" in out else {}
    return proc, recap
