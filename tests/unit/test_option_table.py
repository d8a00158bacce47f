"""The one option table (optuna_spark.config.OPTIONS) against what is written from it and about it:
the command line that optuna_spark.cli.build_parser makes of it, and the options table and the
config keys of docs/runner.md. Every flag is documented once with its default (Option.shown_default);
no documented flag or config key is one the runner does not have."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from optuna_spark.cli import build_parser
from optuna_spark.config import ALL_COMMANDS, FILE_KEYS, OPTIONS, Option

DOC = Path(__file__).resolve().parents[2] / "docs" / "runner.md"
_BY_FLAG = {o.flag: o for o in OPTIONS if o.flag_commands}


def _section(text: str, heading: str) -> str:
    """The body of `## heading`, up to the next heading of any level."""
    start = text.index(f"\n## {heading}\n") + len(heading) + 5
    end = text.find("\n#", start)
    return text[start:] if end < 0 else text[start:end]


def _doc_rows() -> list[tuple[list[str], list[str]]]:
    """The options table's rows: the flags of the first cell, and the defaults of the second (split
    on ` / ` when the row documents several flags; backticks removed)."""
    rows = []
    for line in _section(DOC.read_text(encoding="utf-8"), "Options").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        flags = re.findall(r"--[a-z][a-z0-9-]*", cells[0])
        defaults = [d.strip() for d in cells[1].replace("`", "").split(" / ")]
        rows.append((flags, defaults))
    return rows


def _sub_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def _parser_flags() -> dict[str, set[str]]:
    """Every long flag of every sub-command, and the sub-commands that take it."""
    flags: dict[str, set[str]] = {}
    for name, sub in _sub_parsers().items():
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    flags.setdefault(flag, set()).add(name)
    return flags


def _documented() -> dict[str, str]:
    """Each documented flag and its documented default."""
    out: dict[str, str] = {}
    for flags, defaults in _doc_rows():
        assert len(defaults) in (1, len(flags)), f"row of {flags}: {len(defaults)} defaults for {len(flags)} flags"
        for i, flag in enumerate(flags):
            assert flag not in out, f"{flag} is documented twice"
            out[flag] = defaults[0] if len(defaults) == 1 else defaults[i]
    return out


def test_the_docs_table_parses() -> None:
    assert len(_doc_rows()) > 20


def test_every_documented_flag_exists() -> None:
    unknown = sorted(set(_documented()) - set(_parser_flags()))
    assert not unknown, f"docs/runner.md documents flags the runner does not have: {unknown}"


def test_every_flag_is_documented() -> None:
    missing = sorted(set(_parser_flags()) - set(_documented()))
    assert not missing, f"flags missing from docs/runner.md's options table: {missing}"


@pytest.mark.parametrize("option", list(_BY_FLAG.values()), ids=list(_BY_FLAG))
def test_each_option_is_documented_with_its_default(option: Option) -> None:
    documented = _documented()
    assert option.flag in documented, f"{option.flag} is missing from docs/runner.md's options table"
    assert documented[option.flag] == option.shown_default, option.flag


@pytest.mark.parametrize("option", list(_BY_FLAG.values()), ids=list(_BY_FLAG))
def test_the_parser_takes_each_flag_on_its_commands(option: Option) -> None:
    assert _parser_flags().get(option.flag) == set(option.flag_commands)


def test_the_docs_list_the_config_keys() -> None:
    text = _section(DOC.read_text(encoding="utf-8"), "Settings and the config file")
    start = text.index("its keys are the options' names")
    listed = re.findall(r"`\[?([a-z_]+)\]?`", text[start:text.index("Command line only:", start)])
    assert sorted(set(listed) - set(ALL_COMMANDS)) == sorted(FILE_KEYS)  # the prose names commands too


@pytest.mark.parametrize("option", list(_BY_FLAG.values()), ids=list(_BY_FLAG))
def test_help_states_only_the_tables_default(option: Option) -> None:
    for name in option.flag_commands:
        sub = _sub_parsers()[name]
        text = next(a.help or "" for a in sub._actions if option.flag in a.option_strings)
        assert text.count("(default") <= 1, (name, option.flag)
        if "(default" in text:
            assert text.endswith(f"(default: {option.shown_default})".replace("%", "%%")), (name, option.flag)
