"""What `tune` shows while it runs: on a real pseudo-terminal, one progress line redrawn in place
(a bar, finished/budget, trials/s, time left); through a pipe, the plain lines; the dashboard's
address from optuna_spark.toml when the study starts, and in `status`."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
DASHBOARD = "http://10.89.0.10:8090/dashboard"
BAR = re.compile(r"\r(\d+:\d\d) (\d+)/8 \[[#.]{10,40}\] +\d+% · \d+ running · (- trials/s|[\d.]+ trials/s)"
                 r" · (\?|\d+:\d\d) left · best (-|[\d.e+-]+)\x1b\[K")
PLAIN = re.compile(r"^\[ *\d+\.\ds\] \d+/8 finished · \d+ running · best ", re.M)


def env_with_config(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "runner.toml"
    config.write_text(f'dashboard_url = "{DASHBOARD}"\n')
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "TERM": "xterm",
           "OPTUNA_SPARK_CONFIG": str(config)}
    env.pop("OPTUNA_SPARK_STORAGE_PASSWORD", None)
    return env


TUNE = ["tune", "--study", "p", "--objective", "sleep", "--n-trials", "8", "--n-jobs", "2"]


@pytest.mark.spark
def test_a_terminal_gets_a_bar_redrawn_in_place(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 150, 0, 0))
    proc = subprocess.Popen([str(VENV_BIN / "optuna-spark"), *TUNE, "--output", "json"], cwd=tmp_path,
                            env=env_with_config(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    screen = b""
    while True:  # read the terminal until the run closes it
        ready, _, _ = select.select([master], [], [], 600)
        assert ready, "no output from the run for 10 minutes"
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=120)
    text = screen.decode()
    assert proc.returncode == 0, text[-3000:]
    assert json.loads(out)["finished"] == 8  # stdout stays the summary
    bars = BAR.findall(text)
    assert bars, text[-3000:]
    assert all(len(m.group(0)) - 4 <= 149 for m in BAR.finditer(text))  # no wrap on 150 columns
    assert int(bars[-1][1]) >= int(bars[0][1])
    assert not PLAIN.search(text), text[-3000:]
    assert f"optuna-spark: dashboard: {DASHBOARD}\r\n" in text  # when the study starts (before any bar)
    assert text.endswith("\x1b[K\r\n")  # the last bar stays, its line ended


@pytest.mark.spark
def test_a_pipe_gets_plain_lines_and_the_dashboard_address(tmp_path: Path) -> None:
    proc = subprocess.run([str(VENV_BIN / "optuna-spark"), *TUNE], cwd=tmp_path, env=env_with_config(tmp_path),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PLAIN.search(proc.stderr) and "\r" not in proc.stderr and "\x1b" not in proc.stderr
    lines = proc.stderr.splitlines()
    started = next(i for i, line in enumerate(lines) if re.match(r"optuna-spark: Spark \S+ application \S+ started( \(Java \S+\))?$", line))
    assert lines[started + 1] == f"optuna-spark: dashboard: {DASHBOARD}"
    assert "finished   8 of 8" in proc.stdout

    status = subprocess.run([str(VENV_BIN / "optuna-spark"), "status", "--study", "p"], cwd=tmp_path,
                            env=env_with_config(tmp_path), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[-1] == f"  dashboard  {DASHBOARD}"
    listing = subprocess.run([str(VENV_BIN / "optuna-spark"), "status"], cwd=tmp_path,
                             env=env_with_config(tmp_path), capture_output=True, text=True, timeout=120)
    assert listing.stdout.splitlines() == ["p", f"dashboard: {DASHBOARD}"]
    as_json = subprocess.run([str(VENV_BIN / "optuna-spark"), "status", "--study", "p", "--output", "json"],
                             cwd=tmp_path, env=env_with_config(tmp_path), capture_output=True, text=True, timeout=120)
    assert json.loads(as_json.stdout)["finished"] == 8
