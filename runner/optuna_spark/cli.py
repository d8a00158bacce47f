"""`optuna-spark`: tune a study on Spark, or read one back.

    optuna-spark tune   --objective quadratic --study optuna-spark --n-trials 200
    optuna-spark status [--study NAME]
    optuna-spark best   --study NAME
    optuna-spark report --study NAME --output-dir DIR     (- : a tar of the report on stdout)

Each sub-command's flags are made from the one option table, optuna_spark.config.OPTIONS.

Exit status: 0 done; 1 the run or the storage failed; 2 bad usage. Errors are one line on
stderr, never a traceback (OPTUNA_SPARK_DEBUG=1 shows one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from optuna_spark import class_archive
from optuna_spark.class_archive import NO_ARCHIVE, ArchivePlan, with_archive
from optuna_spark.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    DEFAULT_STUDY,
    OPTIONS,
    ConfigError,
    Job,
    Option,
    RunSettings,
    SparkSettings,
    build_settings,
)
from optuna_spark.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    SIGNAL_EXITS,
    OptunaSparkError,
    exit_status_of_signal,
)
from optuna_spark.version import __version__


class Failure(OptunaSparkError, RuntimeError):
    """The run failed for a reason outside the arguments: exit status 1."""


def _number(kind: type) -> Any:
    """argparse type: a number, whatever its range (optuna_spark.config checks ranges, with the flag)."""
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _boolean(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, status 2
        sys.stderr.write(f"optuna-spark: error: {one_line(message)}\n")
        raise SystemExit(EXIT_USAGE)


# The argparse type of an option's kind (optuna_spark.config.Option.kind): a str needs none.
_ARG_TYPES: dict[str, Callable[[str], Any]] = {"int": _number(int), "float": _number(float), "bool": _boolean}


def _option_help(option: Option) -> str | None:
    """The option's help with its default (Option.shown_default) unless it has none, escaped for
    argparse's %-formatting."""
    no_default = option.default_text is None and option.default in (None, {})
    text = option.help
    if not (option.switch or option.required or no_default):
        text = f"{text} (default: {option.shown_default})"
    return text.replace("%", "%%") if text else None


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """One flag of the table. Its argparse default is None, "not given": build_settings applies
    the config file's value, then Option.default."""
    if option.switch:
        parser.add_argument(option.flag, action="store_true", default=None, help=_option_help(option))
        return
    kwargs: dict[str, Any] = {"help": _option_help(option)}
    if option.kind in _ARG_TYPES:
        kwargs["type"] = _ARG_TYPES[option.kind]
    if option.choices:
        kwargs["choices"] = option.choices
    if option.repeatable:
        kwargs["action"] = "append"
    if option.metavar is not None:
        kwargs["metavar"] = option.metavar
    if option.required:
        kwargs["required"] = True
    parser.add_argument(option.flag, **kwargs)


_AddFlag = Callable[[argparse.ArgumentParser], object]


def _add_options(parser: argparse.ArgumentParser, command: str,
                 before: dict[str, tuple[_AddFlag, ...]] | None = None) -> None:
    """The flags of OPTIONS that `command` takes, in the table's order; `before[key]` adds flags
    that are not in the table (written here) just before the table's `key`."""
    for option in OPTIONS:
        if command in option.flag_commands:
            for add in (before or {}).get(option.key, ()):
                add(parser)
            _add_option(parser, option)


def _config_flag(p: argparse.ArgumentParser) -> object:
    """--config: where the settings come from, not one of them."""
    return p.add_argument(
        "--config", help=f"runner TOML file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH} if present)")


def _study_flag(required: bool = False, text: str | None = None) -> _AddFlag:
    """--study: read by each command itself (optuna_spark.config.build_settings), not a setting."""
    return lambda p: p.add_argument("--study", required=required, help=text)


