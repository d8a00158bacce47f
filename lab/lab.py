#!/usr/bin/env python3
"""A multi-host lab of systemd containers (one driver, N workers) on a private podman network.

Verbs: image, up, down, status, clean, inventory, and the fault handles stop, kill, start,
disconnect, connect (see lab/README.md). Settings live in lab/lab.env; the environment
overrides them. Python 3.11 standard library only: the code is the package lab/optuna_lab/
(settings, image, network, hosts, ssh, inventory, controller, commands, cli); this file is
its entry point, run as `python3 lab/lab.py VERB` by the system python3, without the venv.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from optuna_lab.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
