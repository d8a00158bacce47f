"""The dashboard as an operator sees it: through an ssh tunnel via the driver (the firewall lets
only the cluster's hosts reach it) to the login proxy (nginx, TLS with the cluster's CA, basic
authentication), in a real headless Chromium: without a login nothing of a study, with it both
studies."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from browser import chromium, dom, png_size, screenshot
from cluster_lib import INVENTORY, ROOT, on_driver

PORT = 8090


def driver_hostvars() -> dict:
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", INVENTORY, "--list"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    return data["_meta"]["hostvars"][data["driver"]["hosts"][0]]


@pytest.fixture(scope="module")
def tunnel():
    hv = driver_hostvars()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    argv = ["ssh", "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", *hv["ansible_ssh_common_args"].split(),
            "-i", hv["ansible_ssh_private_key_file"], "-l", hv["ansible_user"],
            "-L", f"127.0.0.1:{local}:{hv['cluster_address']}:{PORT}", hv["ansible_host"]]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", local), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, f"ssh -L failed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the tunnel to the dashboard did not open"
            time.sleep(0.3)
    yield f"https://localhost:{local}"
    proc.terminate()
    proc.wait(timeout=10)


STUDIES = ("optuna-spark", "optuna-spark-xgboost")


class Secret(str):
    """A password that a failing test's report does not show."""

    def __repr__(self) -> str:
        return "'***'"


@pytest.fixture(scope="module")
def proxy(tunnel: str) -> dict:
    """The proxy's certificate verified against the cluster's CA (which every node has), its
    public key's pin for Chromium, and the generated operator account."""
    hv = driver_hostvars()
    ca = on_driver("cat", hv.get("optuna_runtime_storage_ca_file", "/etc/optuna-spark/mysql-ca.pem"))
    assert ca.returncode == 0, ca.stderr
    context = ssl.create_default_context(cadata=ca.stdout)  # this CA only
    port = int(tunnel.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    password = on_driver("sudo", "cat", "/etc/optuna-spark/dashboard/operator-password")
    assert password.returncode == 0, password.stderr
    return {"context": context, "user": hv.get("optuna_dashboard_operator_name", "operator"),
            "password": Secret(password.stdout.strip()),
            "pin": f"--ignore-certificate-errors-spki-list={base64.b64encode(hashlib.sha256(spki).digest()).decode()}"}


def listed(page: str, study: str) -> bool:
    # Each study is a card headed "<study id>. <name>".
    return re.search(rf">(\d+\. )?{re.escape(study)}<", page) is not None


def test_without_a_login_nothing_of_a_study(tunnel: str, proxy: dict, tmp_path: Path) -> None:
    for path in ("/api/studies", "/dashboard"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{tunnel}{path}", context=proxy["context"], timeout=30)
        assert refused.value.code == 401, f"{path}: {refused.value.code}"
        body = refused.value.read().decode(errors="replace")
        assert not any(study in body for study in STUDIES), body[:500]
        wrong_login = base64.b64encode(f"{proxy['user']}:not-the-password".encode()).decode()
        wrong = urllib.request.Request(f"{tunnel}{path}", headers={"Authorization": f"Basic {wrong_login}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, context=proxy["context"], timeout=30)
        assert refused.value.code == 401, f"{path} with a wrong password: {refused.value.code}"
    # Headless Chromium asked for a login it cannot give ends the load there, showing nothing.
    proc = chromium(f"{tunnel}/dashboard", tmp_path / "profile", proxy["pin"],
                    "--virtual-time-budget=5000", "--dump-dom")
    assert not any(study in proc.stdout for study in STUDIES), \
        f"the page without a login shows a study: {proc.stdout[:2000]}"
    assert "ERR_INVALID_AUTH_CREDENTIALS" in proc.stderr, proc.stderr[-2000:]


def test_the_dashboard_lists_both_studies_in_chromium(tunnel: str, proxy: dict, tmp_path: Path) -> None:
    # The login is in the URL a page Chromium opens from a file (0600) goes to, so the password is
    # on no command line. That URL is "/", which redirects to /dashboard: the page's own URL then
    # carries no credentials (fetch refuses relative URLs against one that does), and Chromium
    # sends the login it cached for the origin with every request. The page fills its list from
    # /api/studies after a 2 MB bundle; on a loaded machine that can outlast one virtual-time
    # budget, so it is looked at up to three times.
    login = tmp_path / "login.html"
    login.touch(mode=0o600)
    target = tunnel.replace("https://", f"https://{proxy['user']}:{proxy['password']}@") + "/"
    login.write_text(f"<script>location.replace({json.dumps(target)})</script>")
    for attempt in range(3):
        page = dom(login.as_uri(), tmp_path / f"profile{attempt}", proxy["pin"])
        if all(listed(page, study) for study in STUDIES):
            break
    for study in STUDIES:
        assert listed(page, study), f"the dashboard's page does not list {study}: {page[:3000]}"
    shot = screenshot(login.as_uri(), tmp_path / "profile-shot", "dashboard.png", proxy["pin"])
    width, height = png_size(shot)
    assert (width, height) == (1400, 900) and shot.stat().st_size > 20_000, (width, height, shot.stat().st_size)
