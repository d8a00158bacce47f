"""Shared helpers for the playbook tests: run the repository's ansible tools for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make venv` (the tests use the venv's tools)")
    return str(path)


def run_tool(*argv: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "NO_COLOR": "1",
            "PY_COLORS": "0",
            # The venv's bin first: ansible-lint and ansible-playbook find their siblings.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    if env:
        full_env.update(env)
    return subprocess.run(
        list(argv), cwd=REPO, env=full_env, text=True, capture_output=True, timeout=timeout, check=False
    )


@pytest.fixture
def repo() -> Path:
    return REPO
