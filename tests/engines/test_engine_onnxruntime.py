"""The ONNX Runtime backend: provider fallback order, spec from the graph, inference, clear refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from engines import EngineError, EngineUnavailableError, InputError, create_engine
from engines.onnxruntime_engine import resolve_providers

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def _graph(path: Path) -> tuple[Path, np.ndarray]:
    """x (batch, 8) -> y = normalise(x @ w) (batch, 4)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Mul", ["m", "m"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
        helper.make_node("Sqrt", ["ss"], ["norm"]),
        helper.make_node("Div", ["m", "norm"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, weight


def test_providers_keep_the_configured_order_and_a_missing_gpu_provider_fails() -> None:
    assert resolve_providers(["tensorrt", "cuda", "cpu"], ALL) == (["tensorrt", "cuda", "cpu"], None)
    assert resolve_providers(["cpu", "cuda"], ALL) == (["cpu", "cuda"], None)
    # The CPU-only build (or onnxruntime beside onnxruntime-gpu): asking for the GPU is an error ...
    with pytest.raises(EngineUnavailableError, match=r"lacks \['tensorrt', 'cuda'\].*onnxruntime-gpu"):
        resolve_providers(["tensorrt", "cuda", "cpu"], ["CPUExecutionProvider"])
    with pytest.raises(EngineUnavailableError, match=r"allow_cpu_fallback"):
        resolve_providers(["cuda"], ["CPUExecutionProvider"])
    # ... unless the config explicitly allows the CPU, and then the reason is kept.
    usable, reason = resolve_providers(["cuda"], ["CPUExecutionProvider"], allow_cpu_fallback=True)
    assert usable == ["cpu"] and reason is not None and "lacks ['cuda']" in reason
    with pytest.raises(EngineError, match="unknown onnxruntime providers"):
        resolve_providers(["openvino"], ALL)


def test_missing_gpu_provider_fails_at_start_or_runs_degraded_when_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the refusal needs a build without it")
    path, _ = _graph(tmp_path / "tiny.onnx")
    with pytest.raises(EngineUnavailableError, match=r"tiny|lacks \['cuda'\]"):
        create_engine("onnxruntime", path, providers=["cuda", "cpu"])
    caplog.set_level(logging.INFO)
    with create_engine("onnxruntime", path, providers=["cuda", "cpu"], allow_cpu_fallback=True) as engine:
        assert engine.degraded is not None and "allow_cpu_fallback" in engine.degraded
        assert engine.health()["status"] == "degraded"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "DEGRADED" in r.getMessage()]
    assert warnings, "a CPU fallback must be a warning, not a quiet INFO line"
    with create_engine("onnxruntime", path, providers=["cpu"]) as engine:
        assert engine.degraded is None and engine.health()["status"] == "ok"


def test_runs_a_graph_with_its_spec_and_logs_the_providers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, weight = _graph(tmp_path / "tiny.onnx")
    caplog.set_level(logging.INFO)
    with create_engine("onnxruntime", path, providers=["cpu"]) as engine:
        assert engine.spec.input("x").shape == ("batch", 8) and engine.spec.output_names == ("y",)
        assert engine.providers == ("CPUExecutionProvider",)  # type: ignore[attr-defined]
        x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
        y = engine.infer({"x": x})["y"]
        expected = x @ weight
        np.testing.assert_allclose(
            y, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5, atol=1e-6
        )
        assert engine.timings.calls == 1 and engine.timings.warmup_s > 0 and engine.timings.load_s > 0
        with pytest.raises(InputError, match="expected dtype float32"):
            engine.infer({"x": x.astype(np.float64)})
    assert "requested ['cpu']" in caplog.text and "using ['CPUExecutionProvider']" in caplog.text
    with pytest.raises(EngineError, match="is closed"):
        engine.infer({"x": x})


@pytest.mark.parametrize("spinning", [True, False])
def test_spinning_is_off_when_asked(tmp_path: Path, spinning: bool) -> None:
    """The pose estimator's threads sleep between operators instead of busy-waiting beside the detector."""
    path, _ = _graph(tmp_path / "tiny.onnx")
    with create_engine("onnxruntime", path, providers=["cpu"], spinning=spinning) as engine:
        options = engine._session.get_session_options()  # type: ignore[attr-defined]
        try:
            spins = options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
        except RuntimeError:  # not set: ONNX Runtime's default, which spins
            spins = True
        assert spins is spinning


def test_a_corrupt_onnx_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path, _ = _graph(tmp_path / "tiny.onnx")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineError, match=r"cannot load ONNX model .*tiny\.onnx"):
        create_engine("onnxruntime", path, providers=["cpu"])
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(EngineError, match=r"cannot load ONNX model .*tiny\.onnx"):
        create_engine("onnxruntime", path, providers=["cpu"])
