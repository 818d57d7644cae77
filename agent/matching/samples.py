"""One embedded crop of a track, as the matcher hands it to listeners (the search index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackSample:
    """A track's crop embedding taken in one frame.

    Attributes:
        camera_id: the camera.
        track_id: the track (person) id on that camera.
        time_s: the frame's time, UNIX seconds.
        image: the whole frame, BGR uint8 (not copied: read it, do not change it).
        box: x1, y1, x2, y2 in pixels.
        embedding: (D,) L2-normalised CLIP image embedding of the crop.
    """

    camera_id: str
    track_id: int
    time_s: float
    image: np.ndarray
    box: tuple[float, float, float, float]
    embedding: np.ndarray
