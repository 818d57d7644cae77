"""``watchword eval replay``: measure alert quality on recorded footage.

    watchword eval replay --video DAY.mp4 [--config SITE.yaml] [--db Q.db] [--camera ID]
                          [--frames-out FRAMES.jsonl] [--labels LABELS.jsonl] [--report OUT.json]
    watchword eval replay --frames FRAMES.jsonl [--config SITE.yaml] [--db Q.db]
                          [--set matching.window_s=1] [--labels LABELS.jsonl] [--report OUT.json]

``--video`` runs the whole agent (detection to alerts, sinks off, state in a scratch folder) over
that recording, once, as one camera: ``--camera ID``'s settings (analysis_fps, size; the site's
cameras as ``watchword run`` has them: the config's, then those added at run time), else the first
enabled camera's; never the cameras stored in the state database. ``--frames`` re-runs only the
decision layer (pooling, hysteresis, selection, cooldown, episodes) over the frame records
``watchword run --jsonl`` (or ``--frames-out``) wrote: no model, seconds instead of hours, so
thresholds and settings can be tuned on a whole day. With ``rerank.enabled`` the LMM re-ranks there
too, on frames read back from the recordings the config's cameras name, under its call budget
counted in media time. Queries come from the registry (``--db``, else ``--config``'s ``database``)
with the config's ``queries:`` registered as at a start; a config that never ran has no registry,
and its ``queries:`` are used alone. ``--set KEY=VALUE`` overrides a config key (dotted path, YAML
value) and ``--threshold ID=VALUE`` a query's threshold, for what-if runs (on a scratch copy: the
registry is not changed).

``--labels``: one event a line, ``{"camera": "c1", "query_id": 1, "start_s": 12.0, "end_s": 30.5}``
in media seconds; an alert matches an event of its camera and query whose interval widened by
``--tolerance-s`` contains its open time. ``--report`` writes ``{"queries": {"<id>": {"events",
"detected", "missed", "false_alerts", "false_alerts_per_hour", "duplicate_alerts",
"time_to_alert_s": {"median", "p95"}}}, "overall": {...}, "footage_hours", "alerts": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from agent.sources.config import CameraConfig

DEFAULT_DATABASE = Path("data/watchword.db")


def register_replay(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "replay",
        help="alert quality on recorded footage (whole agent, or the decision layer from frame records)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, metavar="FILE", help="run the whole agent over this video")
    source.add_argument(
        "--frames", type=Path, metavar="FILE.jsonl", help="re-run the decision layer over frame records"
    )
    parser.add_argument("--config", type=Path, metavar="CONFIG", help="agent config (settings, database)")
    parser.add_argument("--db", type=Path, metavar="FILE", help="query registry (default: the config's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. matching.top_k=1 (repeatable)",
    )
    parser.add_argument(
        "--threshold",
        dest="thresholds",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="replay with this threshold for query ID (repeatable; the registry is not changed)",
    )
    parser.add_argument("--camera", metavar="ID", help="--video: the camera id (default: the config's first)")
    parser.add_argument(
        "--frames-out", type=Path, metavar="FILE.jsonl", help="--video: keep the frame records"
    )
    parser.add_argument("--labels", type=Path, metavar="FILE.jsonl", help="labelled events (media seconds)")
    parser.add_argument("--tolerance-s", type=float, default=2.0, metavar="S", help="label widening (2)")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write the report here")
    parser.set_defaults(func=run_replay)


class ReplayUsageError(ValueError):
    """Bad arguments or inputs; the message says which."""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``data`` with each ``a.b.c=value`` set (the value read as YAML: numbers, booleans, lists)."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ReplayUsageError(f"--set {override!r}: expected KEY=VALUE")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ReplayUsageError(f"--set {override!r}: {part} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
    return data


def _site_cameras(data: dict[str, Any], database: Path, source: str) -> list[CameraConfig]:
    """The site's cameras by the rule of README "Your cameras": the config's (``data``) and those
    added at run time in ``database``; without a config, the cameras stored there."""
    from agent.cameras import read_stored_cameras, site_cameras
    from agent.config import parse_config

    if not data.get("cameras"):
        return [camera for camera, _ in read_stored_cameras(database) or []]
    text = yaml.safe_dump({**data, "database": str(database)})
    return site_cameras(parse_config(text, source, check_files=False))


def _replay_camera(args: argparse.Namespace, cameras: list[CameraConfig]) -> dict[str, Any]:
    """The one camera of a ``--video`` replay: ``--camera``'s settings (else the first enabled
    camera's) with the video as its URI, played once."""
    if args.camera is not None and cameras:
        chosen = next((c for c in cameras if c.id == args.camera), None)
        if chosen is None:
            known = ", ".join(c.id for c in cameras)
            raise ReplayUsageError(f"--camera {args.camera!r}: the site has no such camera ({known})")
    else:
        enabled = [c for c in cameras if c.enabled] or cameras
        chosen = enabled[0] if enabled else None
    base = chosen.model_dump(mode="json") if chosen is not None else {}
    base.update(id=args.camera or base.get("id", "replay"), uri=str(args.video.resolve()), loop=False)
    base.pop("enabled", None)
    return base


