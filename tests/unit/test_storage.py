from __future__ import annotations

import os
from pathlib import Path

import pytest

from optuna_spark.config import ConfigError
from optuna_spark.storage import (StorageTarget, describe_db_error, read_password_file, redact_url,
                            resolve_password, validate_url)


@pytest.mark.parametrize("url", ["sqlite:///work/optuna.db", "mysql://optuna_user@driver/optuna",
                                 "mysql+pymysql://u@10.0.0.1:3307/optuna"])
def test_valid_urls(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize("url, message", [
    ("not a url", "malformed storage URL"),
    ("mysql://u:secret@h/optuna", "carries a password"),
    ("oracle://u@h/db", "unsupported storage backend"),
    ("sqlite://", "needs a file path"),
    ("sqlite:///:memory:", "needs a file path"),
    ("mysql://u@/optuna", "needs a host"),
    ("mysql+nosuchdriver://u@h/optuna", "unknown database driver in 'mysql\\+nosuchdriver'"),
    ("postgresql://u@h/db", "the database driver of 'postgresql' is not installed"),
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


def test_tls_always_means_a_verified_server(tmp_path: Path) -> None:
    from optuna_spark.storage import mysql_tls_options
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert mysql_tls_options("pymysql", {"ssl_ca": str(ca)}) == {}  # PyMySQL verifies chain and host
    assert mysql_tls_options("mysqldb", {"ssl_ca": str(ca)}) == {"ssl_mode": "VERIFY_IDENTITY"}
    assert mysql_tls_options("pymysql", {}) == {"ssl_disabled": "true"}  # no unverified TLS
    from sqlalchemy.engine import make_url
    url = make_url(StorageTarget(f"mysql+pymysql://u@h/optuna?ssl_ca={ca}", "pw").connect_url())
    assert dict(url.query) == {"ssl_ca": str(ca)} and url.password == "pw"
    assert StorageTarget("mysql+pymysql://u@h/optuna").connect_url() == "mysql+pymysql://u@h/optuna?ssl_disabled=true"


def test_mysql_url_parameters_are_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert validate_url(f"mysql+pymysql://u@10.89.0.10/optuna?ssl_ca={ca}")
    with pytest.raises(ConfigError, match="'ssl_verify_cert' is not supported"):
        validate_url(f"mysql+pymysql://u@h/optuna?ssl_ca={ca}&ssl_verify_cert=false")
    with pytest.raises(ConfigError, match="needs ssl_ca"):
        validate_url(f"mysql+pymysql://u@h/optuna?ssl_cert={ca}")
    with pytest.raises(ConfigError, match="one value"):
        validate_url(f"mysql+pymysql://u@h/optuna?ssl_ca={ca}&ssl_ca={ca}")
    with pytest.raises(ConfigError, match="does not exist"):
        validate_url(f"mysql+pymysql://u@h/optuna?ssl_ca={tmp_path / 'none.pem'}")


def test_tls_errors_are_named() -> None:
    class Orig(Exception):
        pass

    class Wrapped(Exception):
        orig = Orig(2003, "Can't connect to MySQL server on '10.0.0.1' ([SSL: CERTIFICATE_VERIFY_FAILED] "
                          "certificate verify failed: IP address mismatch, certificate is not valid for "
                          "'10.0.0.1'. (_ssl.c:1006))")

    line = describe_db_error(Wrapped(), StorageTarget("mysql+pymysql://u@10.0.0.1/optuna?ssl_ca=/ca.pem"))
    assert line.startswith("storage at 10.0.0.1:3306: TLS certificate verification failed (IP address mismatch, "
                           "certificate is not valid for '10.0.0.1'.)")
    assert "/ca.pem" in line


@pytest.mark.parametrize("message, reason", [
    ("TLS/SSL error: Validation of SSL server certificate failed", "Validation of SSL server certificate failed"),
    ("TLS/SSL error: self-signed certificate in certificate chain", "self-signed certificate in certificate chain"),
])
def test_mysqlclient_tls_errors_are_named(message: str, reason: str) -> None:
    """The messages mysqlclient 2.3.2 on MariaDB Connector/C 3.3 gave here (by hand: mysqlclient
    is not in the lock)."""
    class Wrapped(Exception):
        orig = Exception(2026, message)

    line = describe_db_error(Wrapped(), StorageTarget("mysql+mysqldb://u@h/optuna?ssl_ca=/ca.pem"))
    assert line.startswith(f"storage at h:3306: TLS certificate verification failed ({reason})")
