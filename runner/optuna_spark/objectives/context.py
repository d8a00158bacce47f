"""What a Spark task knows about itself: its GPU, its CPUs, its host."""

from __future__ import annotations

import os
import socket

# Set in a task's process when the job asks for GPUs (--gpu): an objective that can use a GPU
# must then get one, not fall back to the CPU quietly. Generic: any objective may read it.
REQUIRE_GPU_ENV = "OPTUNA_SPARK_REQUIRE_GPU"


def require_gpu() -> None:
    os.environ[REQUIRE_GPU_ENV] = "1"


def gpu_required() -> bool:
    return os.environ.get(REQUIRE_GPU_ENV) == "1"


def task_gpu_address() -> str | None:
    """The GPU address Spark gave this task (its `gpu` resource), or None outside such a task."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    ctx = TaskContext.get()
    if ctx is None:
        return None
    gpu = ctx.resources().get("gpu")
    if gpu is None or not gpu.addresses:
        return None
    return str(gpu.addresses[0])


def cuda_ordinal(address: str, visible: str | None) -> int | str:
    """The CUDA ordinal, in this process, of the GPU that Spark gave the task by `address` (the
    discovery script's name for it: usually the physical index). Where the process sees only some
    GPUs (`CUDA_VISIBLE_DEVICES`, set by YARN, Kubernetes' device plugin or a container), CUDA
    numbers the visible ones from 0: the address is looked up among them. Pure."""
    if visible is None or not visible.strip():
        return int(address) if address.strip().isdigit() else address
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    if address.strip() in devices:
        return devices.index(address.strip())
    if len(devices) == 1:  # one GPU visible (e.g. listed by UUID): it is the task's
        return 0
    return int(address) if address.strip().isdigit() and int(address) < len(devices) else address


def device_for_task(require_gpu: bool) -> str:
    """XGBoost's device string: `cuda:<ordinal>` for a task with a GPU, `cpu` otherwise."""
    address = task_gpu_address()
    if address is not None:
        return f"cuda:{cuda_ordinal(address, os.environ.get('CUDA_VISIBLE_DEVICES'))}"
    if require_gpu:
        raise RuntimeError("GPU mode is on but Spark gave this task no 'gpu' resource "
                           "(set spark.task.resource.gpu.amount and a discovery script)")
    return "cpu"


def task_cpus(default: int = 1) -> int:
    try:
        from pyspark import TaskContext
    except ImportError:
        return default
    ctx = TaskContext.get()
    return int(ctx.cpus()) if ctx is not None else default


def hostname() -> str:
    return socket.gethostname()
