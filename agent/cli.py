"""The ``watchword`` command line.

Exit status: 0 success, 1 runtime failure, 2 bad usage or bad configuration (or, for the commands
that start the agent, an installed dependency outside the supported ranges), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__
from agent.commands import EXIT_FAILURE as EXIT_FAILURE  # the exit statuses, re-exported
from agent.commands import EXIT_OK as EXIT_OK
from agent.commands import EXIT_USAGE as EXIT_USAGE

# Sub-command modules under agent.commands, each with register(subparsers).
COMMAND_MODULES = (
    "run",
    "query",
    "calibrate",
    "models",
    "export",
    "eval",
    "alerts",
    "camera",
    "search",
    "fleet",
    "lmm",
)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``watchword`` parser; with ``argv``, only the command it names is registered.

    Each command module is imported to register its arguments, and some pull in a good part of the
    agent (``models`` loads urllib's HTTP client, ``eval`` the replay command): importing all nine
    cost ``watchword run`` about 0.1 s of its start. When ``argv`` names a known command only that
    module is imported; otherwise (``--help``, no command, an unknown one) all are, so the help and
    argparse's own errors list every command.
    """
    parser = argparse.ArgumentParser(
        prog="watchword",
        description="Edge video analytics agent: standing natural-language anomaly queries over cameras.",
    )
    parser.add_argument("--version", action="version", version=f"watchword {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen_command(argv) if argv is not None else None
    registered = False
    if chosen is not None:
        registered = _register(subparsers, chosen)
    if not registered:
        for name in COMMAND_MODULES:
            _register(subparsers, name)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first argument that is not an option (the top-level options
    take no value), if that is one of :data:`COMMAND_MODULES`; None when there is none (``--help``
    and ``--version`` then act before any command is needed)."""
    for arg in argv:
        if arg in ("-h", "--help", "--version", "--"):
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMAND_MODULES else None
    return None


def _register(subparsers: argparse._SubParsersAction, name: str) -> bool:
    """Add command ``name`` from its module; False when that module is not built into this installation."""
    try:
        module = importlib.import_module(f"agent.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"agent.commands.{name}":
            return False
        raise
    module.register(subparsers)
    return True


def starts_the_agent(args: argparse.Namespace) -> bool:
    """Whether the parsed command runs the agent's pipeline: ``run``, and ``eval replay --video``
    (the whole agent over a recording). These check the installed dependencies first."""
    if args.command == "run":
        return True
    return args.command == "eval" and getattr(args, "benchmark", None) == "replay" and args.video is not None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(arguments)
    args = parser.parse_args(arguments)
    if starts_the_agent(args):
        from agent.dependencies import unsupported_dependency

        problem = unsupported_dependency()  # a release outside setup.py's ranges: one line, exit 2
        if problem is not None:
            print(problem, file=sys.stderr)
            return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    from agent.log_limits import install_log_limits
    from agent.redact import install_log_redaction

    install_log_redaction()  # no URI password reaches a log line, whoever logs it
    install_log_limits()  # a warning repeated thousands of times a second costs a few lines a minute
    try:
        code = int(args.func(args))
    except KeyboardInterrupt:
        code = 130
    if argv is None and getattr(args, "exit_at_once", False):
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process once the command closed and flushed everything, skipping native teardown.

    After ``watchword run`` has stopped its threads and closed its files, the interpreter's own
    finalisation (GStreamer, OpenCV and ONNX Runtime libraries) took another 2-3 s on a busy
    machine, past the 5 s promised for SIGTERM. Only for a real command line (``argv`` None), never
    for an in-process caller.
    """
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
