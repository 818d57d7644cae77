"""Track fragmentation on the demo video: plain ByteTrack against the demo config, side by side.

Runs the demo config's detector once over the whole sample video (detections are cached under
``out/bench/`` keyed by the detector settings), then tracks the same detections with each tracker
config (plain ByteTrack with the demo thresholds, the demo tracker without re-association, the
demo tracker) and prints, per config:

- ids: distinct track ids output over the video;
- median life: median of (last seen - first seen) over ids, media seconds (the frame's pts);
- re-birth: of the track ends away from the frame border (every edge of the last box at least
  25 px inside), the share followed within 4 s by a new id whose first box centre lies within one
  box height (of the ended box) of the ended box centre;
- sanity: frames where one id has two boxes (must be 0) and "jumps", consecutive appearances of an
  id whose centres are more than two box heights apart plus 200 px/s of the gap between them
  (a person does not walk that fast; must be 0);
- 1 s gaps (over-merging check): every plain-ByteTrack track of 6 s or more is hidden for one
  second mid-track and the video tracked again: how many people kept their id, and how many came
  back under an id that had been another person's.

    PYTHONPATH=. .venv/bin/python bench/tracks.py [--config configs/demo.yaml] [--frames N]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import AgentConfig, load_config
from agent.detection import build_detector
from agent.tracking import build_tracker
from agent.types import Detections, Frame

BORDER_PX = 25.0
REBIRTH_WINDOW_S = 4.0
JUMP_SPEED_PX_S = 200.0
CACHE_DIR = Path("out/bench")


@dataclass
class Appearance:
    pts: float
    box: tuple[float, float, float, float]


@dataclass
class TrackStats:
    ids: int
    median_life_s: float
    ends_inside: int
    rebirths: int
    duplicate_frames: int
    jumps: int

    @property
    def rebirth_share(self) -> float:
        return self.rebirths / self.ends_inside if self.ends_inside else 0.0


def read_video(path: Path, limit: int | None) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    images: list[np.ndarray] = []
    while limit is None or len(images) < limit:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    return images, float(fps)


def detect_all(config: AgentConfig, video: Path, images: list[np.ndarray]) -> list[Detections]:
    """The detector's output on every frame, cached on disk by detector settings and video."""
    key = hashlib.sha256(
        f"{config.detector.model_dump_json()}|{video}|{video.stat().st_size}|{len(images)}".encode()
    ).hexdigest()[:16]
    cache = CACHE_DIR / f"tracks_detections_{key}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            counts = data["counts"]
            rows = np.split(data["rows"], np.cumsum(counts)[:-1]) if len(counts) else []
        return [
            Detections(xyxy=r[:, :4], confidence=r[:, 4], class_id=r[:, 5].astype(np.int64)) for r in rows
        ]
    detector = build_detector(config.detector)
    batch = getattr(detector, "batch_size", 4)
    detections: list[Detections] = []
    with detector:
        for i in range(0, len(images), batch):
            detections.extend(detector.detect(images[i : i + batch]))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    rows = [
        np.concatenate([d.xyxy, d.confidence[:, None], d.class_id[:, None].astype(np.float32)], axis=1)
        for d in detections
    ]
    np.savez(
        cache,
        counts=np.array([len(r) for r in rows]),
        rows=np.concatenate(rows) if rows else np.zeros((0, 6), np.float32),
    )
    return detections


def track_all(
    config: AgentConfig, images: list[np.ndarray], detections: list[Detections], fps: float
) -> dict[int, list[Appearance]]:
    """Each id's appearances (media time, box), in frame order."""
    tracker = build_tracker(config.tracker, "sample", frame_rate=fps)
    history: dict[int, list[Appearance]] = {}
    for index, (image, dets) in enumerate(zip(images, detections, strict=True)):
        frame = Frame(camera_id="sample", index=index, pts_s=index / fps, wall_time=index / fps, image=image)
        tracked, _ = tracker.update(frame, dets)
        assert tracked.tracker_id is not None
        for track_id, box in zip(tracked.tracker_id.tolist(), tracked.xyxy.tolist(), strict=True):
            history.setdefault(int(track_id), []).append(Appearance(index / fps, tuple(box)))
    return history


@dataclass
class GapStats:
    probes: int
    recovered: int  # the person kept their id across the hidden second
    wrong: int  # the person came back under an id that had been another person's


