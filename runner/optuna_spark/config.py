"""Typed configuration of a tuning run, its defaults and its checks.

Everything here is pure: no Spark, no database. The command line (``cli.py``) and the runner's
TOML file feed these dataclasses; ``submit.py`` turns them into a ``spark-submit`` command line and
``spark_app.py`` receives them as a job file. ``OPTIONS`` is the one table of the options: their
types, defaults, checks, config keys, and the flags and help that ``cli.build_parser`` makes of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from optuna_spark import objectives
from optuna_spark.dataset import DataError, DataSpec, infer_format, is_url, unescape_sep
from optuna_spark.errors import ConfigError as ConfigError
from optuna_spark.limits import NAME_MAX as NAME_MAX
from optuna_spark.limits import PATH_MAX as PATH_MAX
from optuna_spark.limits import check_path_limits as check_path_limits
from optuna_spark.objectives import ObjectiveSpec as ObjectiveSpec
from optuna_spark.private import read_secret_file
from optuna_spark.storage import PASSWORD_ENV as PASSWORD_ENV
from optuna_spark.storage import StorageTarget, resolve_password, validate_url
from optuna_spark.tracking import check_settings

Direction = Literal["minimize", "maximize"]
Split = Literal["shared", "static"]
RuntimeMode = Literal["installed", "archive"]
PrunerName = Literal["none", "median", "hyperband"]

DIRECTIONS: tuple[str, ...] = ("minimize", "maximize")
SPLITS: tuple[str, ...] = ("shared", "static")
RUNTIME_MODES: tuple[str, ...] = ("installed", "archive")
PRUNERS: tuple[str, ...] = ("none", "median", "hyperband")
SAMPLERS: tuple[str, ...] = ("tpe", "random", "cmaes", "gp", "nsga2", "qmc")
# What a sampler needs beyond Optuna, on the driver and every worker: (module, pip package).
SAMPLER_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "cmaes": (("cmaes", "cmaes"),),
    "gp": (("torch", "torch"), ("scipy", "scipy")),
    "qmc": (("scipy", "scipy"),),
}
DEPLOY_MODES: tuple[str, ...] = ("client",)

# The `#environment` alias and the relative interpreter path of the seed's `--archives` flow.
ARCHIVE_ALIAS = "environment"
ARCHIVE_PYTHON = f"./{ARCHIVE_ALIAS}/bin/python"

DEFAULT_CONFIG_PATH = Path("/etc/optuna-spark/runner.toml")
DEFAULT_STUDY = "optuna-spark"  # tune's study without --study
MAX_SEED = 2**32 - 1  # NumPy's RandomState, which Optuna's samplers seed
MAX_TASKS = 100_000  # more Spark tasks than any cluster runs at once

_MASTER_RE = re.compile(
    r"^(local(\[(\*|[1-9][0-9]*)(,[1-9][0-9]*)?\])?"
    r"|local-cluster\[[1-9][0-9]*,[1-9][0-9]*,[1-9][0-9]*\]"
    r"|spark://[^\s/]+(:[0-9]+)?(,[^\s/]+(:[0-9]+)?)*"
    r"|yarn"
    r"|k8s://\S+)$"
)
_MEMORY_RE = re.compile(r"^[1-9][0-9]*[kmgtKMGT]?$")
_CONF_KEY_RE = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")
_TASK_AMOUNT_RE = re.compile(r"^spark\.task\.resource\.[^.]+\.amount$")


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
    # A class-data sharing archive of the driver's JVM, written once, mapped by later runs
    # (optuna_spark.class_archive): about 2 s less start-up on a 2-core machine.
    class_archive: bool = True
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
        for key, value in self.confs:
            if not _CONF_KEY_RE.match(key):
                raise ConfigError(f"--conf key must start with 'spark.', got {key!r}")
            if _TASK_AMOUNT_RE.match(key):
                task_resource_amount(value, f"--conf {key}")


def task_resource_amount(text: str, where: str) -> float:
    """A task's amount of a resource (`spark.task.resource.gpu.amount`) as Spark takes it: a
    number; up to 1.0 a share of one unit (0.5: two tasks share a GPU, 0.25: four), above 1.0 a
    whole number of units (Spark refuses 1.5 when its context starts). 0 or less asks for none.
    ConfigError for what Spark would refuse. Pure."""
    import math

    try:
        amount = float(text.strip())
    except ValueError:
        raise ConfigError(f"{where} must be a number, got {text!r}") from None
    if not math.isfinite(amount):
        raise ConfigError(f"{where} must be a number, got {text!r}")
    if amount > 1.0 and amount % 1 != 0:
        raise ConfigError(f"{where} must be at most 1.0 (a share of one unit: 0.5 puts two tasks on it) "
                          f"or a whole number, as Spark takes it; got {text!r}")
    return amount


@dataclass(frozen=True)
class StudySettings:
    name: str
    storage: str  # SQLAlchemy URL without its password
    directions: tuple[str, ...] = ("minimize",)  # one per objective value
    n_trials: int | None = None
    timeout: float | None = None
    n_jobs: int = 2
    split: str = "shared"
    sampler_seed: int | None = None
    sampler: str = "tpe"
    pruner: str = "none"
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    # How long a task waits for an unreachable storage (a MySQL restart) before it gives up.
    outage_timeout: float = 120.0
    # A trial running longer is failed and its process replaced (optuna_spark.supervisor); None: no limit.
    trial_timeout: float | None = None
    # What n_trials counts: "study", the study's finished trials in all (the command line: the
    # same command run again continues toward the same total, other clients' trials count);
    # "call", the trials this run adds (the library, as Optuna's study.optimize counts them).
    budget_scope: str = "study"
    # The tasks refuse a SQLite file they do not see (the library on a cluster).
    sqlite_must_exist: bool = False
    # MLflow: one parent run per run, one nested run per trial, logged by the driver
    # (optuna_spark.tracking); the experiment's name defaults to the study's.
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None
    # A folder every task writes trials' files to (Optuna's artifacts API: optuna_spark.artifact_store).
    artifact_dir: str | None = None

    def validate(self) -> None:
        if not self.name or len(self.name) > 512:
            raise ConfigError("study name must be 1 to 512 characters")
        if not self.directions or any(d not in DIRECTIONS for d in self.directions):
            raise ConfigError(f"each --direction must be minimize or maximize, got {list(self.directions)}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.sampler == "cmaes" and len(self.directions) > 1:
            raise ConfigError("--sampler cmaes optimizes one objective: use nsga2, tpe, random, gp or qmc "
                              f"for {len(self.directions)} directions")
        if self.pruner != "none" and len(self.directions) > 1:
            raise ConfigError("pruning needs a single objective: Optuna prunes on one intermediate value")
        if self.n_trials is None and self.timeout is None:
            raise ConfigError("give a budget: --n-trials N and/or --timeout SECONDS")
        if self.n_trials is not None and self.n_trials < 1:
            raise ConfigError(f"--n-trials must be a positive integer, got {self.n_trials}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.n_jobs < 1:
            raise ConfigError(f"--n-jobs must be a positive integer, got {self.n_jobs}")
        if self.n_jobs > MAX_TASKS:
            raise ConfigError(f"--n-jobs must be at most {MAX_TASKS}, got {self.n_jobs}")
        if self.sampler_seed is not None and not 0 <= self.sampler_seed <= MAX_SEED - (self.n_jobs - 1):
            # Task i seeds its sampler with seed + i; NumPy's seeds are 0 .. 2**32 - 1.
            raise ConfigError(f"--seed must be between 0 and {MAX_SEED - (self.n_jobs - 1)} with {self.n_jobs} "
                              f"task(s) (each task seeds with seed + its index, below 2**32), got {self.sampler_seed}")
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
        if self.budget_scope not in ("study", "call"):
            raise ConfigError(f"budget scope must be study or call, got {self.budget_scope!r}")
        if not self.outage_timeout > 0:
            raise ConfigError(f"--outage-timeout must be a positive number of seconds, got {self.outage_timeout}")
        if self.mlflow_tracking_uri is not None or self.mlflow_experiment is not None:
            check_settings(self.mlflow_tracking_uri, self.mlflow_experiment)
        if self.artifact_dir is not None:
            check_artifact_dir(self.artifact_dir)


def check_artifact_dir(path: str, where: str = "--artifact-dir") -> None:
    """A folder the run can make and write trials' files into: absolute, not a file, and its
    nearest existing parent a folder this user may write into. ConfigError (exit 2) otherwise,
    before anything runs."""
    if not os.path.isabs(path):
        raise ConfigError(f"{where} must be an absolute path, got {path!r}")
    check_path_limits(path, where)
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{where} {path} exists and is not a directory")
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ConfigError(f"{where} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == target else f"cannot be made: {existing} is not writable"
        raise ConfigError(f"{where} {path} {what}")


@dataclass(frozen=True)
class Job:
    """Everything the Spark application needs; written as JSON next to the run's log."""

    study: StudySettings
    objective: ObjectiveSpec
    callbacks: tuple[ObjectiveSpec, ...] = ()  # called after each trial, as Optuna's callbacks
    gpu: bool = False
    password_file: str | None = None
    progress_interval: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    data: DataSpec | None = None  # --data; None without data

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        study = dict(raw["study"])
        study["directions"] = tuple(study.get("directions", ("minimize",)))
        return cls(
            study=StudySettings(**study),
            objective=ObjectiveSpec(**raw["objective"]),
            callbacks=tuple(ObjectiveSpec(**c) for c in raw.get("callbacks", ())),
            gpu=raw.get("gpu", False),
            password_file=raw.get("password_file"),
            progress_interval=raw.get("progress_interval", 1.0),
            extra=raw.get("extra", {}),
            data=_data_spec(raw.get("data")),
        )


