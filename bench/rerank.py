"""Re-ranker overhead benchmark on the sample video, measured side by side in one run.

The pipeline runs the sample video twice per round: with the re-ranker off and on. In both, an
analyser gives every track synthetic samples of two queries every ``--every`` frames (as the
matcher would) and the decision core (:mod:`agent.decision`) pools and selects them; with the
re-ranker on its candidates go through the core's queue to a
:class:`~agent.rerank.service.RerankService` stage on the LMM's own thread, whose backend takes a
fixed time per call (``--lmm-seconds``), so the LMM runs concurrently with the video loop under its
call budget.

Prints frames/s off and on (median over ``--rounds`` interleaved rounds), their ratio
(target >= 0.95), and the service's counters (calls, completed, stale, dropped).

Then, in the same run, what the two-step cloze costs beside the one-step call
(:mod:`bench.rerank_schemes`): requests, prompt and generated tokens and wall time per candidate,
on person crops of the sample video, through a real transformers backend (``--lmm-model DIR``, or
the tiny random Qwen2-VL of the tests). ``--only-schemes`` skips the frames/s part.

    .venv/bin/python bench/rerank.py [--frames 300] [--lmm-seconds 0.5] [--calls-per-minute 120]
    .venv/bin/python bench/rerank.py --only-schemes [--lmm-model DIR] [--crops 8] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.alerts.config import AlertsConfig
from agent.config import AgentConfig
from agent.decision.core import DecisionCore
from agent.decision.queue import QueueStats
from agent.decision.verifier import LmmWorker
from agent.detection import Detector, build_detector
from agent.detection.config import SSDDetectorConfig
from agent.matching.config import MatchingConfig
from agent.pipeline import Pipeline
from agent.queries import Query, QueryRegistry
from agent.rerank.backends.base import LmmBackend, LmmRequest, LmmResponse
from agent.rerank.config import RerankConfig
from agent.rerank.service import RerankService, RerankStats
from agent.sources.config import CameraConfig
from agent.types import Detections, FrameResult

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
QUERY = "a man in a dark jacket falls to the ground"
ANSWER = '{"blanks": {"1": "man", "2": "dark", "3": "jacket", "4": "walks", "5": "ground"}, "verdict": "no"}'


class FixedTimeBackend(LmmBackend):
    """A stand-in LMM that takes ``seconds`` per call (sleeping, as a remote or GPU model leaves the CPU)."""

    name = "fixed-time"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def generate(self, requests: Sequence[LmmRequest]) -> list[LmmResponse]:
        self._gate(len(requests))  # the service's budget, as the real backends take it
        time.sleep(self.seconds)
        self.calls += len(requests)
        return [LmmResponse(ANSWER, latency_s=self.seconds) for _ in requests]


class _Keep:
    """Lends a detector to a pipeline without letting it close it."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self.batch_size = detector.batch_size
        self.name = detector.name

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        return self._detector.detect(images)

    def close(self) -> None:
        pass


class SyntheticSamples:
    """An analyser giving every track a sample of two queries every ``every`` frames (as the matcher
    would), scores varying with the track and the frame."""

    def __init__(self, every: int, queries: list[Query]) -> None:
        self.every = every
        self.queries = queries
        self.announced = False

    def process(self, results: list[FrameResult]) -> None:
        if not self.announced and results:
            results[0].extra["columns"] = [[q.id, str(q.id)] for q in self.queries]
            self.announced = True
        for result in results:
            ids = result.tracks.tracker_id
            if result.frame.index % self.every or ids is None or len(ids) == 0:
                continue
            samples = {}
            for track_id in ids.tolist():
                phase = track_id * 1.7 + result.frame.index * 0.01
                samples[str(track_id)] = {
                    str(q.id): round(0.5 + 0.45 * float(np.sin(phase + i)), 6)
                    for i, q in enumerate(self.queries)
                }
            result.extra["samples"] = samples


