"""The driver: MySQL/MariaDB as Optuna's storage, the packed runtime, the Spark master, the studies."""

from __future__ import annotations

import re

from infra_lib import Node, alive_worker_hosts, archive_sha256, listening_addresses, master_state, mysql_root


# ------------------------------------------------------------------------------------ MySQL

def test_mysql_packages_installed(driver: Node) -> None:
    for package in driver.var("__mysql_packages_effective"):
        assert driver.host.package(package).is_installed, \
            f"{driver.name}: package {package} is not installed, expected installed"


def test_mysql_service_enabled_and_running(driver: Node) -> None:
    name = driver.var("__mysql_daemon_effective")
    service = driver.host.service(name)
    assert service.is_running, f"{driver.name}: service {name} is not running, expected running"
    assert service.is_enabled, f"{driver.name}: service {name} is not enabled, expected enabled"


def test_mysql_listens_on_cluster_address_only(driver: Node) -> None:
    address, port = driver.var("mysql_bind_address"), driver.var("mysql_port")
    listening = listening_addresses(driver, port)
    assert listening == [address], (
        f"{driver.name}: MySQL listens on {listening or 'nothing'} port {port}, expected exactly {address} "
        f"(never 0.0.0.0, :: or *)")


def test_mysql_bind_address_configured(driver: Node) -> None:
    address = driver.var("mysql_bind_address")
    path = driver.var("__mysql_config_file_effective")
    config = driver.host.file(path)
    assert config.exists, f"{driver.name}: {path} is missing"
    lines = [line.split("=", 1)[1].strip() for line in config.content_string.splitlines()
             if re.match(r"^\s*bind[-_]address\s*=", line)]
    assert lines == [address], f"{driver.name}: {path} sets bind-address to {lines}, expected [{address!r}]"
    # What the server reads after every file (the drop-in must win over 50-server.cnf) ...
    # MariaDB's --mysqld covers every group its server reads; MySQL's server reads [mysqld].
    groups = "--mysqld" if driver.var("__mysql_flavor") == "mariadb" else "mysqld"
    defaults = driver.check(f"my_print_defaults {groups}")
    effective = [line.split("=", 1)[1] for line in defaults.splitlines()
                 if re.match(r"^--bind[-_]address=", line)]
    assert effective and effective[-1] == address, (
        f"{driver.name}: the server's effective bind-address is {effective[-1:] or 'unset'}, expected {address}")
    # ... and what the running server uses.
    live = mysql_root(driver, "SELECT @@bind_address")
    assert live == [[address]], f"{driver.name}: running server's @@bind_address is {live}, expected {address}"


def test_mysql_socket_symlink(driver: Node) -> None:
    link, socket = driver.var("mysql_socket_symlink"), driver.var("__mysql_socket_effective")
    if not link:
        assert not driver.host.file("/etc/tmpfiles.d/optuna-spark-mysql-socket.conf").exists, \
            f"{driver.name}: mysql_socket_symlink is empty but the tmpfiles.d entry is still there"
        return
    f = driver.host.file(link)
    assert f.is_symlink, f"{driver.name}: {link} is not a symlink, expected a link to {socket}"
    assert f.linked_to == socket, f"{driver.name}: {link} points to {f.linked_to}, expected {socket}"
    assert driver.host.file(socket).is_socket, f"{driver.name}: {socket} (target of {link}) is not a socket"
    # The link is also a working path for clients (the seed's troubleshooting step).
    assert mysql_root_via(driver, link) == "1", f"{driver.name}: no MySQL connection through {link}"


def mysql_root_via(driver: Node, socket: str) -> str:
    return driver.check(f"mysql -S {socket} -uroot -N -B -e 'SELECT 1'").strip()


def test_optuna_database_exists(driver: Node) -> None:
    database = driver.var("mysql_optuna_database")
    names = {row[0] for row in mysql_root(driver, "SHOW DATABASES")}
    assert database in names, f"{driver.name}: database {database} is missing (have {sorted(names)})"


def test_no_anonymous_users_no_test_database(driver: Node) -> None:
    anonymous = mysql_root(driver, "SELECT CONCAT(user, '@', host) FROM mysql.user WHERE user = ''")
    assert anonymous == [], f"{driver.name}: anonymous MySQL accounts {anonymous}, expected none"
    names = {row[0] for row in mysql_root(driver, "SHOW DATABASES")}
    assert "test" not in names, f"{driver.name}: database test exists, expected removed"
    remote_root = mysql_root(driver, "SELECT host FROM mysql.user WHERE user = 'root' "
                                     "AND host NOT IN ('localhost', '127.0.0.1', '::1')")
    assert remote_root == [], f"{driver.name}: root may connect from {remote_root}, expected local only"


GRANT = re.compile(r"^GRANT (?P<privs>.+?) ON (?P<on>\S+) TO \S+?(?: IDENTIFIED BY .*?)?(?P<opt> WITH GRANT OPTION)?$")


def parse_grants(rows: list[list[str]]) -> set[tuple[str, str, bool]]:
    """SHOW GRANTS lines as (privileges, object, with grant option), password hashes dropped."""
    parsed = set()
    for (line,) in rows:
        m = GRANT.match(line)
        assert m, f"unexpected SHOW GRANTS line shape: {line.split(' IDENTIFIED')[0]}"
        parsed.add((m["privs"], m["on"].replace("`", ""), bool(m["opt"])))
    return parsed


