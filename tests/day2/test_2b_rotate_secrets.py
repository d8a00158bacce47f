"""Rotating the Spark secret (`-e spark_auth_secret_rotate=true`): every node's daemons and the
runner get the new one together, and studies run again right after."""

from __future__ import annotations

import json

from conftest import playbook
from cluster_lib import on_driver, runner, wait_alive, worker_names


def secret_digests() -> list[str]:
    """sha256 of the driver's secret, its daemons' properties' secret line and the runner's copy
    (hashed on the driver: the secret itself never leaves it)."""
    proc = on_driver("sudo", "sh", "-c",
                     "sha256sum < /etc/spark/daemon/auth-secret | cut -c1-64; "
                     "sed -n 's/^spark.authenticate.secret //p' /etc/spark/daemon/spark-daemon.conf | tr -d '\\n' "
                     "| sha256sum | cut -c1-64; tr -d '\\n' < /etc/optuna-spark/private/spark-secret | sha256sum | cut -c1-64")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_rotating_the_spark_secret(study_name: str) -> None:
    before = secret_digests()
    assert len(set(before[1:])) == 1, before
    proc, recap = playbook("site.yml", "-e", "spark_auth_secret_rotate=true")
    assert proc.returncode == 0, proc.stdout[-4000:]
    after = secret_digests()
    assert len(set(after[1:])) == 1 and after[1] != before[1], (before, after)
    wait_alive(len(worker_names()))
    s = runner("tune", "--study", study_name, "--objective", "quadratic", "--n-trials", "12", "--output", "json")
    assert s.returncode == 0, s.stderr[-3000:]
    assert json.loads(s.stdout)["finished"] == 12
