"""``watchword query ...``: manage standing queries in the database the running agent uses."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_DATABASE = Path("data/watchword.db")


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--db",
        type=Path,
        help="database file (default: $WATCHWORD_DB, else watchword.db in $WATCHWORD_STATE_DIR or data/)",
    )
    group.add_argument("--config", type=Path, help="take the database path from this agent config")


def resolve_database(args: argparse.Namespace) -> Path:
    """The database named by --db, by --config's ``database`` key, by $WATCHWORD_DB, or the default."""
    if getattr(args, "db", None) is not None:
        return Path(args.db)
    if getattr(args, "config", None) is not None:
        from agent.config import load_config

        return load_config(args.config).database
    env = os.environ.get("WATCHWORD_DB")
    if env:
        return Path(env)
    from agent.config import default_state_dir

    return default_state_dir() / "watchword.db"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("query", help="manage standing queries", description=__doc__)
    commands = parser.add_subparsers(dest="query_command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="register a standing query")
    add.add_argument("text", help='what to watch for, e.g. "a person falling down"')
    add.add_argument(
        "--camera", action="append", dest="cameras", metavar="ID", help="limit to a camera (repeat)"
    )
    add.add_argument(
        "--zone",
        action="append",
        dest="zones",
        metavar="NAME",
        help="limit to a zone (cameras[].zones; repeat): sampled only while a person's feet are in it",
    )
    add.add_argument("--threshold", type=float, help="alert threshold in (0, 1); default automatic")
    add.add_argument("--severity", default="warning", choices=["info", "warning", "critical"])
    add.add_argument(
        "--cooldown",
        type=float,
        default=None,
        metavar="S",
        help="seconds before the same person alerts again on this query and camera "
        "(default: the agent's alerts.cooldown_s)",
    )
    add.add_argument("--normal", action="append", metavar="TEXT", help="a reference 'normal' prompt (repeat)")
    add.add_argument("--disabled", action="store_true", help="register it disabled")

    list_parser = commands.add_parser("list", help="list the queries")
    list_parser.add_argument("--json", action="store_true", help="print JSON")
    show = commands.add_parser(
        "show", help="show one query as JSON, with the behaviour cue it maps to (offline sentence embedder)"
    )
    show.add_argument("id", type=int)
    for name, text in (("enable", "start evaluating a query"), ("disable", "stop evaluating a query")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("id", type=int)
    rm = commands.add_parser("rm", help="remove a query")
    rm.add_argument("id", type=int)
    for sub in (add, list_parser, show, rm, *(commands.choices[n] for n in ("enable", "disable"))):
        add_database_arguments(sub)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError
    from agent.queries import QueryError, QueryNotFoundError, QueryRegistry
    from agent.sqlite_files import writable_beside

    try:
        path = resolve_database(args)
        # Listing and showing need no write: where the folder cannot be written (a read-only mount)
        # they read only.
        read_only = args.query_command in {"list", "show"} and not writable_beside(path)
        registry = QueryRegistry(path, read_only=read_only)
    except (ConfigError, QueryError) as exc:
        print(f"watchword query: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        command = args.query_command
        if command == "add":
            _check_cameras(args)
            query = registry.add(
                args.text,
                cameras=args.cameras,
                threshold=args.threshold,
                severity=args.severity,
                cooldown_s=args.cooldown,
                normal_prompts=args.normal,
                enabled=not args.disabled,
                zones=args.zones,
            )
            print(f"added query {query.id}: {query.text}")
            _warn_unknown_zones(args, query.zones)
            _warn_unevaluated(args, query.id, query.text)
        elif command == "list":
            queries = registry.list_queries()
            if args.json:
                print(json.dumps([q.to_dict() for q in queries], indent=2))
            elif not queries:
                print("no queries registered")
            for query in [] if args.json else queries:
                cameras = ",".join(query.cameras) if query.cameras else "all"
                threshold = "auto" if query.threshold is None else f"{query.threshold:.3f}"
                if query.threshold is not None:  # who set it: by hand, or `watchword calibrate`
                    threshold += f" ({query.threshold_source or 'manual'})"
                state = "on " if query.enabled else "off"
                head = f"{query.id:4d} {state} {query.severity:8s} thr={threshold:18s}"
                fleet = "" if query.fleet_key is None else f"  [fleet {query.fleet_key}, read-only]"
                zones = f" zones={','.join(query.zones)}" if query.zones else ""
                print(f"{head} cameras={cameras}{zones}  {query.text}{fleet}")
        elif command == "show":
            from agent.pose.querycues import offline_mapping

            query = registry.get(args.id)
            pose = None
            if getattr(args, "config", None) is not None:
                from agent.config import load_config

                pose = getattr(load_config(args.config), "pose", None)
            print(json.dumps({**query.to_dict(), "cue": offline_mapping(query.text, pose)}, indent=2))
        elif command in {"enable", "disable"}:
            query = registry.set_enabled(args.id, command == "enable")
            print(f"query {query.id} {'enabled' if query.enabled else 'disabled'}")
        elif command == "rm":
            registry.remove(args.id)
            print(f"removed query {args.id}")
    except QueryNotFoundError as exc:
        print(f"watchword query: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except QueryError as exc:
        print(f"watchword query: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        registry.close()
    return EXIT_OK


def _warn_unevaluated(args: argparse.Namespace, query_id: int, text: str) -> None:
    """With ``--config`` naming pose cues and no CLIP model, a query that maps to no cue is never
    evaluated: say so at once, with why (``query show`` gives the whole mapping)."""
    if getattr(args, "config", None) is None:
        return
    from agent.config import load_config

    config = load_config(args.config)
    if config.matching.embedder is not None or config.pose is None or not config.pose.enabled:
        return
    from agent.pose.querycues import offline_mapping

    mapping = offline_mapping(text, config.pose)
    if mapping["cue"] is None:
        print(
            f"watchword query: warning: query {query_id} maps to no behaviour cue ({mapping['reason']}); "
            "this config has no CLIP model (matching.embedder), so the agent will not evaluate it",
            file=sys.stderr,
        )


def _warn_unknown_zones(args: argparse.Namespace, zones: list[str] | None) -> None:
    """Warn (the query is kept) for each zone that no camera of the site has: with ``--config`` its
    cameras (the YAML's and those added at run time), else the cameras stored in the database."""
    if not zones:
        return
    from agent.cameras import read_stored_cameras, site_cameras
    from agent.zone_names import unknown_zone_warnings

    if getattr(args, "config", None) is not None:
        from agent.config import load_config

        cameras = site_cameras(load_config(args.config))
    else:
        cameras = [camera for camera, _ in read_stored_cameras(resolve_database(args)) or []]
    known = {zone.name for camera in cameras for zone in camera.zones}
    for warning in unknown_zone_warnings(zones, known):
        print(f"watchword query: warning: {warning}", file=sys.stderr)


def _check_cameras(args: argparse.Namespace) -> None:
    """Refuse camera ids the site does not have: with ``--config`` its cameras (the YAML's and those
    added at run time), else the cameras stored in the database; warn when neither knows any."""
    from agent.cameras import read_stored_cameras, site_cameras
    from agent.queries import QueryError
    from agent.queries.bounds import unknown_cameras

    if not args.cameras:
        return
    if getattr(args, "config", None) is not None:
        from agent.config import load_config

        known = [camera.id for camera in site_cameras(load_config(args.config))]
        where = f"the site ({args.config} and cameras added at run time) has"
    else:
        database = resolve_database(args)
        known = [camera.id for camera, _ in read_stored_cameras(database) or []]
        where = f"{database} holds"
        if not known:
            print(
                f"watchword query: warning: camera ids not checked: {database} holds no camera yet "
                f"(give --config to check them against the config's cameras): {', '.join(args.cameras)}",
                file=sys.stderr,
            )
            return
    unknown = unknown_cameras(args.cameras, known)
    if unknown:
        raise QueryError(f"unknown camera ids {', '.join(unknown)}; {where} {', '.join(known)}")