def build_parser() -> argparse.ArgumentParser:
    """The command line: each sub-command's flags from optuna_spark.config.OPTIONS; written here
    only --version, --study, --config, the positional arguments and the sub-commands' texts."""
    parser = _Parser(prog="optuna-spark", description="Run Optuna studies on Apache Spark.")
    parser.add_argument("--version", action="version", version=f"optuna-spark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tune = sub.add_parser("tune", help="submit a study to Spark and run it to its budget")
    _add_options(tune, "tune", {"direction": (_study_flag(text=f"study name (default: {DEFAULT_STUDY})"),),
                                "storage": (_config_flag,)})
    status = sub.add_parser("status", help="counts by state of one study, or list all studies")
    _add_options(status, "status", {"storage": (_study_flag(), _config_flag)})
    best = sub.add_parser("best", help="the best trial of a study")
    _add_options(best, "best", {"storage": (_study_flag(required=True), _config_flag)})
    report = sub.add_parser(
        "report", help="a study's report: HTML that opens offline, PNG plots, trials.csv",
        description="Writes report.html (plotly's script embedded: no network needed), one PNG per plot, "
                    "trials.csv (every trial) and report.json into --output-dir. With --output-dir -, the "
                    "same files go to stdout as an uncompressed tar and nothing else does: "
                    "optuna-spark report --study S --output-dir - | tar -x -C DIR")
    _add_options(report, "report", {"output_dir": (_study_flag(required=True),), "storage": (_config_flag,)})
    optuna_cmd = sub.add_parser(
        "optuna", help="Optuna's own command line on the configured storage",
        description="Runs `optuna ARGS` with OPTUNA_STORAGE set from the runner's storage and "
                    "password (in the environment, never on a command line). "
                    "Example: optuna-spark optuna -- trials --study-name optuna-spark -f json")
    _add_options(optuna_cmd, "optuna", {"storage": (_config_flag,)})
    optuna_cmd.add_argument("optuna_args", nargs=argparse.REMAINDER)
    submit_cmd = sub.add_parser(
        "submit", help="run your own Python script (optuna_spark.optimize) on the configured Spark",
        description="spark-submit SCRIPT with the runner's Spark settings (master, Python runtime, the "
                    "cluster's RPC secret through a private conf directory) and its storage: the script "
                    "reads it with optuna_spark.rdb_storage() ($OPTUNA_SPARK_STORAGE, the password in a "
                    "private file, never on a command line). Arguments after SCRIPT go to the script. "
                    "Example: optuna-spark submit train.py -- --study demo")
    _add_options(submit_cmd, "submit", {"storage": (_config_flag,)})
    submit_cmd.add_argument("script", metavar="SCRIPT", nargs="?",
                            help="the Python script (.py) to run as the Spark application")
    submit_cmd.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS",
                            help="the script's own arguments")
    return parser


# ---------------------------------------------------------------------------- storage reads

