"""Shared fixtures: the project root and a runner command that runs in a scratch folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run `optuna-spark ARGS` as a real subprocess in tmp_path; returns CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        full_env.pop("OPTUNA_SPARK_CONFIG", None)
        full_env.pop("OPTUNA_SPARK_STORAGE_PASSWORD", None)
        full_env.update(env or {})
        return subprocess.run(
            [str(VENV_BIN / "optuna-spark"), *args], cwd=cwd or tmp_path, env=full_env,
            capture_output=True, text=True, timeout=timeout,
        )

    return run


# ------------------------------------------------------------------ a private MariaDB server

import shutil
import socket
import time
from dataclasses import dataclass


@dataclass
class MariaDB:
    host: str
    port: int
    user: str
    password: str
    database: str
    socket: str
    argv: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(list(self.argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(240):
            try:
                self.sql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.25)
        raise RuntimeError("MariaDB did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None

    def url(self, database: str | None = None) -> str:
        return f"mysql+pymysql://{self.user}@{self.host}:{self.port}/{database or self.database}"

    def sql(self, statement: str) -> str:
        out = subprocess.run(["mariadb", "-uroot", f"--socket={self.socket}", "-N", "-B", "-e", statement],
                             capture_output=True, text=True, check=True)
        return out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory):
    """A real MariaDB server of this test session on 127.0.0.1 (not the system's service).
    Needs Debian's mariadb-server package (installed by .ci/run); fails, never skips, without it."""
    server = shutil.which("mariadbd") or shutil.which("mysqld", path="/usr/sbin:/usr/bin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not server or not install:
        pytest.fail("MariaDB is not installed: apt-get install mariadb-server mariadb-client")
    base = tmp_path_factory.mktemp("mariadb")
    data, sock = base / "data", str(base / "mysqld.sock")
    subprocess.run([install, "--user=root", f"--datadir={data}", "--auth-root-authentication-method=socket",
                    "--skip-test-db"], check=True, capture_output=True)
    port = _free_port()
    argv = (server, "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
            f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={base / 'pid'}",
            f"--log-error={base / 'error.log'}", "--max-connections=200")
    db = MariaDB("127.0.0.1", port, "optuna_user", "t3st-Pa55-w0rd", "optuna", sock, argv)
    try:
        db.start()
    except RuntimeError:
        db.stop()
        pytest.fail(f"MariaDB did not start: {(base / 'error.log').read_text()[-2000:]}")
    db.sql("CREATE DATABASE optuna; CREATE USER 'optuna_user'@'127.0.0.1' IDENTIFIED BY 't3st-Pa55-w0rd';"
           " GRANT ALL PRIVILEGES ON optuna.* TO 'optuna_user'@'127.0.0.1';")
    yield db
    db.stop()


@pytest.fixture
def password_file(tmp_path: Path, mariadb: MariaDB) -> Path:
    f = tmp_path / "storage-password"
    f.write_text(mariadb.password + "\n")
    f.chmod(0o600)
    return f
