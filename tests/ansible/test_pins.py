"""One version of every package on both sides: the controller's venv (requirements/lock.txt,
which runs `make tune` and the tests) and the cluster's packed runtime (files/runtime/), so that a
study behaves the same in local mode and on the cluster (pandas 3 on one side and 2 on the other
was a finding of issue 9)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")
# The runtime's CPU/GPU builds of xgboost are different distributions of one version.
SAME = {"xgboost-cpu": "xgboost"}


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if m := PIN.match(line.strip()):
            name = re.sub(r"[-_.]+", "-", m[1]).lower()
            out[SAME.get(name, name)] = m[2]
    return out


def test_the_controller_and_the_runtime_pin_the_same_versions() -> None:
    controller = pins(ROOT / "requirements" / "lock.txt")
    for spec in ("requirements.txt", "requirements-gpu.txt"):
        runtime = pins(ROOT / "files" / "runtime" / spec)
        differ = {name: (controller[name], version) for name, version in runtime.items()
                  if name in controller and controller[name] != version}
        assert not differ, f"{spec}: controller vs runtime versions differ: {differ}"
        for must in ("optuna", "pyspark", "pandas", "numpy", "sqlalchemy", "xgboost", "scikit-learn"):
            assert must in runtime and must in controller, f"{must} is not pinned on both sides"


def test_every_runtime_requirement_is_pinned() -> None:
    for spec in ("requirements.txt", "requirements-gpu.txt", "build-requirements.txt"):
        for line in (ROOT / "files" / "runtime" / spec).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            assert not line or PIN.match(line), f"{spec}: not pinned: {line!r}"
