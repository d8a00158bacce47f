"""GPU mode of the XGBoost study: configuration and device choice. No GPU here: the Spark task
context that would carry the GPU is a stub in the tests named so."""

from __future__ import annotations

import pytest
from pyspark.resource import ResourceInformation

from optuna_spark.cli import build_parser
from optuna_spark.config import build_settings
from optuna_spark.objectives import context
from optuna_spark.submit import build_submit_command


def settings_of(argv: list[str], tmp_path, config: str | None = None):
    env = {}
    if config is not None:
        (tmp_path / "runner.toml").write_text(config)
        env["OPTUNA_SPARK_CONFIG"] = str(tmp_path / "runner.toml")
    args = build_parser().parse_args(argv)
    return build_settings(args.command, vars(args), env, cwd=tmp_path)


def test_cli_gpu_flag_sets_one_gpu_per_executor_and_task(tmp_path) -> None:
    spark = settings_of(["tune", "--objective", "xgboost-wine", "--gpu",
                         "--gpu-discovery-script", "/opt/spark/bin/getGpusResources.sh",
                         "--master", "spark://driver:7077"], tmp_path).spark
    argv = build_submit_command(spark, [], default_python="py").argv
    assert "spark.executor.resource.gpu.amount=1" in argv
    assert "spark.task.resource.gpu.amount=1" in argv
    assert "spark.executor.resource.gpu.discoveryScript=/opt/spark/bin/getGpusResources.sh" in argv


def test_gpu_from_the_runner_config_file(tmp_path) -> None:
    assert settings_of(["tune"], tmp_path, "gpu = true\n").spark.gpu is True
    assert settings_of(["tune"], tmp_path, "").spark.gpu is False


def test_outside_a_spark_task_xgboost_runs_on_cpu() -> None:
    assert context.device_for_task(require_gpu=False) == "cpu"
    with pytest.raises(RuntimeError, match="no 'gpu' resource"):
        context.device_for_task(require_gpu=True)


class _StubTaskContext:
    def __init__(self, resources: dict) -> None:
        self._resources = resources

    def resources(self) -> dict:
        return self._resources

    def cpus(self) -> int:
        return 2


def test_device_is_the_gpu_spark_gave_the_task_with_a_stub_task_context(monkeypatch) -> None:
    import pyspark

    stub = _StubTaskContext({"gpu": ResourceInformation("gpu", ["3"])})
    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: stub))
    assert context.device_for_task(require_gpu=True) == "cuda:3"
    assert context.task_cpus() == 2


def test_a_task_without_gpu_in_gpu_mode_fails_loudly_with_a_stub_task_context(monkeypatch) -> None:
    import pyspark

    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: _StubTaskContext({})))
    with pytest.raises(RuntimeError, match="GPU mode is on"):
        context.device_for_task(require_gpu=True)
    assert context.device_for_task(require_gpu=False) == "cpu"


@pytest.mark.parametrize("address, visible, expected", [
    ("0", None, 0),                  # every GPU visible: Spark's address is CUDA's ordinal
    ("3", "", 3),
    ("3", "3", 0),                   # YARN / Kubernetes / a container: only the task's GPU is visible
    ("2", "1,2", 1),                 # two visible, the task's is the second
    ("5", "GPU-8c2a-uuid", 0),       # one visible, named by UUID: it is the task's
    ("GPU-b", "GPU-a,GPU-b", 1),     # a discovery script that reports UUIDs
    ("1", "4,6", 1),                 # an address already relative to what is visible
])
def test_the_gpu_address_is_mapped_through_cuda_visible_devices(address: str, visible: str | None,
                                                                   expected: int) -> None:
    assert context.cuda_ordinal(address, visible) == expected


def test_a_task_that_sees_only_its_gpu_uses_cuda_0(monkeypatch) -> None:
    monkeypatch.setattr(context, "task_gpu_address", lambda: "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert context.device_for_task(require_gpu=True) == "cuda:0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert context.device_for_task(require_gpu=True) == "cuda:3"


@pytest.mark.parametrize("amount", ["0.5", "0.25", "0.3", "1", "1.0", "2", "0"])
def test_task_gpu_amounts_that_spark_accepts_reach_spark_submit(tmp_path, amount: str) -> None:
    """Spark takes a task amount up to 1.0 as a share of one GPU (0.5: two tasks on it) and above
    it a whole number of GPUs; the user's --conf wins over --gpu's whole GPU per task."""
    spark = settings_of(["tune", "--gpu", "--conf", f"spark.task.resource.gpu.amount={amount}"], tmp_path).spark
    argv = build_submit_command(spark, [], default_python="py").argv
    given = [a for a in argv if a.startswith("spark.task.resource.gpu.amount=")]
    assert given[-1] == f"spark.task.resource.gpu.amount={amount}"


@pytest.mark.parametrize("amount, message", [
    ("1.5", "must be at most 1.0 (a share of one unit"),  # Spark refuses it when its context starts
    ("half", "must be a number"),
    ("nan", "must be a number"),
])
def test_task_gpu_amounts_that_spark_refuses_are_refused_before_anything_runs(tmp_path, amount: str,
                                                                              message: str) -> None:
    from optuna_spark.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        settings_of(["tune", "--gpu", "--conf", f"spark.task.resource.gpu.amount={amount}"], tmp_path)


class _Conf:
    def __init__(self, values: dict) -> None:
        self.values = values

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)


class _Context:
    """A SparkContext of a standalone master, as joblibspark's backend looks at it."""

    master = "spark://driver:7077"
    _gateway = object()

    def parallelize(self, data, slices=None):  # noqa: ANN001 - an RDD that can take a resource profile
        return type("RDD", (), {"withResources": lambda self, profile: self})()


class _Session:
    def __init__(self, confs: dict) -> None:
        self.conf, self.sparkContext = _Conf(confs), _Context()


@pytest.mark.filterwarnings("ignore:Spark version does not support stage-level scheduling")
def test_fractional_task_gpus_run_in_the_default_resource_profile(monkeypatch) -> None:
    """joblibspark 0.6 copies spark.task.cpus and spark.task.resource.gpu.amount into a stage-level
    profile through int(): a fraction, off a local master, ends the run before any task starts.
    The runner's backend keeps its tasks in the application's default profile, where Spark has
    resolved the amounts itself (checked on a local-cluster master with a discovery script of
    one GPU: two tasks at 0.5 each ran at once, each on GPU 0, as cuda:0)."""
    import joblib.parallel
    import joblibspark.backend as joblib_spark

    from optuna_spark.engine import JOBLIB_BACKEND, register_joblib_backend

    session = _Session({"spark.task.cpus": "1", "spark.task.resource.gpu.amount": "0.5"})
    monkeypatch.setattr(joblib_spark, "get_spark_session", lambda: session)
    monkeypatch.setattr(joblib_spark, "is_spark_connect_mode", lambda: False)
    with pytest.raises(ValueError, match="invalid literal for int"):  # joblibspark's own (pinned)
        joblib_spark.SparkDistributedBackend()
    register_joblib_backend()
    backend = joblib.parallel.BACKENDS[JOBLIB_BACKEND]()
    assert isinstance(backend, joblib_spark.SparkDistributedBackend) and backend._resource_profile is None
