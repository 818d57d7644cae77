"""A file decides the same whatever the detector's batch size: the demo (SSD, pose cues) run by
``watchword run --jsonl`` at ``detector.batch_size`` 1 and 8 writes the same frame records.

How many frames a batch holds depends on timing (how far the decoder is ahead of inference), so a
record that changed with it would make a replay of the file disagree with the live run."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests.fixtures.sources import sample_clip

CLIP_FRAMES = 80  # 8 s of the 10 frames/s sample video: people walk in, the pose cues sample them
REPO = Path(__file__).resolve().parents[2]
WALL_CLOCK = ("wall_time",)  # the only field of a frame record that is not on media time


def _demo_config(
    directory: Path, clip: Path, batch_size: int, ssd_model_dir: Path, pose_model_dir: Path
) -> Path:
    """The demo's own config on ``clip`` with its own state, the models already converted."""
    text = (REPO / "configs" / "demo.yaml").read_text()
    # a queue that holds a full batch: a file's decoder then runs ahead and batches fill up
    text = text.replace(
        "uri: /usr/share/doc/opencv-doc/examples/data/vtest.avi\n",
        f"uri: {clip}\n    queue_size: 16\n",
    )
    assert "  batch_size: 4\n" in text
    text = text.replace("  batch_size: 4\n", f"  batch_size: {batch_size}\n  model_dir: {ssd_model_dir}\n", 1)
    text = text.replace("pose:\n", f"pose:\n  model_dir: {pose_model_dir}\n  export_if_missing: false\n", 1)
    text = text.replace("output:\n  jsonl: out/demo/frames.jsonl\n  video_dir: out/demo/video\n", "")
    text += f"\nstate_dir: {directory}/state\nalerts:\n  sinks: []\n"
    config = directory / "demo.yaml"
    config.write_text(text)
    return config


def _records(
    directory: Path, config: Path, caplog: pytest.LogCaptureFixture
) -> tuple[list[dict[str, Any]], int]:
    """The run's frame records less wall-clock fields, and how many batches the detector ran."""
    frames = directory / "frames.jsonl"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="agent.detection.base"):
        assert main(["run", str(config), "--jsonl", str(frames)]) == 0
    closed = re.search(r"detector .* closed: (\d+) frames in (\d+) batches", caplog.text)
    assert closed, "the detector logs its batches when it closes"
    records = [json.loads(line) for line in frames.read_text().splitlines()]
    return [{k: v for k, v in record.items() if k not in WALL_CLOCK} for record in records], int(closed[2])


@pytest.mark.slow
def test_batch_size_one_and_eight_write_the_same_frame_records(
    tmp_path: Path,
    sample_video: Path,
    ssd_model_dir: Path,
    pose_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clip = sample_clip(sample_video, tmp_path / "clip.avi", CLIP_FRAMES)
    runs, batches = {}, {}
    for batch_size in (1, 8):
        directory = tmp_path / f"batch-{batch_size}"
        directory.mkdir()
        config = _demo_config(directory, clip, batch_size, ssd_model_dir, pose_model_dir)
        runs[batch_size], batches[batch_size] = _records(directory, config, caplog)

    single, batched = runs[1], runs[8]
    assert batches[1] == CLIP_FRAMES
    assert batches[8] <= CLIP_FRAMES // 4, f"{batches[8]} batches: the frames were not batched"
    assert len(single) >= CLIP_FRAMES
    assert sum(len(r["tracks"]) for r in single) > 2 * CLIP_FRAMES, "people are tracked"
    assert sum("cue_samples" in r for r in single) > 5, "the pose cues sampled the people"
    for index, (alone, in_eights) in enumerate(zip(single, batched, strict=True)):
        assert alone == in_eights, f"record {index} (frame {alone.get('frame')}) differs"