def _data_spec(raw: dict[str, Any] | None) -> DataSpec | None:
    return None if raw is None else DataSpec(**raw)


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


# ---------------------------------------------------------------------------- the settings builder
#
# Command line, config file and environment meet here, once: `build_settings` returns one typed,
# validated `RunSettings` (or raises ConfigError naming the option or the key and its file), and
# cli.py only parses and dispatches. Precedence: the command line, then the config file
# (--config, else $OPTUNA_SPARK_CONFIG, else /etc/optuna-spark/runner.toml if present), then the
# defaults below. From the environment: the config file's path and the storage password.

CONFIG_ENV = "OPTUNA_SPARK_CONFIG"
ALL_COMMANDS = ("tune", "status", "best", "report", "optuna", "submit")
# The commands that start a Spark application through spark-submit: the Spark settings are theirs.
SPARK_COMMANDS = ("tune", "submit")


@dataclass(frozen=True)
class Option:
    """One setting: its type, default, range or choices, where it may come from, and its flag.

    The one table of the command line's options: `build_settings` reads the settings from it, and
    `optuna_spark.cli.build_parser` adds each sub-command's flags from it, in the table's order
    (argparse's own default stays None, "not given", so that the config file and `default` apply
    after it; the help shows `shown_default`). The options table of docs/runner.md is checked
    against it (tests/unit/test_option_table.py)."""

    key: str
    kind: Literal["int", "float", "str", "path", "bool", "table"]
    default: Any = None
    low: float | None = None      # inclusive minimum of a number
    above: float | None = None    # exclusive minimum of a number
    choices: tuple[str, ...] = ()
    in_file: bool = True          # may be a key of the config file
    commands: tuple[str, ...] = ("tune",)   # the commands whose settings read it
    help: str = ""                # the flag's help, without its default (added from shown_default)
    metavar: str | None = None
    repeatable: bool = False      # the flag may be given again: a list of values, in order
    switch: bool = False          # a bool flag without a value (store_true); else `--flag true|false`
    required: bool = False        # a flag its commands cannot do without
    # The default in words, when it is worked out elsewhere (`default` is then None: not given).
    default_text: str | None = None
    # The sub-commands whose parser takes the flag: None, `commands`; (), none (a config key only).
    flag_on: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def flag_commands(self) -> tuple[str, ...]:
        return self.commands if self.flag_on is None else self.flag_on

    @property
    def shown_default(self) -> str:
        """The default as the help and docs/runner.md show it: `default_text`, else `default`
        ("none" for None or an empty table, "off"/"on" for a bool). Pure."""
        if self.required:
            return "required"
        if self.default_text is not None:
            return self.default_text
        value = self.default
        if value is None or value == {}:
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


