"""Spark RPC authentication (spark_secret_file) against a real standalone master and worker that
require it, with RPC and I/O encryption on as the cluster runs; and the run's private files."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from procwatch import Seen, all_command_lines, descendants, watch

pytestmark = pytest.mark.spark

BIN = Path(sys.executable).parent
SECRET = "cl0ster-Rpc-s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Standalone:
    url: str
    client_conf: Path  # the cluster's spark_conf_dir as the runner sees it: no secret in it


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory):
    """A master and a worker of 2 cores on 127.0.0.1, authentication and encryption on."""
    base = tmp_path_factory.mktemp("standalone")
    conf = base / "daemon-conf"
    conf.mkdir()
    defaults = conf / "spark-defaults.conf"
    defaults.write_text("spark.authenticate true\n"
                        f"spark.authenticate.secret {SECRET}\n"
                        "spark.network.crypto.enabled true\n"
                        "spark.io.encryption.enabled true\n")
    defaults.chmod(0o600)
    client = base / "client-conf"
    client.mkdir()
    (client / "spark-defaults.conf").write_text("spark.network.crypto.enabled true\n"
                                                "spark.io.encryption.enabled true\n")
    home = _spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_CONF_DIR": str(conf), "SPARK_LOCAL_IP": "127.0.0.1"}
    port, master_ui, worker_ui = _free_port(), _free_port(), _free_port()
    spark_class = str(home / "bin" / "spark-class")
    procs = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(master_ui)],
                              env=env, stdout=(base / "master.log").open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)]
    try:
        url = f"spark://127.0.0.1:{port}"
        procs.append(subprocess.Popen([spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host",
                                       "127.0.0.1", "--cores", "2", "--memory", "2g", "--webui-port",
                                       str(worker_ui), "--work-dir", str(base / "work")],
                                      env=env, stdout=(base / "worker.log").open("w"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
        for _ in range(240):
            try:
                state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{master_ui}/json/", timeout=2))
                if state.get("aliveworkers") == 1:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the standalone worker never registered: " + (base / "worker.log").read_text()[-2000:])
        yield Standalone(url, client)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait(timeout=60)


def tune_args(study: str, master: str, *extra: str) -> list[str]:
    return [str(BIN / "optuna-spark"), "tune", "--study", study, "--objective", "sleep", "--n-jobs", "2",
            "--master", master, "--output", "json", *extra]


def runner_env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for key in ("OPTUNA_SPARK_CONFIG", "OPTUNA_SPARK_STORAGE_PASSWORD", "SPARK_CONF_DIR"):
        env.pop(key, None)
    return env


def write_secret(path: Path, text: str, mode: int = 0o640) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_the_right_secret_runs_the_study_to_its_budget_and_shows_nowhere(standalone: Standalone,
                                                                         tmp_path: Path) -> None:
    secret_file = write_secret(tmp_path / "spark-secret", SECRET)
    proc = subprocess.Popen(tune_args("auth", standalone.url, "--n-trials", "12", "--spark-conf-dir",
                                      str(standalone.client_conf), "--spark-secret-file", str(secret_file)),
                            cwd=tmp_path, env=runner_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen, everyone, private_modes, conf_dirs = Seen(), [], set(), set()
    while proc.poll() is None:
        watch(proc.pid, seen)
        everyone.append(all_command_lines())
        for private in (tmp_path / "work" / "runs").glob("*/private"):
            try:
                private_modes.add(stat.S_IMODE(private.stat().st_mode))
            except FileNotFoundError:
                pass
        time.sleep(0.3)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out)
    trials = optuna.load_study(study_name="auth", storage=f"sqlite:///{tmp_path / 'work' / 'optuna.db'}").trials
    assert summary["finished"] == 12 == len(trials)
    assert all(t.state.name == "COMPLETE" for t in trials)

    for env in seen.environs.values():
        if "SPARK_CONF_DIR" in env:
            conf_dirs.add(env["SPARK_CONF_DIR"])
    run_dir = next((tmp_path / "work" / "runs").iterdir())
    assert conf_dirs == {str(run_dir / "private" / "spark-conf")}, conf_dirs
    assert private_modes == {0o700}
    assert not (run_dir / "private").exists(), "the private conf directory outlived the run"
    assert len(seen.cmdlines) >= 3 and any("SparkSubmit" in c for c in seen.cmdlines.values())
    texts = [("stdout", out), ("stderr", err), ("spark.log", (run_dir / "spark.log").read_text()),
             ("job.json", (run_dir / "job.json").read_text()), *seen.texts(),
             *[("a command line on this machine", t) for t in everyone]]
    for name, text in texts:
        assert SECRET not in text, f"the Spark secret appears in the {name}"


def test_a_wrong_secret_fails_with_one_clear_line(standalone: Standalone, tmp_path: Path) -> None:
    secret_file = write_secret(tmp_path / "spark-secret", "not-the-secret", 0o600)
    done = subprocess.run(tune_args("wrong", standalone.url, "--n-trials", "4", "--spark-conf-dir",
                                    str(standalone.client_conf), "--spark-secret-file", str(secret_file)),
                          cwd=tmp_path, env=runner_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert f"the Spark master {standalone.url} did not accept the application: a wrong secret in {secret_file}" in last
    assert "not-the-secret" not in done.stderr + done.stdout
    assert not list((tmp_path / "work" / "runs").glob("*/private"))


@pytest.mark.parametrize("mode", [0o644, 0o660])
def test_a_secret_file_open_to_others_is_refused_before_anything_runs(run_cli, tmp_path: Path, mode: int) -> None:
    secret_file = write_secret(tmp_path / "spark-secret", SECRET, mode)
    done = run_cli("tune", "--n-trials", "2", "--spark-secret-file", str(secret_file))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"optuna-spark: error: Spark secret file {secret_file} is open to other users "
                                   f"(mode {mode:04o}): chmod 600 {secret_file} (or chmod 640 to share it with "
                                   "its group)")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_run_removes_its_private_files_and_its_children(tmp_path: Path, signum: int, status: int) -> None:
    secret_file = write_secret(tmp_path / "spark-secret", SECRET)
    proc = subprocess.Popen(tune_args("stop", "local[2]", "--n-trials", "200", "--spark-secret-file",
                                      str(secret_file)),
                            cwd=tmp_path, env=runner_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    db = tmp_path / "work" / "optuna.db"
    children: list[int] = []
    for _ in range(1500):  # a busy machine may take a while to start Spark
        time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if db.exists() and list((tmp_path / "work" / "runs").glob("*/private/spark-conf")):
            try:
                if optuna.load_study(study_name="stop", storage=f"sqlite:///{db}").trials:
                    children = descendants(proc.pid)
                    break
            except Exception:
                pass
    assert children, "the run never started a trial"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    assert not list((tmp_path / "work" / "runs").glob("*/private"))
    for _ in range(50):  # the JVM's Python workers may take a moment after spark-submit ended
        alive = [pid for pid in children if running(pid)]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"processes of the run outlived it: {alive}"


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
