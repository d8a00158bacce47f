"""One timed `optuna-spark tune --output json` run: the helper the single-purpose benchmarks share."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def timed_tune(cwd: Path, objective: str, study: str, trials: int, tasks: int, extra: list[str]) -> tuple[dict[str, Any], float]:
    """Runs the study on `local[tasks]` in `cwd` (storage and work directory as `extra` says, else
    the runner's defaults under cwd) and returns its JSON summary and the command's wall time."""
    cmd = [str(BIN / "optuna-spark"), "tune", "--objective", objective, "--study", study, "--n-trials",
           str(trials), "--n-jobs", str(tasks), "--master", f"local[{tasks}]", "--output", "json", *extra]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"run failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout), wall
