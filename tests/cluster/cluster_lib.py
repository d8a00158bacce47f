"""End-to-end tests on a converged lab: the runner on the driver, executors on the workers,
the studies in MySQL on the driver. Faults are injected with the lab's handles (lab/lab.py).

    make test-cluster                      # the default lab, inventory/lab
    make test-cluster INVENTORY=inventory/lab-x LAB_NAME=x
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lab"))

from optuna_lab.client import RUNNER, ClusterClient  # noqa: E402  (the lab's client, shared with bench/lab.py)

INVENTORY = os.environ.get("OPTUNA_SPARK_INVENTORY", str(ROOT / "inventory" / "lab"))
# The operator's command: runs the runner (and its Spark driver) as the runner account, through
# its sudo rule; the tests log in as the inventory's unprivileged user, like an operator.
RUNNER_ACCOUNT = "optuna-spark"
# Faster fault detection than the defaults, so that a killed worker costs seconds, not minutes: a
# trial is taken for dead after 29 s without a heartbeat (optuna_spark.ledger.staleness_window:
# the outage timeout, 20 s, still longer than a MySQL restart, two intervals and 5 s).
FAST_FAULTS = ["--heartbeat-interval", "2", "--grace-period", "10", "--outage-timeout", "20",
               "--conf", "spark.network.timeout=30s", "--conf", "spark.executor.heartbeatInterval=5s",
               "--conf", "spark.network.timeoutInterval=5s"]


CLIENT = ClusterClient(INVENTORY)


def on_driver_argv(*command: str) -> list[str]:
    return CLIENT.on_driver_argv(*command)


def on_driver(*command: str, input: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return CLIENT.on_driver(*command, input=input, timeout=timeout)


def lab(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), *args], check=True, capture_output=True,
                   text=True, timeout=300)


def runner(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return CLIENT.runner(*args, timeout=timeout)


def runner_background(*args: str) -> subprocess.Popen[str]:
    return CLIENT.runner_background(*args)


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def status(study: str) -> dict:
    proc = runner("status", "--study", study, "--output", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_for_trials(study: str, at_least: int, timeout: float = 240) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        proc = runner("status", "--study", study, "--output", "json", timeout=120)
        if proc.returncode == 0:
            n = sum(json.loads(proc.stdout)["states"].values())
            if n >= at_least:
                return n
        time.sleep(1)
    raise AssertionError(f"study {study} did not reach {at_least} trials in {timeout} s")


def master_state() -> dict:
    """The Spark master's view: ALIVE worker addresses, cores in use, running applications."""
    return CLIENT.master_state()


def alive_workers() -> list[str]:
    """Addresses of the workers the Spark master reports ALIVE."""
    return master_state()["alive"]


def wait_idle(timeout: float = 180) -> None:
    """Every worker ALIVE, no application running, no core in use: a test that counts where
    trials ran must not start while the previous application's executors still hold cores
    (the new one would get executors on the free workers only)."""
    want = len(worker_names())
    deadline = time.time() + timeout
    state: dict = {}
    while time.time() < deadline:
        state = master_state()
        if len(state["alive"]) >= want and state["cores_used"] == 0 and not state["active_apps"]:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster is not idle after {timeout} s: {state}")


def worker_names() -> list[str]:
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", INVENTORY, "--list"],
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    return data["workers"]["hosts"]


def wait_alive(count: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(alive_workers()) >= count:
            return
        time.sleep(2)
    raise AssertionError(f"fewer than {count} Spark workers ALIVE after {timeout} s: {alive_workers()}")


@pytest.fixture(scope="session", autouse=True)
def converged_cluster():
    if not Path(INVENTORY).exists():
        pytest.fail(f"no inventory at {INVENTORY}: run `make lab-up converge` first")
    # These suites kill processes, restart and wipe MySQL, rotate secrets and uninstall: never
    # against a real cluster's inventory, only one the lab generated.
    if not (Path(INVENTORY) / ".generated-by-lab").is_file():
        pytest.fail(f"{INVENTORY} is not a lab inventory: tests/cluster and tests/day2 break what they "
                    "run on, the lab only (make lab-up)", pytrace=False)
    proc = on_driver("sh", "-c", f"command -v {RUNNER}")
    if proc.returncode != 0:
        pytest.fail(f"the runner is not installed on the driver ({RUNNER}): run `make converge` first")
    wait_alive(len(worker_names()))


@pytest.fixture
def study_name():
    wait_idle()
    yield f"e2e-{uuid.uuid4().hex[:8]}"
    # A test that failed half-way must not leave its application holding the workers' cores,
    # or every later test would wait for executors (pkill: exit 1 when nothing matched).
    kill_runs()


def kill_runs() -> None:
    """SIGKILL every run on the driver (they run as the runner account: through sudo)."""
    # [x]: the pattern must not match sudo's own command line (which carries it).
    on_driver("sudo", "pkill", "-9", "-f", "[o]ptuna_spark/spark_app.py|org.apache.spark.deploy.[S]parkSubmit|optuna-spark [t]une|optuna-spark [s]ubmit",
              timeout=60)
