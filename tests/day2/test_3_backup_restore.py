"""Backups: the timer's service makes a consistent, gzipped dump and keeps the newest
mysql_backup_keep; a restore (playbooks/restore.yml) into a freshly converged database server
brings back every trial."""

from __future__ import annotations

import json

from conftest import playbook
from cluster_lib import on_driver, runner, status

BACKUPS = "/var/backups/optuna-spark"
KEEP = 14


def sudo(script: str, timeout: float = 300):
    proc = on_driver("sudo", "sh", "-c", script, timeout=timeout)
    assert proc.returncode == 0, f"{script}: {proc.stderr[-2000:]}"
    return proc.stdout


def test_backup_then_restore_into_a_fresh_server(study_name: str) -> None:
    s = runner("tune", "--study", study_name, "--objective", "quadratic", "--n-trials", "12", "--output", "json")
    assert s.returncode == 0, s.stderr[-3000:]
    before = status(study_name)

    # Old dumps beyond the retention are removed by the next backup; the new dump is kept.
    sudo(f"for i in $(seq 1 {KEEP + 2}); do f={BACKUPS}/optuna-2000010${{i}}T000000Z.sql.gz; "
         f"echo old | gzip > $f; touch -d \"2000-01-01 +$i hours\" $f; done")
    sudo("systemctl start optuna-spark-backup.service")
    dumps = sudo(f"ls -1t {BACKUPS}").split()
    assert len(dumps) == KEEP, dumps
    newest = f"{BACKUPS}/{dumps[0]}"
    assert not dumps[0].startswith("optuna-2000"), dumps
    assert study_name in sudo(f"gzip -dc {newest}"), "the dump does not hold the study"
    mode = sudo(f"stat -c '%a %U' {BACKUPS} {newest}").split()
    assert mode == ["700", "root", "600", "root"], mode
    # A backup that cannot be made (the server is down) fails, and keeps every good dump.
    sudo("systemctl stop mariadb")
    failed = on_driver("sudo", "systemctl", "start", "optuna-spark-backup.service")
    sudo("systemctl start mariadb")
    assert failed.returncode != 0, "a backup with the server down reported success"
    assert sudo(f"ls -1t {BACKUPS}").split() == dumps

    # A fresh database server: an empty data directory, then converged (database and account).
    sudo("systemctl stop mariadb && rm -rf /var/lib/mysql/* && "
         "mariadb-install-db --user=mysql --skip-test-db >/dev/null && systemctl start mariadb")
    converge, _ = playbook("site.yml", "--tags", "mysql")
    assert converge.returncode == 0, converge.stdout[-4000:]
    gone = runner("status", "--study", study_name)
    assert gone.returncode != 0, "the study survived the wipe: nothing was tested"

    restore, _ = playbook("playbooks/restore.yml")
    assert restore.returncode == 0, restore.stdout[-4000:]
    assert newest in restore.stdout
    after = status(study_name)
    assert after == before, f"restored {json.dumps(after)}, backed up {json.dumps(before)}"