# In the order of each sub-command's --help (optuna_spark.cli adds --study and --config among them).
OPTIONS: tuple[Option, ...] = (
    Option("objective", "str", "quadratic", in_file=False,
           help="quadratic, xgboost-wine, sleep, or module:function / file.py:function"),
    Option("direction", "str", choices=DIRECTIONS, in_file=False, repeatable=True, default_text="minimize",
           help="minimize or maximize, once per objective value"),
    Option("sampler", "str", "tpe", choices=SAMPLERS, help="Optuna's sampler; task i seeds with --seed + i"),
    Option("callback", "str", in_file=False, repeatable=True, metavar="MODULE:FUNCTION",
           help="called with (study, trial) after each trial, as Optuna's callbacks; repeatable"),
    Option("n_trials", "int", low=1, in_file=False, default_text="200 for quadratic, else 100, without --timeout",
           help="study-wide budget of finished trials"),
    Option("timeout", "float", above=0, in_file=False, help="stop starting trials after SECONDS"),
    Option("n_jobs", "int", 2, low=1, help="concurrent Spark tasks"),
    Option("split", "str", "shared", choices=SPLITS, in_file=False,
           help="shared: tasks pull from one exact budget; static: the seed's fixed share"),
    Option("seed", "int", in_file=False, help="sampler seed (task i uses seed + i)"),
    Option("pruner", "str", "none", choices=PRUNERS, help="Optuna's pruner (one objective)"),
    Option("mlflow_tracking_uri", "str", metavar="URI",     # optuna_spark.tracking: every trial an MLflow run
           help="log every trial as a nested MLflow run"),
    Option("mlflow_experiment", "str", metavar="NAME", default_text="the study's name", help="MLflow experiment"),
    Option("artifact_dir", "path", metavar="DIR",            # trials' files: optuna_spark.artifact_store(trial)
           help="trials' files: optuna_spark.artifact_store(trial)"),
    Option("master", "str", "local[*]", commands=SPARK_COMMANDS,
           help="local[N], spark://HOST:7077, yarn, k8s://..."),
    Option("runtime", "str", "installed", choices=RUNTIME_MODES, commands=SPARK_COMMANDS,
           help="installed: python at the same path on every node; archive: ship --archive"),
    Option("python", "path", commands=SPARK_COMMANDS, default_text="this interpreter",
           help="executors' python, with --runtime installed"),
    Option("driver_python", "path", commands=SPARK_COMMANDS, default_text="--python, else this interpreter",
           help="driver's python"),
    Option("archive", "path", commands=SPARK_COMMANDS, help="packed runtime (optuna-env.tar.gz) for --runtime archive"),
    Option("spark_submit", "path", commands=SPARK_COMMANDS,
           default_text="$SPARK_HOME/bin/spark-submit, else the PATH's", help="spark-submit to call"),
    Option("spark_home", "path", commands=SPARK_COMMANDS,
           help="Spark's home, exported as SPARK_HOME (its bin/spark-submit is used)"),
    Option("spark_conf_dir", "path", commands=SPARK_COMMANDS, default_text="$SPARK_CONF_DIR, else $SPARK_HOME/conf",
           help="Spark's conf directory, exported as SPARK_CONF_DIR"),
    Option("spark_secret_file", "path", commands=SPARK_COMMANDS,
           help="file (mode 0600/0640) holding the cluster's Spark RPC secret (spark.authenticate)"),
    Option("executor_cores", "int", low=1, commands=SPARK_COMMANDS, default_text="Spark's",
           help="cores of an executor: spark.executor.cores"),
    Option("executor_memory", "str", commands=SPARK_COMMANDS, default_text="Spark's",
           help="memory of an executor such as 4g: spark.executor.memory"),
    Option("driver_memory", "str", commands=SPARK_COMMANDS, default_text="Spark's",
           help="memory of the driver such as 2g: spark.driver.memory"),
    Option("task_cpus", "int", 1, low=1, commands=SPARK_COMMANDS, help="cores of a task: spark.task.cpus"),
    Option("gpu", "bool", False, commands=SPARK_COMMANDS, switch=True,
           help="one GPU per executor and per task; XGBoost runs on cuda:<task's GPU>"),
    Option("gpu_discovery_script", "path", commands=SPARK_COMMANDS,
           help="the script that lists an executor's GPUs (spark.executor.resource.gpu.discoveryScript)"),
    Option("max_task_failures", "int", low=1, commands=SPARK_COMMANDS, default_text="Spark's",
           help="attempts of a Spark task: spark.task.maxFailures"),
    Option("driver_java_options", "str", FAST_START_JAVA_OPTIONS, commands=SPARK_COMMANDS, metavar="OPTS",
           help="JVM options of the driver ('' for none; write --driver-java-options=-X...); the default "
                "starts it faster"),
    Option("class_archive", "bool", True, commands=SPARK_COMMANDS, metavar="true|false", default_text="true",
           help="map a class-data sharing archive of the driver's JVM, written by the first run (about 10-20 s "
                "more, once) into ~/.cache/optuna-spark/class-archives, to start Spark sooner; false for none"),
    Option("conf", "table", {}, commands=SPARK_COMMANDS, repeatable=True, metavar="KEY=VALUE",
           help="extra Spark setting, repeatable"),
    Option("verbose", "bool", False, in_file=False, commands=SPARK_COMMANDS, switch=True,
           help="copy Spark's log to stderr"),
    Option("heartbeat_interval", "int", 10, low=1, help="seconds between a trial's heartbeats"),
    Option("grace_period", "int", 30, low=1,
           help="seconds without a heartbeat after which a trial of this run is taken for dead "
                "or, when that is longer, after --outage-timeout + 2 heartbeat intervals + 5"),
    Option("max_retry", "int", 2, low=0, help="retries of a trial whose task died"),
    Option("trial_timeout", "float", above=0,
           help="fail a trial that runs longer than SECONDS and replace its process"),
    Option("outage_timeout", "float", 120.0, above=0,
           help="seconds a task waits for an unreachable storage before it gives up"),
    # tune --data (optuna_spark.dataset): the study's data set, its format and the label column. The
    # data set itself is command-line only (a config file's would reach every objective, also the
    # (trial)-only ones); its format, separator, header and label may be the config file's defaults.
    # Their defaults apply in data_settings: None here is "not given".
    Option("data", "str", in_file=False, metavar="PATH",
           help="the study's data set, given to objective(trial, data) as a pandas DataFrame: a Parquet or "
                "CSV file of this machine, or a URL Spark reads (hdfs://, s3a://, file://)"),
    Option("data_format", "str", choices=("parquet", "csv"), default_text="csv for .csv/.tsv/.txt, else parquet",
           help="the data set's format"),
    Option("data_sep", "str", metavar="CHAR", default_text=",", help="CSV separator (\\t for a tab)"),
    Option("data_header", "bool", metavar="true|false", default_text="true",
           help="CSV: the first line names the columns"),
    Option("target", "str", metavar="COLUMN", default_text="none; xgboost-wine: quality",
           help="the label column, checked to exist"),
    Option("output_dir", "str", in_file=False, commands=("report",), metavar="DIR", required=True,
           help="the report's folder (created), or - for a tar on stdout"),
    # The study dashboard's address (the optuna_dashboard role writes it): tune prints it when a
    # study starts, status shows it. A config key only.
    Option("dashboard_url", "str", commands=("tune", "status"), flag_on=()),
    Option("storage", "str", commands=ALL_COMMANDS, default_text="SQLite file optuna.db in --work-dir",
           help="SQLAlchemy URL without password"),
    Option("password_file", "path", commands=ALL_COMMANDS,
           help=f"file (mode 0600) holding the storage password; or set {PASSWORD_ENV}"),
    Option("work_dir", "path", "work", commands=ALL_COMMANDS, help="local state: default storage, logs, job files"),
    # `optuna` takes the flag too (and ignores it).
    Option("output", "str", "text", choices=("text", "json"), in_file=False,
           commands=("tune", "status", "best", "report"), flag_on=("tune", "status", "best", "report", "optuna"),
           help="the summary's form"),
)
FILE_KEYS = tuple(o.key for o in OPTIONS if o.in_file)
_BY_KEY = {o.key: o for o in OPTIONS}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


