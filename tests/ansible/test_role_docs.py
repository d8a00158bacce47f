"""Each role's README lists its variables: the options of its `main` entry point in
meta/argument_specs.yml (the source of truth, which Ansible enforces), every one and no other, each
with the default that defaults/main.yml gives it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_lib import REPO

ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
CELL = re.compile(r"(?<!\\)\|")  # a column separator: a pipe not escaped as \|


def _rows(role: Path) -> dict[str, str]:
    """Variable name -> its default cell, from the README's table rows."""
    out: dict[str, str] = {}
    for line in (role / "README.md").read_text().splitlines():
        cells = [c.strip() for c in CELL.split(line)]
        if len(cells) >= 4 and re.fullmatch(r"`[A-Za-z_][A-Za-z0-9_]*`", cells[1]):
            out[cells[1].strip("`")] = cells[2]
    return out


def _options(role: Path) -> list[str]:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    if "main" in specs:
        return list((specs["main"].get("options") or {}).keys())
    # a role without a main entry point (converge_gate): the options its entry points share
    common: list[str] | None = None
    for entry in specs.values():
        names = list((entry.get("options") or {}).keys())
        common = names if common is None else [n for n in common if n in names]
    return common or []


def _documented(role: Path) -> list[str]:
    readme = role / "README.md"
    assert readme.is_file(), f"{role.name} has no README.md"
    return list(_rows(role))


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_the_readme_lists_every_option_of_the_spec_and_no_other(role: Path) -> None:
    options, documented = _options(role), _documented(role)
    assert options, f"{role.name}: no options in its spec"
    assert sorted(set(documented) - set(options)) == [], f"{role.name}: README lists options the spec lacks"
    assert sorted(set(options) - set(documented)) == [], f"{role.name}: README lacks options of its spec"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_the_readme_gives_the_defaults_of_defaults_main(role: Path) -> None:
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    rows = _rows(role)
    for name, value in (defaults or {}).items():
        if name not in rows or isinstance(value, (dict, list)) and value:
            continue  # private defaults are not options; structured ones are described, not quoted
        shown = rows[name].strip("`").replace("\\|", "|")
        if isinstance(value, bool):
            expected = "true" if value else "false"
        elif value is None:
            expected = "null"
        elif value == "":
            expected = '""'
        elif value == []:
            expected = "[]"
        elif value == {}:
            expected = "{}"
        else:
            expected = str(value)
        assert shown == expected, f"{role.name}: {name} default {shown!r} in README, {expected!r} in defaults/main.yml"
