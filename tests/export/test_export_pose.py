"""``watchword export pose``: MoveNet's .tflite converted to ONNX exactly, batched, with a manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines import create_engine, verify_manifest
from export.errors import ParityError
from export.pose import (
    MAX_KEYPOINT_ABS,
    PoseExportConfig,
    export_pose,
    litert_keypoints,
    packaged_movenet,
    parity_images,
)

pytest.importorskip("tflite")
pytest.importorskip("ai_edge_litert")


def test_export_matches_litert_on_person_crops_and_batches(pose_model_dir: Path) -> None:
    manifest = verify_manifest(pose_model_dir)
    assert manifest.kind == "pose"
    (parity,) = manifest.parity
    assert parity["max_keypoint_abs"] <= MAX_KEYPOINT_ABS
    images = parity_images(6, seed=3)
    reference = litert_keypoints(packaged_movenet(), images)
    with create_engine(
        "onnxruntime", pose_model_dir / manifest.graph_file("pose"), providers=["cpu"]
    ) as engine:
        together = engine.infer({"image": images})["keypoints"]
        one_by_one = np.concatenate([engine.infer({"image": image[None]})["keypoints"] for image in images])
    assert together.shape == (6, 1, 17, 3)
    # the batch gives exactly what single images give, and both what LiteRT gives
    np.testing.assert_array_equal(together, one_by_one)
    assert np.abs(together - reference).max() <= MAX_KEYPOINT_ABS
    # real crops of people give confident keypoints (the comparison is not between two noise outputs)
    assert reference[:3, 0, :, 2].mean() > 0.3


def test_a_wrong_graph_fails_parity_and_leaves_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.pose as pose_export

    real = pose_export.litert_keypoints
    monkeypatch.setattr(pose_export, "litert_keypoints", lambda path, images: real(path, images) + 0.01)
    out = tmp_path / "pose"
    with pytest.raises(ParityError, match="max_keypoint_abs"):
        export_pose(PoseExportConfig(out=out))
    assert not (out / "manifest.json").exists()


def test_cli_exports_pose(tmp_path: Path) -> None:
    out = tmp_path / "pose"
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "export", "pose", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "parity pose fp32" in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["graphs"]["pose"]["file"] == "movenet.onnx"