def run_once(
    config: AgentConfig,
    detector: Detector,
    frames: int,
    every: int,
    service: RerankService | None,
    queries: list[Query],
) -> tuple[float, QueueStats | None]:
    by_id = {q.id: q for q in queries}
    matching = MatchingConfig(default_threshold=0.6, window_s=1.0, candidate_queue=16)
    core = DecisionCore(
        matching,
        AlertsConfig(cooldown_s=5.0),
        by_id.get,
        lambda events: None,  # the alert manager's place: decisions are dropped
        verifier=None if service is None else LmmWorker(service),
        queue_clock=time.monotonic,
    )
    analyzers = [SyntheticSamples(every, queries), core]
    pipeline = Pipeline(config, max_frames=frames, detector=_Keep(detector), analyzers=analyzers)  # type: ignore[arg-type]
    started = time.perf_counter()
    summary = pipeline.run()
    fps = summary.frames / (time.perf_counter() - started)
    core.finish(timeout_s=5.0)
    if service is None:
        return fps, None
    return fps, core.stats().queue


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300, help="frames per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved off/on rounds (median taken)")
    parser.add_argument("--lmm-seconds", type=float, default=0.5, help="time the stand-in LMM takes per call")
    parser.add_argument("--calls-per-minute", type=float, default=120.0)
    parser.add_argument("--every", type=int, default=5, help="submit candidates every N frames")
    parser.add_argument("--only-schemes", action="store_true", help="only the one-step/two-step cost")
    parser.add_argument("--lmm-model", type=Path, help="a transformers LMM directory (default: tiny random)")
    parser.add_argument("--crops", type=int, default=8, help="person crops for the scheme cost")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    detector_config = SSDDetectorConfig(type="ssd-mobilenet", batch_size=4)
    camera = CameraConfig(id="sample", uri=str(SAMPLE), max_width=768, max_height=576)
    config = AgentConfig(cameras=[camera], detector=detector_config)
    rerank_config = RerankConfig(calls_per_minute=args.calls_per_minute, deadline_s=5.0)
    detector = build_detector(detector_config)
    if not args.only_schemes:
        with tempfile.TemporaryDirectory() as scratch:
            registry = QueryRegistry(Path(scratch) / "q.db")
            queries = [registry.add(QUERY), registry.add("a person running across the road")]
            registry.close()
        frames_per_second(args, config, rerank_config, detector, queries)
    schemes(args, detector)
    detector.close()


def schemes(args: argparse.Namespace, detector: Detector) -> None:
    from bench.rerank_schemes import build_backend as build_lmm
    from bench.rerank_schemes import measure, person_crops, report

    crops = person_crops(SAMPLE, detector, args.crops)
    backend, label = build_lmm(args.lmm_model, args.max_new_tokens, args.device)
    try:
        costs = measure(backend, QUERY, crops, args.rounds)
    finally:
        backend.close()
    print(f"\ncloze schemes: {len(crops)} person crops, {args.rounds} rounds, LMM {label} on {args.device}")
    print(f"query: {QUERY!r}, max_new_tokens {args.max_new_tokens}")
    print("\n".join(report(costs)))


def frames_per_second(
    args: argparse.Namespace,
    config: AgentConfig,
    rerank_config: RerankConfig,
    detector: Detector,
    queries: list[Query],
) -> None:
    run_once(config, detector, min(args.frames, 40), args.every, None, queries)  # warm caches, decoder
    fps_off: list[float] = []
    fps_on: list[float] = []
    stats: list[tuple[RerankStats, QueueStats | None]] = []
    for _ in range(args.rounds):
        fps_off.append(run_once(config, detector, args.frames, args.every, None, queries)[0])
        backend = FixedTimeBackend(args.lmm_seconds)
        with RerankService(rerank_config, backend) as service:
            fps, queued = run_once(config, detector, args.frames, args.every, service, queries)
            fps_on.append(fps)
            stats.append((service.stats(), queued))

    off, on = statistics.median(fps_off), statistics.median(fps_on)
    last, queued = stats[-1]
    assert queued is not None
    print(f"\nsample video, {args.frames} frames per run, {args.rounds} rounds, detector {detector.name}")
    print(f"stand-in LMM: {args.lmm_seconds:.2f} s per call, budget {args.calls_per_minute:g} calls/min")
    print(f"{'measurement':38s} {'frames/s':>9s}")
    print(f"{'re-ranker off (median)':38s} {off:9.2f}")
    print(f"{'re-ranker on (median)':38s} {on:9.2f}")
    print(f"{'on/off (target >= 0.95)':38s} {on / off:9.3f}")
    print(f"per round off: {[round(v, 2) for v in fps_off]}  on: {[round(v, 2) for v in fps_on]}")
    counters = {
        "put": queued.put,
        "calls": last.calls,
        "completed": last.completed,
        "skipped_stale": last.skipped_stale,
        "dropped": queued.dropped,
        "replaced": queued.replaced,
        "expired": queued.expired,
        "discarded_at_close": queued.discarded,
    }
    print(json.dumps({"rerank_last_round": counters}))


if __name__ == "__main__":
    main()