def hide_and_recover(
    config: AgentConfig,
    images: list[np.ndarray],
    detections: list[Detections],
    fps: float,
    reference: dict[int, list[Appearance]],
) -> GapStats:
    """Hide each long reference track's detections for 1 s mid-track, track again, and check who comes back.

    ``reference`` is plain ByteTrack on the same detections: its tracks of 6 s or more are taken to
    be one person each. A probe is recovered when the boxes just before and 1 s after its hidden
    second carry the same id; wrong when the later boxes carry an id that, before the gap ended,
    had been given to boxes of another reference track.
    """
    owner = {(round(a.pts * fps), a.box): track_id for track_id, track in reference.items() for a in track}
    probes = [
        (track_id, track) for track_id, track in reference.items() if track[-1].pts - track[0].pts >= 6.0
    ]
    hidden: dict[int, set[tuple[float, float, float, float]]] = {}
    windows = {}
    for track_id, track in probes:
        start = round(track[len(track) // 2].pts * fps)
        end = start + round(fps)  # one second hidden
        windows[track_id] = (start, end)
        for a in track:
            if start <= round(a.pts * fps) < end:
                hidden.setdefault(round(a.pts * fps), set()).add(a.box)
    edited = []
    for index, dets in enumerate(detections):
        gone = hidden.get(index, set())
        keep = np.array([tuple(box) not in gone for box in dets.xyxy.tolist()], dtype=bool)
        edited.append(dets[keep] if len(dets) else dets)
    history = track_all(config, images, edited, fps)
    given = {(round(a.pts * fps), a.box): track_id for track_id, track in history.items() for a in track}
    covered: dict[int, list[tuple[int, int]]] = {}  # edited id -> (frame, reference id) of its boxes
    for key, track_id in given.items():
        if key in owner:
            covered.setdefault(track_id, []).append((key[0], owner[key]))
    recovered = wrong = 0
    for track_id, track in probes:
        start, end = windows[track_id]
        before = [given.get((round(a.pts * fps), a.box)) for a in track if round(a.pts * fps) < start]
        after = [given.get((round(a.pts * fps), a.box)) for a in track if round(a.pts * fps) >= end + fps / 2]
        if not before or not after or before[-1] is None or after[0] is None:
            continue
        if before[-1] == after[0]:
            recovered += 1
        elif any(ref != track_id and frame < end for frame, ref in covered.get(after[0], [])):
            wrong += 1
    return GapStats(len(probes), recovered, wrong)


def _centre(box: tuple[float, float, float, float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def measure(history: dict[int, list[Appearance]], width: int, height: int, video_end_s: float) -> TrackStats:
    lives = [track[-1].pts - track[0].pts for track in history.values()]
    starts = sorted((track[0].pts, track[0].box) for track in history.values())
    ends_inside = rebirths = 0
    for track in history.values():
        end = track[-1]
        x1, y1, x2, y2 = end.box
        if end.pts >= video_end_s:
            continue  # still in view when the video ended
        if min(x1, y1, width - x2, height - y2) < BORDER_PX:
            continue  # left through the border
        ends_inside += 1
        box_height = y2 - y1
        if any(
            end.pts < pts <= end.pts + REBIRTH_WINDOW_S
            and np.linalg.norm(_centre(box) - _centre(end.box)) <= box_height
            for pts, box in starts
        ):
            rebirths += 1
    duplicate_frames = sum(len(track) - len({a.pts for a in track}) for track in history.values())
    jumps = 0
    for track in history.values():
        for before, after in itertools.pairwise(track):
            limit = 2 * (before.box[3] - before.box[1]) + JUMP_SPEED_PX_S * (after.pts - before.pts)
            if np.linalg.norm(_centre(after.box) - _centre(before.box)) > limit:
                jumps += 1
    return TrackStats(
        ids=len(history),
        median_life_s=statistics.median(lives) if lives else 0.0,
        ends_inside=ends_inside,
        rebirths=rebirths,
        duplicate_frames=duplicate_frames,
        jumps=jumps,
    )


def plain(config: AgentConfig) -> AgentConfig:
    """``config`` with plain ByteTrack: the demo's ByteTrack settings, re-association off."""
    tracker: dict[str, Any] = config.tracker.model_dump()
    tracker["type"] = "bytetrack"
    tracker.pop("gmc_method", None)
    tracker["reassociation"] = {"enabled": False}
    return AgentConfig.model_validate({**config.model_dump(), "tracker": tracker})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--frames", type=int, default=None, help="first N frames only (default: all)")
    args = parser.parse_args()

    config = load_config(args.config)
    video = Path(config.cameras[0].uri)
    images, fps = read_video(video, args.frames)
    height, width = images[0].shape[:2]
    started = time.perf_counter()
    detections = detect_all(config, video, images)
    print(
        f"{video.name}: {len(images)} frames at {fps:g} frames/s, {width}x{height}; "
        f"detections in {time.perf_counter() - started:.1f} s"
    )
    video_end_s = (len(images) - 1) / fps
    rows = []
    reference = track_all(plain(config), images, detections, fps)
    without = AgentConfig.model_validate(
        {
            **config.model_dump(),
            "tracker": {**config.tracker.model_dump(), "reassociation": {"enabled": False}},
        }
    )
    configs = (
        ("plain ByteTrack", plain(config)),
        (f"{config.tracker.type}, no re-association", without),
        (f"{args.config} tracker", config),
    )
    for label, cfg in configs:
        started = time.perf_counter()
        history = track_all(cfg, images, detections, fps)
        stats = measure(history, width, height, video_end_s)
        seconds = time.perf_counter() - started
        rows.append((label, stats, hide_and_recover(cfg, images, detections, fps, reference), seconds))
    print(
        f"{'tracker':32} {'ids':>5} {'median life s':>14} {'re-birth':>16} "
        f"{'dup frames':>11} {'jumps':>6} {'1 s gaps kept/wrong':>20} {'time s':>7}"
    )
    for label, stats, gaps, seconds in rows:
        rebirth = f"{stats.rebirths}/{stats.ends_inside} {100 * stats.rebirth_share:3.0f} %"
        kept = f"{gaps.recovered}/{gaps.probes} / {gaps.wrong}"
        print(
            f"{label:32} {stats.ids:5d} {stats.median_life_s:14.1f} {rebirth:>16} "
            f"{stats.duplicate_frames:11d} {stats.jumps:6d} {kept:>20} {seconds:7.1f}"
        )
    print(
        "re-birth: track ends >= 25 px inside the frame followed within 4 s by a new id within a box\n"
        "height; dup frames: an id with two boxes on one frame; jumps: an id moving more than 2 box\n"
        "heights + 200 px/s;\n"
        "1 s gaps: each plain track of 6 s or more hidden for 1 s mid-track: kept its id / came back under\n"
        "another person's id (over-merging)."
    )


if __name__ == "__main__":
    main()
