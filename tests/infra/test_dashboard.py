"""optuna-dashboard on the driver: an unprivileged account, a read-only database account over
TLS, the driver's cluster address only, and the studies on its page's API."""

from __future__ import annotations

import json
import re

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
    assert listening_addresses(driver, port) == [driver.var("optuna_dashboard_address")], \
        f"{driver.name}: the dashboard listens on {listening_addresses(driver, port)}, expected the cluster address only"
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


def test_the_dashboard_lists_the_studies(driver: Node) -> None:
    url = f"http://{driver.var('optuna_dashboard_address')}:{driver.var('optuna_dashboard_port')}/api/studies"
    answer = json.loads(http_get(driver, url))
    assert "study_summaries" in answer, f"{driver.name}: /api/studies answered {str(answer)[:500]}"
    studies = answer["study_summaries"]
    names = {s["study_name"] for s in studies}
    for wanted in driver.var("optuna_studies_list"):
        assert wanted["name"] in names, f"{driver.name}: the dashboard does not list {wanted['name']}: {sorted(names)}"
