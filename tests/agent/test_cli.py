"""The ``watchword`` parser: a command line imports only the command it names; the help lists them all.

The module checks run in a fresh interpreter (a subprocess), since this test process has imported
every command already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent import cli

REPO = Path(__file__).resolve().parents[2]

COMMANDS_IMPORTED_BY_PARSER = textwrap.dedent(
    """
    import json, sys

    from agent.cli import main

    try:
        main(json.loads(sys.argv[1]))
    except SystemExit:
        pass  # --help, or a usage error: printed, the modules are still listed
    print(json.dumps(sorted(name for name in sys.modules if name.startswith("agent.commands."))))
    """
)


def _commands_imported(argv: list[str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", COMMANDS_IMPORTED_BY_PARSER, json.dumps(argv)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {name.removeprefix("agent.commands.") for name in json.loads(done.stdout.splitlines()[-1])}


def test_a_command_line_imports_only_its_command() -> None:
    """Each command module costs its import (``models`` loads urllib's HTTP client, ``eval`` the
    replay command): ``watchword run`` does not pay for the other eight."""
    assert _commands_imported(["run", "--help"]) == {"run"}
    assert _commands_imported(["-v", "query", "--help"]) == {"query"}


def test_the_help_and_an_unknown_command_import_every_command() -> None:
    every = set(cli.COMMAND_MODULES)
    assert every <= _commands_imported(["--help"])
    assert every <= _commands_imported(["no-such-command"])
    assert every <= _commands_imported([])


def test_the_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMAND_MODULES:
        assert f"\n    {name} " in out, f"{name} missing from the help:\n{out}"


def test_a_command_help_shows_that_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["run", "--help"])
    assert done.value.code == 0
    assert "usage: watchword run" in capsys.readouterr().out


def test_an_unknown_command_is_refused_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["no-such-command"])
    assert done.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in err and "'search'" in err


def test_a_command_not_built_in_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installation without one command's module (simulated by naming a module that does not
    exist) still parses the others, and refuses that one as an unknown command."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "not_built_in"))
    assert cli.build_parser(["run", "x.yaml"]).parse_args(["run", "x.yaml"]).command == "run"
    with pytest.raises(SystemExit):
        cli.build_parser(["not_built_in"]).parse_args(["not_built_in"])
    assert cli.build_parser().parse_args(["query", "list"]).command == "query"
