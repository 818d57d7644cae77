"""``watchword calibrate CONFIG --video PATH --target-false-alarms-per-hour N``.

Runs the agent's detector, tracker and matcher over footage known to be normal and sets each enabled
query's threshold so that this footage would raise at most N alarms per hour. The queries are scored
as the agent would score them: by CLIP (``matching.embedder``), with pose cues fused in when ``pose:``
is on, or, with pose cues and no CLIP (the demo), from the cue each query maps to; a query that maps
to no cue there is reported, not calibrated. The config's ``queries:`` are registered first, as at a
start. The footage is analysed with the settings of ``--camera`` (the site's cameras: the config's,
then those added at run time), else of the first enabled camera.

A threshold set by hand (``query add --threshold``, the API) is left alone, and reported, unless
``--overwrite-manual``. A target of N per hour needs at least 1/N hours of footage (60 min for 1 per
hour); on less the command warns and says how much. A progress bar shows the run (``--no-progress``
turns it off).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.matching.matcher import Matcher
    from agent.pose.cue_matcher import CueMatcher
    from agent.queries import QueryRegistry
    from agent.types import FrameResult


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
    parser.add_argument("--video", type=Path, help="footage with no anomalies in it")
    parser.add_argument(
        "--camera", metavar="ID", help="analyse it with this camera's settings (default: the first enabled)"
    )
    parser.add_argument(
        "--target-false-alarms-per-hour",
        type=float,
        metavar="N",
        help="alarms per hour allowed",
    )
    parser.add_argument("--min-threshold", type=float, default=0.5, help="never set a threshold below this")
    parser.add_argument("--max-frames", type=int, help="analyse at most this many frames")
    parser.add_argument("--dry-run", action="store_true", help="print the thresholds, change nothing")
    parser.add_argument(
        "--overwrite-manual",
        action="store_true",
        help="also replace thresholds set by hand (by default they are kept and reported)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--from-feedback",
        action="store_true",
        help="instead of footage: fit thresholds to the alerts operators marked true or false alarms",
    )
    parser.set_defaults(func=run)


class _Progress:
    """An analyser that advances a progress bar by the frames analysed (rich, on stderr)."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance

    def process(self, results: list[FrameResult]) -> None:
        self.advance(len(results))