_KIND_TEXT = {"int": "an integer", "float": "a number", "str": "a string", "path": "a path (a string)",
              "bool": "true or false", "table": "a table of spark.* keys"}


def _check_type(option: Option, value: Any, where: str) -> Any:
    """A config file's value, of the option's type (TOML has types: no guessing from strings)."""
    kind = option.kind
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "path": isinstance(value, str) and bool(value),
        "bool": isinstance(value, bool),
        "table": isinstance(value, dict),
    }[kind]
    if not ok:
        raise ConfigError(f"{where} must be {_KIND_TEXT[kind]}, got {_describe(value)}")
    if kind == "float":
        return float(value)
    if kind == "table":
        out = {}
        for k, v in value.items():
            if isinstance(v, (dict, list)) or v is None:
                raise ConfigError(f"{where}: {k!r} must be a string, number or boolean, got {_describe(v)}")
            out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        return out
    return value


def _check_range(option: Option, value: Any, where: str) -> None:
    if value is None or option.kind not in ("int", "float"):
        if option.choices and value is not None and value not in option.choices:
            raise ConfigError(f"{where} must be one of {', '.join(option.choices)}, got {value!r}")
        return
    noun = "integer" if option.kind == "int" else "number"
    if option.low is not None and value < option.low:
        what = "a positive" if option.low == 1 else "a non-negative" if option.low == 0 else f">= {option.low:g}"
        raise ConfigError(f"{where} must be {what} {noun}, got {value!r}")
    if option.above is not None and not value > option.above:
        raise ConfigError(f"{where} must be a positive {noun}, got {value!r}")


