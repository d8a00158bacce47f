"""`make clean` keeps the local studies (work/optuna.db, the default storage); only
`make clean-studies` deletes them, after a question or with CONFIRM=yes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    work = tmp_path / "work"
    (work / "runs" / "old-run").mkdir(parents=True)
    (work / "optuna.db").write_bytes(b"studies")
    (work / "optuna.db-wal").write_bytes(b"wal")
    (work / "artifacts").mkdir()
    (work / "artifacts" / "a-model-id").write_bytes(b"model")
    (tmp_path / ".venv-test").mkdir()
    return work


def _make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "VENV=.venv-test", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_make_clean_keeps_the_studies(tmp_path: Path) -> None:
    work = _tree(tmp_path)
    done = _make(tmp_path, "clean")
    assert done.returncode == 0, done.stderr
    assert (work / "optuna.db").read_bytes() == b"studies" and (work / "optuna.db-wal").exists()
    assert (work / "artifacts" / "a-model-id").read_bytes() == b"model"  # the kept models too
    assert not (work / "runs").exists() and not (tmp_path / ".venv-test").exists()


def test_clean_studies_without_confirmation_keeps_them_and_fails(tmp_path: Path) -> None:
    work = _tree(tmp_path)
    done = _make(tmp_path, "clean-studies")
    assert done.returncode != 0 and "kept" in done.stdout
    assert (work / "optuna.db").exists()


def test_clean_studies_with_confirm_deletes_only_the_studies(tmp_path: Path) -> None:
    work = _tree(tmp_path)
    done = _make(tmp_path, "clean-studies", "CONFIRM=yes")
    assert done.returncode == 0, done.stderr
    assert not (work / "optuna.db").exists() and not (work / "optuna.db-wal").exists()
    assert (work / "runs" / "old-run").exists()


def test_tune_xgboost_keeps_models_locally_only(tmp_path: Path) -> None:
    """`make tune-xgboost` passes --artifact-dir (absolute) for the local run, none for the cluster's
    (no folder every node writes is set up there) nor with ARTIFACT_DIR= ."""
    _tree(tmp_path)
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "lock.txt").write_text("")
    (tmp_path / "pyproject.toml").write_text("")

    def line(*args: str) -> str:
        done = _make(tmp_path, "-n", "tune-xgboost", *args)
        assert done.returncode == 0, done.stderr
        return next(x for x in done.stdout.splitlines() if "xgboost-wine" in x)

    assert f"--artifact-dir {tmp_path / 'work' / 'artifacts'}" in line()
    assert "--artifact-dir /elsewhere/models" in line("ARTIFACT_DIR=/elsewhere/models")
    assert "--artifact-dir" not in line("ARTIFACT_DIR=")
    assert "--artifact-dir" not in line("INVENTORY=inventory/lab")
