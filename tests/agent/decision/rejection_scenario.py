"""Issue 17's finding 1 as records: two cameras, one warning query, an LMM that rejects one person.

Camera ``gate``: person 1 scores 0.95 the whole time; what they do is not what the query asks, and
the LMM says so. Camera ``dock``: person 7 scores 0.75 from 10 s to 110 s, and the LMM verifies
them. Frames of both cameras interleave at 5 per second; each person is sampled once a second.
The LMM stand-in is a real local HTTP server speaking the OpenAI chat API: it answers "no" to a
red person (gate) and "yes" to a blue one (dock), reading the image each request carries.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.decision.records import FrameRecord
from agent.types import Frame, TrackEvent, TrackEventKind

FPS = 5
SECONDS = 120
GATE_TRACK, DOCK_TRACK = 1, 7
DOCK_FROM_S, DOCK_UNTIL_S = 10.0, 110.0
BOX = (60.0, 30.0, 100.0, 90.0)
RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR
WALL_START = 1_800_000_000.0


def image(colour: tuple[int, int, int]) -> np.ndarray:
    frame = np.full((120, 160, 3), 40, np.uint8)
    frame[30:90, 60:100] = colour
    return frame


GATE_IMAGE, DOCK_IMAGE = image(RED), image(BLUE)


def records(query_id: int, *, live_frames: bool = True) -> Iterator[FrameRecord]:
    """The two cameras' records, interleaved frame by frame, as the pipeline's batches give them."""
    for index in range(SECONDS * FPS):
        t = index / FPS
        sampled = index % FPS == 0
        gate = FrameRecord("gate", index, t, WALL_START + t, t, 160, 120)
        if index == 0:
            gate.columns = [(query_id, "warning-query")]
            gate.events.append(TrackEvent(TrackEventKind.NEW, "gate", GATE_TRACK, index, t, t, 1))
        gate.boxes[GATE_TRACK] = BOX
        if sampled:
            gate.samples[GATE_TRACK] = {query_id: 0.95}
        dock = FrameRecord("dock", index, t, WALL_START + t, t, 160, 120)
        if DOCK_FROM_S <= t < DOCK_UNTIL_S:
            dock.boxes[DOCK_TRACK] = BOX
            if t == DOCK_FROM_S:
                dock.events.append(TrackEvent(TrackEventKind.NEW, "dock", DOCK_TRACK, index, t, t, 1))
            if sampled:
                dock.samples[DOCK_TRACK] = {query_id: 0.75}
        elif t == DOCK_UNTIL_S:
            dock.events.append(TrackEvent(TrackEventKind.REMOVED, "dock", DOCK_TRACK, index, t, t, 1))
        if live_frames:
            gate.frame = Frame("gate", index, t, WALL_START + t, GATE_IMAGE)
            dock.frame = Frame("dock", index, t, WALL_START + t, DOCK_IMAGE)
        yield gate
        yield dock


def colour_of(body: dict[str, Any]) -> str:
    """The colour of the person in the request's first image: "red", "blue" or "other"."""
    for message in body["messages"]:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert picture is not None
                blue, _, red = picture.reshape(-1, 3).mean(axis=0)
                return "red" if red > 150 > blue else "blue" if blue > 150 > red else "other"
    return "other"


def lmm_answer(body: dict[str, Any]) -> str:
    """No to the red (gate) person, yes to the blue (dock) one, on every turn."""
    verdict = "no" if colour_of(body) == "red" else "yes"
    return json.dumps({"blanks": {}, "verdict": verdict})


def write_recording(folder: Path, query_id: int) -> tuple[Path, dict[str, Any]]:
    """The scenario as a ``run --jsonl`` file and the two cameras' recordings (MJPG): the frames
    file and the config data (cameras) that a ``--frames`` replay with the LMM reads pixels from."""
    cameras = []
    for camera, picture in (("gate", GATE_IMAGE), ("dock", DOCK_IMAGE)):
        path = folder / f"{camera}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), float(FPS), (160, 120))
        for _ in range(SECONDS * FPS):
            writer.write(picture)
        writer.release()
        cameras.append({"id": camera, "uri": str(path)})
    frames = folder / "frames.jsonl"
    with frames.open("w", encoding="utf-8") as out:
        for record in records(query_id, live_frames=False):
            out.write(json.dumps(as_json(record)) + "\n")
    return frames, {"cameras": cameras}


def as_json(record: FrameRecord) -> dict[str, Any]:
    """A record as ``run --jsonl`` writes it."""
    line: dict[str, Any] = {
        "camera": record.camera_id,
        "frame": record.frame_index,
        "pts": record.pts_s,
        "wall_time": record.wall_time,
        "media_time": record.media_time,
        "width": record.width,
        "height": record.height,
        "tracks": [{"id": t, "box": list(b), "score": 0.9} for t, b in record.boxes.items()],
        "events": [{"kind": e.kind.value, "id": e.track_id} for e in record.events],
    }
    if record.samples:
        line["samples"] = {str(t): {str(q): p for q, p in s.items()} for t, s in record.samples.items()}
    if record.columns is not None:
        line["columns"] = [[q, h] for q, h in record.columns]
    return line
