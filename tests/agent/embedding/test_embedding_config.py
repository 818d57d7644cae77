"""Embedder and engine config: strict keys, an engine chosen by type, options that map onto engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.embedding.config import (
    EmbedderConfig,
    OnnxRuntimeEngineConfig,
    TensorRTEngineConfig,
    TorchEngineConfig,
)


def test_engine_type_selects_the_config(tmp_path: Path) -> None:
    config = EmbedderConfig.model_validate(
        {"model_dir": str(tmp_path), "engine": {"type": "tensorrt", "precision": "int8"}}
    )
    assert isinstance(config.engine, TensorRTEngineConfig) and config.engine.precision == "int8"
    assert isinstance(EmbedderConfig(model_dir=tmp_path).engine, OnnxRuntimeEngineConfig)
    torch_config = EmbedderConfig.model_validate(
        {"model_dir": str(tmp_path), "engine": {"type": "torch", "device": "cuda:1"}}
    )
    assert isinstance(torch_config.engine, TorchEngineConfig)


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"type": "openvino"}, "does not match any of the expected tags"),
        ({"type": "onnxruntime", "providers": ["cuda", "cuda"]}, "must not repeat"),
        ({"type": "onnxruntime", "providers": []}, "at least 1 item"),
        ({"type": "onnxruntime", "threads": 2}, "Extra inputs are not permitted"),
        ({"type": "tensorrt", "min_batch": 8, "opt_batch": 4}, "min_batch <= opt_batch <= max_batch"),
        ({"type": "torch", "device": "gpu"}, "should match pattern"),
    ],
)
def test_bad_engine_configs_fail_with_a_reason(
    tmp_path: Path, engine: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        EmbedderConfig.model_validate({"model_dir": str(tmp_path), "engine": engine})


def test_options_map_onto_the_engine_constructors(tmp_path: Path) -> None:
    ort = OnnxRuntimeEngineConfig(
        type="onnxruntime", providers=["tensorrt", "cpu"], trt_cache_dir=Path("~/c")
    )
    assert ort.engine_options()["providers"] == ["tensorrt", "cpu"]
    assert ort.engine_options()["trt_cache_dir"] == Path.home() / "c"
    import inspect

    from engines.onnxruntime_engine import OnnxRuntimeEngine
    from engines.tensorrt_engine import TensorRTEngine

    for config, cls in ((ort, OnnxRuntimeEngine), (TensorRTEngineConfig(type="tensorrt"), TensorRTEngine)):
        assert set(config.engine_options()) <= set(inspect.signature(cls.__init__).parameters)


def test_missing_model_dir_and_unknown_keys_fail(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="model directory not found"):
        EmbedderConfig(model_dir=tmp_path / "nope")
    with pytest.raises(ValidationError, match="Extra inputs"):
        EmbedderConfig.model_validate({"model_dir": str(tmp_path), "padding": 0.1})
