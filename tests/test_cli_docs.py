"""docs/cli.md and the README tell the truth about the command's own help: each command
has a row in cli.md's table naming every option it takes, the emulator's options are
each in docs/testing.md's table, and the exit codes the help lists are cli.md's."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from gptunnel_async.cli import _build_parser

DOCS = Path(__file__).parent.parent / "docs"
CLI = (DOCS / "cli.md").read_text()
TESTING = (DOCS / "testing.md").read_text()
README = (Path(__file__).parent.parent / "README.md").read_text()

EVERYWHERE = {"-h", "--help", "--api-key", "--base-url"}
"""Options every command takes, which cli.md describes once, in prose."""


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = _build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def options(parser: argparse.ArgumentParser) -> set[str]:
    """The long options of ``parser`` (the longest spelling of each)."""
    return {
        max(action.option_strings, key=len)
        for action in parser._actions
        if action.option_strings and not EVERYWHERE & set(action.option_strings)
    }


def table_row(command: str) -> str:
    """The row of cli.md's commands table for ``command``."""
    [row] = [line for line in CLI.splitlines() if line.startswith(f"| `{command}")]
    return row


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_command_has_a_row_naming_its_options(command: str) -> None:
    row = table_row(command)
    assert [option for option in sorted(options(commands()[command])) if option not in row] == []


def test_every_emulator_option_is_in_the_testing_table() -> None:
    table = TESTING.partition("| option | what it does |")[2].partition("\n\n")[0]
    emulator = commands()["emulator"]
    assert [option for option in sorted(options(emulator)) if f"`{option}" not in table] == []


def test_every_command_that_talks_to_the_api_takes_the_key_and_the_url() -> None:
    offline = {"demo", "emulator", "fleet"}
    for name, parser in commands().items():
        spelled = {s for action in parser._actions for s in action.option_strings}
        assert ({"--api-key", "--base-url"} <= spelled) == (name not in offline), name


def test_the_exit_codes_of_the_help_are_cli_md_s() -> None:
    epilog = _build_parser().epilog or ""
    helped = {int(code) for code in re.findall(r"(\d+) [A-Za-z]", epilog)}
    table = CLI.partition("## Exit codes")[2]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    assert helped == documented


def test_the_readme_names_each_command() -> None:
    section = README.partition("## Command line")[2].partition("\n## ")[0]
    assert [name for name in sorted(commands()) if f"gptunnel-async {name}" not in section] == []
