"""A neighbour on the lab's network is hostile: it can neither use the cluster (MySQL with the
right password, a Spark job on the master) nor read its secrets off the wire. The neighbours
here are the lab's intruder host (a container on the lab network, not in the inventory) and
this machine itself (on the lab's bridge, not in the inventory either)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cluster_lib import INVENTORY, ROOT, on_driver, runner

PYMYSQL = Path(__import__("pymysql").__file__).parent


def lab_vars() -> dict:
    gv = Path(INVENTORY) / "group_vars" / "all"
    out = yaml.safe_load((gv / "00-lab.yml").read_text())
    out.update(yaml.safe_load((gv / "secrets.yml").read_text()))
    return out


@pytest.fixture(scope="module")
def intruder() -> str:
    name = f"{lab_vars()['lab_name']}-intruder"
    if subprocess.run(["podman", "container", "exists", name]).returncode != 0:
        up = subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), "up"], env={**os.environ, "LAB_INTRUDER": "1"},
                            capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stderr[-2000:]
    # A MySQL client for it: PyMySQL is pure Python (copied in, never installed on the cluster).
    subprocess.run(["podman", "exec", name, "mkdir", "-p", "/tmp/intruder-lib"], check=True)
    subprocess.run(["podman", "cp", str(PYMYSQL), f"{name}:/tmp/intruder-lib/"], check=True)
    return name


PROBE = r"""
import json, socket, sys
sys.path.insert(0, "/tmp/intruder-lib")
import pymysql
driver, password = sys.argv[1], sys.stdin.read().strip()
out = {}
for port in (22, 3306, 7077, 8080, 40000):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((driver, port)); out[port] = "open"
    except socket.timeout:
        out[port] = "timeout"
    except OSError as exc:
        out[port] = f"refused: {exc}"
    finally:
        s.close()
try:
    pymysql.connect(host=driver, user="optuna_user", password=password, database="optuna", connect_timeout=5)
    out["mysql"] = "logged in"
except Exception as exc:
    out["mysql"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_a_neighbour_with_the_password_cannot_log_in_to_mysql_nor_reach_spark(intruder: str) -> None:
    v = lab_vars()
    proc = subprocess.run(["podman", "exec", "-i", intruder, "python3", "-c", PROBE, v["cluster_driver_address"]],
                          input=v["mysql_optuna_password"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["22"] == "open", f"ssh must stay reachable: {seen}"
    for port in ("3306", "7077", "8080", "40000"):
        assert seen[port] != "open", f"port {port} of the driver answers a host outside the inventory: {seen}"
    assert seen["mysql"] != "logged in" and "OperationalError" in seen["mysql"], seen


APP = "from pyspark.sql import SparkSession\nprint(SparkSession.builder.getOrCreate().sparkContext.parallelize(range(8)).sum())\n"


def test_this_machine_cannot_submit_a_spark_job(tmp_path: Path) -> None:
    """This machine is on the lab's bridge but not in the inventory: the firewall drops it."""
    app = tmp_path / "probe.py"
    app.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env["PYSPARK_PYTHON"] = sys.executable
    submit = Path(sys.executable).parent / "spark-submit"
    started = time.monotonic()
    proc = subprocess.run([str(submit), "--master", f"spark://{lab_vars()['cluster_driver_address']}:7077", str(app)],
                          capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "\n28\n" not in f"\n{proc.stdout}", proc.stdout[-1000:]
    assert "unresponsive" in proc.stderr or "Failed to connect" in proc.stderr, proc.stderr[-2000:]
    print(f"refused after {time.monotonic() - started:.0f} s")


def test_a_cluster_host_without_the_secret_cannot_submit_a_spark_job() -> None:
    """From inside the firewall (the driver), as the login user, who cannot read the secret:
    Spark's authentication refuses the application (with or without a made-up secret)."""
    assert on_driver("sh", "-c", f"cat > /tmp/optuna-spark-probe.py <<'EOF'\n{APP}EOF").returncode == 0
    no_secret = on_driver("sh", "-c", "cd /tmp && PYSPARK_PYTHON=/opt/optuna-spark/env/bin/python "
                                      "spark-submit /tmp/optuna-spark-probe.py", timeout=300)
    assert no_secret.returncode != 0 and "A secret key must be specified" in no_secret.stderr, no_secret.stderr[-2000:]
    made_up = ("spark.authenticate true\nspark.authenticate.secret not-the-cluster-secret-0123456789ab\n"
               "spark.network.crypto.enabled true\n")
    assert on_driver("sh", "-c", f"umask 077; cat > /tmp/optuna-spark-wrong.conf <<'EOF'\n{made_up}EOF").returncode == 0
    wrong = on_driver("sh", "-c", "cd /tmp && PYSPARK_PYTHON=/opt/optuna-spark/env/bin/python spark-submit "
                                  f"--master spark://{lab_vars()['cluster_driver_address']}:7077 "
                                  "--properties-file /tmp/optuna-spark-wrong.conf /tmp/optuna-spark-probe.py",
                      timeout=400)
    assert wrong.returncode != 0 and "\n28\n" not in f"\n{wrong.stdout}", wrong.stdout[-1000:] + wrong.stderr[-2000:]
    # Without authentication at all the master itself refuses the application (the client has
    # nothing to refuse): Spark's authentication is enforced on the server's side.
    off = on_driver("sh", "-c", "cd /tmp && PYSPARK_PYTHON=/opt/optuna-spark/env/bin/python spark-submit "
                                f"--master spark://{lab_vars()['cluster_driver_address']}:7077 "
                                "--conf spark.authenticate=false --conf spark.network.crypto.enabled=false "
                                "--conf spark.io.encryption.enabled=false /tmp/optuna-spark-probe.py", timeout=400)
    assert off.returncode != 0 and "\n28\n" not in f"\n{off.stdout}", off.stdout[-1000:] + off.stderr[-2000:]
    assert "unresponsive" in off.stderr or "Failed to connect" in off.stderr or "Authentication" in off.stderr, \
        off.stderr[-2000:]


def bridge() -> str:
    net = lab_vars()["cluster_network_name"]
    return subprocess.run(["podman", "network", "inspect", net, "--format", "{{.NetworkInterface}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_wire_carries_neither_the_password_nor_sql_nor_spark_messages(study_name: str, tmp_path: Path) -> None:
    tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    capture = tmp_path / "lab.pcap"
    dump = subprocess.Popen([tcpdump, "-i", bridge(), "-U", "-s", "0", "-w", str(capture), "tcp and not port 22"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        s = runner("tune", "--study", study_name, "--objective", "quadratic", "--n-trials", "40", "--output", "json")
        assert s.returncode == 0, s.stderr[-3000:]
        assert len(json.loads(s.stdout)["hosts"]) >= 2, "the trials did not run on the workers"
        time.sleep(2)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)
    data = capture.read_bytes()
    packets = {port: subprocess.run([tcpdump, "-r", str(capture), "-nn", f"tcp port {port}"], capture_output=True,
                                    text=True).stdout.count("\n") for port in (3306, 7077)}
    assert len(data) > 100_000 and packets[3306] > 50 and packets[7077] > 0, (len(data), packets)
    password = lab_vars()["mysql_optuna_password"].encode()
    leaks = [what for what, needle in (("the storage password", password), ("the MySQL login", b"optuna_user"),
                                       ("SQL", b"SELECT "), ("SQL", b"INSERT INTO"), ("SQL", b"trial_params"),
                                       ("Spark RPC", b"org.apache.spark"), ("the study's name", study_name.encode()))
             if needle in data]
    assert not leaks, f"the lab's wire carried {leaks} in clear"
