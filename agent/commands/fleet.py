"""``watchword fleet ...``: the hub side of a fleet of sites on NATS JetStream.

``fleet query add|list|edit|enable|disable|rm --config FLEET.yaml`` manages the standing queries
every targeted site applies within about a second (they live in the hub's KV bucket
``watchword-queries``); ``fleet provision`` creates the hub's streams for the sites FLEET.yaml
lists (every other fleet command does it too). See the README's "Fleet" section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fleet", help="fleet queries and the hub (NATS JetStream)", description=__doc__
    )
    commands = parser.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    provision = commands.add_parser("provision", help="create the hub's streams and buckets for the sites")
    serve = commands.add_parser("serve", help="the fleet console (every site's alerts, evidence, queries)")
    serve.add_argument("fleet_config", type=Path, metavar="FLEET.yaml")
    query = commands.add_parser("query", help="fleet standing queries")
    actions = query.add_subparsers(dest="query_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a fleet query")
    add.add_argument("text")
    listing = actions.add_parser("list", help="list the fleet queries")
    listing.add_argument("--json", action="store_true", help="print JSON")
    edit = actions.add_parser("edit", help="change a fleet query")
    edit.add_argument("key")
    edit.add_argument("--text")
    edit.add_argument("--all-sites", action="store_true", help="target every site again")
    edit.add_argument("--all-cameras", action="store_true", help="every camera again")
    enable = actions.add_parser("enable", help="turn a fleet query on")
    disable = actions.add_parser("disable", help="turn a fleet query off (kept, not evaluated)")
    remove = actions.add_parser("rm", help="remove a fleet query from every site")
    for sub in (enable, disable, remove):
        sub.add_argument("key")
    for sub in (add, edit):
        sub.add_argument("--sites", type=_csv, help="comma-separated site ids (default: every site)")
        sub.add_argument("--cameras", type=_csv, help="comma-separated camera ids (default: every camera)")
        sub.add_argument("--severity", choices=["info", "warning", "critical"])
        sub.add_argument("--threshold", type=float, help="fixed threshold (default: automatic)")
        sub.add_argument("--cooldown", type=float, help="seconds between alerts of one camera")
    for sub in (provision, add, listing, edit, enable, disable, remove):
        sub.add_argument("--config", type=Path, required=True, help="FLEET.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.config_yaml import ConfigError
    from agent.fleet.hub import FleetHub, FleetHubError
    from agent.fleet.hub_config import load_fleet_config
    from agent.fleet.link import LinkError

    try:
        config = load_fleet_config(args.fleet_config if args.fleet_command == "serve" else args.config)
    except ConfigError as exc:
        print(f"watchword fleet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.fleet_command == "serve":
        return _serve(config)
    try:
        with FleetHub(config.hub) as hub:
            hub.provision(config.site_ids)
            if args.fleet_command == "provision":
                print(f"hub streams ready for {len(config.site_ids)} sites: {', '.join(config.site_ids)}")
                return EXIT_OK
            return _query(args, hub, config.site_ids)
    except (FleetHubError, LinkError) as exc:
        print(f"watchword fleet: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (ValidationError, ValueError) as exc:
        print(f"watchword fleet: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _serve(config: Any) -> int:
    import signal
    import threading

    from agent.api.config import is_loopback
    from agent.api.server import ApiServer
    from agent.commands import EXIT_FAILURE, EXIT_OK
    from agent.fleet.console_app import create_fleet_app
    from agent.fleet.console_state import FleetConsoleState
    from agent.fleet.hub import FleetHubError

    token = config.console.resolved_token()
    if token is None and not is_loopback(config.console.host):
        print(
            "watchword fleet: console.token (or $WATCHWORD_API_TOKEN) is needed beyond loopback",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    state = FleetConsoleState(config)
    try:
        state.start()
    except FleetHubError as exc:
        print(f"watchword fleet: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    app = create_fleet_app(state, token, loopback_only=is_loopback(config.console.host))
    server = ApiServer(app, config.console.host, config.console.port, config.console)
    try:
        server.start()
    except RuntimeError as exc:
        state.close()
        print(f"watchword fleet: console: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"fleet console on {server.url} for {len(config.site_ids)} sites; Ctrl-C stops", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(timeout_s=2.0)
    state.close()
    return EXIT_OK


def _query(args: argparse.Namespace, hub: Any, sites: list[str]) -> int:
    from agent.fleet.queries import FleetQuery

    command = args.query_command
    if getattr(args, "sites", None):
        unknown = [s for s in args.sites if s not in sites]
        if unknown:
            raise ValueError(f"not a site of this fleet: {', '.join(unknown)}")
    if command == "add":
        fields = {k: v for k, v in _fields(args).items() if v is not None}
        key = hub.put_query(FleetQuery(text=args.text, **fields))
        print(f"added fleet query {key}: {args.text}")
    elif command == "list":
        queries = hub.queries()
        if args.json:
            print(json.dumps({k: q.model_dump(mode="json") for k, q in sorted(queries.items())}, indent=2))
        elif not queries:
            print("no fleet queries")
        for key, query in [] if args.json else sorted(queries.items()):
            state = "on " if query.enabled else "off"
            where = ",".join(query.sites) if query.sites else "all sites"
            cameras = ",".join(query.cameras) if query.cameras else "all"
            print(f"{key:40s} {state} {query.severity:8s} sites={where} cameras={cameras}  {query.text}")
    else:
        current = hub.query(args.key)
        if command == "rm":
            hub.delete_query(args.key)
            print(f"removed fleet query {args.key}")
            return 0
        update: dict[str, Any] = {}
        if command in ("enable", "disable"):
            update["enabled"] = command == "enable"
        else:
            update = {k: v for k, v in _fields(args).items() if v is not None}
            if args.text is not None:
                update["text"] = args.text
            if args.all_sites:
                update["sites"] = None
            if args.all_cameras:
                update["cameras"] = None
        changed = FleetQuery.model_validate({**current.model_dump(), **update})
        hub.put_query(changed, key=args.key)
        print(
            f"{command}d fleet query {args.key}" if command != "edit" else f"changed fleet query {args.key}"
        )
    return 0


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "sites": args.sites,
        "cameras": args.cameras,
        "severity": args.severity,
        "threshold": args.threshold,
        "cooldown_s": args.cooldown,
    }
