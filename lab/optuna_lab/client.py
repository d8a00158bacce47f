"""One client for a converged cluster (the lab's, or any inventory's), shared by the cluster
tests (tests/cluster) and the lab benchmarks (bench/lab.py): commands on the driver through
`bin/on-driver` (ssh as the inventory's login user, no sudo, no secret on a command line), the
runner as the operator runs it, and the Spark master's view read on the driver.

Standard library only, like the rest of the package (it runs with whatever Python calls it).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ON_DRIVER = ROOT / "bin" / "on-driver"
RUNNER = "optuna-spark"  # the operator's command on the driver (its sudo rule runs it as the runner account)
RUNTIME_PYTHON = "/opt/optuna-spark/env/bin/python"

# Printed on the driver by the runtime's Python: the master's address from the runner's config,
# then the master's /json/ (reached from the driver, on the cluster address).
MASTER_JSON = """
import json, tomllib, urllib.parse, urllib.request
master = tomllib.load(open('/etc/optuna-spark/runner.toml', 'rb'))['master']
host = urllib.parse.urlparse(master).hostname
data = json.load(urllib.request.urlopen(f'http://{host}:8080/json/', timeout=10))
alive = [w for w in data['workers'] if w['state'] == 'ALIVE']
print(json.dumps({'alive': sorted(w['host'] for w in alive),
                  'cores_used': sum(w['coresused'] for w in alive),
                  'active_apps': [a['name'] for a in data.get('activeapps', [])]}))
"""


@dataclass(frozen=True)
class ClusterClient:
    inventory: str
    python: str = sys.executable  # the interpreter that runs bin/on-driver

    def on_driver_argv(self, *command: str) -> list[str]:
        return [self.python, str(ON_DRIVER), self.inventory, "--", *command]

    def on_driver(self, *command: str, input: str | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run `command` on the driver as the login user; its output captured."""
        return subprocess.run(self.on_driver_argv(*command), input=input, capture_output=True, text=True,
                              timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)

    def runner_line(self, *args: str) -> list[str]:
        """The driver's shell command that runs `optuna-spark ARGS` from /tmp."""
        return ["sh", "-c", "cd /tmp && exec " + " ".join(shlex.quote(a) for a in (RUNNER, *args))]

    def runner(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.on_driver(*self.runner_line(*args), timeout=timeout)

    def runner_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.on_driver_argv(*self.runner_line(*args)), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def master_state(self) -> dict[str, Any]:
        """The Spark master's view: ALIVE worker addresses, cores in use, running applications
        (None for the last two when the master cannot be read)."""
        proc = self.on_driver(RUNTIME_PYTHON, "-c", MASTER_JSON, timeout=60)
        if proc.returncode != 0:
            return {"alive": [], "cores_used": None, "active_apps": None}
        state: dict[str, Any] = json.loads(proc.stdout)
        return state