def _open_existing(target: Any) -> Any | None:
    """An RDBStorage if the database already holds Optuna's tables; None for an empty one, or an
    SQLite file that does not exist. Opening never creates anything (no file, no table), so a
    bad run, `status` and `best` leave the storage as they found it."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    from optuna_spark.storage import StorageError, check_connection, describe_db_error, sqlite_path

    path = sqlite_path(target.url)
    if path is not None and not path.is_file():
        return None
    check_connection(target)
    kwargs = {k: v for k, v in target.engine_kwargs().items() if k not in ("pool_size", "max_overflow")}
    engine = create_engine(target.connect_url(), **kwargs)
    try:
        has_tables = inspect(engine).has_table("studies")
    except SQLAlchemyError as exc:
        raise StorageError(describe_db_error(exc, target)) from None
    finally:
        engine.dispose()
    if not has_tables:
        return None
    import optuna

    return optuna.storages.RDBStorage(target.connect_url(), engine_kwargs=target.engine_kwargs(),
                                      skip_table_creation=True)


def _study_trials(storage: Any, name: str) -> tuple[int, list[Any], list[Any]]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        raise Failure(f"no study named {name!r} in this storage") from None
    directions = storage.get_study_directions(study_id)
    return study_id, directions, storage.get_all_trials(study_id, deepcopy=False)


def _study_budget(storage: Any, study_id: int) -> int | None:
    value = storage.get_study_user_attrs(study_id).get("optuna_spark_budget")
    return int(value) if value is not None else None


# ---------------------------------------------------------------------------- commands

def cmd_tune(settings: RunSettings) -> int:
    from optuna_spark import java as java_choice
    from optuna_spark.private import PrivateFiles, remove_stale_private_dirs
    from optuna_spark.report import format_summary, to_json
    from optuna_spark.storage import StorageError, make_sqlite_private
    from optuna_spark.submit import (
        build_submit_command,
        effective_conf_dir,
        read_spark_defaults,
        run_streaming,
    )

    spark, study, objective, target = settings.spark, settings.study, settings.objective, settings.storage
    assert spark is not None and study is not None and objective is not None
    spark, java, conf_dirs = _spark_submit_setup(spark)

    make_sqlite_private(target.url)
    try:
        storage = _open_existing(target)
        if storage is not None:
            try:
                study_id = storage.get_study_id_from_name(study.name)
            except KeyError:
                study_id = None
            if study_id is not None:
                existing = [d.name.lower() for d in storage.get_study_directions(study_id)]
                if existing != list(study.directions):
                    raise ConfigError(f"study {study.name!r} exists with direction {', '.join(existing)}, "
                                      f"not {', '.join(study.directions)}: pick another --study or --direction")
            storage.remove_session()
            storage.engine.dispose()
    except StorageError as exc:
        raise Failure(str(exc)) from None

    # --data of this machine: read and checked now, before anything runs (optuna_spark.dataset).
    data_frame = _driver_data(settings, read_spark_defaults(conf_dirs))

    remove_stale_private_dirs(settings.work_dir / "runs")
    run_dir = settings.work_dir / "runs" / run_dir_name(study.name, time.strftime("%Y%m%d-%H%M%S"), os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "spark.log"
    readers = group_readers(settings.work_dir, run_dir)
    events: dict[str, Any] = {}
    # Whatever ends the run (an error, Ctrl-C, SIGTERM), the private files go with it.
    with PrivateFiles(run_dir) as private:
        conf_dir = spark.spark_conf_dir
        if settings.spark_secret is not None:
            conf_dir = str(private.spark_conf_dir(effective_conf_dir(conf_dirs), settings.spark_secret))
        if settings.password_file:
            job_password_file: str | None = str(Path(settings.password_file).resolve())
        elif target.password is not None:
            # From the environment: spark-submit does not inherit it (optuna_spark.submit), the Spark
            # application reads it from this file, gone when the run ends.
            job_password_file = str(private.write("storage-password", target.password + "\n"))
        else:
            job_password_file = None
        data = settings.data
        if data_frame is not None:
            from optuna_spark.dataset import write_payload

            assert data is not None  # a data frame is read only for --data
            write_payload(data_frame, private.path / "data.pickle")
            data, data_frame = replace(data, payload_file=str(private.path / "data.pickle")), None
        job = Job(study=study, objective=objective, callbacks=settings.callbacks, gpu=spark.gpu,
                  password_file=job_password_file, data=data)
        job_file = run_dir / "job.json"
        job_file.write_text(job.to_json(), encoding="utf-8")
        readers(job_file)
        py_files = tuple(dict.fromkeys(spec.ship_file for spec in (objective, *settings.callbacks)
                                       if spec.ship_file))
        archive = _class_archive(spark, java, conf_dir, conf_dirs)
        command = build_submit_command(replace(spark, driver_java_options=with_archive(spark.driver_java_options,
                                                                                       archive)),
                                       [str(job_file)], default_python=sys.executable,
                                       py_files=py_files, n_tasks=study.n_jobs,
                                       spark_defaults=read_spark_defaults(conf_dirs), conf_dir=conf_dir,
                                       java_home=java_choice.spark_java_home(java, run_dir / "java-home"))
        budget_text = f"{study.n_trials} trials" if study.n_trials else f"{study.timeout:g} s"
        sys.stderr.write(f"optuna-spark: study {study.name!r} on {spark.master}, {study.n_jobs} tasks, "
                         f"budget {budget_text}, storage {target.url}\n"
                         f"optuna-spark: Spark log: {log_path}\n")
        notice = java.notice()
        if notice:
            sys.stderr.write(f"optuna-spark: {notice}\n")
        view = ProgressView(sys.stderr, bar=progress_bar_wanted(sys.stderr, os.environ, settings.verbose),
                            timeout=study.timeout)

        def on_event(event: dict[str, Any]) -> None:
            kind = str(event.get("event"))
            events[kind] = event
            if kind == "progress":
                view.progress(event)
            elif kind == "started":
                on_java = f" (Java {event['java_version']})" if event.get("java_version") else ""
                view.line(f"optuna-spark: Spark {event['spark_version']} application {event['app_id']} "
                          f"started{on_java}")
                if settings.dashboard_url:
                    view.line(f"optuna-spark: dashboard: {settings.dashboard_url}")
            elif kind == "data":
                from optuna_spark.dataset import human

                view.line(f"optuna-spark: data {event['path']}: {event['rows']} rows × {event['columns']} columns, "
                          f"{human(event['memory_bytes'])} in memory, {event['where']}, "
                          "broadcast to the tasks (each loads it once)")
            elif kind == "warning":
                view.line(f"optuna-spark: warning: {event['message']}")

        secrets = tuple(x for x in (target.password, settings.spark_secret) if x)
        with log_path.open("w", encoding="utf-8") as log:
            readers(log_path)
            tee = _Tee(log, sys.stderr) if settings.verbose else log
            if archive.writing is not None:
                log.write(f"optuna-spark: the driver's JVM writes a class-data archive at exit, once: "
                          f"{archive.final}\n")
            code = -signal.SIGTERM
            try:
                code = run_streaming(command, tee, on_event, secrets=secrets)
            finally:
                view.close()
                added = class_archive.finish(archive, completed=code >= 0 and code not in SIGNAL_EXITS)
            # A JVM asked to write the archive that could not (a class path it refuses to archive)
            # exits with status 1 after the run's summary: the study's outcome is the summary's.
            refused = archive.writing is not None and not added and code == 1 and "summary" in events
            if refused:
                log.write("optuna-spark: the driver's JVM could not write its class-data archive (status 1 at "
                          "exit, see above); later runs will not ask it again\n")
                code = 0

    if "error" in events:
        message = events["error"]["message"]
        if code == EXIT_USAGE:
            raise ConfigError(message)
        raise Failure(message)
    summary = events.get("summary")
    if summary is None and (code in SIGNAL_EXITS or code < 0):
        # spark-submit was stopped by a signal this process did not see (sent to its group by a
        # terminal, sudo, systemd): the run ends as if this process had been interrupted.
        signum = -code if code < 0 else code - 128
        raise Terminated(signum)
    if summary is None:
        raise Failure(f"spark-submit exited with status {code} before the study ended: "
                      f"{_spark_failure(log_path, spark)} (log: {log_path})")
    summary.pop("event", None)
    print(to_json(summary) if settings.output == "json" else format_summary(summary))
    if summary["errors"]:
        first = summary["errors"][0]
        raise Failure(f"{len(summary['errors'])} Spark task(s) failed; first: {first['error']} (log: {log_path})")
    states = summary["states"]
    if summary["finished"] and not states.get("COMPLETE", 0) and states.get("FAIL", 0) and not states.get("PRUNED", 0):
        raise Failure(f"every trial failed; first reason: {summary['failures'][0]['reason']}")
    if code != 0:
        raise Failure(f"spark-submit exited with status {code} (log: {log_path})")
    return EXIT_OK


def run_dir_name(study: str, stamp: str, pid: int) -> str:
    """A run folder's name: the study's name made safe for a file name (any character, any
    length: a study name may be 512 characters, a file name 255 bytes), the time and the pid
    (the pid ends the name: optuna_spark.private finds stale folders by it). Pure."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", study).lstrip(".") or "study"
    if safe != study or len(safe) > 80:
        safe = f"{safe[:64]}-{hashlib.sha256(study.encode()).hexdigest()[:10]}"
    return f"{safe}-{stamp}-{pid}"


