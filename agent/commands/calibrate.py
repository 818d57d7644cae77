"""``watchword calibrate CONFIG --video PATH --target-false-alarms-per-hour N``.

Runs the agent's detector, tracker and matcher over footage known to be normal and sets each enabled
query's threshold so that this footage would raise at most N alarms per hour.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="set query thresholds from footage known to be normal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config", type=Path, help="the agent config (its detector, tracker, matching, database)"
    )
    parser.add_argument("--video", type=Path, required=True, help="footage with no anomalies in it")
    parser.add_argument(
        "--target-false-alarms-per-hour",
        type=float,
        required=True,
        metavar="N",
        help="alarms per hour allowed",
    )
    parser.add_argument("--min-threshold", type=float, default=0.5, help="never set a threshold below this")
    parser.add_argument("--max-frames", type=int, help="analyse at most this many frames")
    parser.add_argument("--dry-run", action="store_true", help="print the thresholds, change nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError, load_config

    if args.target_false_alarms_per_hour < 0:
        print("watchword calibrate: --target-false-alarms-per-hour must not be negative", file=sys.stderr)
        return EXIT_USAGE
    if not 0 < args.min_threshold < 1:
        print("watchword calibrate: --min-threshold must be between 0 and 1", file=sys.stderr)
        return EXIT_USAGE
    if not args.video.is_file():
        print(f"watchword calibrate: --video: file not found: {args.video}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"watchword calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if config.matching.embedder is None:
        print("watchword calibrate: the config has no matching.embedder (an exported CLIP)", file=sys.stderr)
        return EXIT_USAGE

    from agent.config import CameraConfig
    from agent.embedding import ClipEncoder
    from agent.matching.calibration import ScoreCollector
    from agent.matching.matcher import Matcher
    from agent.pipeline import Pipeline
    from agent.queries import QueryRegistry, QueryUpdate

    template = config.enabled_cameras[0]
    camera = CameraConfig(
        id="calibration",
        uri=str(args.video),
        analysis_fps=template.analysis_fps,
        max_width=template.max_width,
        max_height=template.max_height,
    )
    registry = QueryRegistry(config.database)
    encoder = ClipEncoder.from_config(config.matching.embedder)
    try:
        matcher = Matcher(config.matching, encoder, registry)
        if not matcher.bank.matrix.queries:
            print("watchword calibrate: no enabled queries to calibrate", file=sys.stderr)
            return EXIT_USAGE
        collector = ScoreCollector(matcher)
        pipeline = Pipeline(
            config.model_copy(update={"cameras": [camera]}),
            max_frames=args.max_frames,
            analyzers=[matcher, collector],
        )
        summary = pipeline.run()
        counters = summary.cameras[0].counters
        if counters.frames == 0:
            print(f"watchword calibrate: no frame could be read from {args.video}", file=sys.stderr)
            return EXIT_FAILURE
        fps = camera.analysis_fps or pipeline.frame_rate_of("calibration")
        hours = counters.frames / fps / 3600.0
        outcomes = collector.calibrate(hours, args.target_false_alarms_per_hour, args.min_threshold)
        pairs = len(collector.maxima)
        print(f"{counters.frames} frames ({hours * 60:.1f} min of footage), {pairs} track/query pairs")
        print(
            f"{'id':>4} {'tracks':>6} {'p50':>6} {'p95':>6} {'max':>6} {'threshold':>9} {'alarms':>6}  query"
        )
        for outcome in outcomes:
            print(
                f"{outcome.query_id:4d} {len(outcome.track_maxima):6d} {outcome.percentile(50):6.3f} "
                f"{outcome.percentile(95):6.3f} {outcome.percentile(100):6.3f} {outcome.threshold:9.3f} "
                f"{outcome.expected_alarms:6d}  {outcome.text}"
            )
            if not args.dry_run:
                registry.update(
                    outcome.query_id, QueryUpdate(threshold=outcome.threshold, threshold_source="calibrated")
                )
        if args.dry_run:
            print("dry run: no threshold changed")
    finally:
        encoder.close()
        registry.close()
    return EXIT_OK
