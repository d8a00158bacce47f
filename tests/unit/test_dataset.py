"""`tune --data`, its pure parts: options and their checks, the objective's signature, the memory
limit, the driver file's reader and refusals, the per-process cache of the executors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest

from optuna_spark import dataset
from optuna_spark.cli import build_parser
from optuna_spark.config import ConfigError, Job, ObjectiveSpec, StudySettings, build_settings
from optuna_spark.dataset import (DataError, DataSpec, MemoryLimit, check_frame, effective_memory_conf, infer_format,
                            is_url, memory_limit, parse_size, read_driver_file, unescape_sep)
from optuna_spark.objectives import data_parameter

WINE = Path(__file__).resolve().parents[2] / "runner" / "optuna_spark" / "data" / "winequality-red.csv"
BIG = MemoryLimit(1 << 40, "test")


def settings(tmp_path: Path, argv: list[str], config: str | None = None):
    environ = {}
    if config is not None:
        (tmp_path / "runner.toml").write_text(config)
        environ["OPTUNA_SPARK_CONFIG"] = str(tmp_path / "runner.toml")
    args = build_parser().parse_args(argv)
    return build_settings(args.command, vars(args), environ, cwd=tmp_path)


@pytest.fixture
def objective_file(tmp_path: Path) -> Path:
    (tmp_path / "objs.py").write_text(
        "def with_data(trial, data):\n    return len(data)\n"
        "def maybe(trial, data=None):\n    return 0.0\n"
        "def plain(trial):\n    return 0.0\n")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    return tmp_path / "objs.py"


# ---------------------------------------------------------------------------- signatures

def test_the_objectives_signature_says_whether_it_takes_data() -> None:
    def plain(trial): ...
    def required(trial, data): ...
    def optional(trial, data=None): ...
    def star(*args): ...
    def extra_default(trial, data, k=1, *, flag=False): ...
    def too_many(trial, data, third): ...
    def keyword_only(trial, *, data): ...

    assert data_parameter(plain) == "no"
    assert data_parameter(required) == "required"
    assert data_parameter(optional) == "optional"
    assert data_parameter(star) == "optional"
    assert data_parameter(extra_default) == "required"
    assert data_parameter(lambda t: 0) == "no"
    for bad in (too_many, keyword_only):
        with pytest.raises(ConfigError, match="would have no value"):
            data_parameter(bad)


def test_builtin_objectives() -> None:
    from optuna_spark.objectives import resolve

    assert resolve("xgboost-wine").takes_data == "optional"
    assert resolve("quadratic").takes_data == "no"
    assert resolve("sleep").takes_data == "no"


# ---------------------------------------------------------------------------- options

def test_data_options_become_a_data_spec(tmp_path: Path, objective_file: Path) -> None:
    s = settings(tmp_path, ["tune", "--objective", "objs.py:with_data", "--data", "t.csv"])
    assert s.data == DataSpec(path=str(tmp_path / "t.csv"), format="csv", sep=",", header=True, target=None)
    s = settings(tmp_path, ["tune", "--objective", "objs.py:with_data", "--data", "t.csv", "--data-sep", "\\t",
                            "--data-header", "false", "--target", "b"])
    assert (s.data.sep, s.data.header, s.data.target) == ("\t", False, "b")
    s = settings(tmp_path, ["tune", "--objective", "objs.py:with_data", "--data", "hdfs://nn/x/part-0"])
    assert s.data.path == "hdfs://nn/x/part-0" and s.data.format == "parquet" and s.data.remote
    # xgboost-wine's label column is `quality` unless --target says otherwise.
    s = settings(tmp_path, ["tune", "--objective", "xgboost-wine", "--data", "t.csv"])
    assert s.data.target == "quality"
    assert settings(tmp_path, ["tune", "--objective", "xgboost-wine"]).data is None
    # An objective with an optional data parameter runs without data too.
    assert settings(tmp_path, ["tune", "--objective", "objs.py:maybe"]).data is None


def test_data_options_in_the_config_file(tmp_path: Path, objective_file: Path) -> None:
    s = settings(tmp_path, ["tune", "--objective", "objs.py:with_data", "--data", "t.csv"],
                 config='data_sep = ";"\ndata_header = false\ntarget = "a"\n')
    assert (s.data.format, s.data.sep, s.data.header, s.data.target) == ("csv", ";", False, "a")
    # The command line wins.
    s = settings(tmp_path, ["tune", "--objective", "objs.py:with_data", "--data", "t.csv", "--target", "b"],
                 config='target = "a"\n')
    assert s.data.target == "b"
    # Without --data, the config file's data options are unused defaults: a (trial) objective runs.
    assert settings(tmp_path, ["tune", "--objective", "objs.py:plain"],
                    config='data_sep = ";"\ntarget = "a"\n').data is None
    with pytest.raises(ConfigError, match="data_format must be one of parquet, csv"):
        settings(tmp_path, ["tune"], config='data_format = "xlsx"\n')
    with pytest.raises(ConfigError, match="data_header must be true or false"):
        settings(tmp_path, ["tune"], config='data_header = "yes"\n')


def test_the_data_set_is_command_line_only(tmp_path: Path, objective_file: Path) -> None:
    """A config file's data set would reach every objective, the (trial)-only ones too."""
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, ["tune", "--objective", "objs.py:plain"], config=f'data = "{tmp_path / "t.csv"}"\n')
    assert str(err.value) == (f"config file {tmp_path / 'runner.toml'}: data is a command-line option only "
                              "(--data), not a config key")


