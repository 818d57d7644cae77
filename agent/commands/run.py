"""``watchword run CONFIG``: run every camera of a config until the input ends or a signal."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.service import Agent

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the agent on the cameras of a config",
        description="Run all cameras of CONFIG: detect and track people, write per-frame JSON lines "
        "and annotated video if asked. SIGINT or SIGTERM stops within 5 seconds.",
    )
    parser.add_argument("config", type=Path, help="YAML config (see configs/demo.yaml)")
    parser.add_argument(
        "--max-frames", type=int, metavar="N", help="stop each camera after N analysed frames"
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--jsonl", type=Path, metavar="PATH", help="write one JSON line per analysed frame")
    parser.add_argument("--video-out", type=Path, metavar="DIR", help="write an annotated MP4 per camera")
    parser.set_defaults(func=run, exit_at_once=True)


def run(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError, load_config

    if args.max_frames is not None and args.max_frames < 1:
        print("watchword run: --max-frames must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.duration is not None and args.duration <= 0:
        print("watchword run: --duration must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"watchword run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else config.log_level)

    from agent.detection import DetectorError
    from agent.detection.loader import DetectorLoader
    from agent.state_lock import StateLockError, lock_agent_state

    try:  # one agent per state directory: nothing is written (the detector's cache neither) before
        state_lock = lock_agent_state(config)
    except StateLockError as exc:
        print(f"watchword run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from agent.file_limits import raise_open_file_limit

    raise_open_file_limit()  # cameras, databases, evidence and API connections share one limit
    # The detector's model loads from here on, while the rest of the agent is imported and starts.
    detector = DetectorLoader(config.detector, config.state_dir)
    from agent.service import Agent, StartupError
    from agent.status import StatusReporter, print_summary

    try:
        agent = Agent(
            config,
            jsonl_path=args.jsonl,
            video_dir=args.video_out,
            max_frames=args.max_frames,
            duration_s=args.duration,
            state_lock=state_lock,
            detector=detector,
        )
    except StartupError as exc:
        print(f"watchword run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _install_signal_handlers(agent)
    reporter = StatusReporter(
        agent.pipeline.status, config.output.status_interval_s, warnings=agent.engine_warnings
    )
    try:
        summary = agent.run()
    except DetectorError as exc:
        print(f"watchword run: detector: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as exc:
        print(f"watchword run: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        reporter.close()
    print_summary(summary)
    for line in agent.digest:
        print(line)
    if summary.frames == 0 and summary.stopped_by not in {"interrupted", "terminated"}:
        print("watchword run: no camera delivered a frame", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _install_signal_handlers(pipeline: Agent) -> None:
    """First SIGINT/SIGTERM stops gracefully; a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        if pipeline.stopping:
            os._exit(128 + signum)
        log.info("received %s, stopping", signal.Signals(signum).name)
        pipeline.stop("interrupted" if signum == signal.SIGINT else "terminated")

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
