"""optuna-dashboard on the driver: an unprivileged account, a read-only database account over
TLS, 127.0.0.1 only behind the login proxy (nginx on the driver's cluster address, TLS with the
cluster's CA, basic authentication), and the studies on its page's API."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from infra_lib import Node, http_get, listening_addresses, mysql_root


def test_the_dashboard_runs_as_its_own_account_on_the_cluster_address(driver: Node) -> None:
    assert driver.var("optuna_dashboard_enabled"), f"{driver.name}: the dashboard is off on this inventory"
    service = driver.host.service("optuna-dashboard")
    assert service.is_running and service.is_enabled, f"{driver.name}: optuna-dashboard is not active"
    user = driver.host.user(driver.var("optuna_dashboard_user"))
    assert user.exists and user.uid != 0 and user.shell == "/usr/sbin/nologin"
    pid = int(driver.check("systemctl show -p MainPID --value optuna-dashboard").strip())
    status = driver.host.file(f"/proc/{pid}/status").content_string
    assert re.search(rf"^Uid:\s+{user.uid}\s", status, re.M), f"{driver.name}: the dashboard does not run as {user.name}"
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    port = driver.var("optuna_dashboard_port")
    if driver.var("optuna_dashboard_proxy_enabled"):
        backend = driver.var("optuna_dashboard_backend_port")
        assert listening_addresses(driver, backend) == ["127.0.0.1"], \
            f"{driver.name}: the dashboard listens on {listening_addresses(driver, backend)}, expected 127.0.0.1 only"
        argv = driver.host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
        assert argv[-3:-1] == ["127.0.0.1", str(backend)], f"{driver.name}: the dashboard runs as {argv}"
    assert listening_addresses(driver, port) == [driver.var("optuna_dashboard_address")], \
        f"{driver.name}: port {port} listens on {listening_addresses(driver, port)}, expected the cluster address only"
    assert port not in (7077, 7079, 8080, 8081) and not 4040 <= port <= 4056 and not 40000 <= port <= 40056
    cmdline = driver.host.file(f"/proc/{pid}/cmdline").content_string
    secret = driver.host.file(f"{driver.var('optuna_dashboard_config_dir')}/db-password").content_string.strip()
    assert secret and secret not in cmdline, f"{driver.name}: the dashboard's password is on its command line"


def test_the_dashboard_reads_with_select_only_over_tls(driver: Node) -> None:
    user = driver.var("optuna_dashboard_db_user")
    rows = mysql_root(driver, f"SELECT host, ssl_type FROM mysql.user WHERE user = '{user}'")
    assert rows == [[driver.var("optuna_dashboard_db_host"), "ANY"]], f"{driver.name}: {user} accounts: {rows}"
    grants = [line for (line,) in mysql_root(driver, f"SHOW GRANTS FOR '{user}'@'{rows[0][0]}'")]
    privileges = sorted(re.match(r"GRANT (.+?) ON (\S+) TO", g).groups() for g in grants)
    assert privileges == [("SELECT", f"`{driver.var('optuna_dashboard_db_database')}`.*"), ("USAGE", "*.*")], privileges
    password = driver.host.file(f"{driver.var('optuna_dashboard_config_dir')}/db-password")
    assert (password.user, password.group, password.mode) == ("root", driver.var("optuna_dashboard_group"), 0o640)


def _backend_url(driver: Node) -> str:
    if driver.var("optuna_dashboard_proxy_enabled"):
        return f"http://127.0.0.1:{driver.var('optuna_dashboard_backend_port')}"
    return f"http://{driver.var('optuna_dashboard_address')}:{driver.var('optuna_dashboard_port')}"


def test_the_dashboard_lists_the_studies(driver: Node) -> None:
    url = f"{_backend_url(driver)}/api/studies"
    answer = json.loads(http_get(driver, url))
    assert "study_summaries" in answer, f"{driver.name}: /api/studies answered {str(answer)[:500]}"
    studies = answer["study_summaries"]
    names = {s["study_name"] for s in studies}
    for wanted in driver.var("optuna_studies_list"):
        assert wanted["name"] in names, f"{driver.name}: the dashboard does not list {wanted['name']}: {sorted(names)}"


# Run on the driver as root: GETs through the proxy over TLS verified against the cluster's CA
# only (create_default_context(cafile=...) loads no other CA), without a login, with a wrong one
# and with the right one (its password read from a root-only file, never on a command line).
_PROXY_PROBE = r"""
import base64, http.client, json, ssl, sys
address, port, ca, user, password_file = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca)
def get(path, login=None):
    conn = http.client.HTTPSConnection(address, int(port), context=context, timeout=30)
    headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()} if login else {}
    conn.request("GET", path, headers=headers)
    answer = conn.getresponse()
    body = answer.read().decode(errors="replace")
    issuer = dict(x[0] for x in conn.sock.getpeercert()["issuer"])
    return [answer.status, body, issuer.get("commonName", "")]
with open(password_file, encoding="utf-8") as fh:
    password = fh.read().strip()
out = {}
for path in ("/api/studies", "/dashboard"):
    out[path] = {"none": get(path), "wrong": get(path, user + ":" + password[::-1] + "x"),
                 "right": get(path, user + ":" + password)}
print(json.dumps(out))
"""


def test_the_proxy_asks_for_a_login_over_tls_signed_by_the_cluster_ca(driver: Node) -> None:
    if not driver.var("optuna_dashboard_proxy_enabled"):
        pytest.skip(f"{driver.name}: the login proxy is off on this inventory")
    if driver.var("optuna_dashboard_users"):
        pytest.skip("the accounts come from the vault: this check reads the generated account's password file")
    ca = driver.var("optuna_dashboard_proxy_ca_cert")
    password_file = f"{driver.var('optuna_dashboard_config_dir')}/operator-password"
    f = driver.host.file(password_file)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600), (f.user, f.group, f.mode)
    htpasswd = driver.host.file(f"{driver.var('optuna_dashboard_proxy_dir')}/htpasswd")
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    assert f.content_string.strip() not in htpasswd.content_string
    out = json.loads(driver.check(
        f"python3 -c {shlex.quote(_PROXY_PROBE)} {shlex.quote(driver.var('optuna_dashboard_address'))} "
        f"{driver.var('optuna_dashboard_port')} {shlex.quote(ca)} "
        f"{shlex.quote(driver.var('optuna_dashboard_operator_name'))} {shlex.quote(password_file)}",
        what="GET through the proxy"))
    ca_name = driver.check(f"openssl x509 -noout -subject -nameopt multiline -in {shlex.quote(ca)}")
    studies = [s["name"] for s in driver.var("optuna_studies_list")]
    for path, answers in out.items():
        for case in ("none", "wrong"):
            status, body, issuer = answers[case]
            assert status == 401, f"{driver.name}: {path} without a valid login answered {status}"
            assert not any(s in body for s in studies) and "study" not in body.lower(), body[:500]
        assert answers["right"][0] == 200, f"{driver.name}: {path} with the login answered {answers['right'][0]}"
        assert answers["right"][2] and answers["right"][2] in ca_name, (answers["right"][2], ca_name)
    names = {s["study_name"] for s in json.loads(out["/api/studies"]["right"][1])["study_summaries"]}
    assert set(studies) <= names, f"{driver.name}: through the proxy the dashboard lists {sorted(names)}"
