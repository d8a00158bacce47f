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


def _start_mariadb(tmp_path_factory: pytest.TempPathFactory, name: str, extra: tuple[str, ...] = (),
                   require: str = "") -> MariaDB:
    server = shutil.which("mariadbd") or shutil.which("mysqld", path="/usr/sbin:/usr/bin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not server or not install:
        pytest.fail("MariaDB is not installed: apt-get install mariadb-server mariadb-client")
    base = tmp_path_factory.mktemp(name)
    data, sock = base / "data", str(base / "mysqld.sock")
    subprocess.run([install, "--user=root", f"--datadir={data}", "--auth-root-authentication-method=socket",
                    "--skip-test-db"], check=True, capture_output=True)
    port = _free_port()
    argv = (server, "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
            f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={base / 'pid'}",
            f"--log-error={base / 'error.log'}", "--max-connections=200", *extra)
    db = MariaDB("127.0.0.1", port, "optuna_user", "t3st-Pa55-w0rd", "optuna", sock, argv)
    try:
        db.start()
    except RuntimeError:
        db.stop()
        pytest.fail(f"MariaDB did not start: {(base / 'error.log').read_text()[-2000:]}")
    db.sql("CREATE DATABASE optuna; CREATE USER 'optuna_user'@'127.0.0.1' IDENTIFIED BY 't3st-Pa55-w0rd'"
           f" {require}; GRANT ALL PRIVILEGES ON optuna.* TO 'optuna_user'@'127.0.0.1';")
    return db


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory):
    """A real MariaDB server of this test session on 127.0.0.1 (not the system's service).
    Needs Debian's mariadb-server package (installed by .ci/run); fails, never skips, without it."""
    db = _start_mariadb(tmp_path_factory, "mariadb")
    yield db
    db.stop()


@dataclass
class TLSFiles:
    ca: Path            # the CA that signed the server's certificate
    other_ca: Path      # a CA that did not
    server_cert: Path   # subjectAltName IP:127.0.0.1 only
    server_key: Path


def make_tls_files(folder: Path) -> TLSFiles:
    """A CA, a server certificate it signs for IP 127.0.0.1, and an unrelated CA (cryptography)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cert, key

    ca_cert, ca_key = ca("optuna-spark test CA")
    other_cert, _ = ca("optuna-spark unrelated CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("mariadb test server")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = TLSFiles(folder / "ca.pem", folder / "other-ca.pem", folder / "server-cert.pem", folder / "server-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.other_ca.write_bytes(other_cert.public_bytes(pem))
    files.server_cert.write_bytes(cert.public_bytes(pem))
    files.server_key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                                   serialization.NoEncryption()))
    files.server_key.chmod(0o600)
    return files


@pytest.fixture(scope="session")
def mariadb_tls(tmp_path_factory: pytest.TempPathFactory):
    """A second private MariaDB server that speaks TLS with a certificate for IP 127.0.0.1 signed by
    a test CA, and whose optuna_user must use TLS (REQUIRE SSL). Yields (server, TLS files)."""
    tls = make_tls_files(tmp_path_factory.mktemp("tls"))
    db = _start_mariadb(tmp_path_factory, "mariadb-tls",
                        (f"--ssl-ca={tls.ca}", f"--ssl-cert={tls.server_cert}", f"--ssl-key={tls.server_key}"),
                        require="REQUIRE SSL")
    yield db, tls
    db.stop()


@pytest.fixture
def password_file(tmp_path: Path, mariadb: MariaDB) -> Path:
    f = tmp_path / "storage-password"
    f.write_text(mariadb.password + "\n")
    f.chmod(0o600)
    return f