def load_config_file(path: Path) -> dict[str, Any]:
    """The runner's TOML file (written by the Ansible role on a cluster's driver), every key
    known and of its type."""
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    cli_only = sorted(k for k in data if k in _BY_KEY and not _BY_KEY[k].in_file)
    if cli_only:
        raise ConfigError(f"config file {path}: {', '.join(cli_only)} is a command-line option only "
                          f"({', '.join(_BY_KEY[k].flag for k in cli_only)}), not a config key")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(FILE_KEYS))})")
    out = {}
    for key, value in data.items():
        option = _BY_KEY[key]
        where = f"config file {path}: {key}"
        out[key] = _check_type(option, value, where)
        _check_range(option, out[key], where)
    return out


@dataclass(frozen=True)
class RunSettings:
    """Everything a command needs, built and checked once (build_settings)."""

    command: str
    storage: StorageTarget            # URL, password
    password_file: str | None
    work_dir: Path
    output: str = "text"
    study_name: str | None = None
    verbose: bool = False
    config_path: Path | None = None
    study: StudySettings | None = None        # tune
    spark: SparkSettings | None = None        # tune
    objective: ObjectiveSpec | None = None    # tune
    callbacks: tuple[ObjectiveSpec, ...] = ()  # tune
    spark_secret: str | None = field(default=None, repr=False)
    optuna_args: tuple[str, ...] = ()
    output_dir: str | None = None             # report: a folder, or "-" (a tar on stdout)
    dashboard_url: str | None = None          # tune, status
    data: DataSpec | None = None              # tune: --data
    script: str | None = None                 # submit: the user's Python script (absolute)
    script_args: tuple[str, ...] = ()         # submit: its arguments


