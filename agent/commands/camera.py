"""``watchword camera ...``: manage the cameras in the state database; a running agent applies each
change within a second (the other cameras keep running). Credentials are never printed.

The YAML's ``cameras:`` win for the ids they list: each start applies them again, so a change made
here to such a camera lasts until the next start (the command says so). Cameras added here are kept
across starts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.commands.query import add_database_arguments, resolve_database


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "camera", help="manage cameras (a running agent picks changes up)", description=__doc__
    )
    commands = parser.add_subparsers(dest="camera_command", metavar="ACTION", required=True)
    add = commands.add_parser("add", help="add a camera")
    add.add_argument("id", help="camera id: letters, digits, _ . -")
    add.add_argument("uri", help="rtsp://user:pass@host/stream, a file, http(s)://, v4l2://, test://")
    update = commands.add_parser("update", help="change a camera's settings")
    update.add_argument("id")
    update.add_argument("--uri", help="a new URI (replaces the stored credentials)")
    for sub in (add, update):
        sub.add_argument("--fps", type=float, dest="analysis_fps", help="frames analysed per second")
        sub.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="any camera field (repeat)"
        )
    update.add_argument("--enable", dest="enabled", action="store_const", const=True, help="start it")
    update.add_argument(
        "--disable", dest="enabled", action="store_const", const=False, help="stop it, keep it"
    )
    list_parser = commands.add_parser("list", help="list the cameras (credentials redacted)")
    list_parser.add_argument("--json", action="store_true", help="print JSON")
    rm = commands.add_parser("rm", help="remove a camera")
    rm.add_argument("id")
    for sub in (add, update, list_parser, rm):
        add_database_arguments(sub)
    parser.set_defaults(func=run)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            fields[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            fields[key.strip()] = value
    for key in ("analysis_fps", "enabled"):
        if getattr(args, key, None) is not None:
            fields[key] = getattr(args, key)
    return fields


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from agent.cameras import CameraError, CameraNotFoundError, CameraStore, redacted
    from agent.cameras.store import CONFIG
    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.sqlite_files import writable_beside

    path = resolve_database(args)
    # Listing needs no write: where the folder cannot be written (a read-only mount) it reads only.
    read_only = args.camera_command == "list" and not writable_beside(path)
    try:
        store = CameraStore(path, read_only=read_only)
    except (sqlite3.Error, OSError) as exc:
        print(f"watchword camera {args.camera_command}: cannot use {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        command = args.camera_command
        if command == "list":
            cameras = [{**redacted(c), "source": store.source_of(c.id)} for c in store.list_cameras()]
            if args.json:
                print(json.dumps(cameras, indent=2))
            for row in [] if args.json else cameras:
                state = "enabled" if row["enabled"] else "disabled"
                fps = row["analysis_fps"] or "native"
                print(f"{row['id']:<16} {state:<9} {row['source']:<8} fps={fps:<7} {row['uri']}")
            return EXIT_OK
        if command in {"update", "rm"} and store.source_of(args.id) == CONFIG:
            print(
                f"watchword camera {command}: note: the config lists camera {args.id}; this change lasts "
                "until the agent's next start, which applies the config's entry again (edit the YAML "
                "to keep it)",
                file=sys.stderr,
            )
        if command == "add":
            added = store.add({"id": args.id, "uri": args.uri, **_fields(args)})
            print(f"added camera {added.id}: {redacted(added)['uri']}")
        elif command == "update":
            changes = _fields(args)
            if args.uri:
                changes["uri"] = args.uri
            if not changes:
                print("watchword camera update: nothing to change", file=sys.stderr)
                return EXIT_USAGE
            print(f"updated camera {store.update(args.id, changes).id}")
        elif command == "rm":
            store.remove(args.id)
            print(f"removed camera {args.id}")
        return EXIT_OK
    except (CameraError, ValueError) as exc:
        print(f"watchword camera {args.camera_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CameraNotFoundError as exc:
        print(f"watchword camera {args.camera_command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except sqlite3.Error as exc:
        print(f"watchword camera {args.camera_command}: {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
