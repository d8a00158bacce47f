"""The driver JVM's class-data archive: when it is used or written, its name, the cache's upkeep."""

from __future__ import annotations

import os
import time
from pathlib import Path

from optuna_spark import class_archive as ca

DEFAULTS = dict(java_major=17, base_archive=True, classpath_clean=True,
                driver_java_options="-XX:TieredStopAtLevel=1", user_confs=())


def test_eligible_only_where_java_can_write_and_map_one() -> None:
    assert ca.eligible(**DEFAULTS)
    assert ca.eligible(**{**DEFAULTS, "java_major": 21})
    assert not ca.eligible(**{**DEFAULTS, "java_major": 11})  # no dynamic archive before JDK 13
    assert not ca.eligible(**{**DEFAULTS, "base_archive": False})  # e.g. a jlink'ed runtime
    assert not ca.eligible(**{**DEFAULTS, "classpath_clean": False})  # the JVM would exit 1 at dump
    assert not ca.eligible(**{**DEFAULTS, "driver_java_options": ""})  # '' means no options at all
    assert not ca.eligible(**{**DEFAULTS, "driver_java_options": "  "})
    for own in ("-Xshare:off", "-XX:SharedArchiveFile=/x.jsa", "-XX:ArchiveClassesAtExit=/y.jsa",
                "-XX:+AutoCreateSharedArchive"):
        assert not ca.eligible(**{**DEFAULTS, "driver_java_options": f"-Xmx2g {own}"}), own
    for conf in ("spark.driver.extraClassPath", "spark.driver.extraJavaOptions"):
        assert not ca.eligible(**{**DEFAULTS, "user_confs": ("spark.ui.port", conf)}), conf
    assert ca.eligible(**{**DEFAULTS, "user_confs": ("spark.ui.port", "spark.executor.extraClassPath")})


def test_plan_maps_an_archive_or_writes_one_of_its_own(tmp_path: Path) -> None:
    have = ca.plan(tmp_path, "k", archive_exists=True, room=True, pid=42)
    assert have.writing is None and have.final == tmp_path / "k.jsa"
    assert have.options.split() == [f"-XX:SharedArchiveFile={tmp_path / 'k.jsa'}", ca.QUIET]
    write = ca.plan(tmp_path, "k", archive_exists=False, room=True, pid=42, host="h1", token="ab12")
    assert write.writing == tmp_path / "k.h1.42.ab12.writing" and write.final == tmp_path / "k.jsa"
    assert write.options.split() == [f"-XX:ArchiveClassesAtExit={tmp_path / 'k.h1.42.ab12.writing'}", ca.QUIET]
    assert ca.plan(tmp_path, "k", archive_exists=False, room=False, pid=42) == ca.NO_ARCHIVE
    assert ca.plan(tmp_path, "k", archive_exists=True, room=False, pid=42) == have  # mapping needs no room
    for odd in ("my cache", "it's", 'a"b', "tab\there"):  # Spark's launcher splits the options on white space
        assert ca.plan(tmp_path / odd, "k", archive_exists=True, room=True, pid=42) == ca.NO_ARCHIVE, odd


def test_the_environments_own_sharing_options_and_class_paths_win() -> None:
    for name in ca.JAVA_OPTIONS_ENV:
        assert not ca.eligible(**DEFAULTS, environ={name: "-Xmx1g -Xshare:off"}), name
        assert ca.eligible(**DEFAULTS, environ={name: "-Xmx1g"}), name
    for name in ("SPARK_PREPEND_CLASSES", "SPARK_TESTING", "SPARK_SQL_TESTING"):
        assert not ca.classpath_is_clean(None, {name: "1"}, {}), name
    for conf in ("spark.driver.defaultExtraClassPath", "spark.driver.defaultJavaOptions"):
        assert not ca.classpath_is_clean(None, {}, {conf: "x"}), conf
        assert not ca.eligible(**{**DEFAULTS, "user_confs": (conf,)}), conf


