"""The one settings builder (optuna_spark.config.build_settings) and the command line in front of it:
every option and every config key with a bad value ends in one line, exit 2, before anything
runs or is written; precedence is command line, then config file, then defaults."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from optuna_spark.cli import build_parser, main
from optuna_spark.config import FILE_KEYS, OPTIONS, ConfigError, build_settings


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """main() in a scratch folder, its umask and signal handlers put back afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTUNA_SPARK_CONFIG", raising=False)
    monkeypatch.delenv("OPTUNA_SPARK_STORAGE_PASSWORD", raising=False)
    mask = os.umask(0o022)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield tmp_path
    os.umask(mask)
    for s, h in handlers.items():
        signal.signal(s, h)


def settings(tmp_path: Path, argv: list[str], config: str | None = None, env: dict | None = None):
    environ = dict(env or {})
    if config is not None:
        (tmp_path / "runner.toml").write_text(config)
        environ["OPTUNA_SPARK_CONFIG"] = str(tmp_path / "runner.toml")
    args = build_parser().parse_args(argv)
    return build_settings(args.command, vars(args), environ, cwd=tmp_path)


# A value of the wrong type for each kind of config key, and what the error says it must be.
WRONG_TYPE = {"int": ('"4"', "an integer, got the string '4'"),
              "float": ('"fast"', "a number, got the string 'fast'"),
              "str": ("5", "a string, got the number 5"),
              "path": ("true", "a path (a string), got the boolean true"),
              "bool": ('"false"', "true or false, got the string 'false'"),
              "table": ('"spark.x=1"', "a table of spark.* keys, got the string 'spark.x=1'")}


@pytest.mark.parametrize("key", FILE_KEYS)
def test_every_config_key_of_the_wrong_type_is_named_with_its_file(tmp_path: Path, key: str) -> None:
    kind = next(o.kind for o in OPTIONS if o.key == key)
    value, must = WRONG_TYPE[kind]
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, ["tune"], f"{key} = {value}\n")
    assert str(info.value) == f"config file {tmp_path / 'runner.toml'}: {key} must be {must}"


@pytest.mark.parametrize("line, message", [
    ("n_jobs = 0", "n_jobs must be a positive integer, got 0"),
    ("task_cpus = -1", "task_cpus must be a positive integer, got -1"),
    ("max_retry = -1", "max_retry must be a non-negative integer, got -1"),
    ("outage_timeout = 0", "outage_timeout must be a positive number, got 0.0"),
    ("trial_timeout = -2.5", "trial_timeout must be a positive number, got -2.5"),
    ("heartbeat_interval = 0", "heartbeat_interval must be a positive integer, got 0"),
    ("runtime = \"docker\"", "runtime must be one of installed, archive, got 'docker'"),
    ("pruner = \"magic\"", "pruner must be one of none, median, hyperband, got 'magic'"),
    ("[conf]\n\"spark.x\" = [1]", "conf: 'spark.x' must be a string, number or boolean, got a list"),
])
def test_config_values_out_of_range(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, ["tune"], line + "\n")
    assert str(info.value) == f"config file {tmp_path / 'runner.toml'}: {message}"


