"""Debian's Chromium, headless, for the tests that look at pages as a user would (no network of
its own: background networking and component updates are off)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "work" / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed: apt-get install chromium (make system-deps)", pytrace=False)
    return found


def chromium(url: str, profile: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    argv = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def dom(url: str, profile: Path, *extra: str, budget_ms: int = 20000) -> str:
    proc = chromium(url, profile, f"--virtual-time-budget={budget_ms}", "--dump-dom", *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(url: str, profile: Path, name: str, *extra: str, size: str = "1400,900",
               budget_ms: int = 20000) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / name
    target.unlink(missing_ok=True)
    proc = chromium(url, profile, f"--virtual-time-budget={budget_ms}", f"--window-size={size}",
                    f"--screenshot={target}", *extra)
    assert proc.returncode == 0 and target.is_file(), proc.stderr[-2000:]
    return target


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