def _source(key: str, cli: dict[str, Any], config_path: Path | None) -> str:
    if cli.get(key) is not None or config_path is None:
        return _BY_KEY[key].flag
    return f"{key} in config file {config_path}"


def _check_work_dir(path: Path, config_path: Path | None) -> None:
    """--work-dir must be a directory this user can make and write: checked before anything runs
    (its runs' folders and the default SQLite file go there)."""
    where = f"work_dir in config file {config_path}" if config_path is not None else "--work-dir"
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise ConfigError(f"{where} {path}: {existing} is not a directory")
    if existing == path and not path.is_dir():
        raise ConfigError(f"{where} {path} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{where} {path}: {existing} is not writable by this user")
    if existing != path:
        # Made and removed again: what the file system refuses (/proc, a read-only mount, a name
        # too long) is said now, and nothing is left behind.
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(f"{where} {path} cannot be created: {exc.strerror or exc}") from None
        made = path
        while made != existing:
            made.rmdir()
            made = made.parent
    if len(str(path)) > 3000:
        raise ConfigError(f"{where} is too long ({len(str(path))} characters)")


def config_path_of(cli: dict[str, Any], environ: Any) -> Path | None:
    path = cli.get("config") or environ.get(CONFIG_ENV)
    if path:
        return Path(path).expanduser()
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def build_settings(command: str, cli: dict[str, Any], environ: Any, cwd: Path | None = None) -> RunSettings:
    """The one place where the command line (`cli`: argparse's values, None when not given),
    the config file and the environment become settings. ConfigError (exit 2) names the option
    or the config key and its file."""

    config_path = config_path_of(cli, environ)
    file_values = load_config_file(config_path) if config_path is not None else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if command not in option.commands:
            continue
        given = cli.get(option.key)
        if option.kind == "table":
            table = dict(sorted(file_values.get(option.key, {}).items()))
            values[option.key] = tuple(table.items()) + parse_conf_pairs(list(given or []))
            continue
        if isinstance(given, list):  # a repeatable option
            values[option.key] = tuple(given)
        elif given is not None:
            _check_range(option, given, option.flag)
            values[option.key] = given
        elif option.key in file_values:
            values[option.key] = file_values[option.key]
        else:
            values[option.key] = option.default
    for key in ("password_file", "work_dir", "python", "driver_python", "archive", "spark_submit", "spark_home",
                "spark_conf_dir", "spark_secret_file", "gpu_discovery_script"):
        if values.get(key) is not None:
            values[key] = str(Path(str(values[key])).expanduser())
            check_path_limits(values[key], _source(key, cli, config_path))
    for key in ("data", "output_dir"):
        if values.get(key) and values[key] != "-" and "://" not in str(values[key]):
            check_path_limits(str(values[key]), _source(key, cli, config_path))

    work_dir = Path(values["work_dir"]).resolve()
    if command in SPARK_COMMANDS:
        _check_work_dir(work_dir, config_path if cli.get("work_dir") is None else None)
    url = values["storage"] or f"sqlite:///{work_dir / 'optuna.db'}"
    validate_url(url)
    target = StorageTarget(url, resolve_password(values["password_file"], environ))
    common = {"command": command, "storage": target, "password_file": values["password_file"],
              "work_dir": work_dir, "config_path": config_path}
    if command == "optuna":
        return RunSettings(**common, optuna_args=tuple(cli.get("optuna_args") or ()))
    if command in ("status", "best"):
        return RunSettings(**common, output=values["output"], study_name=cli.get("study"),
                           dashboard_url=_dashboard_url(values.get("dashboard_url")))
    if command == "report":
        return RunSettings(**common, output=values["output"], study_name=cli.get("study"),
                           output_dir=_report_dir(values["output_dir"]))
    if command == "submit":
        return _submit_settings(common, values, cli, cwd)
    return _tune_settings(common, values, cli, cwd)


