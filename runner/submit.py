"""Build the `spark-submit` command line (a pure function) and run it, streaming its events."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runner.config import ARCHIVE_ALIAS, ARCHIVE_PYTHON, SparkSettings

EVENT_PREFIX = "@optuna-spark "  # same as runner.spark_app.EVENT_PREFIX (kept import-free there)
SPARK_APP = Path(__file__).with_name("spark_app.py")


# On a standalone master an application takes every free core of the cluster unless
# spark.cores.max caps it, and its first tasks go to whichever executor registers first (on a
# short study, one worker could run every trial). The runner knows how many tasks it runs: it asks
# for that many task slots and lets the scheduler wait, at most REGISTER_WAIT, until they are all
# registered. The tasks then start spread over the workers, and the rest of a shared cluster stays
# free for other applications.
REGISTER_WAIT = "10s"


def standalone_slot_confs(spark: SparkSettings, n_tasks: int | None) -> list[tuple[str, str]]:
    """spark.cores.max for `n_tasks` concurrent tasks, and the wait for their executors.

    Only on a spark:// master, for a known positive number of tasks, and not when the user set
    spark.cores.max. With spark.task.cpus > 1 it needs spark.executor.cores (otherwise the master
    may cut the cap into executors too small for one task), so nothing is set then."""
    if not spark.master.startswith("spark://") or n_tasks is None or n_tasks < 1:
        return []
    if any(key == "spark.cores.max" for key, _ in spark.confs):
        return []
    if spark.task_cpus > 1 and spark.executor_cores is None:
        return []
    cores = n_tasks * spark.task_cpus
    if spark.executor_cores:
        # The master only starts whole executors: round up to a multiple of their size.
        cores = -(-cores // spark.executor_cores) * spark.executor_cores
    out = [("spark.cores.max", str(cores))]
    user = {key for key, _ in spark.confs}
    if "spark.scheduler.minRegisteredResourcesRatio" not in user:
        out.append(("spark.scheduler.minRegisteredResourcesRatio", "1.0"))
    if "spark.scheduler.maxRegisteredResourcesWaitingTime" not in user:
        out.append(("spark.scheduler.maxRegisteredResourcesWaitingTime", REGISTER_WAIT))
    return out


@dataclass(frozen=True)
class SubmitCommand:
    argv: list[str]
    env: dict[str, str]  # variables to add to the child's environment (never a secret)


def build_submit_command(
    spark: SparkSettings,
    app_args: list[str],
    *,
    default_python: str,
    py_files: tuple[str, ...] = (),
    app: str = str(SPARK_APP),
    n_tasks: int | None = None,
) -> SubmitCommand:
    """The `spark-submit` argv for a job. Pure: no file, process or environment is read."""
    confs: list[tuple[str, str]] = [("spark.ui.showConsoleProgress", "false")]
    if spark.executor_cores is not None:
        confs.append(("spark.executor.cores", str(spark.executor_cores)))
    if spark.executor_memory is not None:
        confs.append(("spark.executor.memory", spark.executor_memory))
    if spark.driver_memory is not None:
        confs.append(("spark.driver.memory", spark.driver_memory))
    confs.append(("spark.task.cpus", str(spark.task_cpus)))
    if spark.max_task_failures is not None:
        confs.append(("spark.task.maxFailures", str(spark.max_task_failures)))
    if spark.gpu:
        confs.append(("spark.executor.resource.gpu.amount", str(spark.executor_gpu_amount)))
        confs.append(("spark.task.resource.gpu.amount", str(spark.task_gpu_amount)))
        if spark.gpu_discovery_script:
            confs.append(("spark.executor.resource.gpu.discoveryScript", spark.gpu_discovery_script))

    archives: list[str] = []
    if spark.runtime == "archive":
        assert spark.archive is not None
        archives.append(f"{spark.archive}#{ARCHIVE_ALIAS}")
        executor_python = ARCHIVE_PYTHON
        # The client-mode driver cannot use the relative path: it needs a real interpreter.
        driver_python = spark.driver_python or default_python
    else:
        executor_python = spark.python or default_python
        driver_python = spark.driver_python or executor_python
    confs.append(("spark.pyspark.python", executor_python))
    confs.append(("spark.pyspark.driver.python", driver_python))
    confs.extend(standalone_slot_confs(spark, n_tasks))
    confs.extend(spark.confs)  # the user's --conf last: it wins over ours

    argv = [spark.spark_submit, "--master", spark.master, "--deploy-mode", spark.deploy_mode,
            "--name", spark.app_name]
    user_driver_opts = any(key == "spark.driver.extraJavaOptions" for key, _ in spark.confs)
    if spark.driver_java_options and not user_driver_opts:
        argv += ["--driver-java-options", spark.driver_java_options]
    for key, value in confs:
        argv += ["--conf", f"{key}={value}"]
    if archives:
        argv += ["--archives", ",".join(archives)]
    if py_files:
        argv += ["--py-files", ",".join(py_files)]
    argv.append(app)
    argv += app_args
    env = {"PYSPARK_PYTHON": executor_python, "PYSPARK_DRIVER_PYTHON": driver_python}
    return SubmitCommand(argv=argv, env=env)


def find_spark_submit(configured: str, environ: dict[str, str] | None = None) -> str | None:
    """An explicit path, else $SPARK_HOME/bin/spark-submit, else PATH (pyspark's own script)."""
    env = os.environ if environ is None else environ
    if os.sep in configured:
        return configured if os.access(configured, os.X_OK) else None
    spark_home = env.get("SPARK_HOME")
    if spark_home:
        candidate = Path(spark_home) / "bin" / configured
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(configured, path=env.get("PATH"))
    if found is None:  # pyspark's own script beside this interpreter (a venv not on PATH)
        beside = Path(sys.executable).parent / configured
        found = str(beside) if os.access(beside, os.X_OK) else None
    return found


def find_java(environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    return shutil.which("java", path=env.get("PATH"))


def run_streaming(
    command: SubmitCommand,
    log: IO[str],
    on_event: Callable[[dict[str, Any]], None],
    secrets: tuple[str, ...] = (),
) -> int:
    """Run spark-submit; event lines go to `on_event`, everything else (redacted) to `log`."""
    env = {**os.environ, **command.env}
    proc = subprocess.Popen(
        command.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, text=True, bufsize=1, start_new_session=True,
    )

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(EVENT_PREFIX):
                try:
                    on_event(json.loads(line[len(EVENT_PREFIX):]))
                    continue
                except json.JSONDecodeError:
                    pass
            for secret in secrets:
                line = line.replace(secret, "***")
            log.write(line)
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            forward(signal.SIGTERM, None)
            proc.wait()
