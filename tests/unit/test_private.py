"""Secret files and a run's private files (optuna_spark.private), on real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from optuna_spark.config import ConfigError
from optuna_spark.private import PrivateFiles, properties_value, read_secret_file, with_authentication


def secret_file(tmp_path: Path, text: str, mode: int) -> Path:
    f = tmp_path / "secret"
    f.write_text(text)
    f.chmod(mode)
    return f


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o440])
def test_owner_and_group_readable_files_are_accepted(tmp_path: Path, mode: int) -> None:
    assert read_secret_file(secret_file(tmp_path, "s3cr3t\n", mode), "secret file") == "s3cr3t"


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o601, 0o660, 0o620, 0o610, 0o666, 0o777])
def test_files_open_to_others_or_group_writable_are_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    f = secret_file(tmp_path, "s3cr3t\n", mode)
    with pytest.raises(ConfigError) as info:
        read_secret_file(f, "Spark secret file")
    message = str(info.value)
    assert message.startswith(f"Spark secret file {f} is open to other users (mode {mode:04o})")
    assert f"chmod 600 {f}" in message and "s3cr3t" not in message and "\n" not in message


@pytest.mark.parametrize("text, message", [
    ("", "is empty"), ("\n", "is empty"), ("a\nb\n", "more than one line"), ("a\x00b", "control characters"),
])
def test_bad_contents(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_secret_file(secret_file(tmp_path, text, 0o600), "secret file")


def test_missing_and_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_secret_file(tmp_path / "none", "secret file")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_secret_file(tmp_path, "secret file")


def test_authentication_is_appended_so_it_overrides_and_survives_a_continuation() -> None:
    text = with_authentication("spark.authenticate false\nspark.x a \\", "k3y")
    lines = text.splitlines()
    assert lines[:2] == ["spark.authenticate false", "spark.x a \\"]
    assert lines[2] == ""  # ends the open continuation
    assert lines[-2:] == ["spark.authenticate true", "spark.authenticate.secret k3y"]
    assert with_authentication("", "k").endswith("spark.authenticate.secret k\n")


def test_secret_escaped_as_a_properties_value() -> None:
    assert properties_value("a\\b") == "a\\\\b"
    assert properties_value(" lead") == "\\ lead"
    assert properties_value("p=q:r #x") == "p=q:r #x"  # only the key ends at = or :


def test_private_files_are_private_and_removed_whatever_happens(tmp_path: Path) -> None:
    source = tmp_path / "conf"
    source.mkdir()
    (source / "spark-defaults.conf").write_text("spark.io.encryption.enabled true\n")
    (source / "spark-env.sh").write_text("export X=1\n")
    (source / "spark-env.sh").chmod(0o755)
    (source / "subdir").mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        with PrivateFiles(run_dir) as private:
            assert stat.S_IMODE(private.path.stat().st_mode) == 0o700
            conf = private.spark_conf_dir(source, "k3y")
            assert stat.S_IMODE(conf.stat().st_mode) == 0o700
            assert sorted(p.name for p in conf.iterdir()) == ["spark-defaults.conf", "spark-env.sh"]
            defaults = conf / "spark-defaults.conf"
            assert stat.S_IMODE(defaults.stat().st_mode) == 0o600
            assert defaults.read_text().startswith("spark.io.encryption.enabled true\n")
            assert "spark.authenticate.secret k3y" in defaults.read_text()
            assert stat.S_IMODE((conf / "spark-env.sh").stat().st_mode) == 0o700
            pw = private.write("storage-password", "pw")
            assert stat.S_IMODE(pw.stat().st_mode) == 0o600
            raise RuntimeError("boom")
    assert not (run_dir / "private").exists()
    assert "k3y" not in (source / "spark-defaults.conf").read_text()  # the original is untouched


def test_no_conf_dir_gives_defaults_with_only_the_secret(tmp_path: Path) -> None:
    with PrivateFiles(tmp_path) as private:
        conf = private.spark_conf_dir(None, "k")
        assert [p.name for p in conf.iterdir()] == ["spark-defaults.conf"]
        assert os.access(conf / "spark-defaults.conf", os.R_OK)


def test_private_dirs_of_runs_whose_process_is_gone_are_removed(tmp_path: Path) -> None:
    import subprocess

    from optuna_spark.private import remove_stale_private_dirs

    gone = subprocess.Popen(["true"])
    gone.wait()
    runs = tmp_path / "runs"
    for name in (f"s-20261129-101010-{gone.pid}", f"s-20261129-101011-{os.getpid()}", "not-a-run"):
        (runs / name / "private").mkdir(parents=True)
    (runs / f"s-20261129-101012-{os.getppid()}" / "private").mkdir(parents=True)
    removed = remove_stale_private_dirs(runs)
    assert removed == [runs / f"s-20261129-101010-{gone.pid}" / "private"]
    assert sorted(p.parent.name for p in runs.glob("*/private")) == sorted(
        ["not-a-run", f"s-20261129-101011-{os.getpid()}", f"s-20261129-101012-{os.getppid()}"])