def test_optuna_user_grants_exactly_as_configured(driver: Node) -> None:
    user = driver.var("mysql_optuna_user")
    database = driver.var("mysql_optuna_database")
    hosts = list(driver.var("__mysql_optuna_user_hosts"))
    global_grant = bool(driver.var("mysql_optuna_global_grant"))
    expected_hosts = sorted(set(hosts) | ({"%"} if global_grant else set()))
    accounts = sorted(row[0] for row in mysql_root(driver, f"SELECT host FROM mysql.user WHERE user = '{user}'"))
    assert accounts == expected_hosts, (
        f"{driver.name}: {user} may connect from {accounts}, expected {expected_hosts}")
    for account_host in expected_hosts:
        grants = parse_grants(mysql_root(driver, f"SHOW GRANTS FOR '{user}'@'{account_host}'"))
        if account_host == "%" and global_grant:
            expected = {("ALL PRIVILEGES", "*.*", True)}
        else:
            expected = {("USAGE", "*.*", False), ("ALL PRIVILEGES", f"{database}.*", False)}
        assert grants == expected, (
            f"{driver.name}: {user}@{account_host} has grants {sorted(grants)}, expected {sorted(expected)}"
            + ("" if global_grant else " (no global grant: mysql_optuna_global_grant is false)"))


# --------------------------------------------------------------------------- packed runtime

def test_packed_archive_present_with_expected_checksum(driver: Node) -> None:
    path = driver.var("optuna_runtime_archive_path")
    archive = driver.host.file(path)
    assert archive.is_file and archive.size > 0, f"{driver.name}: {path} is missing or empty, expected the packed runtime"
    magic = driver.check(f"head -c 2 {path} | od -An -tx1").split()
    assert magic == ["1f", "8b"], f"{driver.name}: {path} is not gzip data (starts with {magic})"
    actual = archive_sha256(driver)
    # The role records the sha256 of the archive it unpacked in every worker's env: each must be
    # this archive's (the controller's copy in work/runtime/ is only a relay, shared by every
    # inventory converged from this checkout, so it is not the reference).
    recorded = {}
    for name in driver.cluster.workers:
        worker = driver.cluster.host(name)
        marker = worker.file(f"{driver.cluster.var(name, 'optuna_runtime_env_path')}/.optuna-env.sha256")
        recorded[name] = marker.content_string.strip() if marker.is_file else "no marker"
    differ = {name: digest for name, digest in recorded.items() if digest != actual}
    assert not differ, (f"{driver.name}: {path} has sha256 {actual}, but the workers' runtimes were unpacked from "
                        + ", ".join(f"{n}: {d}" for n, d in sorted(differ.items())))
    # The spec marker the role wrote after building it.
    marker = driver.host.file(f"{driver.var('optuna_runtime_root')}/optuna-env.spec")
    assert marker.is_file and re.fullmatch(r"[0-9a-f]{64}", marker.content_string.strip()), \
        f"{driver.name}: the build marker {marker.path} is missing or malformed"


# -------------------------------------------------------------------------------- Spark master

def test_spark_master_enabled_and_running(driver: Node) -> None:
    service = driver.host.service("spark-master")
    assert service.is_running, f"{driver.name}: spark-master is not running, expected running"
    assert service.is_enabled, f"{driver.name}: spark-master is not enabled, expected enabled"
    address = driver.var("spark_master_host")
    for port in (driver.var("spark_master_port"), driver.var("spark_master_webui_port")):
        listening = listening_addresses(driver, port)
        assert listening == [address], (
            f"{driver.name}: the Spark master listens on {listening or 'nothing'} port {port}, "
            f"expected exactly {address}")


def test_spark_master_reports_every_worker_alive(driver: Node) -> None:
    state = master_state(driver)
    assert state.get("status") == "ALIVE", f"{driver.name}: the master's status is {state.get('status')}, expected ALIVE"
    alive = alive_worker_hosts(state)
    missing = [f"{w} ({driver.cluster.var(w, 'cluster_address')})" for w in driver.cluster.workers
               if driver.cluster.var(w, "cluster_address") not in alive]
    assert not missing, (f"{driver.name}: the Spark master does not report {', '.join(missing)} ALIVE "
                         f"(ALIVE: {sorted(alive) or 'none'})")


# ------------------------------------------------------------------------------------- studies

def test_studies_present_in_mysql(driver: Node) -> None:
    database = driver.var("mysql_optuna_database")
    rows = mysql_root(driver, f"SELECT s.study_name, d.direction FROM `{database}`.studies s "
                              f"JOIN `{database}`.study_directions d ON d.study_id = s.study_id")
    found: dict[str, list[str]] = {}
    for name, direction in rows:
        found.setdefault(name, []).append(direction)
    for study in driver.var("optuna_studies_list"):
        name, direction = study["name"], study.get("direction", "minimize").upper()
        assert name in found, f"{driver.name}: study {name} is missing from MySQL (have {sorted(found)})"
        assert found[name] == [direction], \
            f"{driver.name}: study {name} has direction {found[name]}, expected [{direction}]"

