"""A class-data sharing archive of the Spark driver's JVM: the classes SparkContext loads, mapped
from one file instead of read and verified from Spark's jars on every start.

The driver's JVM (`spark-submit`'s, client mode) loads some ten thousand classes before the first
task runs; on a 2-core machine that is most of the 4 s from the Python driver's start to a
running SparkContext (bench/startup.py). Java's application class-data sharing (a dynamic CDS
archive, JDK 13 and later: `-XX:ArchiveClassesAtExit` writes it when a JVM exits,
`-XX:SharedArchiveFile` maps it) cuts that to about half. This is what JDK 19's
`-XX:+AutoCreateSharedArchive` does by itself, done here for the Java 17 that Spark also runs on:

- the first `tune` run with a given Java, Spark and class path writes the archive when its JVM
  exits (about 10-20 s more at that run's start and end, once), to a file of its own, renamed
  into the cache when the run ends; `submit` only maps one;
- later runs map it; its name includes a fingerprint of Spark's jars, the JDK's files and the
  host, so an archive that no longer matches is not looked for again (a new one is written); a
  JVM that still finds one not matching starts as without it (`-Xshare:auto`, Java's default).

The archive is used only where Java can make one: a JVM with its own base archive, no non-empty
directory on the driver's class path (Java refuses to archive those, and a JVM that tries exits
with status 1), no class path added by the environment or the user's settings, and the runner's
own driver options in use. Anything else runs exactly as before. `eligible`, `plan` and `archive_key` are pure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# The first JDK whose JVM can write a dynamic archive at exit.
MIN_JAVA = 13
# Archives kept in the cache (one per Java, Spark and class path): each is ~100-150 MB.
KEEP = 3
# Free space the cache's file system must have before a JVM is asked to write one.
MIN_FREE_BYTES = 1 << 30
# Environment variables that put directories on the driver's class path (Spark's launcher).
CLASSPATH_ENV = ("SPARK_DIST_CLASSPATH", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_CLASSPATH",
                 "SPARK_PREPEND_CLASSES", "SPARK_TESTING", "SPARK_SQL_TESTING")
# Settings and options that change the driver's class path or its JVM options.
CLASSPATH_CONFS = ("spark.driver.extraClassPath", "spark.driver.extraJavaOptions",
                   "spark.driver.defaultExtraClassPath", "spark.driver.defaultJavaOptions")
# Environment variables whose JVM options every JVM (or spark-submit's) takes: the user's own
# class-data sharing options there win.
JAVA_OPTIONS_ENV = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "SPARK_SUBMIT_OPTS")
_SHARING_OPTIONS = ("-Xshare", "-XX:SharedArchiveFile", "-XX:ArchiveClassesAtExit", "-XX:+AutoCreateSharedArchive")
SUFFIX = ".jsa"
# Written when a JVM asked for an archive ended without one: later runs do not ask again.
REFUSED = ".refused"
# Java's own messages about the archive (a class it leaves out, an archive that does not match
# this JVM) are warnings on the JVM's stdout; only its errors are kept.
QUIET = "-Xlog:cds*=error"


@dataclass(frozen=True)
class ArchivePlan:
    """What to add to the driver's JVM options, and the file the JVM writes at exit (None: it
    writes none) with where it goes once the run has ended."""

    options: str = ""
    writing: Path | None = None
    final: Path | None = None


NO_ARCHIVE = ArchivePlan()


def archive_key(java: str, java_version: str, spark_submit: str, spark_version: str | None,
                conf_dir: str | None, fingerprint: str = "") -> str:
    """The archive's name: one per Java binary and version, Spark installation and conf
    directory (the first entry of the driver's class path), and `fingerprint` (the jars' and the
    JDK's files as they are now, this host: `files_fingerprint`). An archive no longer matching
    (a venv rebuilt, a JDK or Spark upgraded in place) is then never looked for again: a new one
    is written, and the old one ages out of the cache."""
    text = "\0".join((java, java_version, spark_submit, spark_version or "", conf_dir or "", fingerprint))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def eligible(*, java_major: int, base_archive: bool, classpath_clean: bool, driver_java_options: str,
             user_confs: Iterable[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run's driver JVM can use (and write) an archive. `classpath_clean`: no
    non-empty directory and no added class path (`classpath_is_clean`)."""
    if java_major < MIN_JAVA or not base_archive or not classpath_clean:
        return False
    if not driver_java_options.strip() or any(o.startswith(_SHARING_OPTIONS) for o in driver_java_options.split()):
        return False  # '' asks for no options; the user's own sharing options win
    for name in JAVA_OPTIONS_ENV:
        if any(o.startswith(_SHARING_OPTIONS) for o in (environ or {}).get(name, "").split()):
            return False
    return not any(conf in CLASSPATH_CONFS for conf in user_confs)


def plan(cache: Path, key: str, *, archive_exists: bool, room: bool, pid: int, host: str = "",
         token: str = "") -> ArchivePlan:
    """Map `key`'s archive if the cache holds it, else have the JVM write it at exit (to a file of
    this run's own: host, process and a random token in its name) if the cache's file system has
    `room` for it (False also when a JVM once refused to). Nothing where the path would not
    survive Spark's launcher, which splits the driver's options on white space."""
    final = cache / f"{key}{SUFFIX}"
    if any(c.isspace() or c in "\"'\\" for c in str(final)):
        return NO_ARCHIVE
    if archive_exists:
        return ArchivePlan(options=f"-XX:SharedArchiveFile={final} {QUIET}", final=final)
    if not room:
        return NO_ARCHIVE
    writing = cache / f"{key}.{host or 'host'}.{pid}.{token or 'x'}.writing"
    return ArchivePlan(options=f"-XX:ArchiveClassesAtExit={writing} {QUIET}", writing=writing, final=final)


def with_archive(driver_java_options: str, archive: ArchivePlan) -> str:
    """The driver's JVM options with the archive's."""
    return f"{driver_java_options} {archive.options}".strip() if archive.options else driver_java_options


def for_run(*, java: str, java_major: int, java_version: str, spark_submit: str, spark_version: str | None,
            conf_dir: Path | None, spark_defaults: Mapping[str, str], driver_java_options: str,
            user_confs: Iterable[str], environ: Mapping[str, str], pid: int, jars: Path | None,
            write: bool = True) -> ArchivePlan:
    """The archive of one run: `plan` for what this machine, Java and class path allow. `jars`:
    Spark's jars folder; `write`: False maps an archive only (a user's own application, whose
    exit status must stay its own)."""
    import secrets
    import socket

    if not eligible(java_major=java_major, base_archive=base_archive_of(java),
                    classpath_clean=classpath_is_clean(conf_dir, environ, spark_defaults),
                    driver_java_options=driver_java_options, user_confs=user_confs, environ=environ):
        return NO_ARCHIVE
    host = socket.gethostname()
    key = archive_key(java, java_version, spark_submit, spark_version, str(conf_dir) if conf_dir else None,
                      files_fingerprint(java, jars, host))
    cache, exists, may_write = prepare(cache_dir(environ), key)
    if cache is None:
        return NO_ARCHIVE
    return plan(cache, key, archive_exists=exists, room=may_write and write, pid=pid,
                host="".join(c for c in host if c.isalnum() or c in "-_")[:40], token=secrets.token_hex(6))


def files_fingerprint(java: str, jars: Path | None, host: str) -> str:
    """What a dynamic archive depends on beyond names: every jar of Spark's (name, size, time),
    the JDK's modules and base archive, and the host (a home shared between hosts)."""
    home = Path(os.path.realpath(java)).parent.parent
    paths = [home / "lib" / "modules", home / "lib" / "server" / "classes.jsa"]
    try:
        paths += sorted(jars.glob("*.jar")) if jars is not None else []
    except OSError:
        pass
    parts = [host]
    for path in paths:
        try:
            st = path.stat()
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{path.name}:-")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def cache_dir(environ: Mapping[str, str]) -> Path | None:
    """$XDG_CACHE_HOME/optuna-spark/class-archives, else ~/.cache/...; None without a home."""
    base = environ.get("XDG_CACHE_HOME")
    if not base:
        home = environ.get("HOME")
        if not home:
            return None
        base = str(Path(home) / ".cache")
    return Path(base) / "optuna-spark" / "class-archives"


def base_archive_of(java: str) -> bool:
    """Whether the JVM at `java` has its default CDS archive (a dynamic archive is built on it)."""
    home = Path(os.path.realpath(java)).parent.parent
    return any((home / "lib" / vm / "classes.jsa").is_file() for vm in ("server", "client"))


def classpath_is_clean(conf_dir: Path | None, environ: Mapping[str, str], spark_defaults: Mapping[str, str]) -> bool:
    """No non-empty directory on the driver's class path that the runner cannot see past: the
    conf directory (Spark puts it first) must be missing or empty, and nothing else adds one."""
    if any(environ.get(name) for name in CLASSPATH_ENV):
        return False
    if any(conf in spark_defaults for conf in CLASSPATH_CONFS):
        return False
    if conf_dir is None:
        return True
    try:
        return not any(conf_dir.iterdir())
    except FileNotFoundError:
        return True
    except OSError:
        return False


def prepare(cache: Path | None, key: str) -> tuple[Path | None, bool, bool]:
    """The cache folder (made, private to the user; None if it cannot be, or if it or the
    archive is not the user's own and private: an archive is code the driver runs), whether
    `key`'s archive is in it, and whether another may be written (room for it, and no JVM
    refused to write this one before)."""
    if cache is None:
        return None, False, False
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = cache / f"{key}{SUFFIX}"
        if not _private(cache) or (final.exists() and not _private(final)):
            return None, False, False
        exists = final.is_file()
        may_write = shutil.disk_usage(cache).free >= MIN_FREE_BYTES and not (cache / f"{key}{REFUSED}").exists()
        if not exists:
            prune(cache)
    except OSError:
        return None, False, False
    return cache, exists, may_write


def _private(path: Path) -> bool:
    """Not a symbolic link, owned by this user, writable by nobody else."""
    import stat

    st = path.lstat()
    return not stat.S_ISLNK(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def finish(archive: ArchivePlan, *, completed: bool) -> bool:
    """After the run: the archive the JVM wrote moves into place if the JVM ended on its own
    (`completed`), else it is removed; a JVM that ended on its own without writing one leaves a
    marker so that no later run asks again; an archive used is marked as used (for `prune`).
    True if an archive was added."""
    added = False
    if archive.writing is not None and archive.final is not None:
        try:
            if completed and archive.writing.is_file() and archive.writing.stat().st_size > 0:
                os.replace(archive.writing, archive.final)
                added = True
            elif completed:
                archive.final.with_suffix(REFUSED).touch()
        except OSError:
            pass
        finally:
            archive.writing.unlink(missing_ok=True)
        if added:
            prune(archive.final.parent, keep=KEEP)
    elif archive.final is not None:
        try:
            os.utime(archive.final)
        except OSError:
            pass
    return added


def prune(cache: Path, keep: int = KEEP) -> list[Path]:
    """Removes all but the `keep` most recently used archives, and writes that no JVM is
    writing any longer (older than a day); the removed files."""
    import time

    removed: list[Path] = []
    try:
        archives = sorted(cache.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
        stale = [p for p in cache.glob("*.writing") if p.stat().st_mtime < time.time() - 86400]
    except OSError:
        return removed
    for path in [*archives[keep:], *stale]:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed
