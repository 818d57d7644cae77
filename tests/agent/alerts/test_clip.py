"""Alert clips: real GStreamer (vp8enc, webmmux) on hand-made frames with a moving box; the clip is
decoded back with GStreamer to count its frames and to see the box drawn where the track was."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agent.alerts.clip import CLIP_FILE, ClipRecorder
from agent.outputs.video import _gst
from agent.types import Detections, Frame, FrameResult

FPS = 5.0


def _result(index: int, camera: str = "door") -> FrameResult:
    image = np.full((240, 320, 3), 40, np.uint8)
    x = 20 + 8 * index
    tracks = Detections(
        xyxy=np.array([[x, 60, x + 40, 180]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.array([0], np.int64),
        tracker_id=np.array([7], np.int64),
    )
    frame = Frame(camera, index, index / FPS, 1000.0 + index / FPS, image)
    return FrameResult(frame=frame, tracks=tracks, events=[])


def _opened(alert_id: str, fired_s: float, camera: str = "door") -> dict[str, object]:
    return {
        "event": "opened",
        "alert_id": alert_id,
        "camera": camera,
        "track_id": 7,
        "query": "a person at the door",
        "evidence": {"crop": f"{alert_id}/crop.jpg"},
        "media": {"started_s": fired_s},
    }


def _decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the file, decoded by GStreamer (what a browser's WebM decoder would see)."""
    gst = _gst()
    pipeline = gst.parse_launch(
        f'filesrc location="{path}" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! '
        "appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(gst.State.PLAYING)
    frames = []
    try:
        while True:
            sample = sink.emit("try-pull-sample", 10 * gst.SECOND)
            if sample is None:
                break
            structure = sample.get_caps().get_structure(0)
            width, height = structure.get_value("width"), structure.get_value("height")
            buffer = sample.get_buffer()
            ok, info = buffer.map(gst.MapFlags.READ)
            assert ok
            stride = len(info.data) // height
            rows = np.frombuffer(info.data, np.uint8).reshape(height, stride)[:, : width * 3]
            frames.append(rows.reshape(height, width, 3).copy())
            buffer.unmap(info)
    finally:
        pipeline.set_state(gst.State.NULL)
    return frames


def test_a_clip_holds_the_seconds_around_the_alert_with_the_box(tmp_path: Path) -> None:
    (tmp_path / "a1").mkdir()
    recorder = ClipRecorder(tmp_path, before_s=2.0, after_s=2.0, wait_s=30.0)
    try:
        for index in range(20):  # 0 .. 3.8 s
            recorder.process([_result(index)])
        recorder.request(_opened("a1", fired_s=2.0))
        recorder.request({**_opened("a2", 2.0), "event": "updated"})  # only an opening asks
        assert not (tmp_path / "a1" / CLIP_FILE).exists()  # 2 s after the alert have not come yet
        for index in range(20, 25):  # up to 4.8 s: the 2 s after it are there
            recorder.process([_result(index)])
        deadline = time.monotonic() + 30
        while recorder.stats.written == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        recorder.close()
    clip = tmp_path / "a1" / CLIP_FILE
    assert recorder.stats.written == 1 and clip.is_file()
    assert not (tmp_path / "a2").exists()
    frames = _decoded_frames(clip)
    assert len(frames) == 21  # 0.0 .. 4.0 s at 5 frames a second
    middle = frames[10][120].astype(int)  # a row through the box, below its label
    (xs,) = np.nonzero(middle[:, 2] - middle[:, 1] > 100)  # red: the box of the track at 2.0 s
    assert xs.size and 96 <= xs.min() <= 104 and 136 <= xs.max() <= 144  # its sides at x 100 and 140


def test_the_ring_is_bounded_and_a_clip_without_a_bundle_is_skipped(tmp_path: Path) -> None:
    recorder = ClipRecorder(tmp_path, before_s=1.0, after_s=0.0, max_frames=10, wait_s=30.0)
    try:
        for index in range(50):
            recorder.process([_result(index)])
        assert len(recorder._rings["door"]) == 10
        recorder.request(_opened("gone", fired_s=9.0))  # no bundle folder (evidence pruned or off)
        deadline = time.monotonic() + 30
        while recorder.stats.skipped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        recorder.close()
    assert recorder.stats.skipped == 1 and recorder.stats.written == 0
    assert not (tmp_path / "gone").exists()
