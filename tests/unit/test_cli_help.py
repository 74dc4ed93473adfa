"""`--help` is complete for every command the parser builds, now and later: each command
says what it does, every option and argument has help text, and the help names the exit
statuses. Walks the parser itself, so a command added later is checked without a new test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re

import pytest

from fuzzer.cli import build_parser, main


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(argv prefix, parser) for every command and subcommand, leaves and groups alike."""
    found = [(path, parser)]
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


COMMANDS = [path for path, _ in _commands(build_parser()) if path]
PARSERS = dict(_commands(build_parser()))


def _help(argv: tuple[str, ...]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    return int(exit_info.value.code or 0), out.getvalue()


def test_every_command_is_walked():
    top = {path[0] for path in COMMANDS}
    assert {"run", "record", "replay", "log", "show", "repro", "fuzz"} <= top


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda path: "-".join(path))
def test_help_exits_zero_and_says_what_the_command_does(argv):
    status, text = _help(argv)
    assert status == 0
    assert text.startswith("usage: detfuzz " + " ".join(argv))
    parser = PARSERS[argv]
    assert parser.description, f"`detfuzz {' '.join(argv)}` has no description"


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda path: "-".join(path))
def test_every_option_and_argument_has_help(argv):
    parser = PARSERS[argv]
    undocumented = [
        action.option_strings[0] if action.option_strings else action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        and not isinstance(action, argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert not undocumented, f"`detfuzz {' '.join(argv)}`: no help for {undocumented}"


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda path: "-".join(path))
def test_help_names_the_exit_statuses(argv):
    _, text = _help(argv)
    flat = " ".join(text.split()).lower()  # argparse wraps lines anywhere
    assert "exit" in flat, f"`detfuzz {' '.join(argv)} --help` omits them"
    assert re.search(r"\b2\b[^.]*\b(bad|usage|input)", flat), "the bad-input status is not named"
