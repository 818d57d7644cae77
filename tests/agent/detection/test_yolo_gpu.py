"""The YOLO detector on the GPU: ONNX Runtime's CUDA provider and a TensorRT engine built here.

These run only where a CUDA GPU is lent (``-m gpu`` / ``-m trt``); elsewhere they are skipped with
the reason. bench/gpu_check.sh runs them together with the NVDEC decoding check.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.detection import build_detector
from agent.detection.config import YoloDetectorConfig


def _cuda_missing() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"no CUDAExecutionProvider in this onnxruntime ({onnxruntime.get_available_providers()})"
    return None


def _tensorrt_missing() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (pip install 'watchword[trt]')"
    return _cuda_missing()


@pytest.fixture(scope="module")
def onnx_model(tiny_yolo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engines.ultralytics_import import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    copy = tmp_path_factory.mktemp("gpu-yolo") / tiny_yolo.name
    shutil.copyfile(tiny_yolo, copy)
    return Path(YOLO(str(copy), task="detect").export(format="onnx", imgsz=160, simplify=False, dynamic=True))


def _config(model: Path, engine: dict[str, object]) -> YoloDetectorConfig:
    return YoloDetectorConfig.model_validate(
        {"type": "yolo", "model": model, "imgsz": 160, "classes": [], "engine": engine}
    )


def _same_boxes(a: list, b: list, atol_px: float) -> None:
    for ours, reference in zip(a, b, strict=True):
        assert len(ours) == len(reference)
        np.testing.assert_allclose(ours.xyxy, reference.xyxy, atol=atol_px)


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_missing() is not None, reason=_cuda_missing() or "")
def test_cuda_provider_runs_not_degraded_with_cpu_boxes(onnx_model: Path, sample_frames: list) -> None:
    frames = sample_frames[:8]
    with build_detector(_config(onnx_model, {"type": "onnxruntime", "providers": ["cuda"]})) as gpu:
        assert gpu.health()["status"] == "ok"
        assert "CUDAExecutionProvider" in gpu.engine.name
        on_gpu = gpu.detect(frames)
    with build_detector(_config(onnx_model, {"type": "onnxruntime", "providers": ["cpu"]})) as cpu:
        on_cpu = cpu.detect(frames)
    _same_boxes(on_gpu, on_cpu, atol_px=1.0)


@pytest.mark.trt
@pytest.mark.skipif(_tensorrt_missing() is not None, reason=_tensorrt_missing() or "")
def test_tensorrt_engine_is_built_cached_and_agrees_with_onnxruntime(
    onnx_model: Path,
    sample_frames: list,
    tmp_path: Path,
) -> None:
    frames = sample_frames[:8]
    engine = {"type": "tensorrt", "precision": "fp32", "cache_dir": str(tmp_path / "cache"), "max_batch": 8}
    with build_detector(_config(onnx_model, engine)) as trt:
        assert trt.engine.kind == "tensorrt" and trt.timings.build_s > 0
        on_trt = trt.detect(frames)
    with build_detector(_config(onnx_model, engine)) as again:
        assert again.timings.build_s == 0.0  # a cache hit
    with build_detector(_config(onnx_model, {"type": "onnxruntime", "providers": ["cpu"]})) as cpu:
        on_cpu = cpu.detect(frames)
    _same_boxes(on_trt, on_cpu, atol_px=1.0)


@pytest.mark.trt
@pytest.mark.skipif(_tensorrt_missing() is not None, reason=_tensorrt_missing() or "")
def test_tensorrt_engine_built_on_the_loader_thread_runs_on_this_one(
    onnx_model: Path, sample_frames: list, tmp_path: Path
) -> None:
    """As in ``watchword run``: the engine is built on the detector's loader thread (its CUDA stream and
    buffers made there) and infers on the pipeline's thread."""
    from agent.detection.loader import DetectorLoader

    frames = sample_frames[:8]
    engine = {"type": "tensorrt", "precision": "fp32", "cache_dir": str(tmp_path / "cache"), "max_batch": 8}
    loader = DetectorLoader(_config(onnx_model, engine))
    try:
        on_trt = loader.result().detect(frames)
    finally:
        loader.close()
    with build_detector(_config(onnx_model, {"type": "onnxruntime", "providers": ["cpu"]})) as cpu:
        on_cpu = cpu.detect(frames)
    _same_boxes(on_trt, on_cpu, atol_px=1.0)