def test_an_empty_data_is_no_data_set(tmp_path: Path, objective_file: Path) -> None:
    assert settings(tmp_path, ["tune", "--objective", "objs.py:plain", "--data", ""]).data is None
    assert settings(tmp_path, ["tune", "--objective", "objs.py:maybe", "--data", ""]).data is None
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, ["tune", "--objective", "objs.py:with_data", "--data", ""])
    assert str(err.value) == "objective 'objs.py:with_data' takes (trial, data): give --data PATH (--data '' is no data set)"
    with pytest.raises(ConfigError, match="--data-sep needs --data PATH"):
        settings(tmp_path, ["tune", "--objective", "objs.py:maybe", "--data", "", "--data-sep", ";"])


def test_errors_name_the_config_key_or_the_flag(tmp_path: Path, objective_file: Path) -> None:
    (tmp_path / "t.parquet").write_bytes(b"")
    toml = tmp_path / "runner.toml"
    cases = [
        (["--data", "t.parquet"], 'data_sep = ";"\n', f"data_sep in config file {toml} applies to CSV data only"),
        (["--data", "t.parquet"], "data_header = false\n",
         f"data_header in config file {toml} applies to CSV data only"),
        (["--data", "t.parquet", "--data-header", "false"], "", "--data-header applies to CSV data only"),
        (["--data", "t.csv"], 'data_sep = ";;"\n', f"data_sep in config file {toml} must be one character"),
        (["--data", "t.csv", "--data-sep", ";;"], 'data_sep = ";"\n', "--data-sep must be one character"),
        (["--data", "t.csv"], 'target = " "\n', f"target in config file {toml} must name a column"),
    ]
    for argv, config, message in cases:
        with pytest.raises(ConfigError) as err:
            settings(tmp_path, ["tune", "--objective", "objs.py:with_data", *argv], config=config)
        assert str(err.value).startswith(message), (argv, config, str(err.value))


@pytest.mark.parametrize("url", ["s3a://AKIAKEY:s3cr3t@bucket/train.parquet", "https://u:p@host/t.csv",
                                 "hdfs://alice@nn:8020/t", "s3a://:only-a-secret@bucket/t"])
