"""Typed configuration of a tuning run, its defaults and its checks.

Everything here is pure: no Spark, no database. The command line (``cli.py``) and the runner's
TOML file feed these dataclasses; ``submit.py`` turns them into a ``spark-submit`` command line and
``spark_app.py`` receives them as a job file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Direction = Literal["minimize", "maximize"]
Split = Literal["shared", "static"]
RuntimeMode = Literal["installed", "archive"]
PrunerName = Literal["none", "median", "hyperband"]

DIRECTIONS: tuple[str, ...] = ("minimize", "maximize")
SPLITS: tuple[str, ...] = ("shared", "static")
RUNTIME_MODES: tuple[str, ...] = ("installed", "archive")
PRUNERS: tuple[str, ...] = ("none", "median", "hyperband")
DEPLOY_MODES: tuple[str, ...] = ("client",)

# The `#environment` alias and the relative interpreter path of the seed's `--archives` flow.
ARCHIVE_ALIAS = "environment"
ARCHIVE_PYTHON = f"./{ARCHIVE_ALIAS}/bin/python"

DEFAULT_CONFIG_PATH = Path("/etc/optuna-spark/runner.toml")
PASSWORD_ENV = "OPTUNA_SPARK_STORAGE_PASSWORD"

_MASTER_RE = re.compile(
    r"^(local(\[(\*|[1-9][0-9]*)(,[1-9][0-9]*)?\])?"
    r"|local-cluster\[[1-9][0-9]*,[1-9][0-9]*,[1-9][0-9]*\]"
    r"|spark://[^\s/]+(:[0-9]+)?(,[^\s/]+(:[0-9]+)?)*"
    r"|yarn"
    r"|k8s://\S+)$"
)
_MEMORY_RE = re.compile(r"^[1-9][0-9]*[kmgtKMGT]?$")
_CONF_KEY_RE = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")


class ConfigError(ValueError):
    """A bad setting: the command line reports it in one line and exits with status 2."""


FAST_START_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


@dataclass(frozen=True)
class SparkSettings:
    """What `spark-submit` needs, nothing about the study."""

    master: str = "local[*]"
    deploy_mode: str = "client"
    app_name: str = "optuna-spark"
    spark_submit: str | None = None  # None: $spark_home/bin/spark-submit, else found on PATH
    # Exported to spark-submit as SPARK_HOME / SPARK_CONF_DIR when set.
    spark_home: str | None = None
    spark_conf_dir: str | None = None
    # Spark's RPC authentication secret (spark.authenticate.secret), one line in a private file.
    spark_secret_file: str | None = None
    executor_cores: int | None = None
    executor_memory: str | None = None
    driver_memory: str | None = None
    task_cpus: int = 1
    gpu: bool = False
    executor_gpu_amount: int = 1
    task_gpu_amount: int = 1
    gpu_discovery_script: str | None = None
    # installed: the runtime is already at `python` on every node (and on the driver).
    # archive: the packed runtime `archive` is shipped per job (`--archives ...#environment`).
    runtime: str = "installed"
    python: str | None = None
    driver_python: str | None = None
    archive: str | None = None
    max_task_failures: int | None = None
    # The client-mode driver's JVM only schedules (Python runs the trials): C1-only JIT starts it
    # about a second sooner (bench/startup.py). "" passes nothing.
    driver_java_options: str = FAST_START_JAVA_OPTIONS
    confs: tuple[tuple[str, str], ...] = ()

    def validate(self) -> None:
        if not _MASTER_RE.match(self.master):
            raise ConfigError(
                f"unsupported Spark master {self.master!r}: expected local[N], spark://HOST:PORT, "
                "yarn or k8s://URL"
            )
        if self.deploy_mode not in DEPLOY_MODES:
            raise ConfigError(
                f"deploy mode {self.deploy_mode!r} is not supported: Python applications run "
                "in client mode (the driver streams the study's progress)"
            )
        for name in ("executor_cores", "task_cpus", "executor_gpu_amount", "task_gpu_amount",
                     "max_task_failures"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.executor_cores is not None and self.task_cpus > self.executor_cores:
            raise ConfigError(
                f"task-cpus ({self.task_cpus}) exceeds executor-cores ({self.executor_cores}):"
                " no task could ever be scheduled"
            )
        for name in ("executor_memory", "driver_memory"):
            value = getattr(self, name)
            if value is not None and not _MEMORY_RE.match(value):
                raise ConfigError(f"{name.replace('_', '-')} must look like 4g or 512m, got {value!r}")
        if self.gpu and self.task_gpu_amount > self.executor_gpu_amount:
            raise ConfigError("task GPU amount exceeds the executor GPU amount")
        if self.runtime not in RUNTIME_MODES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIME_MODES)}, got {self.runtime!r}")
        if self.runtime == "archive" and not self.archive:
            raise ConfigError("runtime 'archive' needs --archive PATH (the packed optuna-env.tar.gz)")
        for key, _ in self.confs:
            if not _CONF_KEY_RE.match(key):
                raise ConfigError(f"--conf key must start with 'spark.', got {key!r}")


@dataclass(frozen=True)
class ObjectiveSpec:
    """A built-in objective name, or `module:function` / `path/to/file.py:function`."""

    name: str
    module: str
    function: str
    ship_file: str | None = None  # a user's file shipped with --py-files

    @property
    def builtin(self) -> bool:
        return self.ship_file is None and self.module.startswith("runner.objectives.")


@dataclass(frozen=True)
class StudySettings:
    name: str
    storage: str  # SQLAlchemy URL without its password
    direction: str = "minimize"
    n_trials: int | None = None
    timeout: float | None = None
    n_jobs: int = 2
    split: str = "shared"
    sampler_seed: int | None = None
    pruner: str = "none"
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    # How long a task waits for an unreachable storage (a MySQL restart) before it gives up.
    outage_timeout: float = 120.0
    # A trial running longer is failed and its process replaced (runner.supervisor); None: no limit.
    trial_timeout: float | None = None

    def validate(self) -> None:
        if not self.name or len(self.name) > 512:
            raise ConfigError("study name must be 1 to 512 characters")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be minimize or maximize, got {self.direction!r}")
        if self.n_trials is None and self.timeout is None:
            raise ConfigError("give a budget: --n-trials N and/or --timeout SECONDS")
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"--n-trials must be a positive integer, got {self.n_trials}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.n_jobs < 1:
            raise ConfigError(f"--n-jobs must be a positive integer, got {self.n_jobs}")
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be shared or static, got {self.split!r}")
        if self.split == "static" and self.n_trials is None:
            raise ConfigError("--split static needs --n-trials (each task gets a fixed share)")
        if self.split == "static" and self.n_trials is not None and self.n_trials < self.n_jobs:
            raise ConfigError("--split static needs at least one trial per task (n-trials >= n-jobs)")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise ConfigError("heartbeat interval must be >= 1 s and below the grace period")
        if self.max_retry < 0:
            raise ConfigError("max retry must be >= 0")
        if self.trial_timeout is not None and not self.trial_timeout > 0:
            raise ConfigError(f"--trial-timeout must be a positive number of seconds, got {self.trial_timeout}")
        if not self.outage_timeout > 0:
            raise ConfigError(f"--outage-timeout must be a positive number of seconds, got {self.outage_timeout}")


@dataclass(frozen=True)
class Job:
    """Everything the Spark application needs; written as JSON next to the run's log."""

    study: StudySettings
    objective: ObjectiveSpec
    gpu: bool = False
    password_file: str | None = None
    progress_interval: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        return cls(
            study=StudySettings(**raw["study"]),
            objective=ObjectiveSpec(**raw["objective"]),
            gpu=raw.get("gpu", False),
            password_file=raw.get("password_file"),
            progress_interval=raw.get("progress_interval", 1.0),
            extra=raw.get("extra", {}),
        )


def parse_conf_pairs(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """`KEY=VALUE` strings from repeated `--conf` flags, keeping their order."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--conf expects KEY=VALUE, got {pair!r}")
        out.append((key.strip(), value))
    return tuple(out)


def static_shares(n_trials: int, n_jobs: int) -> list[int]:
    """The seed's split: each task runs a fixed share, the first ones one more for a remainder."""
    base, extra = divmod(n_trials, n_jobs)
    return [base + (1 if i < extra else 0) for i in range(n_jobs)]


def load_config_file(path: Path) -> dict[str, Any]:
    """The runner's TOML file (written by the Ansible role on a cluster's driver)."""
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = {
        "storage", "password_file", "master", "runtime", "python", "driver_python", "archive",
        "spark_submit", "n_jobs", "executor_cores", "executor_memory", "driver_memory",
        "task_cpus", "gpu", "gpu_discovery_script", "conf", "work_dir", "max_task_failures",
        "driver_java_options", "spark_home", "spark_conf_dir", "spark_secret_file",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}")
    if "conf" in data and not isinstance(data["conf"], dict):
        raise ConfigError(f"config file {path}: 'conf' must be a table of spark.* keys")
    return data
