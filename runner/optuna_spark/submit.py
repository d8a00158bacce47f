"""Build the `spark-submit` command line (a pure function) and run it, streaming its events."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from optuna_spark.config import ARCHIVE_ALIAS, ARCHIVE_PYTHON, SparkSettings
from optuna_spark.errors import INTERRUPT_SIGNALS
from optuna_spark.storage import PASSWORD_ENV

EVENT_PREFIX = "@optuna-spark "  # same as optuna_spark.spark_app.EVENT_PREFIX (kept import-free there)
SPARK_APP = Path(__file__).with_name("spark_app.py")


# On a standalone master an application takes every free core of the cluster unless
# spark.cores.max caps it, and its first tasks go to whichever executor registers first (on a
# short study, one worker could run every trial). The runner knows how many tasks it runs: it asks
# for that many task slots and lets the scheduler wait, at most REGISTER_WAIT, until they are all
# registered. The tasks then start spread over the workers, and the rest of a shared cluster stays
# free for other applications.
REGISTER_WAIT = "10s"


def _int_or_none(value: str | int | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


DAEMON_MODULE = "optuna_spark.daemon"


def standalone_slot_confs(spark: SparkSettings, n_tasks: int | None,
                          spark_defaults: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """spark.cores.max for `n_tasks` concurrent tasks, and the wait for their executors.

    Spark's precedence decides the executor size and task cpus: the user's --conf, then the
    runner's settings, then spark-defaults.conf (`spark_defaults`). Nothing is set off a spark://
    master, for an unknown number of tasks, when a cap or dynamic allocation is configured
    anywhere, when a size cannot be read, or with task cpus > 1 and no executor size (the master
    could cut the cap into executors too small for one task)."""
    if not spark.master.startswith("spark://") or n_tasks is None or n_tasks < 1:
        return []
    user = dict(spark.confs)
    defaults = dict(spark_defaults or {})
    if "spark.cores.max" in user or "spark.cores.max" in defaults:
        return []
    if user.get("spark.dynamicAllocation.enabled",
                defaults.get("spark.dynamicAllocation.enabled", "false")).strip().lower() == "true":
        return []
    if "spark.executor.cores" in user:
        executor_cores = _int_or_none(user["spark.executor.cores"])
    elif spark.executor_cores is not None:
        executor_cores = spark.executor_cores
    elif "spark.executor.cores" in defaults:
        executor_cores = _int_or_none(defaults["spark.executor.cores"])
    else:
        executor_cores = 0  # Spark's standalone default: one executor per worker, any size
    task_cpus = _int_or_none(user.get("spark.task.cpus", spark.task_cpus))
    if executor_cores is None or task_cpus is None or executor_cores < 0 or task_cpus < 1:
        return []
    if task_cpus > 1 and executor_cores == 0:
        return []
    cores = n_tasks * task_cpus
    if executor_cores:
        # The master only starts whole executors: round up to a multiple of their size.
        cores = -(-cores // executor_cores) * executor_cores
    out = [("spark.cores.max", str(cores))]
    if "spark.scheduler.minRegisteredResourcesRatio" not in user:
        out.append(("spark.scheduler.minRegisteredResourcesRatio", "1.0"))
    if "spark.scheduler.maxRegisteredResourcesWaitingTime" not in user:
        out.append(("spark.scheduler.maxRegisteredResourcesWaitingTime", REGISTER_WAIT))
    return out


def spark_conf_dirs(spark_submit: str, environ: Mapping[str, str] | None = None, *,
                    spark_home: str | None = None, spark_conf_dir: str | None = None) -> list[Path]:
    """Where the spark-submit at `spark_submit` may read spark-defaults.conf, most likely first:
    the runner's `spark_conf_dir`, else $SPARK_CONF_DIR, else the Spark home's conf/."""
    env = os.environ if environ is None else environ
    if spark_conf_dir:
        return [Path(spark_conf_dir)]
    if env.get("SPARK_CONF_DIR"):
        return [Path(env["SPARK_CONF_DIR"])]
    dirs = []
    home = spark_home or env.get("SPARK_HOME")
    if home:
        dirs.append(Path(home) / "conf")
    dirs.append(Path(spark_submit).resolve().parent.parent / "conf")  # an Apache release's bin/
    try:  # pip's pyspark: SPARK_HOME is the package itself
        import importlib.util
        spec = importlib.util.find_spec("pyspark")
        if spec is not None and spec.origin:
            dirs.append(Path(spec.origin).parent / "conf")
    except (ImportError, ValueError):
        pass
    return dirs


def effective_conf_dir(conf_dirs: list[Path]) -> Path | None:
    """The conf directory Spark would use: the first of `conf_dirs` that exists (or none)."""
    return next((d for d in conf_dirs if d.is_dir()), None)


# A Java properties line: the key ends at '=', ':' or white space; one separator, then the value.
_PROPERTY_RE = re.compile(r"(?P<key>[^=:\s]+)\s*(?:[=:]\s*|\s*)(?P<value>.*)$")


def read_spark_defaults(conf_dirs: list[Path]) -> dict[str, str]:
    """The first spark-defaults.conf found, as Java properties (`key value`, `key=value`, `#`)."""
    for conf_dir in conf_dirs:
        path = conf_dir / "spark-defaults.conf"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line[0] in "#!":
                continue
            m = _PROPERTY_RE.match(line)
            if m:
                out[m["key"]] = m["value"].strip()
        return out
    return {}


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
    spark_defaults: Mapping[str, str] | None = None,
    conf_dir: str | None = None,
    java_home: str | None = None,
) -> SubmitCommand:
    """The `spark-submit` argv for a job, and what to add to its environment: SPARK_HOME when
    configured, SPARK_CONF_DIR when `conf_dir` is given (the run's private copy when the RPC
    secret is used), JAVA_HOME when the runner chose a Java other than the one spark-submit would
    find (optuna_spark.java). Pure: no file, process or environment is read."""
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
    if spark.master.startswith("local") and spark.runtime == "installed" and executor_python == default_python:
        # The executors run this very interpreter: their Python workers fork from a daemon that
        # did the trial loop's imports once (optuna_spark.daemon).
        confs.append(("spark.python.daemon.module", DAEMON_MODULE))
    confs.extend(standalone_slot_confs(spark, n_tasks, spark_defaults))
    confs.extend(spark.confs)  # the user's --conf last: it wins over ours

    argv = [spark.spark_submit or "spark-submit", "--master", spark.master, "--deploy-mode", spark.deploy_mode,
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
    if spark.spark_home:
        env["SPARK_HOME"] = spark.spark_home
    if conf_dir:
        env["SPARK_CONF_DIR"] = conf_dir
    if java_home:
        env["JAVA_HOME"] = java_home
    return SubmitCommand(argv=argv, env=env)


def find_spark_submit(configured: str | None, environ: Mapping[str, str] | None = None,
                      spark_home: str | None = None) -> str | None:
    """An explicit path; else, with `spark_home`, its bin/spark-submit; else
    $SPARK_HOME/bin/spark-submit, else PATH (pyspark's own script)."""
    env = os.environ if environ is None else environ
    if configured is None and spark_home:
        candidate = Path(spark_home) / "bin" / "spark-submit"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    configured = configured or "spark-submit"
    if os.sep in configured:
        return configured if os.access(configured, os.X_OK) else None
    home = spark_home or env.get("SPARK_HOME")
    if home:
        candidate = Path(home) / "bin" / configured
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(configured, path=env.get("PATH"))
    if found is None:  # pyspark's own script beside this interpreter (a venv not on PATH)
        beside = Path(sys.executable).parent / configured
        found = str(beside) if os.access(beside, os.X_OK) else None
    return found


# PySpark's Spark Connect client marks its process with these (a notebook that used a remote
# session, a test): inherited, they would turn the Spark application's own session into a
# Spark Connect client too. spark-submit always starts a classic application.
SPARK_CONNECT_ENV = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE")


def child_environment(environ: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """spark-submit's environment: ours plus `extra`, without the storage password (the Spark
    application reads it from a file; spark-submit, its JVM and Python workers never need it)
    and without Spark Connect's client markers."""
    env = {k: v for k, v in environ.items() if k != PASSWORD_ENV and k not in SPARK_CONNECT_ENV}
    env.update(extra)
    return env


class TextSink(Protocol):
    """Where spark-submit's own lines go: a file, or a tee to it and the terminal."""

    def write(self, text: str, /) -> Any: ...


def run_streaming(
    command: SubmitCommand,
    log: TextSink,
    on_event: Callable[[dict[str, Any]], None],
    secrets: tuple[str, ...] = (),
) -> int:
    """Run spark-submit; event lines go to `on_event`, everything else (redacted) to `log`."""
    env = child_environment(os.environ, command.env)
    proc = subprocess.Popen(
        command.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, text=True, bufsize=1, start_new_session=True,
    )
    with _signals_forwarded(proc):
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


def run_attached(command: SubmitCommand) -> int:
    """Run spark-submit with this process's stdin, stdout and stderr (a user's own application:
    its output is the user's); its exit status."""
    proc = subprocess.Popen(command.argv, env=child_environment(os.environ, command.env),
                            start_new_session=True)
    with _signals_forwarded(proc):
        return proc.wait()


@contextlib.contextmanager
def _signals_forwarded(proc: subprocess.Popen[Any]) -> Iterator[None]:
    """While the child runs, Ctrl-C, SIGTERM and SIGHUP go to its process group (its own session:
    spark-submit, its JVM, its Python workers); the child is stopped if this block ends first.
    A signal received is raised again here afterwards, so that the caller's handling of it
    (KeyboardInterrupt, optuna_spark.cli.Terminated) runs once the child is gone."""
    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        _kill_group(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            proc.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
