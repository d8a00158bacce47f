"""The runner as an operator on the driver: its own account (never root) owns the work directory
and reads the password file; the login users may run `optuna-spark` as that account and nothing
else; `optuna-spark`, `optuna` and `spark-submit` are on the PATH with the cluster's Spark; old run
folders and backups are cleaned by timers."""

from __future__ import annotations

import re
import shlex
import tomllib

from infra_lib import Node


def as_user(driver: Node, user: str, command: str):
    """`command` run by `user` through a login-less shell (root -> user: runuser)."""
    return driver.run(f"runuser -u {shlex.quote(user)} -- sh -c {shlex.quote(command)}")


def test_runner_account_and_groups(driver: Node) -> None:
    user, group = driver.var("optuna_runner_user"), driver.var("optuna_runner_group")
    account = driver.host.user(user)
    assert account.exists and account.uid != 0 and account.uid < 1000, f"{driver.name}: {user} is not a system account"
    assert account.group == group and account.shell in ("/usr/sbin/nologin", "/bin/false")
    operators = driver.var("optuna_runner_operators")
    assert operators, f"{driver.name}: no operator (the inventory's login user) is configured"
    for name in operators:
        assert driver.var("optuna_runner_operators_group") in driver.host.user(name).groups, \
            f"{driver.name}: {name} is not in {driver.var('optuna_runner_operators_group')}"
        assert group not in driver.host.user(name).groups, f"{driver.name}: {name} can read the password itself"


def test_runner_files_modes(driver: Node) -> None:
    user, group = driver.var("optuna_runner_user"), driver.var("optuna_runner_group")
    password = driver.host.file(driver.var("optuna_runner_password_file"))
    assert (password.user, password.group, password.mode) == ("root", group, 0o640), \
        f"{driver.name}: {password.path} is {password.user}:{password.group} {password.mode:o}, expected root:{group} 640"
    work = driver.host.file(driver.var("optuna_runner_work_dir"))
    assert work.is_directory and work.user == user and work.mode == 0o2750
    config = tomllib.loads(driver.host.file(driver.var("optuna_runner_config_file")).content_string)
    assert "password" not in config and config["password_file"] == password.path
    assert config["spark_home"] == driver.var("optuna_runner_spark_home")
    assert config["spark_conf_dir"] == driver.var("optuna_runner_spark_conf_dir")
    slots = sum(int(driver.cluster.var(w, "spark_worker_cores")) for w in driver.cluster.workers)
    assert config["n_jobs"] == slots, f"{driver.name}: runner.toml n_jobs {config['n_jobs']}, the cluster has {slots} slots"


def test_the_login_user_runs_the_runner_as_its_account_and_nothing_else(driver: Node) -> None:
    operator = driver.var("optuna_runner_operators")[0]
    user = driver.var("optuna_runner_user")
    who = as_user(driver, operator, "optuna-spark --version")
    assert who.rc == 0 and who.stdout.startswith("optuna-spark"), who.stderr
    # The password file: not readable by the operator directly (the runner account reads it; the
    # operators' objectives run with the storage's credentials all the same: README, Security).
    path = driver.var("optuna_runner_password_file")
    assert as_user(driver, user, f"test -r {path}").rc == 0
    rules = driver.check("cat /etc/sudoers.d/optuna-spark")
    allowed = [line for line in rules.splitlines() if line.startswith("%")]
    runner = driver.var("optuna_runner_python").rsplit("/", 1)[0] + "/optuna-spark"
    assert allowed == [f"%{driver.var('optuna_runner_operators_group')} ALL=({user}) NOPASSWD: {runner}"], allowed
    assert driver.run("visudo -cf /etc/sudoers.d/optuna-spark").rc == 0


def test_a_second_operator_gets_the_runner_and_nothing_more(driver: Node) -> None:
    """A login user without sudo of its own (the lab's admin has full sudo), added to the group."""
    group, user = driver.var("optuna_runner_operators_group"), driver.var("optuna_runner_user")
    driver.check(f"id optuna-test-operator >/dev/null 2>&1 || useradd --create-home --groups {group} optuna-test-operator")
    try:
        runner = as_user(driver, "optuna-test-operator", "optuna-spark --version")
        assert runner.rc == 0 and runner.stdout.startswith("optuna-spark"), runner.stdout + runner.stderr
        for denied in (f"sudo -n -u {user} /bin/true", "sudo -n true",
                       f"cat {shlex.quote(driver.var('optuna_runner_password_file'))}"):
            proc = as_user(driver, "optuna-test-operator", denied)
            assert proc.rc != 0, f"{driver.name}: a plain operator could run {denied!r}"
    finally:
        driver.run("userdel --remove optuna-test-operator")


def test_commands_on_the_path_with_the_clusters_spark(driver: Node) -> None:
    operator = driver.var("optuna_runner_operators")[0]
    for command in ("optuna-spark", "optuna", "spark-submit"):
        found = as_user(driver, operator, f"command -v {command}")
        assert found.rc == 0 and found.stdout.strip() == f"{driver.var('optuna_runner_bin_dir')}/{command}", \
            f"{driver.name}: {command} is not on the login user's PATH"
    version = as_user(driver, operator, "spark-submit --version 2>&1")
    assert version.rc == 0 and re.search(rf"version {re.escape(driver.var('spark_version'))}", version.stdout), \
        version.stdout[-800:]
    login = driver.run(f"runuser -l {shlex.quote(operator)} -c 'echo $SPARK_HOME $SPARK_CONF_DIR'")
    assert login.stdout.split() == [driver.var("optuna_runner_spark_home"), driver.var("optuna_runner_spark_conf_dir")]


def test_old_run_folders_and_backups_are_cleaned_by_timers(driver: Node) -> None:
    tmpfiles = driver.host.file("/etc/tmpfiles.d/optuna-spark-runs.conf").content_string
    assert f"e {driver.var('optuna_runner_work_dir')}/runs - - - mM:{driver.var('optuna_runner_runs_max_age')}" in tmpfiles
    assert driver.host.service("systemd-tmpfiles-clean.timer").is_enabled
    if driver.var("mysql_backup_enabled"):
        timer = driver.host.service("optuna-spark-backup.timer")
        assert timer.is_enabled and timer.is_running, f"{driver.name}: optuna-spark-backup.timer is not active"
        backups = driver.host.file(driver.var("mysql_backup_dir"))
        assert backups.is_directory and backups.mode == 0o700 and backups.user == "root"
