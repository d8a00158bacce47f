"""MySQL over TLS against a real MariaDB that requires it (REQUIRE SSL): the CA in the storage
URL (`?ssl_ca=`) is checked, every connection of the runner and of its tasks verifies the
server's certificate and its IP, and nothing crosses the wire in clear."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.mysql

BIN = Path(sys.executable).parent


def tls_url(db, ca: Path | None, host: str = "127.0.0.1") -> str:
    base = f"mysql+pymysql://{db.user}@{host}:{db.port}/optuna"
    return f"{base}?ssl_ca={ca}" if ca else base


def one_line(proc, status: int) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_without_the_ca_the_server_refuses_the_plain_connection(run_cli, mariadb_tls) -> None:
    db, _ = mariadb_tls
    proc = run_cli("status", "--storage", tls_url(db, None), env={"OPTUNA_SPARK_STORAGE_PASSWORD": db.password})
    line = one_line(proc, 1)
    assert line == (f"optuna-spark: storage refused user 'optuna_user' at 127.0.0.1:{db.port}: wrong password, "
                    "user not allowed from this host, or it requires TLS (add ?ssl_ca=/path/to/ca.pem to the "
                    "storage URL)")


def test_a_ca_that_did_not_sign_the_servers_certificate_fails_verification(run_cli, mariadb_tls) -> None:
    db, tls = mariadb_tls
    proc = run_cli("status", "--storage", tls_url(db, tls.other_ca),
                   env={"OPTUNA_SPARK_STORAGE_PASSWORD": db.password})
    line = one_line(proc, 1)
    assert line.startswith(f"optuna-spark: storage at 127.0.0.1:{db.port}: TLS certificate verification failed "
                           "(self-signed certificate in certificate chain)"), line
    assert str(tls.other_ca) in line


def test_a_certificate_that_does_not_name_the_host_is_refused(run_cli, mariadb_tls) -> None:
    """The certificate names IP 127.0.0.1 only; `localhost` reaches the same server."""
    db, tls = mariadb_tls
    proc = run_cli("status", "--storage", tls_url(db, tls.ca, host="localhost"),
                   env={"OPTUNA_SPARK_STORAGE_PASSWORD": db.password})
    line = one_line(proc, 1)
    assert "TLS certificate verification failed (Hostname mismatch, certificate is not valid for 'localhost'." in line


@pytest.mark.parametrize("query, message", [
    ("ssl_ca=/nonexistent/ca.pem", "ssl_ca file /nonexistent/ca.pem of the storage URL does not exist"),
    ("ssl_ca=/tmp", "ssl_ca file /tmp of the storage URL does not exist"),
    ("ssl_check_hostname=false", "storage URL parameter 'ssl_check_hostname' is not supported"),
    ("ssl_verify_cert=false", "storage URL parameter 'ssl_verify_cert' is not supported"),
    ("ssl_disabled=true", "storage URL parameter 'ssl_disabled' is not supported"),
])
def test_bad_tls_settings_are_refused_before_connecting(run_cli, tmp_path: Path, query: str, message: str) -> None:
    proc = run_cli("tune", "--n-trials", "2", "--storage", f"mysql+pymysql://u@127.0.0.1:1/optuna?{query}",
                   env={"OPTUNA_SPARK_STORAGE_PASSWORD": "pw"})
    assert one_line(proc, 2).startswith(f"optuna-spark: error: {message}")
    assert not (tmp_path / "work").exists()


@pytest.mark.spark
def test_a_study_over_verified_tls_runs_to_its_budget_and_nothing_crosses_in_clear(mariadb_tls, mariadb,
                                                                                  tmp_path: Path) -> None:
    """The driver's and the tasks' connections all use TLS (the server refuses any other for this
    user) and verify the server; tcpdump on the loopback sees neither SQL text nor the password.
    The same capture of a run against the plain server does see SQL: the check can fail."""
    db, tls = mariadb_tls

    def run(url: str, password: str, study: str, capture: Path) -> dict:
        port = url.split(":")[2].split("/")[0]
        dump = subprocess.Popen([shutil.which("tcpdump") or "tcpdump", "-i", "lo", "-U", "-s", "0", "-w",
                                 str(capture), "tcp", "port", port],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(1)  # tcpdump is listening before the first connection
            env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OPTUNA_SPARK_STORAGE_PASSWORD": password}
            done = subprocess.run([str(BIN / "optuna-spark"), "tune", "--study", study, "--n-trials", "8",
                                   "--n-jobs", "2", "--storage", url, "--output", "json"],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        finally:
            time.sleep(0.5)
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=30)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    summary = run(tls_url(db, tls.ca), db.password, "over-tls", tmp_path / "tls.pcap")
    assert summary["finished"] == 8
    study = optuna.load_study(study_name="over-tls",
                              storage=f"mysql+pymysql://{db.user}:{db.password}@127.0.0.1:{db.port}/optuna"
                                      f"?ssl_ca={tls.ca}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 8
    secure = (tmp_path / "tls.pcap").read_bytes()
    assert len(secure) > 10_000, "tcpdump captured nothing"

    plain = run(db_url := mariadb.url(), mariadb.password, "in-clear", tmp_path / "plain.pcap")
    assert plain["finished"] == 8 and db_url
    clear = (tmp_path / "plain.pcap").read_bytes()
    for needle in (b"SELECT", b"INSERT INTO", b"trial_values"):
        assert needle in clear, f"the control capture lacks {needle!r}: the check cannot see plain SQL"
        assert needle not in secure, f"{needle!r} crossed the loopback in clear during the TLS run"
    assert db.password.encode() not in secure