def test_a_data_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path, objective_file: Path,
                                                                     url: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, ["tune", "--objective", "objs.py:with_data", "--data", url])
    message = str(err.value)
    assert message.startswith("--data must not carry a user or password in its URL") and "\n" not in message
    for secret in ("AKIAKEY", "s3cr3t", "u:p", "alice", "only-a-secret"):
        assert secret not in message


@pytest.mark.parametrize("argv, message", [
    (["--objective", "objs.py:plain", "--data", "t.csv"], "takes only (trial)"),
    (["--objective", "quadratic", "--data", "t.csv"], "takes only (trial)"),
    (["--objective", "objs.py:with_data"], "takes (trial, data): give --data PATH"),
    (["--objective", "objs.py:with_data", "--data", "nope.parquet"], "--data nope.parquet does not exist"),
    (["--objective", "objs.py:with_data", "--target", "a"], "--target needs --data"),
    (["--objective", "objs.py:with_data", "--data-sep", ";"], "--data-sep needs --data"),
    (["--objective", "objs.py:with_data", "--data", "t.csv", "--data-format", "parquet", "--data-sep", ";"],
     "--data-sep applies to CSV data only"),
    (["--objective", "objs.py:with_data", "--data", "t.csv", "--data-sep", ";;"], "one character"),
    (["--objective", "objs.py:with_data", "--data", "t.csv", "--target", " "], "--target must name a column"),
])
def test_bad_data_options(tmp_path: Path, objective_file: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, ["tune", *argv])
    assert message in str(err.value)


def test_the_job_file_carries_the_data_spec() -> None:
    spec = DataSpec(path="/d/x.csv", format="csv", sep=";", header=False, target="y", payload_file="/p/data.pickle")
    job = Job(study=StudySettings(name="s", storage="sqlite:///x.db", n_trials=3),
              objective=ObjectiveSpec("o", "m", "f", takes_data="required"), data=spec)
    back = Job.from_json(job.to_json())
    assert back.data == spec and back.objective.takes_data == "required"
    assert Job.from_json(Job(study=job.study, objective=job.objective).to_json()).data is None


# ---------------------------------------------------------------------------- pure helpers

def test_formats_urls_and_separators() -> None:
    assert infer_format("/d/wine.csv") == "csv" and infer_format("x.TSV") == "csv"
    assert infer_format("/d/wine.parquet") == "parquet" and infer_format("/d/table/") == "parquet"
    assert is_url("hdfs://nn:8020/x") and is_url("s3a://b/k") and is_url("file:///shared/x")
    assert not is_url("/srv/x.parquet") and not is_url("data/x.csv") and not is_url("c:x")
    assert unescape_sep("\\t") == "\t" and unescape_sep(";") == ";"
    with pytest.raises(DataError):
        unescape_sep("")


def test_sizes_and_the_memory_limit() -> None:
    assert parse_size("512m") == 512 << 20 and parse_size("4g") == 4 << 30 and parse_size("2048") == 2048 << 20
    assert parse_size("1.5g") == int(1.5 * (1 << 30)) and parse_size("64k") == 64 << 10
    assert parse_size("100mb") == 100 << 20 and parse_size("10b") == 10 and parse_size("lots") is None
    # Spark's defaults: 1g each, a quarter of it.
    assert memory_limit({}).bytes == 256 << 20
    limit = memory_limit({"spark.executor.memory": "8m", "spark.driver.memory": "4g"})
    assert limit.bytes == 2 << 20 and "spark.executor.memory 8m" in limit.why
    limit = memory_limit({"spark.executor.memory": "8g", "spark.driver.memory": "2g",
                          "spark.executor.pyspark.memory": "512m"})
    assert limit.bytes == 256 << 20 and "pyspark.memory" in limit.why


