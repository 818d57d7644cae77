"""Evidence bundles: ``<root>/<alert_id>/`` with crop.jpg, frame.jpg (box, and keypoints when pose cues
are on, drawn) and evidence.json.

Files are written to a temporary name and renamed, so a reader or a crash never sees half a file.
Retention deletes whole bundles, oldest first, by age in days and by the folder's total bytes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.pose.drawing import draw_skeleton
from agent.types import Candidate

log = logging.getLogger(__name__)

CROP_FILE = "crop.jpg"
FRAME_FILE = "frame.jpg"
RECORD_FILE = "evidence.json"
_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
BOX_COLOR_BGR = (0, 0, 255)


class EvidenceError(Exception):
    """An evidence file could not be encoded or written."""


@dataclass(frozen=True)
class EvidencePaths:
    """Where a bundle's files are, relative to the evidence folder (``<alert_id>/crop.jpg``...)."""

    crop: str
    frame: str
    record: str
    # the clip, named ahead of being written (agent/alerts/clip.py): it exists about
    # ``clip_after_s`` media seconds after the alert opened; None: no clip is recorded
    clip: str | None = None
    clip_after_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        paths: dict[str, Any] = {"crop": self.crop, "frame": self.frame, "json": self.record}
        if self.clip is not None:
            paths["clip"] = self.clip
            paths["clip_after_s"] = self.clip_after_s
        return paths


@dataclass(frozen=True)
class PruneResult:
    """Bundles deleted by one :meth:`EvidenceStore.prune` and the bytes they held."""

    deleted: list[str]
    bytes_freed: int
    bytes_kept: int


def _check_id(alert_id: str) -> str:
    if not _ALERT_ID.match(alert_id):
        raise ValueError(f"not a valid alert id: {alert_id!r}")
    return alert_id


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def draw_box(frame: np.ndarray, box: tuple[float, float, float, float], label: str) -> np.ndarray:
    """A copy of ``frame`` with ``box`` (x1, y1, x2, y2 in pixels) outlined in red and labelled."""
    image = frame.copy()
    height, width = image.shape[:2]
    thickness = max(2, round(min(height, width) / 300))
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOR_BGR, thickness)
    if label:
        scale = max(0.4, min(height, width) / 1000)
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        label_h = text_h + baseline + 2
        # above the box where there is room, else just inside its top edge; never past the frame's
        # edges (a label cut by the edge was found on people at the top or right of the picture)
        top = y1 - label_h if y1 - label_h >= 0 else max(0, min(y1, height - label_h))
        left = max(0, min(x1, width - text_w - 2))
        cv2.rectangle(image, (left, top), (left + text_w + 2, top + label_h), BOX_COLOR_BGR, -1)
        cv2.putText(
            image, label, (left + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1
        )
    return image


class EvidenceStore:
    """Writes and prunes evidence bundles under ``root``.

    Args:
        root: the evidence folder; created on first write.
        crop_padding: margin around the box in the crop, as a fraction of the box size.
        jpeg_quality: 10-100.
    """

    def __init__(self, root: Path, *, crop_padding: float = 0.1, jpeg_quality: int = 90) -> None:
        self.root = Path(root)
        self.crop_padding = crop_padding
        self.jpeg_quality = jpeg_quality

    def bundle_dir(self, alert_id: str) -> Path:
        """The folder of one alert's bundle (it may not exist)."""
        return self.root / _check_id(alert_id)

    def paths(self, alert_id: str) -> EvidencePaths:
        _check_id(alert_id)
        return EvidencePaths(
            f"{alert_id}/{CROP_FILE}", f"{alert_id}/{FRAME_FILE}", f"{alert_id}/{RECORD_FILE}"
        )

    def _encode(self, image: np.ndarray) -> bytes:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise EvidenceError(f"JPEG encoding failed for an image of shape {image.shape}")
        return buffer.tobytes()

    def write_images(self, alert_id: str, candidate: Candidate, label: str = "") -> EvidencePaths:
        """Write the padded crop and the full frame with the box drawn; return their paths."""
        folder = self.bundle_dir(alert_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(folder / CROP_FILE, self._encode(candidate.crop(self.crop_padding)))
            framed = draw_box(candidate.frame, candidate.box, label)
            keypoints = (candidate.pose or {}).get("keypoints")
            if keypoints is not None:  # the person's skeleton, when pose cues are on
                draw_skeleton(framed, keypoints)
            _write_atomic(folder / FRAME_FILE, self._encode(framed))
        except OSError as exc:
            raise EvidenceError(f"cannot write evidence of alert {alert_id} in {folder}: {exc}") from exc
        return self.paths(alert_id)

    def write_record(self, alert_id: str, record: dict[str, Any]) -> None:
        """Write (or replace) the bundle's evidence.json."""
        folder = self.bundle_dir(alert_id)
        data = json.dumps(record, indent=2, sort_keys=True, allow_nan=False).encode("utf-8")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(folder / RECORD_FILE, data)
        except OSError as exc:
            raise EvidenceError(f"cannot write evidence record of alert {alert_id}: {exc}") from exc

    def read_record(self, alert_id: str) -> dict[str, Any] | None:
        """The bundle's evidence.json, or None when it is missing or unreadable."""
        try:
            record = json.loads((self.bundle_dir(alert_id) / RECORD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _bundles(self) -> list[tuple[float, int, Path]]:
        """(created UNIX seconds, bytes, folder) of every bundle, oldest first."""
        bundles: list[tuple[float, int, Path]] = []
        if not self.root.is_dir():
            return bundles
        for folder in self.root.iterdir():
            if not folder.is_dir() or not _ALERT_ID.match(folder.name):
                continue
            created, size = folder.stat().st_mtime, 0
            for file in folder.iterdir():
                try:
                    stat = file.stat()
                except FileNotFoundError:
                    continue
                created, size = min(created, stat.st_mtime), size + stat.st_size
            bundles.append((created, size, folder))
        bundles.sort(key=lambda b: (b[0], b[2].name))
        return bundles

    def prune_oldest(self, *, keep: set[str] | frozenset[str] = frozenset()) -> str | None:
        """Delete the oldest bundle not named in ``keep`` (to free space); return its alert id."""
        for _, size, folder in self._bundles():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                log.warning("evidence: deleted bundle %s (%d bytes) to free space", folder.name, size)
                return folder.name
        return None

    def prune(
        self,
        *,
        retention_days: float | None,
        retention_bytes: int | None,
        keep: set[str] | frozenset[str] = frozenset(),
        now: float | None = None,
    ) -> PruneResult:
        """Delete bundles older than ``retention_days``, then the oldest until under ``retention_bytes``.

        Bundles named in ``keep`` (open episodes) are never deleted. ``now`` is UNIX seconds.
        """
        now = time.time() if now is None else now
        bundles = self._bundles()
        total = sum(size for _, size, _ in bundles)
        deleted: list[str] = []
        freed = 0
        cutoff = None if retention_days is None else now - retention_days * 86400.0
        for created, size, folder in bundles:
            too_old = cutoff is not None and created < cutoff
            too_big = retention_bytes is not None and total > retention_bytes
            if not (too_old or too_big) or folder.name in keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder.name)
            freed += size
            total -= size
        if deleted:
            log.info("evidence: deleted %d bundles (%d bytes), %d bytes kept", len(deleted), freed, total)
        return PruneResult(deleted, freed, total)