def test_fingerprint_follows_the_jars_and_the_jdk(tmp_path: Path) -> None:
    jdk, jars = tmp_path / "jdk", tmp_path / "jars"
    (jdk / "bin").mkdir(parents=True)
    (jdk / "bin" / "java").write_text("")
    (jdk / "lib").mkdir()
    (jdk / "lib" / "modules").write_bytes(b"m")
    jars.mkdir()
    (jars / "spark-core.jar").write_bytes(b"j")
    java = str(jdk / "bin" / "java")
    first = ca.files_fingerprint(java, jars, "h1")
    assert ca.files_fingerprint(java, jars, "h1") == first
    assert ca.files_fingerprint(java, jars, "h2") != first  # a home shared between hosts
    os.utime(jars / "spark-core.jar", (1000, 1000))  # a venv rebuilt: the same names, new files
    second = ca.files_fingerprint(java, jars, "h1")
    assert second != first
    (jdk / "lib" / "modules").write_bytes(b"mm")  # a JDK upgraded in place
    assert ca.files_fingerprint(java, jars, "h1") != second
    assert ca.archive_key("j", "17", "s", "4", None, first) != ca.archive_key("j", "17", "s", "4", None, second)

def test_options_joined_after_the_drivers_own() -> None:
    archive = ca.ArchivePlan(options="-XX:SharedArchiveFile=/c/k.jsa -Xlog:cds*=error")
    assert ca.with_archive("-XX:TieredStopAtLevel=1", archive) == \
        "-XX:TieredStopAtLevel=1 -XX:SharedArchiveFile=/c/k.jsa -Xlog:cds*=error"
    assert ca.with_archive("-XX:TieredStopAtLevel=1", ca.NO_ARCHIVE) == "-XX:TieredStopAtLevel=1"


def test_key_names_one_java_spark_and_class_path() -> None:
    base = ("/usr/bin/java", "17.0.15", "/venv/bin/spark-submit", "4.3.0", None)
    key = ca.archive_key(*base)
    assert key == ca.archive_key(*base) and len(key) == 24 and key.isalnum()
    for i, other in enumerate(("/opt/jdk/bin/java", "17.0.16", "/other/bin/spark-submit", "4.3.1", "/etc/spark")):
        changed = list(base)
        changed[i] = other
        assert ca.archive_key(*changed) != key, other


def test_class_path_clean_only_without_a_non_empty_directory(tmp_path: Path) -> None:
    assert ca.classpath_is_clean(None, {}, {})
    assert ca.classpath_is_clean(tmp_path / "missing", {}, {})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ca.classpath_is_clean(empty, {}, {})
    (empty / "spark-defaults.conf").write_text("spark.ui.enabled false\n")
    assert not ca.classpath_is_clean(empty, {}, {})
    for name in ca.CLASSPATH_ENV:
        assert not ca.classpath_is_clean(None, {name: "/etc/hadoop"}, {}), name
    assert ca.classpath_is_clean(None, {"HADOOP_CONF_DIR": ""}, {})
    assert not ca.classpath_is_clean(None, {}, {"spark.driver.extraClassPath": "/jars/x.jar"})


def test_cache_under_xdg_or_home(tmp_path: Path) -> None:
    assert ca.cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/optuna-spark/class-archives")
    assert ca.cache_dir({"HOME": "/h"}) == Path("/h/.cache/optuna-spark/class-archives")
    assert ca.cache_dir({}) is None


def test_a_cache_or_archive_not_private_to_the_user_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    cache.mkdir(mode=0o700)
    cache.chmod(0o770)  # a group could plant an archive: it is code the driver would run
    assert ca.prepare(cache, "k") == (None, False, False)
    cache.chmod(0o700)
    elsewhere = tmp_path / "elsewhere.jsa"
    elsewhere.write_bytes(b"x")
    (cache / "k.jsa").symlink_to(elsewhere)
    assert ca.prepare(cache, "k") == (None, False, False)
    (cache / "k.jsa").unlink()
    (cache / "k.jsa").write_bytes(b"x")
    (cache / "k.jsa").chmod(0o666)
    assert ca.prepare(cache, "k") == (None, False, False)
    (cache / "k.jsa").chmod(0o400)
    assert ca.prepare(cache, "k") == (cache, True, True)