def replay_config_data(args: argparse.Namespace, work_dir: Path) -> tuple[dict[str, Any], Path]:
    """The config to replay with (as YAML data) and the scratch query registry it points at: a copy
    of the site's, or, for a config that never ran, a new one (the config's ``queries:`` are
    registered in it as at a start)."""
    data: dict[str, Any] = {}
    if args.config is not None:
        try:
            loaded = yaml.safe_load(args.config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ReplayUsageError(f"--config {args.config}: {exc}") from exc
        data = loaded if isinstance(loaded, dict) else {}
    data = apply_overrides(data, list(args.overrides))
    state_dir = Path(str(data.get("state_dir", "data")))
    database = Path(args.db or Path(str(data.get("database", state_dir / "watchword.db"))))
    copy = work_dir / "watchword.db"
    if database.is_file():
        # A consistent snapshot, so that a running agent's registry (and its lock) is left alone.
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        # The replay's cameras are given below; the copy's camera table must not add the site's.
        with sqlite3.connect(copy) as scratch:
            scratch.executescript("DROP TABLE IF EXISTS cameras; DROP TABLE IF EXISTS camera_meta;")
    elif not data.get("queries"):
        raise ReplayUsageError(
            f"no query registry at {database}, and the config lists no queries: (give --db or --config)"
        )
    cameras = _site_cameras(data, database, str(args.config or "<replay>"))
    data.update(state_dir=str(work_dir), database=str(copy))
    alerts = dict(data.get("alerts") or {})
    alerts.update(database=str(work_dir / "alerts.db"), evidence_dir=str(work_dir / "evidence"), sinks=[])
    data["alerts"] = alerts
    data["api"] = {**(data.get("api") or {}), "enabled": False}
    data["output"] = {**(data.get("output") or {}), "jsonl": None, "video_dir": None}
    if args.video is not None:
        data["cameras"] = [_replay_camera(args, cameras)]
    elif cameras:  # a frames replay opens no camera; with the LMM it reads frames from their files
        data["cameras"] = [camera.model_dump(mode="json") for camera in cameras]
    else:
        data["cameras"] = [{"id": "replay", "uri": str(args.frames)}]
    return data, copy


def run_replay(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError, parse_config
    from agent.evaluation.alert_quality import LabelError, alert_report, format_table, read_labels
    from agent.evaluation.replay_frames import FrameRecordError, replay_frames
    from agent.queries import QueryError, QueryRegistry, QueryUpdate
    from agent.queries.startup import register_startup_queries

    source = args.video if args.video is not None else args.frames
    if not source.is_file():
        print(f"watchword eval replay: no such file {source}", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="watchword-replay-") as scratch:
        work_dir = Path(scratch)
        try:
            data, database = replay_config_data(args, work_dir)
            config = parse_config(
                yaml.safe_dump(data), str(args.config or "<replay>"), check_files=args.video is not None
            )
            labels = read_labels(args.labels) if args.labels is not None else []
        except (ReplayUsageError, ConfigError, LabelError, OSError, sqlite3.Error) as exc:
            print(f"watchword eval replay: {exc}", file=sys.stderr)
            return EXIT_USAGE
        registry = QueryRegistry(database)
        try:
            register_startup_queries(registry, config.queries)  # as the agent does at every start
            for override in args.thresholds:
                query_id, sep, value = override.partition("=")
                if not sep:
                    raise ValueError(f"--threshold {override!r}: expected ID=VALUE")
                registry.update(int(query_id), QueryUpdate(threshold=float(value)))
        except (ValueError, QueryError) as exc:
            print(f"watchword eval replay: {exc}", file=sys.stderr)
            return EXIT_USAGE
        queries = registry.list_queries(enabled_only=True)
        registry.close()
        if not queries:
            print("watchword eval replay: the registry has no enabled query", file=sys.stderr)
            return EXIT_USAGE
        try:
            if args.video is not None:
                from agent.evaluation.replay_video import replay_video

                frames_out = args.frames_out or work_dir / "frames.jsonl"
                result = replay_video(config, frames_out)
            elif config.rerank.enabled and config.rerank.backend is not None:
                from agent.evaluation.replay_rerank import OpenedVerifier

                opened = OpenedVerifier(config)
                try:
                    result = replay_frames(
                        args.frames, config, queries, opened.stage, opened.run_clock, opened.pixels
                    )
                finally:
                    opened.close()
            else:
                result = replay_frames(args.frames, config, queries)
        except FrameRecordError as exc:
            print(f"watchword eval replay: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:  # the agent failing to start (a model, a camera) ends the replay
            print(f"watchword eval replay: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    report = alert_report(
        result.alerts, labels, result.footage.seconds, args.tolerance_s, [q.id for q in queries]
    )
    print(format_table(report, {q.id: q.text for q in queries}))
    print(f"frames: {result.frames}, windows: {result.windows}, candidates: {result.candidates}")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK
