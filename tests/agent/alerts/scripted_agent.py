"""A stand-in agent for the crash test: an DecidingManager on a scripted candidate stream.

Each track gets one candidate (an "opened" event) and ends (a "closed" event) after the next
track opened, so an episode is always open when the script is killed. Once an event is stored, the
script writes ``event <event_id>`` to stdout: from then on the event is durable, so the test knows
what must survive a SIGKILL. With ``--drain`` it waits for the sinks at the end and exits; without
it, it keeps running until killed.

Run: python scripted_agent.py CONFIG_JSON --first-track N --tracks K [--interval-s S] [--drain]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent
from agent.types import Candidate, TrackEvent, TrackEventKind
from tests.agent.alerts.deciding import DecidingManager


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _report(events: list[AlertEvent | None]) -> None:
    for event in events:
        if event is not None:
            _say(f"event {event.alert_id}/{event.seq}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--site", default="crashlab")
    parser.add_argument("--first-track", type=int, default=1)
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--interval-s", type=float, default=0.005)
    parser.add_argument("--drain", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    config = AlertsConfig.model_validate_json(args.config.read_text())
    frame = np.full((120, 160, 3), 90, np.uint8)
    manager = DecidingManager(config, args.site)
    manager.start()
    _say("started")
    previous: TrackEvent | None = None
    for track in range(args.first_track, args.first_track + args.tracks):
        now = time.time()
        candidate = Candidate(
            camera_id=f"cam{track % 3}",
            track_id=track,
            query_id=1,
            query_text="a person falling down",
            score=0.9,
            cosine=0.3,
            wall_time=now,
            frame_index=track,
            box=(10.0, 10.0, 50.0, 100.0),
            frame=frame,
        )
        _report([manager.submit(candidate)])
        if previous is not None:
            _report(list(manager.on_track_event(previous)))
        previous = TrackEvent(TrackEventKind.REMOVED, candidate.camera_id, track, track, now, now, 1)
        time.sleep(args.interval_s)
    if previous is not None:
        _report(list(manager.on_track_event(previous)))
    _say("stream done")
    if args.drain:
        drained = manager.drain(30.0)
        manager.close()
        _say("drained" if drained else "not drained")
        return 0 if drained else 1
    while True:  # stay up, delivering, until killed
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
