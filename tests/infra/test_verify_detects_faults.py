"""The suite catches a broken node: stop spark-worker on one worker, run the suite, expect exactly
that host and that fault to fail, then restore the worker (marker: fault; `make verify-fault`)."""

from __future__ import annotations

import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from infra_lib import BIN, INNER_ENV, ROOT, Cluster, Node, alive_worker_hosts, master_state

pytestmark = pytest.mark.fault

# The tests that must fail, and only on the broken worker (the driver's check names it).
EXPECTED_FAILURES = {
    "test_workers.py::test_spark_worker_enabled_and_running[{worker}]",
    "test_workers.py::test_spark_worker_registered_with_master[{worker}]",
    "test_driver.py::test_spark_master_reports_every_worker_alive[{driver}]",
    # The hardening checks look at the running worker's process and port.
    "test_hardening.py::test_fixed_spark_ports[{worker}]",
    "test_hardening.py::test_spark_authentication_and_encryption_are_on[{worker}]",
    "test_hardening.py::test_units_are_sandboxed_in_effect[{worker}]",
}


def wait_alive(driver: Node, address: str, *, alive: bool, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            now = address in alive_worker_hosts(master_state(driver))
        except AssertionError:
            now = False
        if now == alive:
            return
        assert time.monotonic() < deadline, (
            f"{driver.name}: worker {address} still {'not ' if alive else ''}ALIVE in the master after {timeout:.0f} s")
        time.sleep(2)


def failures(junit: Path) -> dict[str, str]:
    """file::test[param] -> failure message, for every failed or erroring test case."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            module = case.get("classname", "").split(".")[-1]
            found[f"{module}.py::{case.get('name')}"] = (bad.get("message") or "") + "\n" + (bad.text or "")
    return found


def test_stopped_spark_worker_is_reported_on_that_host_only(cluster: Cluster, tmp_path: Path) -> None:
    assert len(cluster.workers) >= 2, "the fault test needs two workers (one broken, one not)"
    victim = cluster.workers[0]
    others = [h for h in cluster.nodes if h != victim]
    driver = Node(cluster.drivers[0], cluster.host(cluster.drivers[0]), cluster)
    address = cluster.var(victim, "cluster_address")

    stop = cluster.ansible(victim, "ansible.builtin.command", "systemctl stop spark-worker")
    assert stop.returncode == 0, f"{victim}: systemctl stop spark-worker failed: {stop.stdout[-500:]}"
    try:
        wait_alive(driver, address, alive=False)
        junit = tmp_path / "inner.xml"
        env = {**os.environ, INNER_ENV: "1"}
        started = time.monotonic()
        inner = subprocess.run(
            [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "tests/infra", "-m", "not converge and not fault",
             f"--ansible-inventory={cluster.inventory}", f"--junitxml={junit}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        took = time.monotonic() - started
        assert inner.returncode == 1, (
            f"the suite with spark-worker stopped on {victim} exited {inner.returncode}, expected 1 (tests failed); "
            f"{inner.stdout[-2000:]}")
        failed = failures(junit)
        expected = {f.format(worker=victim, driver=driver.name) for f in EXPECTED_FAILURES}
        assert set(failed) == expected, (
            f"with spark-worker stopped on {victim}, failed {sorted(failed)}, expected exactly {sorted(expected)}")
        for test, message in failed.items():
            assert victim in message, f"{test}: its failure does not name {victim}: {message[:400]}"
            assert not any(other in message.split("\n")[0] for other in others if other != driver.name), \
                f"{test}: its failure names another host: {message[:400]}"
            assert "spark-worker" in message or "ALIVE" in message, \
                f"{test}: its failure does not say what broke: {message[:400]}"
        print(f"inner suite: {took:.0f} s, failures: {sorted(failed)}")
    finally:
        start = cluster.ansible(victim, "ansible.builtin.command", "systemctl start spark-worker")
        assert start.returncode == 0, f"{victim}: systemctl start spark-worker failed: {start.stdout[-500:]}"
        wait_alive(driver, address, alive=True)
