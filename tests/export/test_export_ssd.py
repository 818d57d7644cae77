"""``watchword export ssd``: the conversion is written only when it agrees with OpenCV 4.

The gate compares the people found and, where OpenCV 4 runs, every anchor's box encodings and class
scores; a conversion with a classic TensorFlow-to-ONNX mistake (SAME padding's odd pixel put first)
is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engines import read_manifest
from export import ssd as ssd_export
from export import ssd_onnx
from export.errors import ParityError, SourceModelError
from export.ssd import ONNX_FILE, SSDExportConfig, export_ssd, opencv_reads_tensorflow, packaged_ssd_files

needs_opencv4 = pytest.mark.skipif(
    not opencv_reads_tensorflow(), reason="OpenCV 5 has no TensorFlow importer"
)


@pytest.fixture(autouse=True)
def _packaged() -> None:
    try:
        packaged_ssd_files()
    except SourceModelError as exc:
        pytest.skip(str(exc))


@needs_opencv4
def test_without_the_sample_video_every_anchor_is_compared_on_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image has no vtest.avi: noise frames find no people, so the raw outputs carry the check."""
    monkeypatch.setattr(ssd_export, "SAMPLE_VIDEO", tmp_path / "absent.avi")
    result = export_ssd(SSDExportConfig(out=tmp_path / "ssd", reference="opencv", frames=2))
    metrics = result.parity[0].metrics
    assert metrics["max_raw_score_abs"] < 1e-5 and metrics["max_raw_encoding_abs"] < 1e-4, metrics
    manifest = read_manifest(tmp_path / "ssd")
    assert manifest.parity[0]["max_raw_score_abs"] == pytest.approx(metrics["max_raw_score_abs"], abs=1e-7)


@needs_opencv4
def test_a_conversion_with_the_padding_on_the_wrong_side_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    right = ssd_onnx._padding

    def odd_pixel_first(*args: object) -> tuple[int, int, list[int]]:
        height, width, pads = right(*args)  # type: ignore[arg-type]
        return height, width, [pads[2], pads[3], pads[0], pads[1]]

    monkeypatch.setattr(ssd_onnx, "_padding", odd_pixel_first)
    with pytest.raises(ParityError, match="ssd"):
        export_ssd(SSDExportConfig(out=tmp_path / "ssd", reference="opencv", frames=2))
    assert not (tmp_path / "ssd").exists(), "nothing is kept from a refused conversion"
    assert not list(tmp_path.glob(".ssd.*")), "the staging folder is removed"


def test_the_recorded_reference_checks_the_conversion_where_opencv_5_runs(tmp_path: Path) -> None:
    if not ssd_export.SAMPLE_VIDEO.is_file():
        pytest.skip(f"needs the sample video {ssd_export.SAMPLE_VIDEO}")
    result = export_ssd(SSDExportConfig(out=tmp_path / "ssd", reference="recorded"))
    metrics = result.parity[0].metrics
    assert metrics["frames"] == 24 and metrics["people"] >= 100 and metrics["frames_mismatched"] == 0
    manifest = read_manifest(tmp_path / "ssd")
    assert manifest.extra["reference"] == "recorded" and ONNX_FILE in manifest.files
