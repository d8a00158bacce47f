"""Fixtures of the playbook tests; the helpers are in ansible_lib.py (a module named conftest
would collide with the other test folders' conftest modules)."""

from ansible_lib import repo  # noqa: F401