def group_readers(work_dir: Path, run_dir: Path) -> Callable[[Path], None]:
    """A work directory set up for a group (setgid and group-readable: the cluster's, 2750, the
    operators' group) shares each run's folder, job file and log with that group: operators read
    the runs they start. Any other work directory keeps them this user's only. Secrets
    never: the run's private folder stays 0700 (optuna_spark.private). Returns the function that
    opens a file of the run to the group (a no-op for a private work directory)."""
    import stat as st

    info = work_dir.stat()
    if not (info.st_mode & st.S_ISGID and info.st_mode & st.S_IRGRP):
        return lambda path: None
    for folder in (work_dir / "runs", run_dir):
        mode = st.S_IMODE(folder.stat().st_mode)
        os.chmod(folder, (mode & st.S_ISGID) | 0o750)

    def share(path: Path) -> None:
        os.chmod(path, 0o640)

    return share


def _driver_data(settings: RunSettings, spark_defaults: dict[str, str]) -> Any:
    """The --data file of this machine as a checked DataFrame (None: no data, or a URL that the
    Spark application reads); a refusal is a ConfigError (exit 2)."""
    if settings.data is None or settings.data.remote:
        return None
    from optuna_spark.dataset import DataError, effective_memory_conf, memory_limit, read_driver_file

    spark = settings.spark
    assert spark is not None
    conf = effective_memory_conf(spark.executor_memory, spark.driver_memory, spark.confs, spark_defaults)
    try:
        return read_driver_file(settings.data, memory_limit(conf))
    except DataError as exc:
        raise ConfigError(str(exc)) from None


