"""Secrets read from files, and a run's private files.

A secret (the storage password, Spark's RPC authentication secret) is read from a file that no
other user can read or change. What a run must hand to `spark-submit` without a command line or
an environment variable (its Spark conf directory with the RPC secret, the storage password for
the Spark application) is written under `<run dir>/private`, mode 0700, and removed when the run
ends, whatever the outcome.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from types import TracebackType

from optuna_spark.errors import ConfigError

# Owner and group may read (0600, 0640, 0400, 0440): a cluster's runner account and its group
# share the file. Refused: any bit for other users, and group write or execute.
FORBIDDEN_MODE_BITS = 0o037


def read_secret_file(path: str | os.PathLike[str], what: str) -> str:
    """The one-line secret held in `path`; ConfigError (one line, exit 2) if it is missing,
    unreadable, open to other users, empty or longer than one line."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{what} {p} is not readable") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {p} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & FORBIDDEN_MODE_BITS:
        raise ConfigError(f"{what} {p} is open to other users (mode {mode:04o}): chmod 600 {p} "
                          "(or chmod 640 to share it with its group)")
    try:
        text = p.read_text(encoding="utf-8")
    except PermissionError:
        raise ConfigError(f"{what} {p} is not readable") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(f"{what} {p} is empty")
    if "\n" in secret or "\r" in secret:
        raise ConfigError(f"{what} {p} holds more than one line")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in secret):
        raise ConfigError(f"{what} {p} holds control characters")
    return secret


def properties_value(text: str) -> str:
    """`text` escaped as the value of a Java properties line (spark-defaults.conf)."""
    out = text.replace("\\", "\\\\")
    if out[:1] in (" ", "\t", "\f"):
        out = "\\" + out  # leading white space would be skipped
    return out


def with_authentication(defaults_text: str, secret: str) -> str:
    """spark-defaults.conf with Spark's RPC authentication on and `secret` as its key. Appended:
    a later line of a properties file overrides an earlier one. The blank line ends a
    continuation (a trailing backslash) the original text might leave open. Pure."""
    text = defaults_text
    if text and not text.endswith("\n"):
        text += "\n"
    return (text + "\n# added by optuna-spark for this run\n"
            "spark.authenticate true\n"
            f"spark.authenticate.secret {properties_value(secret)}\n")


class PrivateFiles:
    """`<run dir>/private` (mode 0700) for the run's secret-bearing files; removed on exit."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "private"

    def __enter__(self) -> PrivateFiles:
        self.path.mkdir(mode=0o700)
        os.chmod(self.path, 0o700)  # mkdir's mode is filtered by the umask
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def write(self, relative: str, text: str) -> Path:
        """A new file of mode 0600 (never an existing one: O_EXCL)."""
        target = self.path / relative
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return target

    def spark_conf_dir(self, source: Path | None, secret: str) -> Path:
        """A copy of the conf directory `source` (its regular files; None: an empty one) whose
        spark-defaults.conf turns on RPC authentication with `secret`."""
        conf = self.path / "spark-conf"
        conf.mkdir(mode=0o700)
        os.chmod(conf, 0o700)
        defaults = ""
        if source is not None and source.is_dir():
            for entry in sorted(source.iterdir()):
                if not entry.is_file():  # regular files (or links to them) only
                    continue
                try:
                    data = entry.read_bytes()
                except OSError as exc:
                    raise ConfigError(f"cannot read {entry} of Spark's conf directory: {exc.strerror}") from None
                if entry.name == "spark-defaults.conf":
                    defaults = data.decode("utf-8", errors="replace")
                    continue
                target = conf / entry.name
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.chmod(target, stat.S_IMODE(entry.stat().st_mode) & 0o700 or 0o600)
        self.write("spark-conf/spark-defaults.conf", with_authentication(defaults, secret))
        return conf


def remove_stale_private_dirs(runs_dir: Path) -> list[Path]:
    """Private directories of earlier runs whose process is gone (a SIGKILL leaves one behind):
    removed. A run directory's name ends with its runner's process id."""
    removed: list[Path] = []
    if not runs_dir.is_dir():
        return removed
    for private in runs_dir.glob("*/private"):
        try:
            pid = int(private.parent.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(private, ignore_errors=True)
        removed.append(private)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
