"""A PATH on which no `java` resolves, for runs that must find no Java on this machine.

This host (like most CI images) has /usr/bin/java: dropping /usr/bin from the PATH would also drop
bash, dirname, ps and the rest that spark-submit's scripts need. So the PATH is one folder of
symlinks to every command of the current PATH (first one of a name wins, as on the PATH), the
runner's venv first, `java` left out."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def path_without_java(folder: Path, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    folder.mkdir(parents=True, exist_ok=True)
    for directory in [str(VENV_BIN), *env.get("PATH", os.defpath).split(os.pathsep)]:
        if not directory or not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name == "java" or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    path = str(folder)
    assert shutil.which("java", path=path) is None, "a java is still on the reduced PATH"
    assert shutil.which("spark-submit", path=path) and shutil.which("bash", path=path)
    return path