def test_memory_settings_follow_sparks_precedence() -> None:
    defaults = {"spark.executor.memory": "2g", "spark.driver.memory": "3g", "spark.other": "x"}
    assert effective_memory_conf(None, None, (), defaults) == {"spark.executor.memory": "2g",
                                                               "spark.driver.memory": "3g"}
    assert effective_memory_conf("4g", None, (), defaults)["spark.executor.memory"] == "4g"
    conf = effective_memory_conf("4g", "1g", (("spark.executor.memory", "6g"),), defaults)
    assert conf == {"spark.executor.memory": "6g", "spark.driver.memory": "1g"}


def test_check_frame_refuses_a_missing_target_an_empty_table_and_a_large_one() -> None:
    frame = pd.DataFrame({"a": range(1000), "b": [1.0] * 1000})
    spec = DataSpec(path="/d/x.parquet", target="b")
    check_frame(spec, frame, BIG)
    assert frame.attrs["target"] == "b"
    with pytest.raises(DataError, match=r"has no column 'y' \(--target\); its columns: a, b"):
        check_frame(DataSpec(path="/d/x.parquet", target="y"), frame, BIG)
    with pytest.raises(DataError, match="has no rows"):
        check_frame(spec, frame.iloc[:0], BIG)
    with pytest.raises(DataError, match=r"takes 15\.8 KiB in memory, more than this run allows \(1\.0 KiB: t\)"):
        check_frame(spec, frame, MemoryLimit(1024, "t"))


# ---------------------------------------------------------------------------- the driver's file

def test_reading_a_driver_file(tmp_path: Path) -> None:
    wine = read_driver_file(DataSpec(path=str(WINE), format="csv", sep=";", target="quality"), BIG)
    assert wine.shape == (1599, 12) and wine.attrs["target"] == "quality"
    wine.to_parquet(tmp_path / "w.parquet")
    assert read_driver_file(DataSpec(path=str(tmp_path / "w.parquet")), BIG).equals(wine)
    # A folder of parts, as Spark writes it.
    (tmp_path / "parts").mkdir()
    wine.iloc[:800].to_csv(tmp_path / "parts" / "part-0.csv", index=False, header=False)
    wine.iloc[800:].to_csv(tmp_path / "parts" / "part-1.csv", index=False, header=False)
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    parts = read_driver_file(DataSpec(path=str(tmp_path / "parts"), format="csv", header=False, target="_c11"), BIG)
    assert len(parts) == 1599 and list(parts.columns)[-1] == "_c11"


def test_driver_file_refusals(tmp_path: Path) -> None:
    text = tmp_path / "notes.parquet"
    text.write_text("this is not parquet\n" * 10)
    with pytest.raises(DataError, match="is not readable as Parquet"):
        read_driver_file(DataSpec(path=str(text)), BIG)
    with pytest.raises(DataError, match="does not exist"):
        read_driver_file(DataSpec(path=str(tmp_path / "gone.csv"), format="csv"), BIG)
    with pytest.raises(DataError, match=r"no column 'quality' \(--target\) \(check --data-sep\)"):
        read_driver_file(DataSpec(path=str(WINE), format="csv", sep=",", target="quality"), BIG)
    # Over the limit already on disk: refused before it is read.
    with pytest.raises(DataError, match="on disk, more than this run allows"):
        read_driver_file(DataSpec(path=str(WINE), format="csv", sep=";"), MemoryLimit(1000, "t"))


# ---------------------------------------------------------------------------- executor side

class FakeBroadcast:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.reads = 0
        self.payload = pickle.dumps(frame)

    @property
    def value(self) -> bytes:
        self.reads += 1
        return self.payload


def test_a_process_unpickles_a_data_set_once() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]})
    first, second = FakeBroadcast(frame), FakeBroadcast(frame)
    before = dataset.load_count()
    a = dataset.task_data(first, 101)
    assert dataset.task_data(first, 101) is a and dataset.task_data(FakeBroadcast(frame), 101) is a
    assert dataset.load_count() == before + 1 and first.reads == 1 and a.equals(frame)
    b = dataset.task_data(second, 102)   # another broadcast: loaded, the first one let go
    assert b is not a and dataset.load_count() == before + 2
    assert 101 not in dataset._cache


