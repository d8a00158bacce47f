"""The spark-submit command line is a pure function of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_spark.config import ConfigError, SparkSettings
from optuna_spark.submit import build_submit_command


def confs(argv: list[str]) -> dict[str, str]:
    out = {}
    for flag, value in zip(argv, argv[1:]):
        if flag == "--conf":
            key, _, val = value.partition("=")
            out[key] = val
    return out


def test_installed_runtime_uses_the_same_python_on_driver_and_executors() -> None:
    cmd = build_submit_command(SparkSettings(master="spark://driver:7077", python="/opt/env/bin/python"),
                               ["job.json"], default_python="/usr/bin/python3", app="app.py")
    assert cmd.argv[:7] == ["spark-submit", "--master", "spark://driver:7077", "--deploy-mode",
                            "client", "--name", "optuna-spark"]
    c = confs(cmd.argv)
    assert c["spark.pyspark.python"] == "/opt/env/bin/python"
    assert c["spark.pyspark.driver.python"] == "/opt/env/bin/python"
    assert "--archives" not in cmd.argv
    assert cmd.argv[-2:] == ["app.py", "job.json"]
    assert cmd.env == {"PYSPARK_PYTHON": "/opt/env/bin/python", "PYSPARK_DRIVER_PYTHON": "/opt/env/bin/python"}


def test_archive_runtime_is_the_seeds_flow() -> None:
    spark = SparkSettings(master="spark://driver:7077", runtime="archive",
                          archive="/srv/optuna-env.tar.gz", driver_python="/opt/env/bin/python")
    cmd = build_submit_command(spark, ["job.json"], default_python="/usr/bin/python3")
    assert cmd.argv[cmd.argv.index("--archives") + 1] == "/srv/optuna-env.tar.gz#environment"
    c = confs(cmd.argv)
    assert c["spark.pyspark.python"] == "./environment/bin/python"
    # The client-mode driver cannot use the relative path: an explicit interpreter is set.
    assert c["spark.pyspark.driver.python"] == "/opt/env/bin/python"


def test_an_archive_path_is_ignored_by_the_installed_runtime() -> None:
    # The cluster's runner.toml names the archive for `--runtime archive` runs; installed ignores it.
    argv = build_submit_command(SparkSettings(archive="/srv/env.tar.gz"), [], default_python="py").argv
    assert "--archives" not in argv and not any("/srv/env.tar.gz" in a for a in argv)


def test_archive_runtime_defaults_the_driver_python_to_the_callers() -> None:
    spark = SparkSettings(runtime="archive", archive="env.tar.gz")
    c = confs(build_submit_command(spark, [], default_python="/venv/bin/python").argv)
    assert c["spark.pyspark.driver.python"] == "/venv/bin/python"


def test_seed_confs_and_gpu_amounts() -> None:
    spark = SparkSettings(executor_cores=1, executor_memory="60g", task_cpus=1, gpu=True,
                          executor_gpu_amount=1, task_gpu_amount=1,
                          gpu_discovery_script="/opt/spark/getGpusResources.sh")
    c = confs(build_submit_command(spark, [], default_python="py").argv)
    assert c["spark.executor.cores"] == "1"
    assert c["spark.executor.memory"] == "60g"
    assert c["spark.task.cpus"] == "1"
    assert c["spark.executor.resource.gpu.amount"] == "1"
    assert c["spark.task.resource.gpu.amount"] == "1"
    assert c["spark.executor.resource.gpu.discoveryScript"] == "/opt/spark/getGpusResources.sh"


def test_no_gpu_confs_without_gpu() -> None:
    c = confs(build_submit_command(SparkSettings(), [], default_python="py").argv)
    assert not [k for k in c if "gpu" in k]


def test_user_confs_come_last_and_win() -> None:
    spark = SparkSettings(task_cpus=1, confs=(("spark.task.cpus", "2"), ("spark.foo", "a=b")))
    argv = build_submit_command(spark, [], default_python="py").argv
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    assert pairs.index("spark.task.cpus=2") > pairs.index("spark.task.cpus=1")
    assert "spark.foo=a=b" in pairs


def test_py_files_are_shipped() -> None:
    argv = build_submit_command(SparkSettings(), [], default_python="py",
                                py_files=("/home/u/obj.py",)).argv
    assert argv[argv.index("--py-files") + 1] == "/home/u/obj.py"


@pytest.mark.parametrize("master", ["local", "local[4]", "local[*]", "local[2,3]", "spark://h:7077",
                                    "spark://a:7077,b:7077", "yarn", "k8s://https://api:6443"])
def test_supported_masters(master: str) -> None:
    SparkSettings(master=master).validate()


@pytest.mark.parametrize("kwargs, message", [
    ({"master": "mesos://x"}, "unsupported Spark master"),
    ({"master": "local[0]"}, "unsupported Spark master"),
    ({"deploy_mode": "cluster"}, "client mode"),
    ({"runtime": "archive"}, "needs --archive"),
    ({"executor_cores": 1, "task_cpus": 2}, "exceeds executor-cores"),
    ({"executor_memory": "lots"}, "executor-memory"),
    ({"confs": (("hadoop.x", "1"),)}, "must start with 'spark.'"),
    ({"gpu": True, "executor_gpu_amount": 1, "task_gpu_amount": 2}, "task GPU amount"),
])
def test_bad_spark_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SparkSettings(**kwargs).validate()


def test_driver_jvm_starts_fast_by_default_and_the_user_can_override_it() -> None:
    def opts(spark: SparkSettings) -> str | None:
        argv = build_submit_command(spark, ["job.json"], default_python="/usr/bin/python3").argv
        return argv[argv.index("--driver-java-options") + 1] if "--driver-java-options" in argv else None

    assert opts(SparkSettings()) == "-XX:TieredStopAtLevel=1"
    assert opts(SparkSettings(driver_java_options="-Xss4m")) == "-Xss4m"
    assert opts(SparkSettings(driver_java_options="")) is None
    # The user's own driver options (a --conf) are not overridden by ours.
    assert opts(SparkSettings(confs=(("spark.driver.extraJavaOptions", "-Dx=1"),))) is None


def test_a_standalone_run_asks_for_its_task_slots_and_waits_for_them() -> None:
    c = confs(build_submit_command(SparkSettings(master="spark://driver:7077"), [], default_python="py",
                                   n_tasks=4).argv)
    assert c["spark.cores.max"] == "4"
    assert c["spark.scheduler.minRegisteredResourcesRatio"] == "1.0"
    assert c["spark.scheduler.maxRegisteredResourcesWaitingTime"] == "10s"


def test_the_slot_cap_is_whole_executors_and_counts_task_cpus() -> None:
    spark = SparkSettings(master="spark://driver:7077", executor_cores=4, task_cpus=2)
    # 3 tasks x 2 cpus = 6 cores -> two executors of 4 cores.
    assert confs(build_submit_command(spark, [], default_python="py", n_tasks=3).argv)["spark.cores.max"] == "8"
    spark = SparkSettings(master="spark://driver:7077", executor_cores=1)
    assert confs(build_submit_command(spark, [], default_python="py", n_tasks=3).argv)["spark.cores.max"] == "3"


@pytest.mark.parametrize("spark, n_tasks", [
    (SparkSettings(master="local[4]"), 4),                                    # local mode: no cluster
    (SparkSettings(master="yarn"), 4),                                        # YARN has its own knobs
    (SparkSettings(master="spark://d:7077"), None),                          # unknown task count
    (SparkSettings(master="spark://d:7077", task_cpus=2), 4),                # cap could split a task
    (SparkSettings(master="spark://d:7077", confs=(("spark.cores.max", "16"),)), 4),  # the user's cap
])
def test_no_slot_cap_where_it_does_not_apply(spark: SparkSettings, n_tasks: int | None) -> None:
    c = confs(build_submit_command(spark, [], default_python="py", n_tasks=n_tasks).argv)
    assert "spark.scheduler.minRegisteredResourcesRatio" not in c
    assert c.get("spark.cores.max") in (None, "16")


def test_the_users_wait_settings_win() -> None:
    spark = SparkSettings(master="spark://d:7077",
                          confs=(("spark.scheduler.maxRegisteredResourcesWaitingTime", "0s"),))
    argv = build_submit_command(spark, [], default_python="py", n_tasks=2).argv
    waits = [a for a in argv if a.startswith("spark.scheduler.maxRegisteredResourcesWaitingTime=")]
    assert waits == ["spark.scheduler.maxRegisteredResourcesWaitingTime=0s"]
    assert confs(argv)["spark.cores.max"] == "2"


@pytest.mark.parametrize("where", ["user", "defaults"])
def test_an_executor_size_set_elsewhere_sizes_the_cap(where: str) -> None:
    # executor.cores=4 with a cap of 2 would start no executor at all (the study would hang).
    user = (("spark.executor.cores", "4"),) if where == "user" else ()
    defaults = {"spark.executor.cores": "4"} if where == "defaults" else {}
    spark = SparkSettings(master="spark://d:7077", confs=user)
    c = confs(build_submit_command(spark, [], default_python="py", n_tasks=2, spark_defaults=defaults).argv)
    assert c["spark.cores.max"] == "4"


def test_the_users_task_cpus_count_and_the_runners_executor_size_beats_the_defaults() -> None:
    spark = SparkSettings(master="spark://d:7077", executor_cores=2, confs=(("spark.task.cpus", "2"),))
    c = confs(build_submit_command(spark, [], default_python="py", n_tasks=3,
                                   spark_defaults={"spark.executor.cores": "5"}).argv)
    assert c["spark.cores.max"] == "6"


@pytest.mark.parametrize("defaults", [
    {"spark.cores.max": "32"},
    {"spark.dynamicAllocation.enabled": "true"},
    {"spark.executor.cores": "four"},
])
def test_no_cap_over_a_cluster_default_it_would_fight(defaults: dict[str, str]) -> None:
    c = confs(build_submit_command(SparkSettings(master="spark://d:7077"), [], default_python="py",
                                   n_tasks=2, spark_defaults=defaults).argv)
    assert "spark.cores.max" not in c and "spark.scheduler.minRegisteredResourcesRatio" not in c


def test_spark_defaults_are_read_as_java_properties(tmp_path) -> None:
    from optuna_spark.submit import read_spark_defaults, spark_conf_dirs
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text(
        "# comment\n\nspark.executor.cores   4\nspark.cores.max=8\nspark.task.cpus : 1\n! also a comment\n")
    assert read_spark_defaults([tmp_path / "missing", conf]) == {
        "spark.executor.cores": "4", "spark.cores.max": "8", "spark.task.cpus": "1"}
    assert spark_conf_dirs("spark-submit", {"SPARK_CONF_DIR": str(conf)}) == [conf]
    dirs = spark_conf_dirs(str(tmp_path / "spark" / "bin" / "spark-submit"), {"SPARK_HOME": "/opt/spark"})
    assert dirs[:2] == [Path("/opt/spark/conf"), (tmp_path / "spark" / "conf").resolve()]


def test_spark_home_and_conf_dir_are_exported_to_spark_submit() -> None:
    spark = SparkSettings(spark_submit="/opt/spark/current/bin/spark-submit", spark_home="/opt/spark/current")
    cmd = build_submit_command(spark, [], default_python="py", conf_dir="/etc/spark")
    assert cmd.env["SPARK_HOME"] == "/opt/spark/current" and cmd.env["SPARK_CONF_DIR"] == "/etc/spark"
    assert cmd.argv[0] == "/opt/spark/current/bin/spark-submit"
    plain = build_submit_command(SparkSettings(), [], default_python="py")
    assert "SPARK_HOME" not in plain.env and "SPARK_CONF_DIR" not in plain.env


def test_the_configured_conf_dir_wins_over_the_environment(tmp_path) -> None:
    from optuna_spark.submit import effective_conf_dir, spark_conf_dirs
    env = {"SPARK_CONF_DIR": "/from/env", "SPARK_HOME": "/env/home"}
    assert spark_conf_dirs("spark-submit", env, spark_conf_dir="/etc/spark") == [Path("/etc/spark")]
    assert spark_conf_dirs("spark-submit", env, spark_home="/opt/spark") == [Path("/from/env")]
    assert spark_conf_dirs("/x/bin/spark-submit", {"SPARK_HOME": "/env/home"},
                           spark_home="/opt/spark")[0] == Path("/opt/spark/conf")
    (tmp_path / "b").mkdir()
    assert effective_conf_dir([tmp_path / "a", tmp_path / "b"]) == tmp_path / "b"
    assert effective_conf_dir([tmp_path / "a"]) is None


def test_spark_submit_comes_from_spark_home(tmp_path) -> None:
    from optuna_spark.submit import find_spark_submit
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "spark-submit"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert find_spark_submit(None, {"PATH": ""}, spark_home=str(home)) == str(script)
    assert find_spark_submit(None, {"PATH": ""}, spark_home=str(tmp_path / "none")) is None
    assert find_spark_submit(str(script), {"PATH": ""}, spark_home="/elsewhere") == str(script)


def test_spark_submit_never_inherits_the_storage_password() -> None:
    from optuna_spark.submit import child_environment
    env = child_environment({"PATH": "/bin", "OPTUNA_SPARK_STORAGE_PASSWORD": "pw"}, {"PYSPARK_PYTHON": "py"})
    assert env == {"PATH": "/bin", "PYSPARK_PYTHON": "py"}


def test_spark_submit_never_inherits_spark_connects_client_markers() -> None:
    """A process that used a Spark Connect session (a notebook) then runs the command line: the
    Spark application must start a classic session, not a Connect client."""
    from optuna_spark.submit import child_environment
    env = child_environment({"PATH": "/bin", "SPARK_CONNECT_MODE_ENABLED": "1", "SPARK_REMOTE": "sc://h:1",
                             "SPARK_LOCAL_REMOTE": "1"}, {})
    assert env == {"PATH": "/bin"}


def test_local_workers_fork_from_the_runners_preloading_daemon_only_on_this_interpreter() -> None:
    """optuna_spark.daemon where the executors run the caller's interpreter (local mode, installed
    runtime): elsewhere an executor's Python may lack this runner's module."""
    def daemon(**kw: object) -> str | None:
        spark = SparkSettings(**kw)  # type: ignore[arg-type]
        return confs(build_submit_command(spark, [], default_python="/venv/bin/python").argv).get(
            "spark.python.daemon.module")

    assert daemon(master="local[16]") == "optuna_spark.daemon"
    assert daemon(master="local[4]", python="/venv/bin/python") == "optuna_spark.daemon"
    assert daemon(master="spark://driver:7077") is None
    assert daemon(master="local[4]", python="/opt/other/bin/python") is None
    assert daemon(master="local[4]", runtime="archive", archive="/srv/env.tar.gz") is None
    # The user's --conf still wins (it comes last).
    spark = SparkSettings(master="local[2]", confs=(("spark.python.daemon.module", "pyspark.daemon"),))
    pairs = [a for a in build_submit_command(spark, [], default_python="py").argv if a.startswith("spark.python.d")]
    assert pairs[-1] == "spark.python.daemon.module=pyspark.daemon"


def test_the_daemon_preloads_and_tolerates_a_missing_module() -> None:
    import sys

    from optuna_spark.daemon import PRELOAD, preload

    assert preload(("json", "no_such_module_here")) == ["no_such_module_here"]
    optional = {"MySQLdb", "pymysql"}  # whichever MySQL driver is installed
    assert set(preload()) <= optional
    assert all(name in sys.modules for name in set(PRELOAD) - optional)


def test_the_daemon_starts_no_thread_before_it_forks() -> None:
    """Spark's daemon forks its workers: a thread started by an import would not exist in them
    (a lock it held would stay held). A fresh interpreter with the environment Spark gives its
    Python daemon (OMP_NUM_THREADS = the task's cores: OpenBLAS then starts no pool), the
    preload, then the process's threads as the kernel counts them (native ones included)."""
    import os
    import subprocess
    import sys

    code = "import os; from optuna_spark.daemon import preload; preload(); print(len(os.listdir('/proc/self/task')))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "1"
