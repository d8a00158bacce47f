"""The converge gate (roles/converge_gate, opt-in): a converge of an unchanged cluster runs no
role, and any drift or input change still runs the roles it concerns (marker: fault; the lab only,
since it edits files and stops a service on purpose).

Each step really runs ansible-playbook site.yml with -e converge_gate_enabled=true and reads which
tasks ran. A role's first working task stands for the role: when the gate ends the role, that task
is never run on any host.
"""

from __future__ import annotations

import shlex

import pytest

from infra_lib import Cluster, Node
from test_converge import RESULT, TASK, assert_no_change, changed_tasks, run_playbook

pytestmark = pytest.mark.fault

GATE = ("-e", "converge_gate_enabled=true")
# role -> its first task after the gate (runs on every host of the role whenever the role runs).
FIRST_TASK = {
    "mysql": "mysql : Start the server at boot",
    "optuna_firewall": "optuna_firewall : Rules directory",
    "spark": "spark : Spark group",
    "optuna_runtime": "optuna_runtime : Runtime directory",
    "optuna_runner": "optuna_runner : Runner group",
    "optuna_studies": "optuna_studies : List the existing studies",
    "optuna_dashboard": "optuna_dashboard : Its group",
}


def roles_run(out: str) -> set[str]:
    """The roles whose first task ran (ok or changed) on at least one host."""
    task, ran = "?", set()
    for line in out.splitlines():
        if m := TASK.match(line):
            task = m["task"]
        elif (m := RESULT.match(line)) and m["status"] in ("ok", "changed"):
            ran.update(role for role, first in FIRST_TASK.items() if first == task)
    return ran


def test_the_gate_skips_an_unchanged_cluster_and_runs_what_drifted(cluster: Cluster) -> None:
    driver = Node(cluster.drivers[0], cluster.host(cluster.drivers[0]), cluster)
    victim = Node(cluster.workers[-1], cluster.host(cluster.workers[-1]), cluster)
    gate_dir = "/var/lib/optuna-spark-converge"

    # A first gated run on a converged cluster runs every role and records each.
    out, recap = run_playbook(cluster, *GATE)
    assert_no_change(cluster, out, recap, "the first gated converge of a converged cluster")
    for node in (driver, victim):
        records = node.check(f"ls {gate_dir}", what="list the gate's records").split()
        assert "spark" in records and "optuna_runtime" in records, f"{node}: records {records}"
        mode = node.check(f"stat -c '%a %U' {gate_dir}").strip()
        assert mode == "700 root", f"{node}: {gate_dir} is {mode}, expected 700 root"

    # Unchanged: no role runs, in a real run and in --check.
    for extra in ((), ("--check",)):
        out, recap = run_playbook(cluster, *GATE, *extra)
        assert_no_change(cluster, out, recap, f"a gated no-op converge {' '.join(extra)}")
        assert roles_run(out) == set(), f"gated no-op {' '.join(extra)} ran roles: {roles_run(out)}"

    # Drift: a hand-edited Spark file on a worker, a stopped Spark worker, a loosened mode on the
    # driver. Only the roles that manage them run, and they repair all three.
    conf = f"{victim.var('spark_conf_dir')}/spark-defaults.conf"
    runner_toml = str(driver.var("optuna_runner_config_file"))
    victim.check(f"echo 'spark.edited.by.hand true' >> {shlex.quote(conf)}", what="edit spark-defaults.conf")
    victim.check("systemctl stop spark-worker", what="stop spark-worker")
    mode_before = driver.check(f"stat -c %a {shlex.quote(runner_toml)}").strip()
    driver.check(f"chmod 0666 {shlex.quote(runner_toml)}", what="loosen runner.toml")
    out, recap = run_playbook(cluster, *GATE)
    assert roles_run(out) == {"spark", "optuna_runner"}, f"after the drift the gate ran {roles_run(out)}"
    changed = changed_tasks(out)
    assert any("Spark-defaults.conf" in t for t in changed.get(victim.name, [])), changed
    assert any("Runner configuration" in t for t in changed.get(driver.name, [])), changed
    assert "spark.edited.by.hand" not in victim.check(f"cat {shlex.quote(conf)}")
    assert victim.check("systemctl is-active spark-worker").strip() == "active"
    assert driver.check(f"stat -c %a {shlex.quote(runner_toml)}").strip() == mode_before

    # Repaired and recorded: the next gated run again runs nothing.
    out, recap = run_playbook(cluster, *GATE)
    assert_no_change(cluster, out, recap, "the gated converge after the repair")
    assert roles_run(out) == set(), f"after the repair the gate still ran {roles_run(out)}"

    # A changed input (any variable the roles could read) runs every role.
    out, recap = run_playbook(cluster, *GATE, "-e", "optuna_gate_test_input=1")
    assert_no_change(cluster, out, recap, "a gated converge with a new variable")
    assert roles_run(out) == set(FIRST_TASK), f"a new variable ran only {roles_run(out)}"
