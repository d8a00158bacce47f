"""playbooks/uninstall.yml removes what site.yml installed and keeps Optuna's database unless
asked (-e uninstall_database=true). Runs last: the lab is left without the bundle."""

from __future__ import annotations

import os
import subprocess

from conftest import BIN, playbook
from cluster_lib import INVENTORY, ROOT, on_driver

GONE = ["/opt/spark", "/etc/spark", "/var/lib/spark", "/opt/optuna-spark", "/etc/systemd/system/spark-worker.service",
        "/var/lib/optuna-spark-converge"]
DRIVER_GONE = ["/etc/optuna-spark", "/var/lib/optuna-spark", "/etc/sudoers.d/optuna-spark", "/usr/local/bin/optuna-spark",
               "/etc/systemd/system/spark-master.service", "/etc/systemd/system/optuna-spark-backup.timer"]


def on_all(script: str) -> str:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible"), "-i", INVENTORY, "cluster", "--become", "-m", "ansible.builtin.shell",
                           "-a", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc.stdout


def databases() -> list[str]:
    proc = on_driver("sudo", "mysql", "-N", "-B", "-e", "SHOW DATABASES")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_uninstall_keeps_the_database_unless_asked() -> None:
    proc, recap = playbook("playbooks/uninstall.yml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    left = on_all("for p in " + " ".join(GONE) + "; do test -e $p && echo LEFT $p; done; "
                  "id spark >/dev/null 2>&1 && echo LEFT spark-account; "
                  "systemctl is-active spark-worker spark-master 2>/dev/null | grep -x active && echo LEFT service; true")
    assert "LEFT" not in left, left
    driver_left = on_driver("sh", "-c", "for p in " + " ".join(DRIVER_GONE) + "; do test -e $p && echo LEFT $p; done; "
                            "id optuna-spark >/dev/null 2>&1 && echo LEFT runner-account; true").stdout
    assert "LEFT" not in driver_left, driver_left
    assert "optuna" in databases(), "the database is gone without uninstall_database=true"
    # The firewall is gone everywhere, and so the kept server listens on localhost only.
    tables = on_all("nft list tables 2>/dev/null | grep -q optuna_spark && echo LEFT table; "
                    "test -e /etc/optuna-spark && echo LEFT /etc/optuna-spark; true")
    assert "LEFT" not in tables, tables
    listening = on_driver("sh", "-c", "ss -Hltn 'sport = :3306'").stdout.split()
    assert listening and all(a.startswith(("127.0.0.1:", "[::1]:")) for a in listening if ":3306" in a), listening
    again, recap = playbook("playbooks/uninstall.yml")
    assert again.returncode == 0 and all(r["changed"] == 0 for r in recap.values()), recap

    proc, _ = playbook("playbooks/uninstall.yml", "-e", "uninstall_database=true")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "optuna" not in databases()
    users = on_driver("sudo", "mysql", "-N", "-B", "-e", "SELECT user FROM mysql.user").stdout.split()
    assert "optuna_user" not in users
