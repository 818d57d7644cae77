"""``watchword search "a man in a red jacket" --since 1h``: recent tracks ranked by the live matcher's
calibrated score for the text, from the search index the running agent keeps (it may be running)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="search recent tracks by text", description=__doc__)
    parser.add_argument("text", help="what to look for")
    parser.add_argument("--config", type=Path, required=True, help="the agent config (CLIP model, state)")
    parser.add_argument(
        "--since", default="1h", help="how far back: 30m, 1h, 2d, or UNIX seconds (default 1h)"
    )
    parser.add_argument("--camera", help="only this camera")
    parser.add_argument("--limit", type=int, default=10, help="most tracks shown (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError, load_config
    from agent.console.routes_data import parse_since

    try:
        config = load_config(args.config)
        since = parse_since(args.since)
    except (ConfigError, ValueError) as exc:
        print(f"watchword search: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if config.matching.embedder is None:
        print("watchword search: the config has no matching.embedder (an exported CLIP)", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.limit <= 500:
        print("watchword search: --limit must be between 1 and 500", file=sys.stderr)
        return EXIT_USAGE
    directory = config.search.index_directory(config.database)
    if not (directory / "tracks.db").is_file():
        print(
            f"watchword search: no search index at {directory} (has the agent run with a CLIP model?)",
            file=sys.stderr,
        )
        return EXIT_USAGE

    import sqlite3

    from agent.embedding import ClipEncoder
    from agent.search.index import TrackIndex
    from agent.search.scorer import TextScorer

    try:  # read-only: the running agent owns the index (and replaces it when it is corrupt)
        index = TrackIndex(directory, config.search, read_only=True)
    except sqlite3.Error as exc:
        print(f"watchword search: cannot read the search index {directory}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    encoder = ClipEncoder.from_config(config.matching.embedder)
    try:
        scorer = TextScorer(encoder, config.matching)
        hits = index.search(
            scorer.query_vector(args.text),
            scorer.scorer(args.text),
            camera=args.camera,
            since=since,
            limit=args.limit,
        )
    except sqlite3.Error as exc:
        print(f"watchword search: cannot read the search index {directory}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        index.close()
        encoder.close()
    if args.camera is not None and not hits:
        from agent.cameras import site_cameras

        known = [camera.id for camera in site_cameras(config)]
        if args.camera not in known:  # a camera removed since still has its tracks found above
            print(
                f"watchword search: unknown camera {args.camera!r}; the site's cameras: {', '.join(known)}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    if args.json:
        print(json.dumps([hit.as_dict() for hit in hits], indent=2))
        return EXIT_OK
    if not hits:
        print("no tracks in that time" + (f" on camera {args.camera}" if args.camera else ""))
    for hit in hits:
        seen = datetime.fromtimestamp(hit.last_seen).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{hit.score:.3f}  {hit.camera:<12} track {hit.track_id:<6} last seen {seen}  key {hit.key}")
    return EXIT_OK
