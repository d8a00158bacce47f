"""A runtime that stops importing is caught by the role and repaired by the next converge (marker:
fault; the lab only). A converge that changes nothing skips the import check, so a failed check
must not leave the node's marker behind, or the next run would pass on the broken env: hide one
package of a worker's runtime, converge that worker with the check forced (it fails in one line
and removes the env's marker), converge again without forcing it (the missing marker makes the
worker unpack the driver's archive and check it), and the runtime imports again."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from infra_lib import BIN, ROOT, Cluster, Node

pytestmark = pytest.mark.fault

TIMEOUT = 1200


def runtime_playbook(cluster: Cluster, host: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "ansible-playbook"), "-i", str(cluster.inventory), "site.yml", "--tags", "runtime",
           "--limit", host, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)


def test_a_broken_runtime_fails_the_converge_and_the_next_one_repairs_it(cluster: Cluster) -> None:
    victim = cluster.workers[-1]
    node = Node(victim, cluster.host(victim), cluster)
    python = f"{node.var('optuna_runtime_env_path')}/bin/python"
    marker = f"{node.var('optuna_runtime_env_path')}/.optuna-env.sha256"
    where = node.check(f"{python} -c {shlex.quote('import joblibspark, os; print(os.path.dirname(joblibspark.__file__))')}",
                       what="locate joblibspark in the runtime").strip()
    node.check(f"mv {shlex.quote(where)} {shlex.quote(where + '.hidden')}", what="hide joblibspark")
    try:
        broken = runtime_playbook(cluster, victim, "-e", "optuna_runtime_verify_always=true")
        out = broken.stdout + broken.stderr
        assert broken.returncode != 0, f"a converge on a runtime without joblibspark passed: {out[-2000:]}"
        assert "cannot import" in out and "joblibspark" in out, out[-2000:]
        assert not node.host.file(marker).exists, f"{victim}: {marker} survived the failed import check"

        repaired = runtime_playbook(cluster, victim)
        out = repaired.stdout + repaired.stderr
        assert repaired.returncode == 0, f"the converge after the failed check failed: {out[-3000:]}"
        assert f"changed: [{victim}]" in out, f"{victim}: nothing was unpacked again: {out[-2000:]}"
        assert node.host.file(marker).exists, f"{victim}: no env marker after the repairing converge"
        node.check(f"{python} -c 'import joblibspark'", what="import joblibspark after the repair")
    finally:
        # The repairing unpack replaced the env; if it did not get that far, put the package back.
        node.run(f"test -e {shlex.quote(where + '.hidden')} && mv {shlex.quote(where + '.hidden')} {shlex.quote(where)}")
