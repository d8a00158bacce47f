"""A second converge changes nothing, and a --check run predicts no change (marker: converge).

Both really run ansible-playbook site.yml against the inventory and read its PLAY RECAP.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from infra_lib import BIN, ROOT, Cluster

pytestmark = pytest.mark.converge

RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                   r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.M)
TASK = re.compile(r"^TASK \[(?P<task>.+?)\] \*+$")
CHANGED = re.compile(r"^changed: \[(?P<host>[^\]]+?)(?: -> [^\]]+)?\]")
RESULT = re.compile(r"^(?P<status>ok|changed|skipping|failed|fatal): \[(?P<host>[^\]]+?)(?: -> [^\]]+)?\]")
IMPORTS = "optuna_runtime : The runtime imports its packages on this node"
TIMEOUT = 1800


def run_playbook(cluster: Cluster, *extra: str) -> tuple[str, dict[str, dict[str, int]]]:
    cmd = [str(BIN / "ansible-playbook"), "-i", str(cluster.inventory), "site.yml", *extra]
    # The assertions read the per-host lines, skipped ones included, whatever the caller's settings.
    env = {**os.environ, "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "true", "ANSIBLE_DISPLAY_OK_HOSTS": "true"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    out = proc.stdout + proc.stderr
    recap_at = out.rfind("PLAY RECAP")
    assert recap_at >= 0, f"{' '.join(cmd)}: no PLAY RECAP (rc {proc.returncode}): {out[-2000:]}"
    recap = {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
             for m in RECAP.finditer(out[recap_at:])}
    assert proc.returncode == 0, f"{' '.join(cmd)} failed (rc {proc.returncode}): recap {recap}; {out[-3000:]}"
    return out, recap


def changed_tasks(out: str) -> dict[str, list[str]]:
    """host -> the tasks that reported changed."""
    task, found = "?", {}
    for line in out.splitlines():
        if m := TASK.match(line):
            task = m["task"]
        elif m := CHANGED.match(line):
            found.setdefault(m["host"], []).append(task)
    return found


def task_results(out: str, wanted: str) -> dict[str, str]:
    """host -> what the task `wanted` reported there (ok, changed, skipping, ...)."""
    task, found = "?", {}
    for line in out.splitlines():
        if m := TASK.match(line):
            task = m["task"]
        elif task == wanted and (m := RESULT.match(line)):
            found[m["host"]] = m["status"]
    return found


def assert_no_change(cluster: Cluster, out: str, recap: dict[str, dict[str, int]], what: str) -> None:
    missing = [h for h in cluster.nodes if h not in recap]
    assert not missing, f"{what}: hosts missing from the PLAY RECAP: {missing}"
    bad = {h: r for h, r in recap.items() if r["changed"] or r["failed"] or r["unreachable"]}
    tasks = changed_tasks(out)
    assert not bad, f"{what}: " + "; ".join(
        f"{h}: changed={r['changed']} failed={r['failed']} unreachable={r['unreachable']}, expected 0"
        + (f" (changed: {', '.join(tasks.get(h, []))})" if tasks.get(h) else "")
        for h, r in sorted(bad.items()))


def test_second_converge_changes_nothing(cluster: Cluster) -> None:
    # The suite runs after a converge (make converge; make verify): this is the second one.
    out, recap = run_playbook(cluster)
    assert_no_change(cluster, out, recap, "idempotence (second converge)")
    # Nothing changed, so no node re-imports its runtime (seconds of CPU on every node).
    imports = task_results(out, IMPORTS)
    assert imports == {h: "skipping" for h in cluster.nodes}, f"{IMPORTS} in a no-op converge: {imports}"


def test_check_mode_predicts_no_change_and_shows_no_secret(cluster: Cluster) -> None:
    out, recap = run_playbook(cluster, "--check", "--diff")
    assert_no_change(cluster, out, recap, "--check --diff on the converged cluster")
    password = str(cluster.var(cluster.drivers[0], "mysql_optuna_password"))
    assert password not in out, "--check --diff printed mysql_optuna_password"


def test_tags_runtime_runs_the_preflight_and_the_runtime_tasks(cluster: Cluster) -> None:
    out, recap = run_playbook(cluster, "--tags", "runtime", "-e", "optuna_runtime_verify_always=true")
    assert_no_change(cluster, out, recap, "--tags runtime on the converged cluster")
    # Asked to, every node imports its runtime although nothing changed.
    imports = task_results(out, IMPORTS)
    assert imports == {h: "ok" for h in cluster.nodes}, f"{IMPORTS} with optuna_runtime_verify_always: {imports}"
    ran = {m["task"] for line in out.splitlines() if (m := TASK.match(line))}
    for task in ("preflight : Supported operating system", "preflight : Exactly one driver",
                 "optuna_runtime : Decide whether to rebuild",
                 "optuna_runtime : Checksum of the driver's archive (decides what the workers unpack)",
                 "optuna_runtime : The runtime imports its packages on this node"):
        assert task in ran, f"--tags runtime did not run {task!r}"
    # Only the roles' argument validation (tagged `always` by Ansible) runs for the other roles.
    others = [t for t in ran if t.startswith(("spark :", "mysql :", "optuna_studies :", "optuna_runner :"))
              and "Validating arguments" not in t and "Load the OS-specific values" not in t]
    assert not others, f"--tags runtime ran tasks of other roles: {others}"


def test_check_mode_on_never_converged_nodes_stops_early_with_one_message(cluster: Cluster) -> None:
    """A fresh node is simulated by a marker path that no node has (the lab's are converged)."""
    cmd = [str(BIN / "ansible-playbook"), "-i", str(cluster.inventory), "site.yml", "--check",
           "-e", '{"preflight_converged_markers": ["/nonexistent/optuna-spark-marker"]}']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "was never converged (/nonexistent/optuna-spark-marker missing)" in out, out[-2000:]
    assert "Converge once without --check" in out
    ran = {m["task"] for line in out.splitlines() if (m := TASK.match(line))}
    assert not any(t.startswith(("mysql :", "spark :", "optuna_runtime :")) for t in ran), sorted(ran)