def test_unknown_keys_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) mastr \(known: archive, artifact_dir, class_archive, conf, "):
        settings(tmp_path, ["tune"], 'mastr = "typo"\n')
    with pytest.raises(ConfigError, match="is not valid TOML"):
        settings(tmp_path, ["tune"], "storage = \n")
    with pytest.raises(ConfigError, match="config file /nonexistent.toml does not exist"):
        settings(tmp_path, ["tune", "--config", "/nonexistent.toml"])
    with pytest.raises(ConfigError, match="is a directory"):
        settings(tmp_path, ["tune", "--config", str(tmp_path)])


def test_command_line_then_file_then_defaults(tmp_path: Path) -> None:
    config = ('master = "spark://d:7077"\nn_jobs = 6\ngpu = false\nouter = 1\n'.replace("outer = 1\n", "")
              + '[conf]\n"spark.a" = true\n"spark.b" = 2\n')
    s = settings(tmp_path, ["tune", "--n-jobs", "3", "--conf", "spark.b=3"], config)
    assert s.spark.master == "spark://d:7077" and s.study.n_jobs == 3 and s.spark.gpu is False
    assert s.spark.confs == (("spark.a", "true"), ("spark.b", "2"), ("spark.b", "3"))  # the last wins in Spark
    assert s.study.heartbeat_interval == 10 and s.study.n_trials == 200 and s.output == "text"
    assert settings(tmp_path, ["tune", "--objective", "sleep"]).study.n_trials == 100


def test_the_password_comes_from_the_environment_or_its_file(tmp_path: Path) -> None:
    s = settings(tmp_path, ["status", "--storage", "mysql+pymysql://u@h/optuna"],
                 env={"OPTUNA_SPARK_STORAGE_PASSWORD": "pw"})
    assert s.storage.password == "pw" and "pw" not in repr(s)


# Every command-line option with a bad value: exit 2, one line naming the option, nothing written.
BAD_OPTIONS = [
    (["--objective", "nope"], "unknown objective 'nope'"),
    (["--objective", "os:nothing_here"], "os has no callable 'nothing_here'"),
    (["--study", ""], "study name must be 1 to 512 characters"),
    (["--direction", "up"], "argument --direction: invalid choice: 'up'"),
    (["--n-trials", "0"], "--n-trials must be a positive integer, got 0"),
    (["--n-trials", "ten"], "argument --n-trials: expected an integer, got 'ten'"),
    (["--timeout", "-1"], "--timeout must be a positive number, got -1.0"),
    (["--n-jobs", "0"], "--n-jobs must be a positive integer, got 0"),
    (["--split", "half"], "argument --split: invalid choice: 'half'"),
    (["--split", "static", "--n-trials", "1", "--n-jobs", "2"], "at least one trial per task"),
    (["--seed", "x"], "argument --seed: expected an integer, got 'x'"),
    (["--pruner", "magic"], "argument --pruner: invalid choice: 'magic'"),
    (["--master", "mesos://m:5050"], "unsupported Spark master 'mesos://m:5050'"),
    (["--runtime", "archive"], "runtime 'archive' needs --archive PATH"),
    (["--runtime", "archive", "--archive", "/nonexistent.tar.gz"], "archive /nonexistent.tar.gz does not exist"),
    (["--spark-home", "/nonexistent"], "spark_home /nonexistent is not a directory"),
    (["--spark-conf-dir", "/nonexistent"], "spark_conf_dir /nonexistent is not a directory"),
    (["--spark-secret-file", "/nonexistent"], "Spark secret file /nonexistent does not exist"),
    (["--executor-cores", "0"], "--executor-cores must be a positive integer, got 0"),
    (["--executor-memory", "lots"], "executor-memory must look like 4g or 512m, got 'lots'"),
    (["--driver-memory", "1q"], "driver-memory must look like 4g or 512m, got '1q'"),
    (["--task-cpus", "0"], "--task-cpus must be a positive integer, got 0"),
    (["--executor-cores", "1", "--task-cpus", "2"], "task-cpus (2) exceeds executor-cores (1)"),
    (["--max-task-failures", "0"], "--max-task-failures must be a positive integer, got 0"),
    (["--conf", "nonsense"], "--conf expects KEY=VALUE, got 'nonsense'"),
    (["--conf", "hadoop.x=1"], "--conf key must start with 'spark.', got 'hadoop.x'"),
    (["--heartbeat-interval", "0"], "--heartbeat-interval must be a positive integer, got 0"),
    (["--heartbeat-interval", "30", "--grace-period", "30"], "heartbeat interval must be >= 1 s and below the grace"),
    (["--grace-period", "0"], "--grace-period must be a positive integer, got 0"),
    (["--max-retry", "-1"], "--max-retry must be a non-negative integer, got -1"),
    (["--trial-timeout", "0"], "--trial-timeout must be a positive number, got 0.0"),
    (["--outage-timeout", "0"], "--outage-timeout must be a positive number, got 0.0"),
    (["--storage", "mysql//nohost"], "malformed storage URL"),
    (["--storage", "oracle://u@h/db"], "unsupported storage backend 'oracle'"),
    (["--storage", "mysql+nosuchdriver://u@h/optuna"], "unknown database driver in 'mysql+nosuchdriver'"),
    (["--storage", "mysql://u:hunter2@h/optuna"], "the storage URL carries a password"),
    (["--password-file", "/nonexistent"], "password file /nonexistent does not exist"),
    (["--output", "xml"], "argument --output: invalid choice: 'xml'"),
    (["--config", "/nonexistent.toml"], "config file /nonexistent.toml does not exist"),
]


@pytest.mark.parametrize("args, fragment", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_every_option_with_a_bad_value(in_tmp: Path, capsys: pytest.CaptureFixture, args: list[str],
                                       fragment: str) -> None:
    with pytest.raises(SystemExit) if fragment.startswith("argument ") else _no_raise():
        code = main(["tune", *args])
        assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("optuna-spark: error: ") and fragment in err and "hunter2" not in err
    assert not (in_tmp / "work").exists()


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_status_and_best_never_create_a_storage(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    """A read-only verb on a storage that does not exist says so, exits 1, and creates nothing."""
    assert main(["status"]) == 1
    assert capsys.readouterr().err.strip() == (f"optuna-spark: the storage sqlite:///{in_tmp / 'work' / 'optuna.db'} "
                                               f"does not exist (no file {in_tmp / 'work' / 'optuna.db'})")
    assert main(["best", "--study", "s"]) == 1 and "does not exist" in capsys.readouterr().err
    assert main(["status", "--storage", f"sqlite:///{in_tmp / 'deep' / 'x.db'}"]) == 1
    assert list(in_tmp.iterdir()) == []


def test_directions_samplers_and_callbacks(tmp_path: Path) -> None:
    (tmp_path / "hooks.py").write_text("def log(study, trial):\n    pass\n")
    s = settings(tmp_path, ["tune", "--direction", "minimize", "--direction", "maximize", "--sampler", "nsga2",
                            "--callback", "hooks:log", "--callback", "hooks.py:log"])
    assert s.study.directions == ("minimize", "maximize") and s.study.sampler == "nsga2"
    assert [c.function for c in s.callbacks] == ["log", "log"] and s.callbacks[1].ship_file.endswith("hooks.py")
    assert settings(tmp_path, ["tune"], 'sampler = "random"\n').study.sampler == "random"
    with pytest.raises(ConfigError, match="callback 'hooks:nope': hooks has no callable 'nope'"):
        settings(tmp_path, ["tune", "--callback", "hooks:nope"])
    with pytest.raises(ConfigError, match="callback 'nonsense' must be module:function"):
        settings(tmp_path, ["tune", "--callback", "nonsense"])


def test_the_gp_sampler_needs_torch(tmp_path: Path) -> None:
    """torch is not in this project's lock (about 2 GB with its CUDA wheels): here, gp is refused
    before anything runs; where torch is installed, it is accepted."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        assert settings(tmp_path, ["tune", "--sampler", "gp"]).study.sampler == "gp"
        return
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, ["tune", "--sampler", "gp"])
    assert str(info.value) == ("--sampler gp needs the torch package, on the driver and every worker "
                               "(pip install torch)")


def test_report_settings_and_its_bad_output_dirs(tmp_path: Path) -> None:
    s = settings(tmp_path, ["report", "--study", "s", "--output-dir", str(tmp_path / "new" / "folder")])
    assert s.command == "report" and s.study_name == "s" and s.output_dir == str(tmp_path / "new" / "folder")
    assert settings(tmp_path, ["report", "--study", "s", "--output-dir", "-"]).output_dir == "-"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^--output-dir .*/file exists and is not a directory$"):
        settings(tmp_path, ["report", "--study", "s", "--output-dir", str(tmp_path / "file")])
    with pytest.raises(ConfigError, match=r"^--output-dir .*/file/sub: .*/file is not a directory$"):
        settings(tmp_path, ["report", "--study", "s", "--output-dir", str(tmp_path / "file" / "sub")])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["report", "--study", "s"])  # --output-dir is required


def test_the_dashboard_url_comes_from_the_config_file(tmp_path: Path) -> None:
    config = 'dashboard_url = "http://10.89.0.10:8090/dashboard"\n'
    assert settings(tmp_path, ["tune"], config).dashboard_url == "http://10.89.0.10:8090/dashboard"
    assert settings(tmp_path, ["status"], config).dashboard_url == "http://10.89.0.10:8090/dashboard"
    assert settings(tmp_path, ["tune"]).dashboard_url is None
    for bad in ("10.89.0.10:8090", "ftp://h/x", "http://user:pw@h/dashboard", "http:///dashboard"):
        with pytest.raises(ConfigError, match="dashboard_url must"):
            settings(tmp_path, ["status"], f'dashboard_url = "{bad}"\n')
