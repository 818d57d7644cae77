"""Cost of one matching window as queries and tracks grow, measured side by side in one run.

One window here is: every track gets a new crop embedding, is scored against every enabled query
(calibration against the normal prompts, pooling, hysteresis), and the window's top-K candidates
are chosen. CLIP inference itself is left out (its cost grows with tracks only; see bench/embed.py):
a synthetic encoder returns fixed random unit vectors of ViT-B/32's size (512), so the table shows
the matcher's own cost.

    .venv/bin/python bench/matching.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.alerts.config import AlertsConfig
from agent.decision.core import DecisionCore
from agent.matching.config import MatchingConfig
from agent.matching.matcher import Matcher
from agent.queries import QueryRegistry
from agent.types import Detections, Frame, FrameResult

DIM = 512
FRAME = np.zeros((720, 1280, 3), np.uint8)


class SyntheticEncoder:
    """Random unit vectors in place of CLIP (a benchmark stand-in: only the matcher is timed)."""

    manifest_hash = "synthetic"
    logit_scale = 100.0

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def _unit(self, count: int) -> np.ndarray:
        vectors = self.rng.standard_normal((count, DIM)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_regions(self, regions: Sequence[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray:
        return self._unit(len(regions))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self._unit(len(texts))


def frame_result(tracks: int, index: int, t: float) -> FrameResult:
    x = np.arange(tracks, dtype=np.float32) % 25 * 50
    y = np.arange(tracks, dtype=np.float32) // 25 % 7 * 100
    boxes = np.stack([x, y, x + 40, y + 90], axis=1)
    detections = Detections(
        xyxy=boxes,
        confidence=np.full(tracks, 0.9, np.float32),
        class_id=np.zeros(tracks, np.int64),
        tracker_id=np.arange(1, tracks + 1),
    )
    return FrameResult(Frame("cam", index, t, t, FRAME), detections, [])


def window_cost(queries: int, tracks: int, repeats: int, directory: Path) -> float:
    """Median seconds of one window (after a first window that creates the tracks' state)."""
    registry = QueryRegistry(directory / f"q{queries}-t{tracks}.db")
    for i in range(queries):
        registry.add(f"standing query number {i}", threshold=0.5)
    config = MatchingConfig(embed_interval_s=1.0, window_s=1.0, top_k=5)
    matcher = Matcher(config, SyntheticEncoder(), registry)
    core = DecisionCore(config, AlertsConfig(), matcher.query, lambda events: None)
    first = [frame_result(tracks, 0, 0.0)]
    matcher.process(first)
    core.process(first)
    times = []
    for step in range(1, repeats + 1):
        result = frame_result(tracks, step, float(step))
        started = time.perf_counter()
        matcher.process([result])  # embeds and scores every track
        core.process([result])  # pools and closes the window
        times.append(time.perf_counter() - started)
    assert core.stats().windows == repeats
    registry.close()
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--tracks", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for queries in args.queries:
            for tracks in args.tracks:
                rows.append((queries, tracks, window_cost(queries, tracks, args.repeats, Path(tmp))))
    base = rows[0][2]
    print(f"\n{'queries':>8} {'tracks':>7} {'pairs':>9} {'ms/window':>10} {'x smallest':>11} {'us/pair':>8}")
    for queries, tracks, seconds in rows:
        pairs = queries * tracks
        print(
            f"{queries:8d} {tracks:7d} {pairs:9d} {seconds * 1000:10.2f} {seconds / base:11.1f} "
            f"{seconds * 1e6 / pairs:8.2f}"
        )


if __name__ == "__main__":
    main()