def _dashboard_url(url: str | None) -> str | None:
    if url is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ConfigError(f"dashboard_url must be an http:// or https:// address, got {url!r}")
    if parts.username or parts.password:
        raise ConfigError("dashboard_url must not carry a user or password")
    return url


def _report_dir(raw: str | None) -> str:
    """The report's folder, made on writing; `-` sends the report as a tar on stdout."""
    if raw is None or raw == "":
        raise ConfigError("give --output-dir DIR (or - for a tar on stdout)")
    if raw == "-":
        return raw
    path = Path(raw).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output-dir {raw} exists and is not a directory")
    parent = next((p for p in (path, *path.parents) if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ConfigError(f"--output-dir {raw}: {parent} is not a directory")
    return str(path)


def _tune_settings(common: dict[str, Any], values: dict[str, Any], cli: dict[str, Any],
                   cwd: Path | None) -> RunSettings:
    name = cli.get("study")
    if name is None:
        name = DEFAULT_STUDY
    spark = _spark_settings(values, f"optuna-spark:{name}")
    n_trials, timeout = values["n_trials"], values["timeout"]
    if n_trials is None and timeout is None:
        n_trials = 200 if values["objective"] == "quadratic" else 100
    study = StudySettings(
        name=name, storage=common["storage"].url, directions=tuple(values["direction"] or ("minimize",)),
        n_trials=n_trials, timeout=timeout, n_jobs=values["n_jobs"], split=values["split"],
        sampler_seed=values["seed"], sampler=values["sampler"], pruner=values["pruner"],
        heartbeat_interval=values["heartbeat_interval"],
        grace_period=values["grace_period"], max_retry=values["max_retry"],
        outage_timeout=values["outage_timeout"], trial_timeout=values["trial_timeout"],
        mlflow_tracking_uri=values["mlflow_tracking_uri"], mlflow_experiment=values["mlflow_experiment"],
        artifact_dir=None if values["artifact_dir"] is None else
        str(Path(values["artifact_dir"]).expanduser().resolve()),
    )
    study.validate()
    secret = (read_secret_file(spark.spark_secret_file, "Spark secret file")
              if spark.spark_secret_file else None)
    _check_sampler_needs(study.sampler)
    objective = objectives.resolve(values["objective"], cwd)
    callbacks = tuple(objectives.resolve(spec, cwd, what="callback") for spec in values["callback"] or ())
    data = data_settings(values, cli, objective, cwd, common["config_path"])
    return RunSettings(**common, output=values["output"], study_name=name, verbose=bool(values["verbose"]),
                       study=study, spark=spark, objective=objective, callbacks=callbacks, spark_secret=secret,
                       dashboard_url=_dashboard_url(values["dashboard_url"]), data=data)


def _spark_settings(values: dict[str, Any], app_name: str) -> SparkSettings:
    """The Spark settings of a command that starts an application (tune, submit), checked."""
    spark = SparkSettings(
        master=values["master"], app_name=app_name, spark_submit=values["spark_submit"],
        spark_home=values["spark_home"], spark_conf_dir=values["spark_conf_dir"],
        spark_secret_file=values["spark_secret_file"], executor_cores=values["executor_cores"],
        executor_memory=values["executor_memory"], driver_memory=values["driver_memory"],
        task_cpus=values["task_cpus"], gpu=values["gpu"], gpu_discovery_script=values["gpu_discovery_script"],
        runtime=values["runtime"], python=values["python"], driver_python=values["driver_python"],
        archive=values["archive"], max_task_failures=values["max_task_failures"],
        driver_java_options=values["driver_java_options"], class_archive=values["class_archive"],
        confs=values["conf"],
    )
    spark.validate()
    for key in ("spark_home", "spark_conf_dir"):
        if values[key] is not None and not Path(values[key]).is_dir():
            raise ConfigError(f"{key} {values[key]} is not a directory")
    if spark.runtime == "archive" and spark.archive and not Path(spark.archive).is_file():
        raise ConfigError(f"archive {spark.archive} does not exist")
    return spark


def _submit_settings(common: dict[str, Any], values: dict[str, Any], cli: dict[str, Any],
                     cwd: Path | None) -> RunSettings:
    """`submit SCRIPT [ARGS]`: the user's own Python script as the Spark application, with the
    runner's Spark settings and storage (optuna_spark.cli.cmd_submit)."""

    raw = cli.get("script")
    if not raw:
        raise ConfigError("give the Python script to submit: optuna-spark submit SCRIPT.py [ARGS...]")
    check_path_limits(str(raw), "SCRIPT")
    script = (Path(cwd or Path.cwd()) / Path(str(raw)).expanduser()).resolve()
    if not script.is_file():
        what = "is not a file" if script.exists() else "does not exist"
        raise ConfigError(f"script {raw} {what}")
    if script.suffix != ".py":
        raise ConfigError(f"script {raw} is not a Python file (.py)")
    if not os.access(script, os.R_OK):
        raise ConfigError(f"script {raw} is not readable")
    args = list(cli.get("script_args") or ())
    if args[:1] == ["--"]:
        args = args[1:]
    spark = _spark_settings(values, f"optuna-spark:{script.stem}")
    secret = (read_secret_file(spark.spark_secret_file, "Spark secret file")
              if spark.spark_secret_file else None)
    return RunSettings(**common, verbose=bool(values["verbose"]), spark=spark, spark_secret=secret,
                       script=str(script), script_args=tuple(args))


# The label column of the built-in objectives that take data, when --target is not given.
DEFAULT_TARGETS = {"xgboost-wine": "quality"}


def data_settings(values: dict[str, Any], cli: dict[str, Any], objective: ObjectiveSpec,
                  cwd: Path | None = None, config_path: Path | None = None) -> Any:
    """--data and its options, checked against each other and against the objective's signature
    (optuna_spark.dataset reads the data itself later).

    `--data` is command-line only; `--data ''` (empty) is explicitly no data set. data_format,
    data_sep, data_header and target may come from the config file: defaults that apply when
    --data is given. Every error names where the setting came from: the flag, or the config
    file's key."""
    from urllib.parse import urlsplit


    def source(key: str) -> str:
        if cli.get(key) is not None or config_path is None:
            return _BY_KEY[key].flag
        return f"{key} in config file {config_path}"

    path = values.get("data")
    if not path:  # not given, or --data '': no data set
        given = [_BY_KEY[k].flag for k in ("data_format", "data_sep", "data_header", "target")
                 if cli.get(k) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} needs --data PATH")
        if objective.takes_data == "required":
            why = " (--data '' is no data set)" if path == "" else ""
            raise ConfigError(f"objective {objective.name!r} takes (trial, data): give --data PATH{why}")
        return None
    if objective.takes_data == "no":
        raise ConfigError(f"--data: objective {objective.name!r} takes only (trial); define it as "
                          "objective(trial, data) to receive the data set (a pandas DataFrame)")
    if is_url(path):
        try:
            parts = urlsplit(path)
            has_credentials = bool(parts.username or parts.password)
        except ValueError:
            raise ConfigError("--data is not a valid URL") from None
        if has_credentials:
            # It would be written to the job file, the run's events and Spark's logs: never echoed.
            raise ConfigError("--data must not carry a user or password in its URL: give Spark the "
                              "credentials in its configuration (--conf, e.g. spark.hadoop.fs.s3a.access.key)")
    fmt = values.get("data_format") or infer_format(path)
    if fmt != "csv":
        for key in ("data_sep", "data_header"):
            if values.get(key) is not None:
                raise ConfigError(f"{source(key)} applies to CSV data only (--data-format csv)")
    try:
        sep = unescape_sep(values.get("data_sep") or ",")
    except DataError as exc:
        raise ConfigError(str(exc).replace("--data-sep", source("data_sep"), 1)) from None
    header = True if values.get("data_header") is None else bool(values["data_header"])
    target = values.get("target")
    if target is not None and not target.strip():
        raise ConfigError(f"{source('target')} must name a column")
    if target is None:
        target = DEFAULT_TARGETS.get(objective.name)
    if not is_url(path):
        local = ((cwd or Path.cwd()) / Path(path).expanduser()).resolve()
        if not local.exists():
            raise ConfigError(f"--data {path} does not exist (a file of this machine; "
                              "hdfs://, s3a://, file:// for Spark to read)")
        if not os.access(local, os.R_OK):
            raise ConfigError(f"--data {path} is not readable")
        path = str(local)
    return DataSpec(path=path, format=fmt, sep=sep, header=header, target=target)


def _check_sampler_needs(sampler: str) -> None:
    import importlib.util

    for module, package in SAMPLER_NEEDS.get(sampler, ()):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--sampler {sampler} needs the {package} package, on the driver and every worker "
                              f"(pip install {package})")