def test_what_a_trial_does_to_its_data_the_next_trial_never_sees() -> None:
    """Each trial gets a shallow, copy-on-write copy of the task's frame (optuna_spark.task._with_data):
    an objective that changes its data in every way it can leaves the next trial's intact."""
    from optuna_spark.task import _with_data

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    frame.attrs["target"] = "a"
    original = frame.copy(deep=True)
    seen: list[tuple] = []

    def objective(trial: int, data: pd.DataFrame) -> float:
        seen.append((data.equals(original), list(data.columns), dict(data.attrs), data is frame))
        data.iloc[0, 0] = -1.0
        data.loc[1, "a"] = -2.0
        data["a"] *= 10
        data["c"] = 0
        data.drop(columns=["b"], inplace=True)
        data.sort_values("a", ascending=False, inplace=True)
        data.attrs["target"] = "c"
        return 0.0

    with pd.option_context("mode.copy_on_write", False):  # restored after the test
        run = _with_data(objective, frame)
        for trial in range(3):
            run(trial)
    assert seen == [(True, ["a", "b"], {"target": "a"}, False)] * 3
    assert frame.equals(original) and frame.attrs == {"target": "a"}


def test_a_cache_across_trials_finds_the_tasks_frame_of_a_trials_copy() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    with pd.option_context("mode.copy_on_write", False):
        dataset.copy_on_write()
        copy = dataset.trial_copy(frame)
        assert copy is not frame and dataset.origin(copy) is frame
        other = pd.DataFrame({"a": [1, 2]})
        assert dataset.origin(other) is other


# ---------------------------------------------------------------------------- a URL's estimate

def test_a_rows_width_from_its_schema_is_not_below_pandas_own_count() -> None:
    """The estimate made before collecting a URL (optuna_spark.dataset.row_width) against what pandas
    counts once the table is collected (memory_usage(deep=True)), for the types toPandas makes."""
    import datetime
    import decimal

    rows = 1000
    frame = pd.DataFrame({
        "i": pd.Series(range(rows), dtype="int64"), "f": [0.5] * rows, "b": [True] * rows,
        "t": pd.Series(pd.date_range("2024-01-01", periods=rows, freq="s")),
        "d": [datetime.date(2024, 1, 1)] * rows, "m": [decimal.Decimal("1.25")] * rows,
        "s": [f"text {n:05d}" for n in range(rows)], "y": [b"0123456789"] * rows,
    })
    width = dataset.row_width(["long", "double", "boolean", "timestamp", "date", "decimal", "string", "binary"],
                              [10.0, 10.0])
    actual = dataset.frame_size(frame)
    assert actual <= rows * width <= 1.5 * actual
    # Text columns all null: the pointer and the None.
    assert dataset.row_width(["string", "integer"], [None]) == 8 + 49 + 8
    assert dataset.row_width(["array"], []) == dataset.OTHER_WIDTH


def test_an_out_of_memory_collect_is_told_from_other_errors() -> None:
    spark_error = RuntimeError(
        "An error occurred while calling o91.collectAsArrowToPython.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Total size of serialized results "
        "of 3 tasks (1225.4 KiB) is bigger than spark.driver.maxResultSize (1024.0 KiB)\n\tat org.apache...")
    assert dataset.out_of_memory(spark_error) == (
        "org.apache.spark.SparkException: Job aborted due to stage failure: Total size of serialized results "
        "of 3 tasks (1225.4 KiB) is bigger than spark.driver.maxResultSize (1024.0 KiB)")
    assert "Java heap space" in (dataset.out_of_memory(RuntimeError("x\njava.lang.OutOfMemoryError: Java heap space"))
                                 or "")
    assert dataset.out_of_memory(MemoryError()) == "MemoryError"
    assert dataset.out_of_memory(RuntimeError("[PATH_NOT_FOUND] Path does not exist: file:/x")) is None
