from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.config import ConfigError
from runner.storage import (StorageTarget, describe_db_error, read_password_file, redact_url,
                            resolve_password, validate_url)


@pytest.mark.parametrize("url", ["sqlite:///work/optuna.db", "mysql://optuna_user@driver/optuna",
                                 "mysql+pymysql://u@10.0.0.1:3307/optuna", "postgresql://u@h/db"])
def test_valid_urls(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize("url, message", [
    ("not a url", "malformed storage URL"),
    ("mysql://u:secret@h/optuna", "carries a password"),
    ("oracle://u@h/db", "unsupported storage backend"),
    ("sqlite://", "needs a file path"),
    ("sqlite:///:memory:", "needs a file path"),
    ("mysql://u@/optuna", "needs a host"),
])
def test_invalid_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        validate_url(url)
    assert "secret" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("mysql://u:s3cr3t@h/db") == "mysql://u:***@h/db"
    assert redact_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o440])
def test_a_password_file_the_owner_or_its_group_reads_is_accepted(tmp_path: Path, mode: int) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cr3t\n")
    os.chmod(f, mode)
    assert read_password_file(f) == "s3cr3t"


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o650, 0o620])
def test_a_password_file_open_to_others_or_group_writable_is_refused(tmp_path: Path, mode: int) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cr3t\n")
    os.chmod(f, mode)
    with pytest.raises(ConfigError) as info:
        read_password_file(f)
    assert str(info.value) == (f"password file {f} is open to other users (mode {mode:04o}): chmod 600 {f} "
                               "(or chmod 640 to share it with its group)")


def test_a_password_file_must_hold_a_password(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    os.chmod(empty, 0o600)
    with pytest.raises(ConfigError, match="empty"):
        read_password_file(empty)
    with pytest.raises(ConfigError, match="does not exist"):
        read_password_file(tmp_path / "missing")


def test_password_from_environment() -> None:
    assert resolve_password(None, {"OPTUNA_SPARK_STORAGE_PASSWORD": "pw"}) == "pw"
    assert resolve_password(None, {}) is None


def test_target_hides_its_password() -> None:
    target = StorageTarget("mysql+pymysql://u@h/optuna", "s3cr3t")
    assert "s3cr3t" not in repr(target)
    assert "s3cr3t" in target.connect_url()
    assert target.url == "mysql+pymysql://u@h/optuna"


def test_mysql_url_falls_back_to_pymysql_without_mysqlclient() -> None:
    url = StorageTarget("mysql://u@h/optuna").connect_url()
    try:
        import MySQLdb  # noqa: F401
        assert url.startswith("mysql+mysqldb://")
    except ImportError:
        assert url.startswith("mysql+pymysql://")


class _DBError(Exception):
    pass


@pytest.mark.parametrize("args, expected", [
    ((1045, "Access denied for user 'u'@'x' (using password: YES)"), "wrong password"),
    ((2003, "Can't connect to MySQL server on 'h' ([Errno 111] Connection refused)"), "unreachable at h:3306"),
    ((1049, "Unknown database 'optuna'"), "has no database 'optuna'"),
])
def test_database_errors_become_one_line(args: tuple, expected: str) -> None:
    exc = _DBError(*args)
    exc.orig = exc  # type: ignore[attr-defined]
    line = describe_db_error(exc, StorageTarget("mysql://u@h/optuna", "pw"))
    assert expected in line and "\n" not in line
