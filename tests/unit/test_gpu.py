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
