"""Each worker: Java, the Spark worker registered with the master, the runtime, MySQL as optuna_user;
the runtime's imports on every node (the driver too)."""

from __future__ import annotations

import json
import shlex

import pytest

from infra_lib import Cluster, Node, alive_worker_hosts, archive_sha256, http_get, master_state, random_token

# What the seed's tasks import on an executor (the role's own list is checked too).
SEED_IMPORTS = ["optuna", "joblibspark", "xgboost", "MySQLdb"]

DISTRIBUTIONS = ("import importlib.metadata as m, json; "
                 "print(json.dumps(sorted({(d.metadata['Name'] or '').lower().replace('_', '-'): d.version "
                 "for d in m.distributions()}.items())))")


def test_java(worker: Node) -> None:
    for package in worker.var("spark_java_packages"):
        assert worker.host.package(package).is_installed, \
            f"{worker.name}: package {package} is not installed, expected installed"
    out = worker.run("java -version")
    assert out.rc == 0, f"{worker.name}: `java -version` failed (rc {out.rc}): {out.stderr.strip()[-300:]}"


def test_spark_worker_enabled_and_running(worker: Node) -> None:
    service = worker.host.service("spark-worker")
    state = "running" if service.is_running else "not running"
    assert service.is_running, f"{worker.name}: spark-worker is {state}, expected running"
    assert service.is_enabled, f"{worker.name}: spark-worker is not enabled, expected enabled"


def test_spark_worker_registered_with_master(worker: Node, the_driver: Node) -> None:
    address = worker.var("cluster_address")
    alive = alive_worker_hosts(master_state(the_driver))
    assert address in alive, (f"{worker.name}: spark-worker at {address} is not ALIVE in the master's /json/ "
                              f"on {the_driver.name} (ALIVE: {sorted(alive) or 'none'}), expected ALIVE")
    # The worker's own UI names the master it registered with.
    own = json.loads(http_get(worker, f"http://{address}:{worker.var('spark_worker_webui_port')}/json/"))
    expected = worker.var("__spark_master_url")
    assert own.get("masterurl") == expected, \
        f"{worker.name}: spark-worker reports master {own.get('masterurl')}, expected {expected}"


def test_runtime_imports(node: Node) -> None:
    python = f"{node.var('optuna_runtime_env_path')}/bin/python"
    modules = list(dict.fromkeys(SEED_IMPORTS + list(node.var("optuna_runtime_verify_imports"))))
    for module in modules:
        out = node.run(f"{python} -c {shlex.quote('import ' + module)}")
        assert out.rc == 0, (f"{node.name}: {python} cannot import {module}: "
                             f"{out.stderr.strip().splitlines()[-1:] or out.rc}")


def _distributions(node: Node) -> dict[str, str]:
    python = f"{node.var('optuna_runtime_env_path')}/bin/python"
    return dict(json.loads(node.check(f"{python} -c {shlex.quote(DISTRIBUTIONS)}",
                                      what=f"{python}: list the installed packages")))


def test_runtime_same_packages_as_driver(worker: Node, the_driver: Node) -> None:
    mine, driver = _distributions(worker), _distributions(the_driver)
    differ = {name: (mine.get(name), driver.get(name)) for name in sorted(set(mine) | set(driver))
              if mine.get(name) != driver.get(name)}
    assert not differ, f"{worker.name}: runtime packages differ from {the_driver.name}'s: " + ", ".join(
        f"{name} {here or 'missing'} (driver: {there or 'missing'})" for name, (here, there) in differ.items())


def test_runtime_unpacked_from_the_driver_archive(worker: Node, the_driver: Node) -> None:
    marker_path = f"{worker.var('optuna_runtime_env_path')}/.optuna-env.sha256"
    marker = worker.host.file(marker_path)
    assert marker.is_file, f"{worker.name}: {marker_path} is missing, expected the unpacked archive's sha256"
    expected = archive_sha256(the_driver)
    assert marker.content_string.strip() == expected, (
        f"{worker.name}: the runtime was unpacked from an archive with sha256 {marker.content_string.strip()}, "
        f"expected the driver's {expected}")


