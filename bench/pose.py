"""Pose benchmark on the CPU, measured side by side in one run.

(a) MoveNet per person crop through the ``onnxruntime`` engine (the exported graph), at batch 1 and
    batched, and the same crops through LiteRT (the source .tflite) for reference;
(b) the pipeline on the sample video with pose off (detection + tracking) and with pose on (plus the
    pose stage: MoveNet per track on its cadence, cues on every frame, cue-only query scoring), the
    same frames, detector and config, run alternately; prints frames/s and the on/off ratio
    (target >= 0.85).

    .venv/bin/python bench/pose.py [--frames 200] [--interval 1.0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import AgentConfig
from agent.detection import build_detector
from agent.detection.config import SSDDetectorConfig
from agent.matching.config import MatchingConfig
from agent.pipeline import Analyzer, Pipeline
from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.cue_matcher import CueMatcher
from agent.pose.estimator import PoseEstimator, ensure_pose_model, square_crop
from agent.pose.querycues import QueryCues
from agent.pose.sentence import SentenceEmbedder
from agent.pose.vocabulary import CueVocabulary
from agent.queries import QueryRegistry
from agent.sources.config import CameraConfig
from tests.fixtures import posture_set

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def crop_cost(estimator: PoseEstimator, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per person crop: ONNX batch 1, ONNX batch 8, LiteRT batch 1."""
    samples = [s for s in posture_set.samples() if s.label == "upright"][:8]
    regions = [(s.image, s.box) for s in samples]
    estimator.estimate(regions[:1])  # warm
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(repeats):
        for region in regions:
            estimator.estimate([region])
    timings["onnxruntime batch 1"] = 1000 * (time.perf_counter() - started) / (repeats * len(regions))
    started = time.perf_counter()
    for _ in range(repeats):
        estimator.estimate(regions)
    timings[f"onnxruntime batch {len(regions)}"] = (
        1000 * (time.perf_counter() - started) / (repeats * len(regions))
    )
    try:
        from ai_edge_litert.interpreter import Interpreter

        from export.pose import packaged_movenet
    except ImportError:
        return timings
    interpreter = Interpreter(model_path=str(packaged_movenet()))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    crops = [square_crop(image, box, estimator.config.crop_padding)[0] for image, box in regions]
    started = time.perf_counter()
    for _ in range(repeats):
        for crop in crops:
            interpreter.set_tensor(source, crop[None])
            interpreter.invoke()
    timings["litert batch 1 (reference)"] = 1000 * (time.perf_counter() - started) / (repeats * len(crops))
    return timings


def pipeline_fps(config: AgentConfig, detector, frames: int, analyzers: list[Analyzer]) -> tuple[float, int]:
    """Frames/s of one pipeline run over the first ``frames`` frames, and the frames analysed."""
    pipeline = Pipeline(config, max_frames=frames, detector=detector, analyzers=analyzers)
    summary = pipeline.run()
    return summary.frames / summary.duration_s, summary.frames


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200, help="frames of the sample video per run")
    parser.add_argument("--interval", type=float, default=1.0, help="pose.interval_s (seconds of video)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, alternated")
    args = parser.parse_args()
    if posture_set.available():
        sys.exit(f"bench/pose.py: {posture_set.available()}")
    work = Path(tempfile.mkdtemp(prefix="watchword-pose-bench-"))
    pose_config = PoseConfig(model_dir=work / "pose", interval_s=args.interval)
    ensure_pose_model(pose_config)
    estimator = PoseEstimator(pose_config)
    print("(a) MoveNet per person crop, CPU:")
    for name, ms in crop_cost(estimator).items():
        print(f"    {name:28s} {ms:7.1f} ms per crop")

    config = AgentConfig(
        state_dir=work / "state",
        cameras=[CameraConfig(id="sample", uri=str(SAMPLE), analysis_fps=10)],
        detector=SSDDetectorConfig(type="ssd-mobilenet", confidence=0.4, batch_size=4),
    )
    detector = build_detector(config.detector)
    registry = QueryRegistry(work / "queries.db")
    for text in ("someone standing still for a long time", "a person running", "a person falling down"):
        registry.add(text)
    vocabulary = CueVocabulary({"minilm": SentenceEmbedder().embed})
    off: list[float] = []
    on: list[float] = []
    pose_seconds = crops = 0.0
    for _ in range(args.rounds):
        fps, count = pipeline_fps(config, detector, args.frames, [])
        off.append(fps)
        pose = PoseAnalyzer(pose_config, estimator)
        matcher = CueMatcher(MatchingConfig(), pose_config, pose, QueryCues(registry, vocabulary))
        fps, count = pipeline_fps(config, detector, args.frames, [pose, matcher])
        on.append(fps)
        pose_seconds += pose.stats.seconds
        crops += pose.stats.crops
    detector.close()
    mean_off, mean_on = float(np.mean(off)), float(np.mean(on))
    print(f"(b) pipeline on {count} frames of the sample video, {args.rounds} alternated rounds:")
    print(f"    pose off: {mean_off:6.2f} frames/s  (runs: {', '.join(f'{v:.2f}' for v in off)})")
    print(f"    pose on:  {mean_on:6.2f} frames/s  (runs: {', '.join(f'{v:.2f}' for v in on)})")
    per_crop = 1000 * pose_seconds / max(crops, 1)
    print(
        f"    pose stage: {crops / args.rounds:.0f} crops per run, {per_crop:.1f} ms per crop in the pipeline"
    )
    print(f"    ratio on/off: {mean_on / mean_off:.3f} (target >= 0.85)")
    estimator.close()
    registry.close()


if __name__ == "__main__":
    main()
