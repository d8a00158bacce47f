"""The podman lab as a package: a multi-host lab of systemd containers (one driver, N workers)
on a private podman network, driven by lab/lab.py (see lab/README.md).

Python 3.11 standard library only: lab/lab.py runs under the system python3, without the venv.
"""