def _expected_frames(video: Path, analysis_fps: float | None, max_frames: int | None) -> int | None:
    """Frames the pipeline will analyse, from the file's frame count and rate; None when unknown."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        count, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    expected: int | None = None
    if count > 0 and fps > 0:
        expected = round(count * min(1.0, (analysis_fps or fps) / fps))
    if max_frames is not None:
        expected = max_frames if expected is None else min(expected, max_frames)
    return expected


@contextmanager
def _progress_bar(total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("calibrating"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"))
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task("calibrating", total=total)
        yield lambda n: progress.advance(task, n)


def run(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError, load_config

    if args.from_feedback:  # console: thresholds from the operators' marks (agent/console)
        from agent.commands.calibrate_feedback import run_from_feedback

        return run_from_feedback(args)
    if args.video is None or args.target_false_alarms_per_hour is None:
        print(
            "watchword calibrate: give --video and --target-false-alarms-per-hour, or --from-feedback",
            file=sys.stderr,
        )
        return EXIT_USAGE
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
    pose_on = config.pose is not None and config.pose.enabled
    if config.matching.embedder is None and not pose_on:
        print(
            "watchword calibrate: the config scores no query: it has neither matching.embedder (an "
            "exported CLIP) nor pose: (behaviour cues)",
            file=sys.stderr,
        )
        return EXIT_USAGE

    from agent.cameras import site_cameras
    from agent.decision.core import DecisionCore
    from agent.matching.calibration import ScoreCollector, footage_warning
    from agent.pipeline import Pipeline
    from agent.queries import QueryError, QueryRegistry, QueryUpdate
    from agent.queries.startup import register_startup_queries
    from agent.sources.config import CameraConfig

    cameras = site_cameras(config)
    if args.camera is not None:
        chosen = [c for c in cameras if c.id == args.camera]
        if not chosen:
            known = ", ".join(c.id for c in cameras)
            print(f"watchword calibrate: --camera {args.camera!r}: no such camera ({known})", file=sys.stderr)
            return EXIT_USAGE
        template = chosen[0]
    else:
        template = ([c for c in cameras if c.enabled] or cameras)[0]
    camera = CameraConfig(
        id="calibration",
        uri=str(args.video),
        analysis_fps=template.analysis_fps,
        max_width=template.max_width,
        max_height=template.max_height,
    )
    target = args.target_false_alarms_per_hour
    expected = _expected_frames(args.video, camera.analysis_fps, args.max_frames)
    if expected is not None and camera.analysis_fps:
        early = footage_warning(expected / camera.analysis_fps / 3600.0, target)
        if early is not None:
            print(f"watchword calibrate: warning: {early}", file=sys.stderr)
    registry = QueryRegistry(config.database)
    try:
        register_startup_queries(registry, config.queries)  # as the agent does at every start
    except QueryError as exc:
        registry.close()
        print(f"watchword calibrate: queries: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        scoring = _Scoring(config, registry)
    except Exception as exc:  # a model that cannot be converted or loaded: as at a start
        registry.close()
        print(f"watchword calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        matcher = scoring.matcher
        for line in scoring.unmapped():
            print(f"watchword calibrate: not calibrated: {line}", file=sys.stderr)
        if not matcher.queries:
            print("watchword calibrate: no enabled queries to calibrate", file=sys.stderr)
            return EXIT_USAGE
        # the decision core pools the samples as the agent does; its alerts are not wanted here
        core = DecisionCore(config.matching, config.alerts, matcher.query, lambda events: None)
        collector = ScoreCollector(core.book)
        with _progress_bar(expected, not args.no_progress) as advance:
            pipeline = Pipeline(
                config.model_copy(update={"cameras": [camera]}),
                max_frames=args.max_frames,
                analyzers=[*scoring.before, matcher, core, collector, _Progress(advance)],
            )
            summary = pipeline.run()
        counters = summary.cameras[0].counters
        if counters.frames == 0:
            print(f"watchword calibrate: no frame could be read from {args.video}", file=sys.stderr)
            return EXIT_FAILURE
        fps = camera.analysis_fps or pipeline.frame_rate_of("calibration")
        hours = counters.frames / fps / 3600.0
        outcomes = collector.calibrate(hours, target, args.min_threshold)
        pairs = len(collector.maxima)
        print(f"{counters.frames} frames ({hours * 60:.1f} min of footage), {pairs} track/query pairs")
        short = footage_warning(hours, target)
        if short is not None:
            print(f"warning: {short}")
        print(
            f"{'id':>4} {'tracks':>6} {'p50':>6} {'p95':>6} {'max':>6} {'threshold':>9} {'alarms':>6}  "
            "query  [action]"
        )
        kept = 0
        for outcome in outcomes:
            current = registry.get(outcome.query_id)
            manual = current.threshold is not None and current.threshold_source == "manual"
            if manual and not args.overwrite_manual:
                action, kept = f"kept: set by hand ({current.threshold:.3f})", kept + 1
            elif args.dry_run:
                action = "dry run"
            else:
                registry.update(
                    outcome.query_id, QueryUpdate(threshold=outcome.threshold, threshold_source="calibrated")
                )
                action = "set" + (f" (was {current.threshold:.3f}, by hand)" if manual else "")
            print(
                f"{outcome.query_id:4d} {len(outcome.track_maxima):6d} {outcome.percentile(50):6.3f} "
                f"{outcome.percentile(95):6.3f} {outcome.percentile(100):6.3f} {outcome.threshold:9.3f} "
                f"{outcome.expected_alarms:6d}  {outcome.text}  [{action}]"
            )
        if kept:
            print(f"{kept} threshold(s) set by hand kept; --overwrite-manual replaces them")
        if args.dry_run:
            print("dry run: no threshold changed")

    finally:
        scoring.close()
        registry.close()
    return EXIT_OK


class _Scoring:
    """The queries scored as the agent scores them: CLIP (with cues fused in when pose is on), or
    cues alone; ``before`` are the stages that run ahead of the matcher (the pose stage)."""

    def __init__(self, config: AgentConfig, registry: QueryRegistry) -> None:
        self.encoder: Any = None
        self.pose: Any = None
        self.before: list[Any] = []
        fusion = None
        from agent.cameras.store import site_cameras
        from agent.zones import ZoneBook

        zones = ZoneBook.fixed(site_cameras(config))  # the YAML's and the run-time cameras' zones
        if config.pose is not None and config.pose.enabled:
            from agent.pose.assembly import build_pose_stage

            self.pose = build_pose_stage(config.pose, registry, config.state_dir)
            self.before.append(self.pose.analyzer)
        if config.matching.embedder is not None:
            from agent.embedding import ClipEncoder
            from agent.matching.matcher import Matcher

            self.encoder = ClipEncoder.from_config(config.matching.embedder)
            if self.pose is not None and config.pose is not None:
                from agent.pose.cue_matcher import CueFusion

                self.pose.vocabulary.add_encoder("clip", self.encoder.embed_texts)
                fusion = CueFusion(self.pose.analyzer, self.pose.cues, config.pose.cue_weight)
            self.matcher: Matcher | CueMatcher = Matcher(
                config.matching, self.encoder, registry, cue_fusion=fusion, zones=zones
            )
        else:
            from agent.pose.cue_matcher import CueMatcher

            assert self.pose is not None and config.pose is not None
            self.matcher = CueMatcher(
                config.matching, config.pose, self.pose.analyzer, self.pose.cues, zones=zones
            )

    def unmapped(self) -> list[str]:
        """Cue-only scoring: the enabled queries that map to no cue, with why (they are not scored)."""
        if self.encoder is not None or self.pose is None:
            return []
        return [f"query {q.id} {q.text!r}: maps to no cue ({m.reason})" for q, m in self.pose.cues.unmapped()]

    def close(self) -> None:
        if self.pose is not None:
            self.pose.release_sentence_model()
            self.pose.analyzer.close()
        if self.encoder is not None:
            self.encoder.close()
