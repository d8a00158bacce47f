"""Backups: the timer's service makes a consistent, gzipped dump and keeps the newest
mysql_backup_keep; a restore (playbooks/restore.yml) into a freshly converged database server
brings back every trial; a restore refuses while a study runs unless forced, says what it loses,
and saves the database it replaces first."""

from __future__ import annotations

import json
import shlex
import uuid

from conftest import playbook
from cluster_lib import RUNNER_ACCOUNT, on_driver, runner, status

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


def mysql(sql: str) -> str:
    return sudo(f"mysql -N -B -D optuna -e {shlex.quote(sql)}")


def trials(study: str) -> int:
    return int(mysql(f"SELECT COUNT(*) FROM trials JOIN studies USING (study_id) WHERE study_name = '{study}'"))


def test_restore_refuses_while_a_study_runs_and_keeps_the_database_it_replaces() -> None:
    """restore.yml drops the database: it refuses a dump cut short, and while a study runs it refuses,
    naming what runs (here a process of the runner account and a trial with a live heartbeat, made by
    hand: a real run costs a minute to start); both change nothing. Forced, it says what the dump lacks
    and first saves the database as it was, in a dump that restores it."""
    safety, name = f"{BACKUPS}/pre-restore", f"e2e-live-{uuid.uuid4().hex[:8]}"
    sudo(f"rm -rf {safety}")
    sudo(f"systemctl reset-failed optuna-spark-test-run 2>/dev/null; "
         f"systemd-run --uid={RUNNER_ACCOUNT} --unit=optuna-spark-test-run sleep 600")
    try:
        mysql(f"INSERT INTO studies (study_name) VALUES ('{name}'); SET @s = LAST_INSERT_ID(); "
              "INSERT INTO trials (number, study_id, state) VALUES (0, @s, 'COMPLETE'); "
              "INSERT INTO trials (number, study_id, state) VALUES (1, @s, 'RUNNING'); "
              "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (LAST_INSERT_ID(), UTC_TIMESTAMP())")
        # A dump cut short (a whole gzip of a part of a dump) is refused before anything is dropped.
        cut = f"{BACKUPS}/cut-short.sql.gz"
        sudo(f"gzip -dc $(ls -1t {BACKUPS}/optuna-*.sql.gz | head -n 1) | head -n 60 | gzip > {cut}")
        damaged, _ = playbook("playbooks/restore.yml", "-e", f"mysql_restore_file={cut}", timeout=600)
        sudo(f"rm -f {cut}")
        assert damaged.returncode != 0 and "is not a whole dump" in " ".join(damaged.stdout.split()), \
            damaged.stdout[-3000:]
        assert trials(name) == 2, "a refused restore changed the database"

        refused, _ = playbook("playbooks/restore.yml", timeout=600)
        out = " ".join(refused.stdout.split())
        assert refused.returncode != 0, out[-3000:]
        assert "A study runs" in out and "Nothing was restored" in out, out[-3000:]
        for reason in (f"processes of the runner account {RUNNER_ACCOUNT}", "sleep",
                       "trials RUNNING with a live heartbeat (", f"{name}: 1"):
            assert reason in out, f"{reason!r} not in {out[-3000:]}"
        assert sudo(f"test -e {safety} && echo made || echo none").strip() == "none", "a refused restore dumped"
        assert trials(name) == 2, "a refused restore changed the database"

        forced, _ = playbook("playbooks/restore.yml", "-e", "mysql_restore_force=true", timeout=600)
    finally:
        on_driver("sudo", "systemctl", "stop", "optuna-spark-test-run", timeout=60)
    out = " ".join(forced.stdout.split())
    assert forced.returncode == 0, out[-4000:]
    assert f'study "{name}" (not in the dump): 2 trial(s) the dump lacks (numbers 0-1)' in out, out[-4000:]
    kept = sudo(f"ls -1 {safety}").split()
    assert len(kept) == 1 and f"{safety}/{kept[0]}" in out, (kept, out[-2000:])
    assert sudo(f"stat -c '%a %U' {safety} {safety}/{kept[0]}").split() == ["700", "root", "600", "root"]
    assert mysql(f"SELECT COUNT(*) FROM studies WHERE study_name = '{name}'").strip() == "0", "the dump had the study"

    # The database as it was comes back from the safety dump (named: it is never the newest dump).
    back, _ = playbook("playbooks/restore.yml", "-e", f"mysql_restore_file={safety}/{kept[0]}", timeout=600)
    assert back.returncode == 0, back.stdout[-4000:]
    assert trials(name) == 2