def test_a_refused_write_is_not_asked_again(tmp_path: Path) -> None:
    archive = ca.plan(tmp_path, "k", archive_exists=False, room=True, pid=7)
    assert not ca.finish(archive, completed=True)  # the JVM ended on its own and wrote nothing
    assert (tmp_path / "k.refused").exists()
    assert ca.prepare(tmp_path, "k") == (tmp_path, False, False)
    assert ca.prepare(tmp_path, "other") == (tmp_path, False, True)


def test_prepare_makes_a_private_folder_or_gives_up(tmp_path: Path) -> None:
    cache = tmp_path / "c" / "class-archives"
    folder, exists, room = ca.prepare(cache, "k")
    assert folder == cache and not exists and room and (cache.stat().st_mode & 0o777) == 0o700
    (cache / "k.jsa").write_bytes(b"x")
    assert ca.prepare(cache, "k")[1]
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert ca.prepare(blocked / "sub", "k") == (None, False, False)
    assert ca.prepare(None, "k") == (None, False, False)


def test_base_archive_read_from_the_real_java(tmp_path: Path) -> None:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    link = tmp_path / "java"
    link.symlink_to(home / "bin" / "java")
    assert not ca.base_archive_of(str(link))
    (home / "lib" / "server").mkdir(parents=True)
    (home / "lib" / "server" / "classes.jsa").write_bytes(b"x")
    assert ca.base_archive_of(str(link))


def test_finish_moves_a_whole_archive_into_place_and_keeps_the_newest(tmp_path: Path) -> None:
    old = []
    for i in range(4):
        path = tmp_path / f"old{i}.jsa"
        path.write_bytes(b"a")
        os.utime(path, (time.time() - 1000 + i, time.time() - 1000 + i))
        old.append(path)
    archive = ca.plan(tmp_path, "new", archive_exists=False, room=True, pid=7)
    assert archive.writing is not None and archive.final is not None
    archive.writing.write_bytes(b"archive")
    assert ca.finish(archive, completed=True)
    assert archive.final.read_bytes() == b"archive" and not archive.writing.exists()
    assert sorted(p.name for p in tmp_path.glob("*.jsa")) == ["new.jsa", "old2.jsa", "old3.jsa"]  # KEEP = 3


def test_finish_drops_what_an_interrupted_or_failed_jvm_left(tmp_path: Path) -> None:
    archive = ca.plan(tmp_path, "k", archive_exists=False, room=True, pid=7)
    assert archive.writing is not None and archive.final is not None
    archive.writing.write_bytes(b"half")
    assert not ca.finish(archive, completed=False)
    assert not archive.writing.exists() and not archive.final.exists()
    archive.writing.write_bytes(b"")  # nothing written: not an archive
    assert not ca.finish(archive, completed=True)
    assert [p.name for p in tmp_path.iterdir()] == ["k.refused"]


def test_finish_marks_a_mapped_archive_as_used(tmp_path: Path) -> None:
    final = tmp_path / "k.jsa"
    final.write_bytes(b"x")
    os.utime(final, (1000, 1000))
    assert not ca.finish(ca.plan(tmp_path, "k", archive_exists=True, room=True, pid=1), completed=True)
    assert final.stat().st_mtime > 1000


def test_prune_removes_writes_no_jvm_finished(tmp_path: Path) -> None:
    stale, fresh = tmp_path / "k.1.writing", tmp_path / "k.2.writing"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    assert ca.prune(tmp_path) == [stale]
    assert fresh.exists()