MYSQL_PROBE = r"""
import json, os, sys
import MySQLdb
path = sys.argv[1]
with open(path) as f:
    password = f.read().rstrip("\n")
os.unlink(path)
result = {}
tls = {"ssl": {"ca": sys.argv[7]}, "ssl_mode": "VERIFY_IDENTITY"} if sys.argv[7] else {}
try:
    db = MySQLdb.connect(host=sys.argv[2], port=int(sys.argv[3]), user=sys.argv[4], passwd=password,
                         database=sys.argv[5], connect_timeout=10, **tls)
except MySQLdb.Error as e:
    print(json.dumps({"connect": [e.args[0], str(e.args[1])]})); sys.exit(0)
cur = db.cursor()
cur.execute("SELECT CURRENT_USER()")
result["connect"] = "ok"
result["current_user"] = cur.fetchone()[0]
for name, sql in (("create_database", "CREATE DATABASE " + sys.argv[6]),
                  ("read_mysql_user", "SELECT user, host FROM mysql.user")):
    try:
        cur.execute(sql)
        result[name] = "allowed"
        if name == "create_database":
            cur.execute("DROP DATABASE " + sys.argv[6])
    except MySQLdb.Error as e:
        result[name] = [e.args[0], str(e.args[1])]
print(json.dumps(result))
"""


@pytest.fixture
def password_on(cluster: Cluster):
    """Put optuna_user's password in a 0600 file on a node: Ansible's copy module templates it
    from the (vaulted) inventory, so it is never on a command line or in this process."""
    made: list[tuple[Node, str]] = []

    def put(node: Node) -> str:
        path = f"/run/infra-test-{random_token()}"
        args = json.dumps({"content": "{{ mysql_optuna_password }}", "dest": path, "mode": "0600"})
        out = cluster.ansible(node.name, "ansible.builtin.copy", args)
        assert out.returncode == 0, f"{node.name}: could not copy the MySQL password there: {out.stdout[-500:]}"
        made.append((node, path))
        return path

    yield put
    for node, path in made:
        node.run(f"rm -f {path}")


def test_optuna_user_over_tcp_is_confined(worker: Node, the_driver: Node, password_on) -> None:
    python = f"{worker.var('optuna_runtime_env_path')}/bin/python"
    user, database = the_driver.var("mysql_optuna_user"), the_driver.var("mysql_optuna_database")
    address, port = the_driver.var("mysql_bind_address"), the_driver.var("mysql_port")
    path = password_on(worker)
    scratch = f"infra_probe_{random_token()}"
    # Over TLS, verifying the server against the storage's CA (optuna_user requires it).
    ca = worker.var("optuna_runtime_storage_ca_file") if the_driver.var("mysql_tls_enabled") else ""
    out = worker.check(f"{python} -c {shlex.quote(MYSQL_PROBE)} {path} {address} {port} {user} {database} {scratch} "
                       f"{shlex.quote(ca)}", what=f"the MySQL probe as {user}")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["connect"] == "ok", \
        f"{worker.name}: {user} cannot connect to {address}:{port}/{database} over TCP: {result['connect']}"
    if the_driver.var("mysql_optuna_global_grant"):
        # The seed's opt-in GRANT ALL ON *.*: both are allowed, by configuration.
        for name in ("create_database", "read_mysql_user"):
            assert result[name] == "allowed", (
                f"{worker.name}: {user} {name} gave {result[name]}, expected allowed (mysql_optuna_global_grant)")
        return
    # 1044: access denied to database; 1142: command denied to user for table.
    assert result["create_database"] != "allowed" and result["create_database"][0] == 1044, (
        f"{worker.name}: {user} CREATE DATABASE gave {result['create_database']}, expected refused (1044)")
    assert result["read_mysql_user"] != "allowed" and result["read_mysql_user"][0] in (1142, 1044), (
        f"{worker.name}: {user} reading mysql.user gave {result['read_mysql_user']}, expected refused (1142)")
