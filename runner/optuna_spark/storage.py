"""Storage URLs and their password: parse, check, redact, connect.

A storage URL on the command line, in a config file, a job file or a log never carries its
password. The password comes from a file of mode 0600 or from OPTUNA_SPARK_STORAGE_PASSWORD and
is joined to the URL only in memory, right before a connection is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna_spark.errors import ConfigError, OptunaSparkError
from optuna_spark.limits import check_path_limits
from optuna_spark.private import read_secret_file

PASSWORD_ENV = "OPTUNA_SPARK_STORAGE_PASSWORD"  # the storage's password, where a file cannot be used

SUPPORTED_BACKENDS = ("sqlite", "mysql", "postgresql")


STORAGE_IO_TIMEOUT = 60  # seconds a storage read or write may wait for the network (default)
IO_TIMEOUT_ENV = "OPTUNA_SPARK_STORAGE_IO_TIMEOUT"


def storage_io_timeout() -> int:
    """$OPTUNA_SPARK_STORAGE_IO_TIMEOUT (whole seconds, at least 5), else STORAGE_IO_TIMEOUT. The
    Spark application and its tasks inherit it from the environment of spark-submit."""
    raw = os.environ.get(IO_TIMEOUT_ENV, "")
    try:
        return max(5, int(raw)) if raw.strip() else STORAGE_IO_TIMEOUT
    except ValueError:
        return STORAGE_IO_TIMEOUT


class StorageError(OptunaSparkError, RuntimeError):
    """The storage cannot be used (unreachable, refused, wrong password): exit status 1."""


@dataclass(frozen=True)
class StorageTarget:
    url: str  # without password: safe to print
    password: str | None = None

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return f"StorageTarget(url={self.url!r}, password={'***' if self.password else None})"

    @property
    def backend(self) -> str:
        return str(_make_url(self.url).get_backend_name())

    def connect_url(self) -> str:
        """The URL with its password, for SQLAlchemy (the runner's engines, the tasks' and Optuna's
        own command line through OPTUNA_STORAGE). Never log the result."""
        url = _make_url(self.url)
        if url.get_backend_name() == "mysql":
            if url.get_driver_name() == "mysqldb":
                url = url.set(drivername=_mysql_driver())
            url = url.update_query_dict(mysql_tls_options(url.get_driver_name(), dict(url.query)))
        if self.password is not None:
            url = url.set(password=self.password)
        return str(url.render_as_string(hide_password=False))

    def engine_kwargs(self) -> dict[str, Any]:
        backend = self.backend
        if backend == "sqlite":
            # Several executor processes share one file: wait for the lock instead of failing.
            return {"connect_args": {"timeout": 60}}
        if backend == "mysql":
            # Every session in UTC: heartbeats, claims and the staleness check use the database's
            # NOW(), which is the server's local time otherwise (an hour off across a DST change).
            # Read and write timeouts: a silent partition (packets dropped, not refused) ends a
            # call within STORAGE_IO_TIMEOUT, as an outage that OutageGuard waits out, instead of
            # blocking it forever. Above InnoDB's lock wait (50 s), which a claim may spend.
            return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2,
                    "pool_recycle": 3600,
                    "connect_args": {"connect_timeout": 10, "init_command": "SET time_zone = '+00:00'",
                                     "read_timeout": storage_io_timeout(), "write_timeout": storage_io_timeout()}}
        if backend == "postgresql":
            # tcp_user_timeout (ms): unacknowledged data for that long ends the connection.
            return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2,
                    "connect_args": {"options": "-c timezone=UTC", "connect_timeout": 10,
                                     "keepalives": 1, "keepalives_idle": 30,
                                     "tcp_user_timeout": storage_io_timeout() * 1000}}
        return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2}


# Query parameters of a MySQL storage URL: the TLS files (SQLAlchemy turns ssl_* into the
# driver's `ssl` dictionary) and the character set. Anything else could turn off the certificate
# checks (PyMySQL's ssl_verify_cert, ssl_disabled, SQLAlchemy's ssl_check_hostname) or reach the
# driver unchecked: refused.
MYSQL_URL_PARAMETERS = ("ssl_ca", "ssl_cert", "ssl_key", "charset")
TLS_FILE_PARAMETERS = ("ssl_ca", "ssl_cert", "ssl_key")


def mysql_tls_options(driver: str, query: dict[str, Any]) -> dict[str, str]:
    """What to add to a MySQL URL's query so that TLS means a verified server. Pure.

    With `ssl_ca`, PyMySQL verifies the certificate chain and the host name or IP by default.
    mysqlclient does not (on MariaDB's client library it turns verification off unless told):
    `ssl_mode=VERIFY_IDENTITY` asks for both. Without `ssl_ca`, PyMySQL would still use TLS
    when the server offers it, without checking the certificate, which looks safe and is not:
    the connection is plain instead, and a server that requires TLS refuses it."""
    if "ssl_ca" in query:
        return {"ssl_mode": "VERIFY_IDENTITY"} if driver == "mysqldb" else {}
    return {"ssl_disabled": "true"} if driver == "pymysql" else {}


def _make_url(text: str):  # type: ignore[no-untyped-def]
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(f"malformed storage URL {redact_url(text)!r}: expected e.g. "
                          "sqlite:///work/optuna.db or mysql://optuna_user@HOST/optuna") from None


def _mysql_driver() -> str:
    """`mysql://` means mysqlclient (MySQLdb); fall back to PyMySQL where it is not installed."""
    try:
        import MySQLdb  # noqa: F401

        return "mysql+mysqldb"
    except ImportError:
        return "mysql+pymysql"


def redact_url(text: str) -> str:
    """Hide a password written into a URL (`scheme://user:secret@host`)."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest:
        return text
    creds, at, host = rest.rpartition("@")
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{creds}{at}{host}"


def validate_url(text: str) -> str:
    """Check a storage URL's shape and that it carries no password; returns it unchanged."""
    url = _make_url(text)
    backend = url.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(f"unsupported storage backend {backend!r}: use sqlite, mysql or postgresql")
    if url.password is not None:
        raise ConfigError(
            "the storage URL carries a password: remove it and put it in a file of mode 0600 "
            f"(--password-file) or in ${PASSWORD_ENV}"
        )
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("an SQLite storage needs a file path: sqlite:///path/to/optuna.db")
        check_path_limits(url.database, "the SQLite storage's file")
    elif not url.host or not url.database:
        raise ConfigError(f"storage URL {text!r} needs a host and a database name")
    if backend == "mysql":
        _check_mysql_query(dict(url.query))
    _check_driver(url)
    return text


def _check_driver(url: Any) -> None:
    """The URL's SQLAlchemy dialect exists and its driver is installed (`mysql://` picks one)."""
    from sqlalchemy.exc import NoSuchModuleError

    if url.get_backend_name() == "mysql" and url.get_driver_name() == "mysqldb" and "+" not in url.drivername:
        return  # mysqlclient, or PyMySQL where it is missing (connect_url)
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(f"unknown database driver in {url.drivername!r}: use sqlite:///, mysql+pymysql:// "
                          "or mysql+mysqldb://") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ConfigError(f"the database driver of {url.drivername!r} is not installed "
                          f"({exc.name or exc})") from None


def _check_mysql_query(query: dict[str, Any]) -> None:
    for key, value in query.items():
        if key not in MYSQL_URL_PARAMETERS:
            raise ConfigError(f"storage URL parameter {key!r} is not supported: use "
                              f"{', '.join(MYSQL_URL_PARAMETERS)} (TLS is always verified)")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"storage URL parameter {key!r} needs one value")
        if key in TLS_FILE_PARAMETERS:
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"{key} file {value} of the storage URL does not exist")
            if not os.access(path, os.R_OK):
                raise ConfigError(f"{key} file {value} of the storage URL is not readable")
    if ("ssl_cert" in query or "ssl_key" in query) and "ssl_ca" not in query:
        raise ConfigError("a storage URL with ssl_cert or ssl_key needs ssl_ca: the server's "
                          "certificate must be verified against a CA")


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The storage password: one line in a file that owner and group may read (0600, 0640, 0400,
    0440: on a cluster, the runner account's group shares it); any bit for other users, or group
    write or execute, is refused with the fix (optuna_spark.private)."""
    return read_secret_file(path, "password file")


def resolve_password(password_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    if password_file:
        return read_password_file(password_file)
    value = env.get(PASSWORD_ENV)
    return value if value else None


def make_sqlite_private(url_text: str) -> None:
    """An SQLite file (and its WAL and shared-memory files) of this user, made by an earlier
    version with the default mask, becomes readable by this user only."""
    url = _make_url(url_text)
    if url.get_backend_name() != "sqlite" or not url.database:
        return
    base = Path(url.database).expanduser()
    for path in (base, Path(f"{base}-wal"), Path(f"{base}-shm")):
        try:
            if path.stat().st_uid == os.getuid():
                path.chmod(0o600)
        except OSError:
            pass


def sqlite_path(url_text: str) -> Path | None:
    """The file of an SQLite URL (None for another backend)."""
    url = _make_url(url_text)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database).expanduser()


def ensure_sqlite_parent(url_text: str) -> None:
    url = _make_url(url_text)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def describe_db_error(exc: BaseException, target: StorageTarget) -> str:
    """One line for an SQLAlchemy/DBAPI error, without the password or the SQL."""
    url = _make_url(target.url)
    where = f"{url.host}:{url.port or 3306}" if url.host else (url.database or "?")
    if getattr(exc, "orig", None) is None and exc.__cause__ is not None:  # Optuna's wrapping
        exc = exc.__cause__
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    code = None
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        code = args[0]
    tls_why = _tls_failure(text)
    if tls_why is not None:
        ca = url.query.get("ssl_ca")
        return (f"storage at {where}: TLS certificate verification failed ({tls_why}); "
                f"the server's certificate must be signed by the CA in ssl_ca ({ca}) and name the host "
                f"{url.host!r}")
    if code == 1045 or "Access denied" in text or "password authentication failed" in text:
        hint = "" if "ssl_ca" in url.query else (
            ", or it requires TLS (add ?ssl_ca=/path/to/ca.pem to the storage URL)")
        return (f"storage refused user {url.username!r} at {where}: wrong password, user not allowed "
                f"from this host{hint}")
    if code in (2002, 2003, 2005, 2006, 2013) or "Can't connect" in text or "Connection refused" in text:
        return f"storage unreachable at {where}: {text}"
    if code == 1049 or "Unknown database" in text:
        return f"storage at {where} has no database {url.database!r}"
    if target.password:
        text = text.replace(target.password, "***")
    return f"storage error at {where}: {text}"


def _tls_failure(text: str) -> str | None:
    """The reason of a failed certificate check in a driver's message, or None."""
    import re

    m = re.search(r"certificate verify failed: ([^(]*?)\s*\(_ssl", text)
    if m:
        return m.group(1).strip().rstrip(",")
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verify failed"
    lower = text.lower()
    if "certificate" in lower and any(w in lower for w in ("verif", "mismatch", "validation", "tls/ssl error")):
        # mysqlclient (MariaDB Connector/C): "TLS/SSL error: Validation of SSL server certificate
        # failed", "TLS/SSL error: self-signed certificate in certificate chain"
        m = re.search(r"TLS/SSL error: (.*?)['\")]*$", text.strip())
        return (m.group(1) if m else text.strip())[:200]
    return None


def check_connection(target: StorageTarget) -> None:
    """Open one connection and run `SELECT 1`; raise StorageError with one clear line."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    if target.backend == "sqlite":
        ensure_sqlite_parent(target.url)
    kwargs = target.engine_kwargs()
    kwargs.pop("pool_size", None)
    kwargs.pop("max_overflow", None)
    try:
        engine = create_engine(target.connect_url(), **kwargs)
    except ImportError as exc:
        raise StorageError(f"no database driver for {target.backend}: {exc}") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StorageError(describe_db_error(exc, target)) from None
    finally:
        engine.dispose()


# The key of a job's `extra` that says which Optuna version's RDBStorage created (or found) the
# study's tables and checked their schema on the driver (optuna_spark.engine).
SCHEMA_CHECKED_BY = "schema_checked_by"


def open_rdb_storage(target: StorageTarget, *, checked_by: str | None = None):  # type: ignore[no-untyped-def]
    """An Optuna RDBStorage for the target. Heartbeats and stale trials are the runner's own
    (optuna_spark.task, optuna_spark.ledger), not Optuna's. `checked_by`: the Optuna version
    whose storage has already created the tables and checked their schema; when it is this
    process's own, a task does not do both again (the same version finds the same schema head)."""
    import optuna

    again = checked_by is None or checked_by != optuna.__version__
    return optuna.storages.RDBStorage(target.connect_url(), engine_kwargs=target.engine_kwargs(),
                                      skip_table_creation=not again, skip_compatibility_check=not again)
