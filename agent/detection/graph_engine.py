"""Opening a detector's ONNX graph on the engine its config names: ONNX Runtime or TensorRT.

YOLO and the converted SSD share it, so both get the same provider order, TensorRT engine cache and
``allow_cpu_fallback`` rule as every other model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.embedding.config import OnnxRuntimeEngineConfig, TensorRTEngineConfig
from engines import Engine
from engines.fallback import open_engine


def open_graph_engine(
    path: Path,
    engine_config: OnnxRuntimeEngineConfig | TensorRTEngineConfig,
    *,
    batch_size: int,
    dims: Mapping[str, int] | None = None,
    check_file: bool = True,
    optimized_cache_dir: Path | None = None,
) -> Engine:
    """``path`` (an ``.onnx`` graph, or a TensorRT ``.engine`` beside its ``.onnx``) on the configured engine.

    Args:
        path: the graph.
        engine_config: ``detector.engine``.
        batch_size: the detector's batch; the TensorRT profile covers at least it.
        dims: sizes of symbolic axes other than the batch (``{"height": 640}``).
        check_file: parse the ONNX file before ONNX Runtime does (False only for a file whose hash
            the caller has just checked against its export manifest).
        optimized_cache_dir: where ONNX Runtime keeps the optimised graph for later starts (CPU).
    """
    dims = dict(dims or {})
    if path.suffix == ".engine" or isinstance(engine_config, TensorRTEngineConfig):
        trt = (
            engine_config
            if isinstance(engine_config, TensorRTEngineConfig)
            else TensorRTEngineConfig(type="tensorrt")
        )
        options: dict[str, Any] = {**trt.engine_options(), "dims": dims}
        options["max_batch"] = max(options["max_batch"], batch_size)
        options["opt_batch"] = min(max(options["opt_batch"], 1), options["max_batch"])
        onnx = path if path.suffix == ".onnx" else path.with_suffix(".onnx")
        return open_engine(
            "tensorrt",
            path,
            options,
            allow_cpu_fallback=trt.allow_cpu_fallback,
            onnx_path=onnx if onnx.is_file() else None,
            cpu_options={"dims": dims},
        )
    options = {**engine_config.engine_options(), "dims": dims, "check_file": check_file}
    if optimized_cache_dir is not None:
        options["optimized_cache_dir"] = optimized_cache_dir
    return open_engine("onnxruntime", path, options, allow_cpu_fallback=engine_config.allow_cpu_fallback)
