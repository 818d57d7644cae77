"""Evidence bundles: valid JPEGs that match the alert's box, a JSON record, retention by age and size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.alerts.evidence import EvidenceStore

from .helpers import make_candidate


def _decode(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a decodable JPEG"
    return image


def test_crop_and_frame_are_jpegs_matching_the_box(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, crop_padding=0.0, jpeg_quality=95)
    candidate = make_candidate(box=(40.0, 30.0, 120.0, 190.0))
    paths = store.write_images("a1", candidate, label="query 7 0.80")
    assert paths.as_dict() == {"crop": "a1/crop.jpg", "frame": "a1/frame.jpg", "json": "a1/evidence.json"}
    assert (tmp_path / paths.crop).read_bytes()[:3] == b"\xff\xd8\xff"
    crop = _decode(tmp_path / paths.crop)
    assert crop.shape == (160, 80, 3)  # box height x width, no padding
    assert np.abs(crop.astype(int) - candidate.frame[30:190, 40:120].astype(int)).mean() < 4
    frame = _decode(tmp_path / paths.frame)
    assert frame.shape == candidate.frame.shape
    # The left edge of the box is drawn in red; the original frame is not red there.
    b, g, r = (int(v) for v in frame[110, 40])
    assert r > 180 and b < 90 and g < 90, (b, g, r)
    assert int(candidate.frame[110, 40, 2]) < 120
    # Inside the box the frame is untouched.
    assert np.abs(frame[110, 80].astype(int) - candidate.frame[110, 80].astype(int)).max() < 12


def test_padded_crop_matches_candidate_crop(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, crop_padding=0.2)
    candidate = make_candidate(box=(10.5, 20.2, 70.7, 230.0))
    store.write_images("a2", candidate)
    assert _decode(tmp_path / "a2" / "crop.jpg").shape == candidate.crop(0.2).shape


def test_record_is_written_atomically_and_replaced(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    store.write_record("a3", {"alert": {"alert_id": "a3", "seq": 0}})
    store.write_record("a3", {"alert": {"alert_id": "a3", "seq": 1}})
    assert json.loads((tmp_path / "a3" / "evidence.json").read_text())["alert"]["seq"] == 1
    assert [p.name for p in (tmp_path / "a3").iterdir()] == ["evidence.json"]  # no temporary files left


@pytest.mark.parametrize("alert_id", ["../etc", "a/b", "", ".hidden"])
def test_unsafe_alert_ids_are_refused(tmp_path: Path, alert_id: str) -> None:
    with pytest.raises(ValueError, match="not a valid alert id"):
        EvidenceStore(tmp_path).write_record(alert_id, {})


def _bundle(store: EvidenceStore, alert_id: str, created: float) -> int:
    store.write_images(alert_id, make_candidate())
    store.write_record(alert_id, {"alert_id": alert_id})
    folder = store.root / alert_id
    for file in folder.iterdir():
        os.utime(file, (created, created))
    return sum(f.stat().st_size for f in folder.iterdir())


def test_prune_by_age_deletes_old_bundles_only(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    now = 1_700_000_000.0
    _bundle(store, "old", now - 10 * 86400)
    _bundle(store, "open-but-old", now - 10 * 86400)
    _bundle(store, "new", now - 3600)
    result = store.prune(retention_days=7, retention_bytes=None, keep={"open-but-old"}, now=now)
    assert result.deleted == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "open-but-old"]


def test_prune_by_size_deletes_oldest_first_until_under_the_limit(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    now = 1_700_000_000.0
    sizes = {name: _bundle(store, name, now - age) for name, age in [("b1", 500), ("b2", 400), ("b3", 300)]}
    _bundle(store, "b4", now - 200)
    limit = sizes["b3"] + sizes["b3"] // 2 + _folder_bytes(tmp_path / "b4")
    result = store.prune(retention_days=None, retention_bytes=limit, now=now)
    assert result.deleted == ["b1", "b2"]
    assert result.bytes_kept <= limit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b3", "b4"]


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def test_the_box_label_stays_inside_the_frame_at_its_edges() -> None:
    """Found: a person at the top or right edge had the label cut by the frame's edge."""
    import cv2
    import numpy as np

    from agent.alerts.evidence import draw_box

    frame = np.zeros((240, 320, 3), np.uint8)
    label = "a person loitering near the entrance 0.83"
    drawn = draw_box(frame, (250.0, 0.0, 318.0, 200.0), label)
    (text_w, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    red = (drawn[:, :, 2] > 200) & (drawn[:, :, 1] < 50)
    rows = np.nonzero(red[:20].any(axis=1))[0]
    assert rows.size and rows.min() == 0  # inside the box's top, not above the frame
    columns = np.nonzero(red[2:12].any(axis=0))[0]
    assert columns.max() - columns.min() + 1 >= text_w  # the whole label's background is in the frame
    assert columns.max() <= 319
