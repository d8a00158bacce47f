"""`tune --data`: a study's data set, read once on the driver and broadcast to the Spark tasks.

Where the data is read:

- a plain path (`/srv/wine.parquet`, `data/wine.csv`) is a file of the driver: the command line
  reads it there (pandas; Parquet with pyarrow), checks it and pickles it into the run's private
  folder; the Spark application broadcasts those bytes. The workers never need the file.
- a URL (`hdfs://`, `s3a://`, `file://` for a shared file system mounted at the same path on
  every node, ...) is read by the Spark application through `spark.read`, collected to pandas on
  the driver (with Arrow), checked and broadcast the same way. Before the collect, its size in
  memory is estimated (`estimate_memory`: its rows, counted by Spark, times a row's width from
  the schema, with the average length of its text and binary columns measured by the same
  Spark job), and a table over the limit is refused there, not after the driver has run out of
  memory collecting it.

Each Spark task unpickles the broadcast once (`task_data`, cached per Python worker process by
broadcast id); each trial the task runs receives its own shallow copy of that DataFrame
(`trial_copy`), with pandas' copy-on-write on in the process (`copy_on_write`): the copy shares
the data until the objective writes to it, and a write (a value set in place, a column added,
dropped or replaced, `attrs` changed) copies what it changes, so no trial sees another's changes.

The limit: the data set must fit in memory several times over (the driver holds the frame and its
pickled bytes, each executor's JVM the broadcast's blocks, each of its Python workers one frame).
It is refused when its size in memory (pandas' deep memory usage), or already its size on
storage, exceeds a quarter of the smaller of `spark.executor.memory` and `spark.driver.memory`
(Spark's default 1g each when unset), and half of `spark.executor.pyspark.memory` when that is
set. Conservative on purpose: a refusal costs one line, an executor killed for its memory a run.

Every refusal is a `DataError`: one line, exit status 2, before any trial (and, for a driver file,
before spark-submit starts).
"""

from __future__ import annotations

import os
import pickle
import re
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna_spark.errors import UsageError

FORMATS: tuple[str, ...] = ("parquet", "csv")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".csv.bz2", ".csv.zip")
DEFAULT_MEMORY = "1g"   # spark.executor.memory and spark.driver.memory when unset
MEMORY_SHARE = 4        # the data may take 1/MEMORY_SHARE of the smaller of the two
PYSPARK_MEMORY_SHARE = 2
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


class DataError(UsageError, ValueError):
    """The data cannot be used: one line, exit status 2, nothing run."""


@dataclass(frozen=True)
class DataSpec:
    """`--data` and its options, as the Spark application receives them in the job file."""

    path: str                      # an absolute driver path, or a URL Spark reads
    format: str = "parquet"
    sep: str = ","                 # CSV only
    header: bool = True            # CSV only
    target: str | None = None      # the label column, checked to exist; in DataFrame.attrs["target"]
    payload_file: str | None = None  # driver file: the checked frame, pickled (the run's private folder)

    @property
    def remote(self) -> bool:
        return is_url(self.path)


def is_url(path: str) -> bool:
    """A URL (`hdfs://…`, `s3a://…`, `file://…`) is read through Spark; anything else is a driver file."""
    return bool(_URL_RE.match(path))


def infer_format(path: str) -> str:
    name = path.rstrip("/").lower()
    return "csv" if name.endswith(CSV_SUFFIXES) else "parquet"


def unescape_sep(sep: str) -> str:
    """`\\t` (as typed in a shell) is a tab; the separator is one character."""
    value = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    if len(value) != 1:
        raise DataError(f"--data-sep must be one character (or \\t), got {sep!r}")
    return value


def parse_size(text: str | int | None) -> int | None:
    """A Spark memory setting in bytes: `512m`, `4g`, `1.5g`, `2048` (MiB, as Spark reads a bare number)."""
    if text is None:
        return None
    if isinstance(text, int):
        return text * (1 << 20)
    m = _SIZE_RE.match(str(text))
    if not m:
        return None
    unit = m[2].lower() or ("" if m[3] else "m")
    return int(float(m[1]) * _UNITS[unit])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclass(frozen=True)
class MemoryLimit:
    bytes: int
    why: str   # what it was derived from, for the refusal's line


