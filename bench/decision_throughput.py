"""Records per second through the decision layer, before and after, and a day of 4 cameras replayed.

Synthetic frame records (no model): ``--cameras`` cameras at ``--fps`` frames/s, ``--tracks``
people each, every person sampled once a media second against ``--queries`` standing queries, some
above threshold, people leaving and new ones arriving every minute. Measured:

- ``replay``: ``replay_frames`` over a records file (JSON parsing included), in this tree and, with
  ``--before TREE`` (a checkout of another revision, e.g. ``git worktree add /tmp/main main``), in
  that one, alternately, each in its own process;
- ``live``: this tree's live path, the decision core as the pipeline's analyser (records made from
  the frame results, events posted to a started alert manager's emission thread). The revision
  before the decision core had no such path to drive without a CLIP model (the decisions lived in
  the CLIP matcher and a dispatcher thread), so ``live`` is this tree's only;
- ``--day``: a day (86 400 s) of the same records, fed to this tree's replay one at a time through
  the JSON round trip; prints how long it took.

    PYTHONPATH=. .venv/bin/python bench/decisions.py --throughput [--before /tmp/main] [--day]
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

REPLAY_SNIPPET = """
import json, sys, time
from pathlib import Path
from agent.config import AgentConfig
from agent.evaluation.replay_frames import replay_frames
from agent.queries import QueryRegistry
records, folder = Path(sys.argv[1]), Path(sys.argv[2])
registry = QueryRegistry(folder / "q.db")
queries = registry.list_queries(enabled_only=True)
cameras = [{"id": f"cam{i}", "uri": f"rtsp://127.0.0.1/cam{i}"} for i in range(int(sys.argv[3]))]
config = AgentConfig.model_validate(
    {"cameras": cameras, "matching": {"window_s": 2.0}, "alerts": {"cooldown_s": 60}}
)
started = time.perf_counter()
result = replay_frames(records, config, queries)
elapsed = time.perf_counter() - started
print(json.dumps({"records": result.frames, "seconds": elapsed, "alerts": len(result.alerts)}))
"""


def synthetic(
    cameras: int, fps: int, seconds: float, tracks: int, query_ids: list[int]
) -> Iterator[dict[str, Any]]:
    """Frame records of ``cameras`` cameras interleaved; people change every 60 media seconds."""
    for index in range(int(seconds * fps)):
        t = index / fps
        generation = int(t // 60)
        for camera in range(cameras):
            ids = [generation * tracks + k + 1 for k in range(tracks)]
            events = []
            if index % (60 * fps) == 0:
                events += [{"kind": "new", "id": i} for i in ids]
                if generation:
                    events += [{"kind": "removed", "id": i - tracks} for i in ids]
            record: dict[str, Any] = {
                "camera": f"cam{camera}",
                "frame": index,
                "pts": t,
                "wall_time": 1_800_000_000.0 + t,
                "media_time": t,
                "width": 640,
                "height": 480,
                "tracks": [
                    {"id": i, "box": [10.0 * k, 10.0, 10.0 * k + 40, 120.0], "score": 0.9}
                    for k, i in enumerate(ids)
                ],
                "events": events,
            }
            if index == 0 and camera == 0:
                record["columns"] = [[q, str(q)] for q in query_ids]
            if index % fps == 0:
                record["samples"] = {
                    str(i): {
                        str(q): round(0.5 + 0.45 * math.sin(i * 1.3 + q * 0.7 + t / 17.0), 6)
                        for q in query_ids
                    }
                    for i in ids
                }
            yield record


def _registry(folder: Path, queries: int) -> list[int]:
    sys.path.insert(0, str(ROOT))
    from agent.queries import QueryRegistry

    registry = QueryRegistry(folder / "q.db")
    ids = [registry.add(f"standing query number {i}", threshold=0.8).id for i in range(queries)]
    registry.close()
    return ids


def replay_in(tree: Path, records: Path, folder: Path, cameras: int) -> dict[str, float]:
    """One replay of ``records`` by the code of ``tree``, in its own process."""
    out = subprocess.run(
        [sys.executable, "-c", REPLAY_SNIPPET, str(records), str(folder), str(cameras)],
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def live(records: list[dict[str, Any]], folder: Path, queries: list[int]) -> tuple[float, int]:
    """This tree's live path: the core as the pipeline's analyser, events to the alert manager."""
    import numpy as np

    from agent.alerts import AlertManager
    from agent.alerts.config import AlertsConfig
    from agent.decision.core import DecisionCore
    from agent.matching.config import MatchingConfig
    from agent.queries import QueryRegistry
    from agent.types import Detections, Frame, FrameResult, TrackEvent, TrackEventKind

    registry = QueryRegistry(folder / "q.db")
    by_id = {q.id: q for q in registry.list_queries(enabled_only=True)}
    registry.close()
    alerts = AlertManager(
        AlertsConfig(database=folder / "alerts.db", evidence_dir=folder / "evidence", cooldown_s=60),
        "bench",
        sinks=[],
    )
    alerts.start()
    core = DecisionCore(MatchingConfig(window_s=2.0), alerts.config, by_id.get, alerts.post)
    image = np.zeros((480, 640, 3), np.uint8)
    results = []
    for record in records:
        ids = [t["id"] for t in record["tracks"]]
        tracks = Detections(
            xyxy=np.array([t["box"] for t in record["tracks"]], np.float32).reshape(-1, 4),
            confidence=np.full(len(ids), 0.9, np.float32),
            class_id=np.zeros(len(ids), np.int64),
            tracker_id=np.array(ids, np.int64),
        )
        frame = Frame(record["camera"], record["frame"], record["pts"], record["wall_time"], image)
        events = [
            TrackEvent(TrackEventKind(e["kind"]), record["camera"], e["id"], record["frame"], 0.0, 0.0, 1)
            for e in record["events"]
        ]
        extra: dict[str, Any] = {k: record[k] for k in ("samples", "columns") if k in record}
        results.append(FrameResult(frame, tracks, events, extra))
    started = time.perf_counter()
    for result in results:
        core.process([result])
    elapsed = time.perf_counter() - started
    core.finish()
    alerts.wait_emitted(60.0)
    opened = alerts.stats().episodes.opened
    alerts.close(drain_timeout_s=0)
    return elapsed, opened


def main(args: Any) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-decision-throughput-"))
    queries = _registry(folder, args.queries)
    records_path = folder / "records.jsonl"
    records = list(synthetic(args.cameras, args.fps, args.seconds, args.tracks, queries))
    with records_path.open("w") as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    print(
        f"{len(records)} records: {args.cameras} cameras x {args.fps} f/s x {args.seconds:g} s, "
        f"{args.tracks} people each, {args.queries} queries, a sample per person per second"
    )
    trees = {"this tree": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, tree in trees.items():
            runs[name].append(replay_in(tree, records_path, folder, args.cameras))
    print(f"{'path':<22} {'records/s':>10} {'alerts':>7}   runs (records/s)")
    rates = {}
    for name, measured in runs.items():
        each = [r["records"] / r["seconds"] for r in measured]
        rates[name] = statistics.median(each)
        print(
            f"{'replay, ' + name:<22} {rates[name]:>10.0f} {int(measured[-1]['alerts']):>7}   "
            f"[{' '.join(f'{v:.0f}' for v in each)}]"
        )
    if "before" in rates:
        print(f"{'replay after/before':<22} {rates['this tree'] / rates['before']:>10.2f}")
    live_runs = [live(records, folder, queries) for _ in range(args.runs)]
    live_rate = statistics.median(len(records) / s for s, _ in live_runs)
    print(f"{'live, this tree':<22} {live_rate:>10.0f} {live_runs[-1][1]:>7}")
    if args.day:
        day(args, folder, queries)


def day(args: Any, folder: Path, queries: list[int]) -> None:
    """A day of ``--cameras`` cameras at ``--fps`` through this tree's replay (JSON round trip)."""
    from agent.config import AgentConfig
    from agent.evaluation.replay_frames import FrameReplay
    from agent.queries import QueryRegistry

    registry = QueryRegistry(folder / "q.db")
    cameras = [{"id": f"cam{i}", "uri": f"rtsp://127.0.0.1/cam{i}"} for i in range(args.cameras)]
    config = AgentConfig.model_validate(
        {"cameras": cameras, "matching": {"window_s": 2.0}, "alerts": {"cooldown_s": 60}}
    )
    replay = FrameReplay(config, registry.list_queries(enabled_only=True))
    registry.close()
    started = time.perf_counter()
    count = 0
    for record in synthetic(args.cameras, args.fps, 86_400.0, args.tracks, queries):
        replay.feed_record(json.loads(json.dumps(record)))
        count += 1
    result = replay.finish()
    elapsed = time.perf_counter() - started
    print(
        f"a day replayed: {count} records ({args.cameras} cameras x {args.fps} f/s x 24 h) in "
        f"{elapsed:.0f} s ({count / elapsed:.0f} records/s, generation and JSON included), "
        f"{len(result.alerts)} alerts"
    )
