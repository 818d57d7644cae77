"""``watchword alerts ...``: the dead letters of the alert outbox, listed and sent again by hand.

Works beside a running agent (it opens the same SQLite outbox; the agent's delivery threads pick
retried events up within a second).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts", help="list and retry dead-lettered alert events", description=__doc__
    )
    commands = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    dead = commands.add_parser("dead-letters", help="list events a sink refused for good")
    dead.add_argument("--sink", help="only this sink")
    dead.add_argument("--limit", type=int, default=100)
    dead.add_argument("--json", action="store_true", help="print JSON")
    retry = commands.add_parser("retry", help="send dead letters again (all, one sink's or one event)")
    retry.add_argument("--sink", help="only this sink")
    retry.add_argument("--event-row", type=int, help="only this event row (see dead-letters)")
    for sub in (dead, retry):
        group = sub.add_mutually_exclusive_group()
        group.add_argument(
            "--db", type=Path, help="alerts database (default: alerts.db in $WATCHWORD_STATE_DIR or data/)"
        )
        group.add_argument("--config", type=Path, help="take alerts.database from this agent config")
    parser.set_defaults(func=run)


def _database(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return Path(args.db)
    if args.config is not None:
        from agent.config import load_config

        return load_config(args.config).alerts.database
    from agent.config import default_state_dir

    return default_state_dir() / "alerts.db"


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from agent.alerts.outbox import Outbox, OutboxError
    from agent.commands import EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError
    from agent.sqlite_files import writable_beside

    try:
        path = _database(args)
    except ConfigError as exc:
        print(f"watchword alerts: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if not path.is_file():
            print(f"watchword alerts: no alerts database at {path}", file=sys.stderr)
            return EXIT_USAGE
        # Listing needs no write: where the folder cannot be written (a read-only mount) it reads only.
        read_only = args.alerts_command == "dead-letters" and not writable_beside(path)
        outbox = Outbox(path, read_only=read_only)
    except (OutboxError, sqlite3.Error, OSError) as exc:
        print(f"watchword alerts: {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.alerts_command == "dead-letters":
            if args.limit < 1:
                print("watchword alerts: --limit must be at least 1", file=sys.stderr)
                return EXIT_USAGE
            letters = outbox.dead_letters(sink=args.sink, limit=args.limit)
            if args.json:
                print(json.dumps(letters, indent=2))
            elif not letters:
                print("no dead letters")
            for item in [] if args.json else letters:
                print(
                    f"{item['event_row']:6d} {item['sink']:12s} {item['event_id']} {item['event']:8s} "
                    f"attempts={item['attempts']}  {item['last_error']}"
                )
        else:
            count = outbox.retry_dead_letters(sink=args.sink, event_row=args.event_row)
            print(f"queued {count} dead letters for delivery again")
    except sqlite3.Error as exc:
        print(f"watchword alerts: {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        outbox.close()
    return EXIT_OK
