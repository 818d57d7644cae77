"""TensorRT on a GPU: build, cache hit on the second load, rebuild when the precision changes.

Marked ``trt``; skipped with the reason where TensorRT or a CUDA GPU is missing. The cache logic
itself is tested without a GPU in ``test_engine_cache.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engines import EngineUnavailableError, create_engine


def _tensorrt_missing() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (pip install 'watchword[trt]')"
    try:
        from engines.cuda_runtime import CudaRuntime

        CudaRuntime(0).close()
    except Exception as exc:  # no driver, no GPU, no cuda-python
        return f"no usable CUDA GPU: {exc}"
    return None


REASON = _tensorrt_missing()


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.skipif(REASON is None, reason="TensorRT is installed here; the refusal applies without it")
def test_without_tensorrt_the_engine_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match=r"watchword\[trt\]|CUDA GPU"):
        create_engine("tensorrt", _tiny_onnx(tmp_path / "tiny.onnx"))


@pytest.mark.trt
@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_build_then_cache_hit_then_rebuild_for_another_precision(tmp_path: Path) -> None:
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    cache = tmp_path / "cache"
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    with create_engine(
        "tensorrt", onnx_path, cache_dir=cache, precision="fp32", max_batch=8, opt_batch=4
    ) as engine:
        assert engine.timings.build_s > 0
        y = engine.infer({"x": x})["y"]
        first = engine.engine_path  # type: ignore[attr-defined]
    import onnxruntime as ort

    reference = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4)
    with create_engine(
        "tensorrt", onnx_path, cache_dir=cache, precision="fp32", max_batch=8, opt_batch=4
    ) as engine:
        assert engine.timings.build_s == 0.0 and engine.engine_path == first  # type: ignore[attr-defined]
    with create_engine(
        "tensorrt", onnx_path, cache_dir=cache, precision="fp16", max_batch=8, opt_batch=4
    ) as engine:
        assert engine.timings.build_s > 0 and engine.engine_path != first  # type: ignore[attr-defined]
        np.testing.assert_allclose(engine.infer({"x": x})["y"], reference, rtol=2e-2, atol=2e-2)
    assert len(list(cache.glob("*.engine"))) == 2 and len(list(cache.glob("*.engine.json"))) == 2