def progress_bar_wanted(stream: Any, environ: Any, verbose: bool) -> bool:
    """A bar redrawn in place on a terminal; plain lines to a pipe or a file, on a dumb terminal,
    and with --verbose (Spark's log shares the stream)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not verbose and environ.get("TERM", "") not in ("", "dumb")


class ProgressView:
    """Progress on stderr: one line per change (plain), or one line redrawn with a carriage
    return (bar). Other lines are written above the bar."""

    def __init__(self, stream: Any, *, bar: bool, timeout: float | None = None) -> None:
        self.stream, self.bar, self.timeout = stream, bar, timeout
        self.shown: str | None = None  # the bar on screen
        self.last: dict[str, Any] | None = None
        self.rate: float | None = None

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (OSError, AttributeError, ValueError):
            return 80

    def progress(self, event: dict[str, Any]) -> None:
        from optuna_spark.report import format_progress, format_progress_bar, smoothed_rate

        if not self.bar:
            self.stream.write(format_progress(event) + "\n")
        else:
            self.rate = smoothed_rate(self.rate, self.last, event)
            self.last = event
            self.shown = format_progress_bar(event, self._columns(), self.timeout, self.rate)
            self.stream.write("\r" + self.shown + "\x1b[K")
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.shown is not None:
            self.stream.write("\r\x1b[K" + text + "\n" + self.shown)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.shown is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = None


class _Tee:
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> None:
        for s in self.streams:
            s.write(text)


def _spark_failure(log_path: Path, spark: SparkSettings) -> str:
    """What went wrong, from the Spark log: a master that never accepted the application (a wrong
    RPC secret looks like this from the driver's side), else the last error line."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if "All masters are unresponsive" in text:
        if spark.spark_secret_file:
            why = (f"a wrong secret in {spark.spark_secret_file} (it must hold the cluster's "
                   "spark.authenticate.secret), or the master is down or unreachable")
        else:
            why = ("is it running and reachable, and does the cluster require authentication "
                   "(then give spark_secret_file)?")
        return f"the Spark master {spark.master} did not accept the application: {why}"
    return _last_error_line(log_path)


def _last_error_line(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        if any(word in line for word in ("Error", "Exception", "error:")):
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "no output"


def _read_storage(settings: RunSettings) -> Any | None:
    """The storage to read a study from (None: no Optuna tables, or no SQLite file, yet)."""
    from optuna_spark.storage import StorageError

    try:
        storage = _open_existing(settings.storage)
    except StorageError as exc:
        raise Failure(str(exc)) from None
    if storage is None:
        from optuna_spark.storage import sqlite_path

        path = sqlite_path(settings.storage.url)
        if path is not None and not path.is_file():
            # Read-only: said, not created.
            raise Failure(f"the storage {settings.storage.url} does not exist (no file {path})")
        if settings.study_name is not None:
            raise Failure(f"no study named {settings.study_name!r} in this storage")
    return storage


def cmd_status(settings: RunSettings) -> int:
    from optuna_spark.report import format_summary, summarize, to_json

    storage = _read_storage(settings)
    if settings.study_name is None:
        names = [] if storage is None else [s.study_name for s in storage.get_all_studies()]
        if settings.output == "json":
            print(json.dumps({"studies": names}))
        else:
            print("\n".join(names) if names else "no studies")
            if settings.dashboard_url:
                print(f"dashboard: {settings.dashboard_url}")
        return EXIT_OK
    study_id, directions, trials = _study_trials(storage, settings.study_name)
    summary = summarize(settings.study_name, trials, _study_budget(storage, study_id), directions)
    if settings.output == "json":
        print(to_json(summary))
    else:
        print(format_summary(summary))
        if settings.dashboard_url:
            print(f"  dashboard  {settings.dashboard_url}")
    return EXIT_OK


def cmd_report(settings: RunSettings) -> int:
    import importlib.util
    import tempfile

    assert settings.study_name is not None and settings.output_dir is not None
    missing = [m for m in ("plotly", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        raise Failure(f"optuna-spark report needs {' and '.join(missing)}: "
                      "pip install 'optuna-spark[report]' (plotly, matplotlib)")
    storage = _read_storage(settings)
    _study_trials(storage, settings.study_name)  # an unknown study: one line, exit 1
    assert storage is not None
    import optuna

    from optuna_spark import plots

    study = optuna.load_study(study_name=settings.study_name, storage=storage)
    if settings.output_dir != "-":
        out = Path(settings.output_dir)
        made = _write_report(plots, study, out)
        if settings.output == "json":
            print(json.dumps({**made, "output_dir": str(out)}, indent=2, sort_keys=True))
        else:
            print(_report_line(made, str(out / "report.html")))
        return EXIT_OK
    # stdout carries the tar and nothing else: while the report is made, whatever writes to
    # file descriptor 1 (a library's print, a warning) goes to stderr.
    with tempfile.TemporaryDirectory(prefix="optuna-spark-report-") as tmp:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            made = _write_report(plots, study, Path(tmp), relative_links=False)
            sys.stdout.flush()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        try:
            plots.write_tar(Path(tmp), sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # Nobody reads the rest: stdout is closed quietly (no second error at exit).
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            raise Failure("the report's tar could not be written: stdout was closed (broken pipe)") from None
    sys.stderr.write("optuna-spark: " + _report_line(made, "stdout (tar)") + "\n")
    return EXIT_OK


def _write_report(plots: Any, study: Any, out: Path, relative_links: bool = True) -> dict[str, Any]:
    try:
        return dict(plots.write(study, out, relative_links=relative_links))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != out else ""
        raise Failure(f"cannot write the report to {out}: {exc.strerror or exc}{where}") from None


def _report_line(made: dict[str, Any], where: str) -> str:
    skipped = made.get("skipped") or {}
    line = (f"report of study {made['study']!r}: {made['trials']} trials, {len(made['plots'])} plots "
            f"({', '.join(made['plots']) or 'none'}) in {where}")
    if made.get("artifacts"):
        line += f"; {len(made['artifacts'])} kept file(s) listed"
    if skipped:
        line += f"; not drawn: {', '.join(sorted(skipped))} (reasons in the page)"
    return line


def cmd_best(settings: RunSettings) -> int:
    from optuna_spark.report import format_params, summarize, to_json

    storage = _read_storage(settings)
    assert settings.study_name is not None
    _, directions, trials = _study_trials(storage, settings.study_name)
    summary = summarize(settings.study_name, trials, None, directions)
    if "pareto_front" in summary:  # several objectives: the trials no other one beats everywhere
        front = summary["pareto_front"]
        if not front:
            raise Failure(f"study {settings.study_name!r} has no completed trial")
        if settings.output == "json":
            print(to_json({"pareto_front": front}))
        else:
            print(f"Pareto front of {len(front)} trial(s) ({', '.join(summary['direction'])})")
            for t in front:
                print(f"trial {t['number']}: values ({', '.join(f'{v:.6g}' for v in t['values'])}) "
                      f"{format_params(t['params'])}")
        return EXIT_OK
    best = summary["best"]
    if best is None:
        raise Failure(f"study {settings.study_name!r} has no completed trial")
    if settings.output == "json":
        print(to_json(best))
    else:
        print(f"trial {best['number']}: value {best['value']:.6g}")
        for key, value in sorted(best["params"].items()):
            print(f"  {key} = {value}")
    return EXIT_OK


def cmd_optuna(settings: RunSettings) -> int:
    import shutil

    exe = shutil.which("optuna") or str(Path(sys.executable).with_name("optuna"))
    if not os.access(exe, os.X_OK):
        raise Failure("Optuna's command line (optuna) is not installed beside the runner")
    args = list(settings.optuna_args)
    rest = args[1:] if args[:1] == ["--"] else args
    if not rest:
        raise ConfigError("give Optuna's command, e.g. optuna-spark optuna -- studies")
    if any(a == "--storage" or a.startswith("--storage=") for a in rest):
        raise ConfigError("do not pass --storage: the runner's storage is used (OPTUNA_STORAGE)")
    env = {**os.environ, "OPTUNA_STORAGE": settings.storage.connect_url()}
    os.execve(exe, [exe, *rest], env)
    return EXIT_FAILED  # not reached


# What `submit` gives the user's script: the storage's URL (no password) and the private file that
# holds its password (optuna_spark.rdb_storage reads both).
STORAGE_ENV, STORAGE_PASSWORD_FILE_ENV = "OPTUNA_SPARK_STORAGE", "OPTUNA_SPARK_PASSWORD_FILE"


def cmd_submit(settings: RunSettings) -> int:
    """The user's script as the Spark application, on the runner's Spark and storage: the same
    spark-submit, Java, private conf directory (the cluster's RPC secret) and runtime as `tune`.
    Its output is the user's (this process's stdout and stderr); its exit status is ours."""
    from optuna_spark.private import PrivateFiles, remove_stale_private_dirs
    from optuna_spark.submit import build_submit_command, effective_conf_dir, read_spark_defaults, run_attached

    spark, target = settings.spark, settings.storage
    assert spark is not None and settings.script is not None
    spark, java, conf_dirs = _spark_submit_setup(spark)
    if not settings.verbose and not any(key == "spark.log.level" for key, _ in spark.confs):
        # Spark's INFO log would bury the script's output: warnings and errors only, unless asked.
        spark = replace(spark, confs=(("spark.log.level", "WARN"), *spark.confs))
    remove_stale_private_dirs(settings.work_dir / "runs")
    run_dir = settings.work_dir / "runs" / run_dir_name(Path(settings.script).stem, time.strftime("%Y%m%d-%H%M%S"),
                                                        os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    with PrivateFiles(run_dir) as private:
        conf_dir = spark.spark_conf_dir
        if settings.spark_secret is not None:
            conf_dir = str(private.spark_conf_dir(effective_conf_dir(conf_dirs), settings.spark_secret))
        env = {STORAGE_ENV: target.url}
        if settings.password_file:
            env[STORAGE_PASSWORD_FILE_ENV] = str(Path(settings.password_file).resolve())
        elif target.password is not None:
            env[STORAGE_PASSWORD_FILE_ENV] = str(private.write("storage-password", target.password + "\n"))
        from optuna_spark import java as java_choice

        # Map only: a JVM that cannot write an archive exits with status 1, which must not
        # become the status of the user's own application.
        archive = _class_archive(spark, java, conf_dir, conf_dirs, write=False)
        command = build_submit_command(replace(spark, driver_java_options=with_archive(spark.driver_java_options,
                                                                                       archive)),
                                       list(settings.script_args), default_python=sys.executable,
                                       app=settings.script, spark_defaults=read_spark_defaults(conf_dirs),
                                       conf_dir=conf_dir,
                                       java_home=java_choice.spark_java_home(java, run_dir / "java-home"))
        command = replace(command, env={**command.env, **env})
        sys.stderr.write(f"optuna-spark: {settings.script} on {spark.master}, storage {target.url}\n")
        code = -signal.SIGTERM
        try:
            code = run_attached(command)
        finally:
            class_archive.finish(archive, completed=code >= 0 and code not in SIGNAL_EXITS)
    if code in SIGNAL_EXITS or code < 0:
        raise Terminated(-code if code < 0 else code - 128)
    return code


def _class_archive(spark: SparkSettings, java: Any, conf_dir: str | None, conf_dirs: list[Path], *,
                   write: bool = True) -> ArchivePlan:
    """The driver JVM's class-data archive for this run (optuna_spark.class_archive), if any;
    `write`: whether this run's JVM may write a missing one."""
    if not spark.class_archive or spark.spark_submit is None:
        return NO_ARCHIVE
    from optuna_spark import java as java_choice
    from optuna_spark.submit import effective_conf_dir, read_spark_defaults

    home = java_choice.spark_home_of(spark.spark_submit, spark.spark_home, os.environ)
    return class_archive.for_run(
        java=java.java, java_major=java.major, java_version=java.version, spark_submit=spark.spark_submit,
        spark_version=java_choice.spark_version(spark.spark_submit, spark.spark_home, os.environ),
        conf_dir=Path(conf_dir) if conf_dir else effective_conf_dir(conf_dirs),
        spark_defaults=read_spark_defaults(conf_dirs), driver_java_options=spark.driver_java_options,
        user_confs=[key for key, _ in spark.confs], environ=os.environ, pid=os.getpid(),
        jars=home / "jars" if home is not None else None, write=write)


def _spark_submit_setup(spark: SparkSettings) -> tuple[SparkSettings, Any, list[Path]]:
    """spark-submit found (or a Failure that says where it was looked for), the Java it will
    run on, and Spark's conf directories."""
    from optuna_spark import java as java_choice
    from optuna_spark.submit import find_spark_submit, spark_conf_dirs

    submit = find_spark_submit(spark.spark_submit, spark_home=spark.spark_home)
    if submit is None:
        wanted = spark.spark_submit or (str(Path(spark.spark_home) / "bin" / "spark-submit")
                                        if spark.spark_home else "spark-submit")
        raise Failure(f"spark-submit not found ({wanted}): install pyspark or set spark_home")
    try:
        java = java_choice.find(os.environ, java_choice.spark_version(submit, spark.spark_home, os.environ))
    except java_choice.JavaError as exc:
        raise Failure(str(exc)) from None
    spark = replace(spark, spark_submit=submit)
    return spark, java, spark_conf_dirs(submit, spark_home=spark.spark_home, spark_conf_dir=spark.spark_conf_dir)


class Terminated(BaseException):
    """SIGTERM or SIGHUP: the run ends like on Ctrl-C, through every `finally` (private files
    are removed, spark-submit is stopped)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


RESUMES = " (the same command resumes the study, toward the same budget)"


def one_line(text: str) -> str:
    """A message on one line, whatever a user's value put in it (a newline, a carriage return, an
    escape sequence): control characters are shown escaped. Pure."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _terminate(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    args = build_parser().parse_args(argv)
    handlers = {"tune": cmd_tune, "status": cmd_status, "best": cmd_best, "report": cmd_report,
                "optuna": cmd_optuna, "submit": cmd_submit}
    try:
        if args.command in ("tune", "submit"):
            # Everything the run creates (the SQLite file, job files, logs, Spark's scratch
            # files) is for this user only; spark-submit and its children inherit the mask.
            os.umask(0o077)
        settings = build_settings(args.command, vars(args), os.environ)
        return handlers[args.command](settings)
    except OptunaSparkError as exc:  # optuna_spark.errors: a refused input (2), a failed run (1)
        prefix = "error: " if exc.exit_code == EXIT_USAGE else ""
        sys.stderr.write(f"optuna-spark: {prefix}{one_line(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"optuna-spark: interrupted{RESUMES if args.command == 'tune' else ''}\n")
        return exit_status_of_signal(signal.SIGINT)
    except Terminated as exc:
        what = "interrupted" if exc.signum == signal.SIGINT else \
            f"stopped by signal {signal.Signals(exc.signum).name}"
        sys.stderr.write(f"optuna-spark: {what}{RESUMES if args.command == 'tune' else ''}\n")
        return exit_status_of_signal(exc.signum)
    except Exception as exc:  # a bug: one line unless debugging
        if os.environ.get("OPTUNA_SPARK_DEBUG"):
            raise
        sys.stderr.write(f"optuna-spark: internal error: {type(exc).__name__}: {exc} "
                         "(set OPTUNA_SPARK_DEBUG=1 for a traceback)\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
