"""The limits of the places a value goes, checked before anything runs (pure)."""

from __future__ import annotations

from pathlib import Path

from optuna_spark.errors import ConfigError

NAME_MAX, PATH_MAX = 255, 4095  # Linux's limits on a file name (bytes) and a whole path


def check_path_limits(path: str, where: str) -> None:
    """A path the file system can hold: no NUL, no name over 255 bytes, at most 4095 bytes in all
    (what the OS would refuse later with an error of its own, checked before anything runs)."""
    if "\x00" in path:
        raise ConfigError(f"{where} must not contain a NUL character")
    encoded = path.encode("utf-8", "surrogateescape")
    if len(encoded) > PATH_MAX:
        raise ConfigError(f"{where} is too long ({len(encoded)} bytes; a path holds at most {PATH_MAX})")
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in Path(path).parts), default=0)
    if longest > NAME_MAX:
        raise ConfigError(f"{where}: a name in the path is {longest} bytes long (at most {NAME_MAX})")