def memory_limit(conf: Mapping[str, str]) -> MemoryLimit:
    """The largest data set (in memory) a run accepts, from the Spark settings the run has
    (`conf`: the effective spark.* values, as Spark resolves them)."""
    executor = conf.get("spark.executor.memory") or DEFAULT_MEMORY
    driver = conf.get("spark.driver.memory") or DEFAULT_MEMORY
    candidates = []
    for key, value in (("spark.executor.memory", executor), ("spark.driver.memory", driver)):
        size = parse_size(value)
        if size is not None:
            candidates.append((size // MEMORY_SHARE, f"a quarter of {key} {value}"))
    pyspark = conf.get("spark.executor.pyspark.memory")
    size = parse_size(pyspark)
    if size is not None:
        candidates.append((size // PYSPARK_MEMORY_SHARE, f"half of spark.executor.pyspark.memory {pyspark}"))
    if not candidates:
        fallback = parse_size(DEFAULT_MEMORY)
        assert fallback is not None
        candidates.append((fallback // MEMORY_SHARE, f"a quarter of Spark's default {DEFAULT_MEMORY}"))
    limit, why = min(candidates)
    return MemoryLimit(limit, why)


def effective_memory_conf(executor_memory: str | None, driver_memory: str | None,
                          confs: tuple[tuple[str, str], ...] | list[tuple[str, str]],
                          spark_defaults: Mapping[str, str] | None) -> dict[str, str]:
    """The memory settings spark-submit will apply, by Spark's precedence: --conf, then the
    runner's options (--executor-memory, --driver-memory), then spark-defaults.conf."""
    out = {k: v for k, v in (spark_defaults or {}).items()
           if k in ("spark.executor.memory", "spark.driver.memory", "spark.executor.pyspark.memory")}
    if executor_memory:
        out["spark.executor.memory"] = executor_memory
    if driver_memory:
        out["spark.driver.memory"] = driver_memory
    for key, value in confs:
        if key in ("spark.executor.memory", "spark.driver.memory", "spark.executor.pyspark.memory"):
            out[key] = value
    return out


def check_size(spec: DataSpec, nbytes: int, limit: MemoryLimit, what: str = "in memory") -> None:
    if nbytes > limit.bytes:
        raise DataError(
            f"data {spec.path} takes {human(nbytes)} {what}, more than this run allows ({human(limit.bytes)}: "
            f"{limit.why}); each executor and the driver hold it in memory: raise --executor-memory and "
            "--driver-memory, or use a smaller data set")


def storage_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def frame_size(frame: Any) -> int:
    return int(frame.memory_usage(deep=True, index=True).sum())


def check_frame(spec: DataSpec, frame: Any, limit: MemoryLimit) -> None:
    if len(frame.columns) == 0 or len(frame) == 0:
        raise DataError(f"data {spec.path} has no {'columns' if len(frame.columns) == 0 else 'rows'}")
    if spec.target is not None and spec.target not in frame.columns:
        columns = ", ".join(map(str, list(frame.columns)[:20])) + (", …" if len(frame.columns) > 20 else "")
        hint = " (check --data-sep)" if spec.format == "csv" and len(frame.columns) == 1 else ""
        raise DataError(f"data {spec.path} has no column {spec.target!r} (--target){hint}; its columns: {columns}")
    check_size(spec, frame_size(frame), limit)
    if spec.target is not None:
        frame.attrs["target"] = spec.target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# ---------------------------------------------------------------------------- the driver's file

def read_driver_file(spec: DataSpec, limit: MemoryLimit) -> Any:
    """A file (or a folder of Parquet or CSV parts) of the driver, as a checked pandas DataFrame."""
    path = Path(spec.path)
    if not path.exists():
        raise DataError(f"data {spec.path} does not exist")
    if not os.access(path, os.R_OK):
        raise DataError(f"data {spec.path} is not readable")
    check_size(spec, storage_size(path), limit, "on disk")
    try:
        import pandas as pd
    except ImportError:
        raise DataError("--data needs pandas (pip install 'optuna-spark[data]')") from None
    try:
        if spec.format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise DataError("reading Parquet on the driver needs pyarrow "
                                "(pip install 'optuna-spark[data]')") from None
            frame = pd.read_parquet(path)
        else:
            parts = ([p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(("_", "."))]
                     if path.is_dir() else [path])
            if not parts:
                raise DataError(f"data {spec.path} is an empty folder")
            frames = [pd.read_csv(p, sep=spec.sep, header=0 if spec.header else None) for p in parts]
            frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            if not spec.header:
                frame.columns = [f"_c{i}" for i in range(len(frame.columns))]  # Spark's names
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader error means "not this format"
        raise DataError(f"data {spec.path} is not readable as {_format_text(spec)}: {_first_line(exc)}") from None
    check_frame(spec, frame, limit)
    return frame


def _format_text(spec: DataSpec) -> str:
    if spec.format == "csv":
        return f"CSV (separator {spec.sep!r}, header {'yes' if spec.header else 'no'}; --data-format, --data-sep)"
    return "Parquet (--data-format csv for a CSV file)"


def write_payload(frame: Any, target: Path) -> int:
    """The checked frame, pickled, in a new 0600 file; returns its size."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(frame, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return fh.tell()


def describe(spec: DataSpec, frame: Any, where: str) -> dict[str, Any]:
    return {"path": spec.path, "rows": int(len(frame)), "columns": int(len(frame.columns)),
            "memory_bytes": frame_size(frame), "where": where, "target": spec.target}


# ---------------------------------------------------------------------------- through Spark

# A value's size in a pandas DataFrame (what `memory_usage(deep=True)` counts), by Spark type, as
# `toPandas` converts it: numbers, booleans and timestamps in NumPy columns (8 bytes: the widest;
# a nullable integer or boolean column becomes float64 or object), the rest Python objects (an
# 8-byte pointer and the object: `datetime.date` 32 bytes, `Decimal` 104, `str` 49 + its length,
# `bytes` 33 + its length; lists, dicts and rows of nested types a rough 200).
FIXED_WIDTH = {"byte": 8, "short": 8, "integer": 8, "long": 8, "float": 8, "double": 8, "boolean": 8,
               "timestamp": 8, "timestamp_ntz": 8, "date": 8 + 32, "decimal": 8 + 104, "void": 8}
TEXT_OVERHEAD = {"string": 8 + 49, "binary": 8 + 33}
OTHER_WIDTH = 8 + 200


@dataclass(frozen=True)
class MemoryEstimate:
    rows: int
    row_bytes: float

    @property
    def bytes(self) -> int:
        return int(self.rows * self.row_bytes)


def row_width(types: list[str], text_lengths: list[float | None]) -> float:
    """A row's estimated size in pandas (bytes) from its columns' Spark type names (`typeName()`:
    "integer", "string", "decimal", ...), `text_lengths` holding the average byte length of each
    text or binary column, in order (None: all its values null)."""
    lengths = iter(text_lengths)
    width = 0.0
    for name in types:
        if name in TEXT_OVERHEAD:
            width += TEXT_OVERHEAD[name] + float(next(lengths, None) or 0.0)
        else:
            width += FIXED_WIDTH.get(name, OTHER_WIDTH)
    return width


def estimate_memory(df: Any) -> MemoryEstimate:
    """The DataFrame's size once collected to pandas, estimated by one Spark job on the executors
    (its rows, the average byte length of its text and binary columns) and its schema."""
    from pyspark.sql import functions as F

    fields = list(df.schema.fields)
    types = [f.dataType.typeName() for f in fields]
    text = [f"`{f.name.replace('`', '``')}`" for f, t in zip(fields, types, strict=True) if t in TEXT_OVERHEAD]
    row = df.agg(F.count(F.lit(1)), *[F.avg(F.octet_length(F.col(c))) for c in text]).collect()[0]
    lengths = [None if v is None else float(v) for v in list(row)[1:]]
    return MemoryEstimate(int(row[0]), row_width(types, lengths))


ARROW = "spark.sql.execution.arrow.pyspark.enabled"


def collect_with_arrow(spark: Any, df: Any) -> Any:
    """`df.toPandas()` through Arrow (columnar batches, not a Python object per value on the
    driver's way in); Spark's own fallback to the plain collect stays on for a type Arrow cannot
    convert. The session's setting is put back afterwards."""
    before = spark.conf.get(ARROW, "false")
    spark.conf.set(ARROW, "true")
    try:
        return df.toPandas()
    finally:
        spark.conf.set(ARROW, before)


_OUT_OF_MEMORY = ("spark.driver.maxResultSize", "OutOfMemoryError", "Java heap space", "GC overhead limit exceeded",
                  "MemoryError")


def out_of_memory(exc: BaseException) -> str | None:
    """The line of a Spark or Python error that says the collect ran out of memory (the driver's
    heap, spark.driver.maxResultSize, Python's), None for any other error."""
    if isinstance(exc, MemoryError):
        return _first_line(exc) if str(exc).strip() else "MemoryError"
    for line in str(exc).splitlines():
        if any(marker in line for marker in _OUT_OF_MEMORY):
            return line.strip().lstrip(": ")[:300]
    return None


def read_through_spark(spark: Any, spec: DataSpec, limit: MemoryLimit) -> Any:
    """A URL Spark reads (`hdfs://`, `s3a://`, `file://` on a shared file system), collected to
    pandas on the driver and checked. Refused before collecting when its size on storage, or its
    estimated size in memory (`estimate_memory`), is already over the limit; a collect that still
    runs out of memory is the same size refusal."""
    reader = spark.read
    try:
        if spec.format == "parquet":
            df = reader.parquet(spec.path)
        else:
            df = reader.options(sep=spec.sep, header=str(spec.header).lower(), inferSchema="true").csv(spec.path)
        try:
            on_storage = int(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes().longValue())
        except Exception:  # noqa: BLE001 - no estimate: the in-memory checks still apply
            on_storage = 0
        check_size(spec, on_storage, limit, "on storage")
        estimate = estimate_memory(df)
        check_size(spec, estimate.bytes, limit,
                   f"in memory (estimated before collecting it: {estimate.rows} rows of about "
                   f"{human(estimate.row_bytes)})")
        frame = collect_with_arrow(spark, df)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - Spark's AnalysisException, a reader's error, out of memory
        text = _first_line(exc)
        memory = out_of_memory(exc)
        if memory is not None:
            raise DataError(
                f"data {spec.path} does not fit in the driver's memory when collected ({memory}): raise "
                "--driver-memory (and spark.driver.maxResultSize), or use a smaller data set") from None
        if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
            raise DataError(f"data {spec.path} does not exist") from None
        raise DataError(f"data {spec.path} is not readable as {_format_text(spec)}: {text}") from None
    check_frame(spec, frame, limit)
    return frame


def driver_payload(spark_factory: Any, spec: DataSpec,
                   conf: Mapping[str, str] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Driver side of the Spark application: the pickled frame to broadcast, and what it is."""
    if spec.payload_file is not None:
        payload = Path(spec.payload_file).read_bytes()
        frame = pickle.loads(payload)
        info = describe(spec, frame, "read on the driver")
        del frame
        return payload, info
    spark = spark_factory()
    limit = memory_limit(conf if conf is not None else dict(spark.sparkContext.getConf().getAll()))
    frame = read_through_spark(spark, spec, limit)
    info = describe(spec, frame, "read by spark.read")
    return pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL), info


# ---------------------------------------------------------------------------- executor side

_cache: dict[int, Any] = {}
_loads = 0
_load_seconds = 0.0


def task_data(broadcast: Any, key: int) -> Any:
    """The broadcast DataFrame (`key`: the broadcast's id), unpickled once per Python worker
    process: a task runs all its trials with it, a later task in the same worker finds it here."""
    global _loads, _load_seconds
    if key not in _cache:
        started = time.perf_counter()
        frame = pickle.loads(broadcast.value)
        try:  # the pickled bytes are not needed any more: only the frame stays in this process
            del broadcast._value
        except AttributeError:
            pass
        _cache.clear()  # one data set per process: an earlier one is let go
        _cache[key] = frame
        _loads += 1
        _load_seconds = time.perf_counter() - started
    return _cache[key]


def copy_on_write() -> None:
    """pandas' copy-on-write in this process (pandas 3's behaviour, an option of pandas 2): a
    trial's shallow copy (`trial_copy`) then never writes into the task's frame. Under it a NumPy
    view of a column (`data["x"].values`) is read-only: copy it (`.to_numpy(copy=True)`) to write."""
    import pandas as pd

    if int(pd.__version__.split(".", 1)[0]) < 3:
        pd.set_option("mode.copy_on_write", True)


_last_copy: tuple[Any, Any] | None = None  # (a weak reference to the last trial's copy, its frame)


def trial_copy(frame: Any) -> Any:
    """A trial's own view of the task's frame: a shallow copy (no data copied), which copy-on-write
    keeps from changing the frame (or the next trial's copy) whatever the objective does to it."""
    global _last_copy
    copy = frame.copy(deep=False)
    _last_copy = (weakref.ref(copy), frame)
    return copy


def origin(data: Any) -> Any:
    """The task's frame that the current trial's copy `data` was made from (`data` itself for any
    other object): the key for a cache kept across the trials of a task (xgboost-wine's split)."""
    if _last_copy is not None and _last_copy[0]() is data:
        return _last_copy[1]
    return data


def load_count() -> int:
    """How many times this process unpickled a data set (an objective may record it)."""
    return _loads


def last_load_seconds() -> float:
    return _load_seconds
