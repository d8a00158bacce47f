"""Hardening on every node: Spark's RPC authentication and encryption in the effective
configuration (the secret only where it belongs), MySQL over TLS required for optuna_user and
granted per cluster host, the nftables table, and the units' sandboxing in effect."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest

from infra_lib import Node, mysql_root


def properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def units(node: Node) -> list[str]:
    cluster = node.cluster
    return (["spark-master"] if node.name in cluster.drivers else []) + \
           (["spark-worker"] if node.name in cluster.workers else [])


def main_pid(node: Node, unit: str) -> int:
    pid = int(node.check(f"systemctl show -p MainPID --value {unit}").strip())
    assert pid > 0, f"{node.name}: {unit} has no main process"
    return pid


# ------------------------------------------------------------------------------------ Spark

def test_spark_authentication_and_encryption_are_on(node: Node) -> None:
    public = properties(node.host.file(f"{node.var('spark_conf_dir')}/spark-defaults.conf").content_string)
    for key in ("spark.authenticate", "spark.network.crypto.enabled", "spark.io.encryption.enabled"):
        assert public.get(key) == "true", f"{node.name}: spark-defaults.conf has {key}={public.get(key)}"
    assert "spark.authenticate.secret" not in public, f"{node.name}: the secret is in the clients' spark-defaults.conf"
    daemon_file = node.host.file(node.var("__spark_daemon_properties"))
    assert (daemon_file.user, daemon_file.group, daemon_file.mode) == ("root", node.var("spark_group"), 0o640)
    daemon = properties(daemon_file.content_string)
    assert len(daemon.get("spark.authenticate.secret", "")) >= 32, f"{node.name}: no secret for the daemons"
    assert {k: daemon[k] for k in public} == public, f"{node.name}: the daemons' properties differ from the defaults"
    for unit in units(node):
        pid = main_pid(node, unit)
        cmdline = node.host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
        assert f"--properties-file {node.var('__spark_daemon_properties')}" in cmdline, cmdline
        environ = node.host.file(f"/proc/{pid}/environ").content_string
        for where, text in (("command line", cmdline), ("environment", environ)):
            assert daemon["spark.authenticate.secret"] not in text, f"{node.name}: {unit}'s {where} holds the secret"


def test_fixed_spark_ports(node: Node) -> None:
    public = properties(node.host.file(f"{node.var('spark_conf_dir')}/spark-defaults.conf").content_string)
    for key, var in (("spark.driver.port", "spark_driver_port"), ("spark.blockManager.port", "spark_block_manager_port"),
                     ("spark.driver.blockManager.port", "spark_driver_block_manager_port"),
                     ("spark.ui.port", "spark_ui_port")):
        assert public.get(key) == str(node.var(var)), f"{node.name}: {key} is {public.get(key)}"
    if node.name in node.cluster.workers:
        listening = node.check("ss -Hltnp")
        assert re.search(rf":{node.var('spark_worker_port')}\s", listening), \
            f"{node.name}: spark-worker does not listen on spark_worker_port {node.var('spark_worker_port')}"


def test_the_masters_unauthenticated_rest_server_is_off(driver: Node) -> None:
    """Spark 4.1+ starts the master's REST submission server (6066) by default, without any
    authentication: whoever reaches it launches a driver program on a worker."""
    daemon = properties(driver.host.file(driver.var("__spark_daemon_properties")).content_string)
    assert daemon.get("spark.master.rest.enabled") == "false", daemon.get("spark.master.rest.enabled")
    listening = driver.check("ss -Hltn")
    assert not re.search(r":6066\s", listening), f"the master's REST server listens:\n{listening}"
    assert re.search(rf":{driver.var('spark_master_port')}\s", listening), "the master does not listen at all"


def test_only_the_runner_and_spark_read_the_secret(driver: Node) -> None:
    copy = driver.host.file(driver.var("optuna_runner_spark_secret_file"))
    assert (copy.user, copy.group, copy.mode) == ("root", driver.var("optuna_runner_group"), 0o640)
    secret = properties(driver.host.file(driver.var("__spark_daemon_properties")).content_string)[
        "spark.authenticate.secret"]
    assert copy.content_string.strip() == secret, f"{driver.name}: the runner's copy of the secret is stale"
    config = tomllib.loads(driver.host.file(driver.var("optuna_runner_config_file")).content_string)
    assert config["spark_secret_file"] == copy.path
    operator = driver.var("optuna_runner_operators")[0]
    for path in (copy.path, driver.var("__spark_daemon_properties"), driver.var("spark_auth_secret_file")):
        denied = driver.run(f"runuser -u {shlex.quote(operator)} -- cat {shlex.quote(path)}")
        assert denied.rc != 0, f"{driver.name}: the login user {operator} can read {path}"


def test_units_are_sandboxed_in_effect(node: Node) -> None:
    for unit in units(node) + (["optuna-spark-backup"] if node.name in node.cluster.drivers else []):
        shown = dict(line.split("=", 1) for line in node.check(
            f"systemctl show -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ProtectHome {unit}").splitlines())
        assert shown == {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                         "ProtectHome": "yes"}, f"{node.name}: {unit}: {shown}"
    for unit in units(node):
        assert node.check(f"systemctl show -p LimitNOFILE --value {unit}").strip() == str(node.var("spark_limit_nofile"))
        pid = main_pid(node, unit)
        status = node.host.file(f"/proc/{pid}/status").content_string
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), f"{node.name}: {unit} can gain privileges"
        # The sandbox really applies (systemd silently skips it where it cannot build it): the
        # process sees / read-only and a /tmp of its own, unlike PID 1.
        mounts = node.host.file(f"/proc/{pid}/mountinfo").content_string.splitlines()
        root = [line.split()[5] for line in mounts if line.split()[4] == "/"]
        assert root and all(options.split(",")[0] == "ro" for options in root), \
            f"{node.name}: {unit} sees / mounted {root}, expected read-only"
        tmp = [line for line in mounts if line.split()[4] == "/tmp"]
        init_tmp = [line for line in node.host.file("/proc/1/mountinfo").content_string.splitlines()
                    if line.split()[4] == "/tmp"]
        assert tmp and tmp != init_tmp, f"{node.name}: {unit} has no private /tmp"


# ------------------------------------------------------------------------------------ MySQL

def cluster_addresses(node: Node) -> set[str]:
    return {node.cluster.var(h, "cluster_address") for h in node.cluster.nodes}


def test_optuna_user_is_granted_per_cluster_host_and_requires_tls(driver: Node) -> None:
    rows = mysql_root(driver, f"SELECT host, ssl_type FROM mysql.user WHERE user = '{driver.var('mysql_optuna_user')}'")
    hosts = {host for host, _ in rows}
    assert hosts == cluster_addresses(driver), f"{driver.name}: optuna_user from {sorted(hosts)}, expected exactly " \
                                               f"the cluster's hosts {sorted(cluster_addresses(driver))}"
    assert {ssl for _, ssl in rows} == {"ANY"}, f"{driver.name}: optuna_user does not require TLS everywhere: {rows}"


def test_mysql_refuses_optuna_user_without_tls(driver: Node) -> None:
    address = driver.var("mysql_bind_address")
    # The password through a 0600 option file (never on a command line).
    plain = driver.run("umask 077; f=$(mktemp); "
                       f"printf '[client]\\npassword=%s\\n' \"$(cat {driver.var('optuna_runner_password_file')})\" > $f; "
                       f"mysql --defaults-extra-file=$f --skip-ssl -h {address} -u {driver.var('mysql_optuna_user')} "
                       "-e 'SELECT 1'; rc=$?; rm -f $f; exit $rc")
    assert plain.rc != 0 and "Access denied" in plain.stderr, f"{driver.name}: a plaintext login: {plain.stderr}"


def test_every_node_has_the_storage_ca(node: Node) -> None:
    ca = node.var("optuna_runtime_storage_ca_file")
    copy = node.host.file(ca)
    assert copy.exists and copy.mode == 0o644, f"{node.name}: no storage CA at {ca}"
    driver = node.cluster.drivers[0]
    original = node.cluster.host(driver).file(node.cluster.var(driver, "__mysql_tls_ca_cert")).content_string
    assert copy.content_string == original, f"{node.name}: {ca} is not the driver's CA"


def test_the_runtime_verifies_the_server_certificate(driver: Node) -> None:
    """PyMySQL of the runtime (what the runner and the trials use) logs in over TLS with the CA,
    and refuses the server when given CAs that did not sign it."""
    login = ("import pymysql, sys\n"
             "c = pymysql.connect(host=sys.argv[2], user=sys.argv[3], password=open(sys.argv[4]).read().strip(),"
             " database='optuna', ssl={'ca': sys.argv[1]}, connect_timeout=10)\n"
             "cur = c.cursor(); cur.execute(\"SHOW STATUS LIKE 'Ssl_version'\"); print(cur.fetchone()[1])\n")
    python = driver.var("optuna_runtime_env_path") + "/bin/python"
    args = f"{driver.var('mysql_bind_address')} {driver.var('mysql_optuna_user')} {driver.var('optuna_runner_password_file')}"
    out = driver.run(f"{python} -c {shlex.quote(login)} {driver.var('optuna_runtime_storage_ca_file')} {args}")
    assert out.rc == 0 and out.stdout.strip().startswith("TLSv1."), f"{driver.name}: {out.stderr[-500:]}"
    wrong = driver.run(f"{python} -c {shlex.quote(login)} /etc/ssl/certs/ca-certificates.crt {args}")
    assert wrong.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in wrong.stderr, f"{driver.name}: {wrong.stderr[-500:]}"


def test_the_server_certificate_names_the_cluster_address(driver: Node) -> None:
    cert, ca = driver.var("__mysql_tls_server_cert"), driver.var("__mysql_tls_ca_cert")
    assert driver.run(f"openssl verify -CAfile {ca} {cert}").rc == 0
    text = driver.check(f"openssl x509 -in {cert} -noout -ext subjectAltName")
    assert f"IP Address:{driver.var('mysql_bind_address')}" in text, text
    key = driver.host.file(driver.var("__mysql_tls_ca_key"))
    assert (key.user, key.mode) == ("root", 0o600)


# ------------------------------------------------------------------------------------ firewall

def test_the_firewall_lets_only_the_cluster_reach_the_ports(node: Node) -> None:
    if not node.var("optuna_firewall_enabled"):
        pytest.fail("optuna_firewall_enabled is off on the lab: the hardening suite expects it on")
    unit = node.host.service("optuna-spark-firewall")
    assert unit.is_enabled and unit.is_running, f"{node.name}: optuna-spark-firewall is not active"
    table = node.check(f"nft list table inet {node.var('optuna_firewall_table')}")
    allowed = set(re.search(r"set cluster \{.*?elements = \{([^}]*)\}", table, re.S).group(1).replace(",", " ").split())
    assert allowed == cluster_addresses(node), f"{node.name}: the firewall allows {sorted(allowed)}"
    ports = re.search(r"set ports \{.*?elements = \{([^}]*)\}", table, re.S).group(1)
    for port in (node.var("mysql_port"), node.var("spark_master_port"), node.var("spark_worker_port"),
                 node.var("spark_master_webui_port"), node.var("spark_driver_port"), node.var("spark_block_manager_port")):
        assert re.search(rf"\b{port}\b", ports), f"{node.name}: port {port} is not protected: {ports}"
    assert re.search(r"tcp dport @ports ip saddr @cluster accept", table)
    assert re.search(r"tcp dport @ports counter packets \d+ bytes \d+ drop", table)
    assert not re.search(r"\b22\b", ports), f"{node.name}: ssh must be left alone"
